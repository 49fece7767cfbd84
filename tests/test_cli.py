"""The `tessera` command as a user runs it: files written, and bad input ends in one line with exit code 2."""

import json
import shutil

import numpy as np
import pytest
from conftest import one_line_error
from conftest import run_cli as run
from PIL import Image

from tessera.eval.shapes_eval import score


@pytest.mark.parametrize(
    ("prompt", "named"),
    [("a red dodecahedron", "dodecahedron"), ("seventeen circles", "seventeen"), ("", "empty prompt")],
)
def test_prompt_outside_the_grammar(prompt, named, tmp_path):
    one_line_error(run("world", "render", prompt, "--out", str(tmp_path / "x.png")), named)
    assert not (tmp_path / "x.png").exists()


def test_render_draws_what_the_prompt_says(judge, tmp_path):
    out = tmp_path / "x.png"
    assert run("world", "render", "a red circle left of a blue star", "--out", str(out), "--seed", "3").returncode == 0
    image = np.asarray(Image.open(out).convert("RGB"))
    meta = {
        "tag": "color_attr",
        "include": [
            {"class": "star", "count": 1, "color": "blue"},
            {"class": "circle", "count": 1, "color": "red", "position": ["left of", 0]},
        ],
    }
    assert score(judge.read(image)[0], meta)[0]
    for kind in ("segmentation", "edges", "video"):
        path = tmp_path / f"x-{kind}.{'gif' if kind == 'video' else 'png'}"
        assert run("world", "render", "two stars", "--kind", kind, "--out", str(path)).returncode == 0
        assert path.stat().st_size > 0
    one_line_error(run("world", "render", "a star", "--kind", "hologram"), "hologram")
    one_line_error(run("world", "render", "a star", "--canvas", "50"), "multiple of 16")


def test_world_sample_writes_images_texts_and_scenes(tmp_path):
    result = run("world", "sample", "--n", "4", "--out", str(tmp_path), "--video", "--seed", "5")
    assert result.returncode == 0, result.stderr
    assert len(list(tmp_path.glob("0000?.png"))) == 4 and len(list(tmp_path.glob("*.gif"))) == 4
    records = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    assert len(records) == 4
    assert {"caption", "partial", "prompts", "question", "answer", "edit", "scene"} <= set(records[0])
    again = tmp_path / "again"
    assert run("world", "sample", "--n", "4", "--out", str(again), "--video", "--seed", "5").returncode == 0
    assert (again / "captions.jsonl").read_text() == (tmp_path / "captions.jsonl").read_text()


def test_judge_check(tmp_path):
    out = tmp_path / "x.png"
    run("world", "render", "three green squares", "--out", str(out))
    result = run("judge", "check", str(out), "--json")
    objects = json.loads(result.stdout)["objects"]
    assert [(o["shape"], o["colour"]) for o in objects] == [("square", "green")] * 3
    (tmp_path / "bad.png").write_bytes(b"junk")
    one_line_error(run("judge", "check", str(tmp_path / "bad.png")), "bad.png")
    one_line_error(run("judge", "check", str(tmp_path / "missing.png")), "missing.png")
    Image.fromarray(np.full((64, 32, 3), 128, np.uint8)).save(tmp_path / "wide.png")
    one_line_error(run("judge", "check", str(tmp_path / "wide.png")), "square")


def test_judge_eval_measures_a_judge_folder(tmp_path):
    result = run("judge", "eval", "--scenes", "30")
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[2:4] for line in result.stdout.splitlines() if "│" in line}
    assert {"clean", "corrupted", "rough", "malformed"} <= set(rows)
    assert float(rows["clean"][0]) >= 0.99 and float(rows["clean"][1]) >= 0.99
    one_line_error(run("judge", "eval", "--weights", str(tmp_path)), str(tmp_path))


