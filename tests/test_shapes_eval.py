import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from tessera.eval.judge import Detection
from tessera.eval.shapes_eval import (
    CATEGORY_SIZES,
    OUTCOMES,
    evaluate_folder,
    load_metadata,
    make_metadata,
    outcome,
    read_folder,
    score,
    score_images,
    strict,
    summarize,
)
from tessera.world.constraints import from_geneval, to_geneval
from tessera.world.grammar import parse_description


def det(shape, colour="red", x=10.0, y=10.0, half=4.0, confidence=0.99) -> Detection:
    return Detection(shape, colour, "small", (x - half, y - half, x + half, y + half), confidence, 4 * half * half)


def test_metadata_file_is_what_the_seeded_script_makes():
    lines = load_metadata()
    assert lines == make_metadata(seed=0)
    assert len(lines) == 553
    assert Counter(line["tag"] for line in lines) == CATEGORY_SIZES


def test_metadata_lines_follow_geneval_format():
    for line in load_metadata():
        assert list(line) in (["tag", "include", "prompt"], ["tag", "include", "exclude", "prompt"])
        assert to_geneval(parse_description(line["prompt"]), line["tag"], line["prompt"]) == line
        for i, item in enumerate(line["include"]):
            if "position" in item:
                assert item["position"][1] < i  # the target is listed first, as GenEval's scorer needs
        if line["tag"] == "counting":
            (inc,), (exc,) = line["include"], line["exclude"]
            assert exc == {"class": inc["class"], "count": inc["count"] + 1}
        else:
            assert "exclude" not in line
        assert from_geneval(line).objects  # and back


def test_colors_and_position_keep_prompts_aside_for_training():
    lines = load_metadata()
    assert len({line["prompt"] for line in lines if line["tag"] == "colors"}) == 24  # of 40
    assert len({line["prompt"] for line in lines if line["tag"] == "position"}) == 48  # of 80


COUNT3 = {
    "tag": "counting",
    "include": [{"class": "circle", "count": 3}],
    "exclude": [{"class": "circle", "count": 4}],
    "prompt": "three circles",
}
LEFT = {
    "tag": "position",
    "include": [{"class": "star", "count": 1}, {"class": "circle", "count": 1, "position": ["left of", 0]}],
    "prompt": "a circle left of a star",
}
RED = {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": "a red circle"}


def test_counting_is_exact():
    three = [det("circle", x=10 + 12 * i) for i in range(3)]
    assert score(three, COUNT3)[0]
    assert not score(three[:2], COUNT3)[0]
    ok, reason = score([*three, det("circle", x=50)], COUNT3)
    assert not ok and "circle<4" in reason
    assert score([*three, det("circle", x=50, confidence=0.4)], COUNT3)[0]  # below the counting threshold
    assert score([*three, det("star", x=50)], COUNT3)[0]  # other classes do not count


def test_position_uses_the_margin():
    star = det("star", x=40)
    assert score([star, det("circle", x=20)], LEFT)[0]
    # centres 1.5 px apart with boxes 8 + 8 wide: inside the 0.1 * 16 margin
    ok, reason = score([star, det("circle", x=38.5)], LEFT)
    assert not ok and "expected circle left of" in reason
    assert not score([det("circle", x=20)], LEFT)[0]  # no target


def test_colour_is_read_from_the_most_confident_object():
    assert score([det("circle", "red")], RED)[0]
    assert not score([det("circle", "blue", confidence=0.99), det("circle", "red", x=40, confidence=0.8)], RED)[0]
    assert not score([det("square", "red")], RED)[0]


def outcome_of(detections, meta) -> str:
    return outcome(detections, meta, score(detections, meta)[0], strict(detections, meta)[0])


def test_each_image_gets_the_first_outcome_that_applies():
    assert outcome_of([det("circle", "red")], RED) == "exact"
    assert outcome_of([det("circle", "red"), det("clutter", "red", x=40)], RED) == "extras"
    assert outcome_of([det("circle", "red"), det("star", "blue", x=40)], RED) == "extras"
    assert outcome_of([det("circle", "blue")], RED) == "colour or place"
    assert outcome_of([det("star", x=40), det("circle", x=60)], LEFT) == "colour or place"
    assert outcome_of([det("square", "red")], RED) == "shapes or count"
    assert outcome_of([det("circle", x=10 + 12 * i) for i in range(4)], COUNT3) == "shapes or count"
    assert outcome_of([det("clutter", "red")], RED) == outcome_of([], RED) == "no clean shape"


def test_outcomes_are_shares_of_each_category():
    rows = [{"tag": "colors", "correct": o == "exact", "outcome": o} for o in ("exact", "extras", "extras", "exact")]
    shares = summarize(rows)["outcomes"]["colors"]
    assert shares == dict.fromkeys(OUTCOMES, 0.0) | {"exact": 0.5, "extras": 0.5}
    assert list(shares) == list(OUTCOMES)


def test_overall_is_the_mean_of_category_means():
    rows = [{"tag": "colors", "correct": c} for c in (True, True, True, False)]
    rows += [{"tag": "position", "correct": c} for c in (True, False)]
    s = summarize(rows)
    assert s["colors"] == 0.75 and s["position"] == 0.5 and s["overall"] == pytest.approx(0.625)


@pytest.mark.parametrize("kind", ["noise", "blank"])
def test_noise_and_blank_images_score_near_zero(kind, judge):
    """One picture of nothing for each of the 553 prompts: every category scores about zero."""
    rng = np.random.default_rng(0)
    metadata = load_metadata()
    if kind == "noise":
        images = rng.integers(0, 256, (len(metadata), 64, 64, 3), dtype=np.uint8)
    else:
        images = np.full((len(metadata), 64, 64, 3), 128, np.uint8)
    summary = summarize(score_images(images, metadata, judge))
    assert summary["images"] == 553 and summary["overall"] <= 0.05


def test_unreadable_files_are_skipped_and_counted(judge, tmp_path):
    folder = tmp_path / "00000"
    (folder / "samples").mkdir(parents=True)
    (folder / "metadata.jsonl").write_text(json.dumps(RED) + "\n")
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(folder / "samples" / "0000.png")
    (folder / "samples" / "0001.png").write_bytes(b"not a png")
    (tmp_path / "00001").mkdir()
    (tmp_path / "00001" / "metadata.jsonl").write_text("{broken")
    items, problems = read_folder(tmp_path)
    assert len(items) == 2 and len(problems) == 1
    summary, rows = evaluate_folder(tmp_path, judge, progress=False)
    assert summary["images"] == 1 and len(summary["skipped"]) == 2