def test_ground_truth_scores_near_one(tmp_path):
    result = run("eval", "shapes", "--ground-truth", "--per-prompt", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["images"] == 553
    assert summary["overall"] >= 0.99
    assert (
        min(summary[c] for c in ("single_object", "two_object", "counting", "colors", "position", "color_attr")) >= 0.97
    )
    assert (tmp_path / "results.md").read_text().count("|") > 10
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 553
    assert (tmp_path / "samples.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["world", "render"], "Missing argument"),
        (["world", "render", "a star", "--bogus"], "--bogus"),
        (["world", "render", "a star", "--seed", "-1"], "--seed"),
        (["world", "render", "a star", "--scale", "0"], "--scale"),
        (["world", "render", "a star", "--out", "x.txt"], ".png"),
        (["world", "render", "a star", "--kind", "video", "--out", "x.png"], ".gif"),
        (["world", "sample", "--n", "0", "--out", "x"], "--n"),
        (["world", "sample", "--canvas", "abc", "--out", "x"], "--canvas"),
        (["judge", "train", "steps=0"], "steps"),
        (["judge", "train", "lr=nan"], "lr"),
    ],
)
def test_usage_errors_are_one_line(args, named, tmp_path):
    one_line_error(run(*args), named)


def test_eval_skips_and_counts_bad_metadata_and_images(tmp_path):
    for i, meta in enumerate(
        [
            "[1, 2]",
            '{"tag": "colors"}',
            json.dumps({"tag": "position", "include": [{"class": "circle", "count": 1, "position": ["left of", 0]}]}),
        ]
    ):
        (tmp_path / f"{i:05d}" / "samples").mkdir(parents=True)
        (tmp_path / f"{i:05d}" / "metadata.jsonl").write_text(meta + "\n")
    good = tmp_path / "00003"
    (good / "samples").mkdir(parents=True)
    (good / "metadata.jsonl").write_text(
        json.dumps({"tag": "single_object", "include": [{"class": "star", "count": 1}]})
    )
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(good / "samples" / "0000.png")
    Image.fromarray(np.full((64, 32, 3), 128, np.uint8)).save(good / "samples" / "0001.png")
    result = run("eval", "shapes", "--images", str(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["images"] == 1 and len(summary["skipped"]) == 4


def test_ground_truth_of_the_compositional_split_scores_one(tmp_path):
    result = run(
        "eval", "shapes", "--ground-truth", "--split", "compositional", "--per-prompt", "1", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["images"] == 40 and summary["overall"] == summary["strict"] == 1.0
    assert (tmp_path / "results.md").read_text().startswith("compositional split (")  # the split named, not ShapesEval


@pytest.mark.parametrize(("pipeline", "pair"), [("demo", "model.seed=1"), ("unified", "tokenizer.seed=2")])
def test_a_pipeline_refuses_a_stage_seed_that_seed_would_override(pipeline, pair, tmp_path):
    one_line_error(run(pipeline, "--out", str(tmp_path / "run"), pair), pair, "--seed")
    assert not (tmp_path / "run").exists()  # refused before any work


def test_eval_and_train_refuse_bad_input(tmp_path):
    one_line_error(run("eval", "shapes", "--ground-truth", "--split", "seen", "--out", str(tmp_path)), "split 'seen'")
    one_line_error(run("eval", "shapes", "--images", str(tmp_path), "--split", "held-out"), "--split")
    one_line_error(run("eval", "shapes"), "--images")
    one_line_error(run("eval", "shapes", "--images", str(tmp_path / "nowhere")), "nowhere")
    one_line_error(run("eval", "shapes", "--images", str(tmp_path)), "no <index>")
    one_line_error(run("judge", "train", "--out", str(tmp_path), "stpes=3"), "stpes")


@pytest.mark.parametrize(
    "command", [[], ["world", "sample"], ["world", "render"], ["judge", "train"], ["eval", "shapes"]]
)
def test_help(command):
    result = run(*command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


def test_tokenizer_smoke_presets_train_and_evaluate(tmp_path):
    """The smoke presets run the whole tokenizer chain: train, checkpoint, samples, eval JSON."""
    for arch, data in (("conv", "shapes"), ("omni", "shapes-video"), ("patch", "shapes")):
        run_dir = tmp_path / arch
        result = run("tokenizer", "train", "--arch", arch, "--data", data, "--preset", "smoke", "--out", str(run_dir))
        assert result.returncode == 0, result.stderr
        assert (run_dir / "checkpoint" / "model.safetensors").exists()
        assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 4
        assert list((run_dir / "samples").glob("*.png"))
        result = run(
            "tokenizer",
            "eval",
            str(run_dir / "checkpoint"),
            "--data",
            data,
            "--n",
            "8",
            "--out",
            str(tmp_path / "m.json"),
        )
        assert result.returncode == 0, result.stderr
        metrics = json.loads((tmp_path / "m.json").read_text())
        assert metrics["psnr"] > 5 and 0 < metrics["codebook_usage"] <= 1
    assert list((tmp_path / "omni" / "samples").glob("*.gif"))
    one_line_error(run("tokenizer", "eval", str(tmp_path)), "not a tessera checkpoint")
    one_line_error(run("tokenizer", "train", "--arch", "pixelcnn"), "pixelcnn")
    one_line_error(run("tokenizer", "train", "--preset", "huge"), "huge")
    one_line_error(
        run("tokenizer", "train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")), "nothing"
    )


def test_tokenizer_trains_on_a_user_folder_skipping_bad_files(tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    for i in range(6):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(data / f"{i}.png")
    (data / "broken.jpg").write_bytes(b"nope")
    result = run(
        "tokenizer", "train", "--data", str(data), "--preset", "smoke", "--out", str(tmp_path / "r"), "canvas=32"
    )
    assert result.returncode == 0, result.stderr
    assert "skipped 1 unreadable" in result.stdout


def test_demo_runs_and_reruns(tmp_path):
    """The smoke preset runs every stage; a rerun reuses them and still writes the report."""
    out = tmp_path / "demo"
    cache = f"model.data.cache={tmp_path / 'cache'}"
    first = run("demo", "--preset", "smoke", "--out", str(out), cache)
    assert first.returncode == 0, first.stderr
    stages = json.loads((out / "stages.json").read_text())
    assert {"tokenizer", "model", "tokenizer_ceiling", "model_scores"} <= set(stages)
    assert all(stage["done"] for stage in stages.values())
    results = json.loads((out / "shapes_eval" / "results.json").read_text())
    rows = [json.loads(line) for line in (out / "shapes_eval" / "results.jsonl").read_text().splitlines()]
    assert results["images"] == len(rows) == 6 * 4 * 2
    assert results["overall"] == pytest.approx(np.mean([np.mean([r["correct"] for r in rows if r["tag"] == c])
                                                         for c in {r["tag"] for r in rows}]))  # fmt: skip
    report = (out / "report.html").read_text()
    assert "ShapesEval" in report and "counting" in report and (out / "plot-model.png").exists()
    assert {"rl", "rl_scores"} <= set(stages)  # the RL stage and its evaluations
    after = json.loads((out / "rl" / "shapes_eval" / "results.json").read_text())
    assert after["images"] == results["images"] and {"strict", "objects_per_image"} <= set(after)
    for split in ("ShapesEval", "held-out", "compositional"):  # every split, before and after RL, beside its ceiling
        for label in ("tokenizer ceiling", "model", "model + RL"):
            assert f"{label}, {split}" in report, (label, split)
    assert "Before and after RL" in report and (out / "before-after-counting.png").exists()
    for sheet in ("shapes_eval/held-out.png", "shapes_eval/compositional.png", "rl/shapes_eval/compositional.png"):
        assert (out / sheet).exists() and f'src="{sheet}"' in report, sheet
    assert [json.loads(line)["step"] for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert "edits" in stages and "Editing by prefix" in report and (out / "edits-recolour.png").exists()
    assert "conditions" in stages and (out / "conditions" / "instruct.png").exists()  # the model trains seg2i too
    assert "seg2i: model, ceiling" in report and "instruct: model, ceiling, copy" in report
    assert 'src="conditions/seg2i.png"' in report
    again = run("demo", "--preset", "smoke", "--out", str(out), cache)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("finished earlier, reused") == len(stages)
    changed = run("demo", "--preset", "smoke", "--out", str(out), cache, "rl.steps=3")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.count("finished earlier, reused") == 4  # tokenizer, model, the ceiling, their scores
    assert "edits" in json.loads((out / "stages.json").read_text())  # redone on the new final model
    rl_steps = [json.loads(line)["step"] for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert rl_steps == [0, 1, 2, 3]  # the RL stage started again from nothing


def test_generate_writes_the_grid_and_each_image(t2i_ckpt, tmp_path):
    out = tmp_path / "grid.png"
    result = run("generate", "a red circle left of a blue star", "-n", "3", "--ckpt", str(t2i_ckpt), "--out", str(out))
    assert result.returncode == 0, result.stderr
    singles = sorted((tmp_path / "grid").glob("*.png"))
    assert len(singles) == 3 and np.asarray(Image.open(singles[0])).shape == (32, 32, 3)
    assert np.asarray(Image.open(out)).shape[1] > 3 * 32  # three tiles side by side, scaled up
    again = run("generate", "a red circle left of a blue star", "-n", "3", "--ckpt", str(t2i_ckpt), "--out",
                str(tmp_path / "again.png"))  # fmt: skip
    assert again.returncode == 0
    assert all(
        np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
        for a, b in zip(singles, sorted((tmp_path / "again").glob("*.png")), strict=True)
    )  # the same seed draws the same images


def test_generate_bad_input(t2i_ckpt, tmp_path):
    def gen(*args, ckpt=t2i_ckpt, prompt="a red circle"):
        return run("generate", prompt, "--ckpt", str(ckpt), "--out", str(tmp_path / "x.png"), *args)

    one_line_error(gen(prompt="a red circle with a hat"), "hat")
    one_line_error(gen(prompt="  "), "empty prompt")
    one_line_error(gen("-n", "0"), "-n")
    one_line_error(gen("--cfg", "-1"), "--cfg")
    one_line_error(gen(ckpt=t2i_ckpt.parent.parent / "nothing"), "not a tessera checkpoint")
    one_line_error(gen(ckpt=t2i_ckpt / "tokenizer"), "tokenizer checkpoint, not a model checkpoint")
    other = tmp_path / "other"
    shutil.copytree(t2i_ckpt, other)
    config = (other / "config.yaml").read_text().replace("dim: 64", "dim: 96")
    (other / "config.yaml").write_text(config)
    one_line_error(gen(ckpt=other), "does not fit this architecture")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(t2i_ckpt, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 100)
    one_line_error(gen(ckpt=corrupt), "corrupt")
    assert not (tmp_path / "x.png").exists()


def test_eval_shapes_generates_and_scores_a_checkpoint(t2i_ckpt, tmp_path):
    out = tmp_path / "generated"
    done = run("eval", "shapes", "--ckpt", str(t2i_ckpt), "--out", str(out), "--per-prompt", "1")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == len(list(out.glob("*/samples/0000.png"))) == 553
    assert np.asarray(Image.open(out / "00000" / "samples" / "0000.png")).shape == (32, 32, 3)
    summary = json.loads((out / "results.json").read_text())
    assert summary["images"] == 553 and summary["counting"] == np.mean(
        [r["correct"] for r in rows if r["tag"] == "counting"]
    )
    one_line_error(run("eval", "shapes", "--ckpt", str(t2i_ckpt), "--out", str(out)), "new or empty folder")


def test_eval_shapes_draws_at_the_guidance_asked(t2i_ckpt, tmp_path, monkeypatch):
    import tessera.generate.images

    drawn_at = []
    monkeypatch.setattr(
        tessera.generate.images, "write_shapes_eval", lambda *args, **kw: drawn_at.append(args[4].cfg_scale)
    )
    for n, cfg in enumerate(([], ["--cfg", "1.5"])):
        args = ("--ckpt", str(t2i_ckpt), "--out", str(tmp_path / str(n)), *cfg)
        run("eval", "shapes", *args)  # (no images written: scoring them is not this test's business)
    assert drawn_at == [3.0, 1.5]  # the checkpoint's guidance, then the one asked for
    one_line_error(run("eval", "shapes", "--images", str(tmp_path), "--cfg", "2"), "--cfg")


def test_a_full_disk_and_a_bug_are_not_called_bad_input(monkeypatch, tmp_path):
    import errno

    import tessera.world.samples

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "00000.png"))

    monkeypatch.setattr(tessera.world.samples, "write_samples", full)
    result = run("world", "sample", "--out", str(tmp_path))
    assert result.returncode == 1 and result.stderr.strip() == f"error: disk full: {tmp_path / '00000.png'}"

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(tessera.world.samples, "write_samples", bug)
    with pytest.raises(ZeroDivisionError):  # a traceback, not a one-line "bad input"
        run("world", "sample", "--out", str(tmp_path))
