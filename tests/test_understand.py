"""Understanding on the same stream: the image-to-text layout, text writing that rescoring reproduces, the
judge's verdict in words, the task mixture of the training data, and a tiny multi-task model end to end."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tessera.errors import TesseraError
from tessera.eval.judge import Detection
from tessera.eval.verdicts import is_yes, truth, verdict
from tessera.generate.text import score_text, write
from tessera.model.bundle import load as load_bundle
from tessera.model.sampling import SamplingConfig
from tessera.model.transformer import ModelConfig, Transformer
from tessera.sequence.ids import IMAGE, TEXT, IdSpace
from tessera.sequence.layouts import (
    NO_POS,
    Batch,
    image_prefix,
    image_to_text,
    pad_answer,
    pad_text,
    stack,
    text_to_image,
)
from tessera.text.tokenizers import WorldTokenizer
from tessera.understand.evaluate import evaluate_understanding, kinds_table, summarize
from tessera.world import language as lang
from tessera.world.constraints import from_geneval, sample_scene_for, to_geneval
from tessera.world.grammar import ANSWERS, parse_description
from tessera.world.language import CAPTION_QUESTION, judge_question

WORDS = WorldTokenizer()
SPACE = IdSpace(n_text=WORDS.vocab_size, n_image=16)


def test_image_to_text_round_trip():
    rng = np.random.default_rng(0)
    scene = sample_scene_for(parse_description("a red circle and two blue stars"), rng)
    question, answer = lang.question_answer(scene, rng, "count")
    described = next(c for c in (lang.caption(scene, rng) for _ in range(100)) if len(WORDS.encode(c)) <= 20)
    pairs = [(question, answer), (CAPTION_QUESTION, described)]
    q = pad_text(SPACE, [WORDS.encode(x) for x, _ in pairs], 12)
    a = pad_answer(SPACE, [WORDS.encode(y) for _, y in pairs], 20)
    codes = torch.randint(0, 16, (2, 3, 4))
    batch = image_to_text(SPACE, q, codes, a)
    assert batch.ids.shape == (2, 12 + 1 + 12 + 2 + 21)
    for row, (asked, said) in enumerate(pairs):  # reading the layout back gives question, image (raster), answer
        ids = batch.ids[row].tolist()
        boi, eoi = ids.index(SPACE.special("<boi>")), ids.index(SPACE.special("<eoi>"))
        assert WORDS.decode(SPACE.text_ids(ids[:boi])) == WORDS.decode(WORDS.encode(asked))
        assert torch.equal(SPACE.codes(torch.tensor(ids[boi + 1 : eoi])), codes[row].flatten())
        assert ids[eoi + 1] == SPACE.special("<sep>") and (batch.slot[row, boi + 1 : eoi] == IMAGE).all()
        assert batch.pos[row, boi + 1 : eoi, 1:].tolist() == [[r, c] for r in range(3) for c in range(4)]
        trained = [i for i, keep in zip(ids, batch.loss[row].tolist(), strict=True) if keep]
        assert trained[-1] == SPACE.special("<eos>")
        assert WORDS.decode(SPACE.text_ids(trained)) == WORDS.decode(WORDS.encode(said))
    assert (batch.pos[:, :12] == NO_POS).all() and (batch.slot[:, -21:] == TEXT).all()


def test_stack_pads_tasks_of_different_lengths():
    q = pad_text(SPACE, [[1, 2]], 6)
    read = image_to_text(SPACE, q, torch.zeros(1, 2, 2, dtype=torch.long), pad_answer(SPACE, [[3]], 4))
    draw = text_to_image(
        SPACE, pad_text(SPACE, [[1]], 3), torch.zeros(1, 2, 2, dtype=torch.long), torch.arange(4)[None]
    )
    both = stack([draw, read], SPACE)
    assert both.ids.shape == (2, read.ids.shape[1])
    assert both.loss[0].sum() == 4 and both.loss[1].sum() == 2  # padding adds no loss
    assert (both.ids[0, draw.ids.shape[1] :] == SPACE.special("<pad>")).all()
    with pytest.raises(TesseraError, match="writes at most 4"):
        pad_answer(SPACE, [[1] * 5], 4)


def reading_model(**read) -> Transformer:
    """A tiny model with its reading options (read_both_ways) and an output head that is not zero."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=SPACE.size, dim=32, n_layer=2, n_head=4, n_kv_head=2, max_seq_len=64,
                                    image_codes=16, **read))  # fmt: skip
    torch.nn.init.normal_(model.output.weight, std=0.5)
    return model.eval()


@pytest.mark.parametrize("read", [{}, {"read_both_ways": True}])
@pytest.mark.parametrize("cfg", [SamplingConfig(top_k=1), SamplingConfig(temperature=0.8, top_k=6, top_p=0.9)])
def test_written_text_is_rescored_exactly(cfg, read):
    model = reading_model(**read)
    prompt = image_prefix(SPACE, pad_text(SPACE, [[1, 2], [3]], 4), torch.randint(0, 16, (2, 2, 3)))
    eos = SPACE.special("<eos>")
    with torch.no_grad():  # make <eos> likely enough that rows stop at different places
        model.output.weight[eos] += 0.3 * model.output.weight.std()
    written = write(model, SPACE, prompt, 12, cfg, torch.Generator().manual_seed(1))
    assert written.ids.shape == written.mask.shape == written.logprobs.shape
    ids = written.ids
    assert (ids < SPACE.image_start).all()  # a text slot writes no image codes
    for row in range(2):  # everything after the first <eos> is padding with no log-prob
        ended = (ids[row] == eos).nonzero()
        if len(ended):
            after = ended[0, 0] + 1
            assert (ids[row, after:] == SPACE.special("<pad>")).all() and not written.mask[row, after:].any()
    rescored = score_text(model, SPACE, prompt, ids, cfg)
    assert (rescored - written.logprobs).abs().max() < 1e-5
    early = Batch(prompt.ids[:, :-1], prompt.pos[:, :-1], prompt.slot[:, :-1], prompt.loss[:, :-1])
    shifted = score_text(model, SPACE, early, ids, cfg)  # off by one: each logit scores the token after its next
    assert (shifted - written.logprobs).abs().max() > 1e-3


@pytest.mark.parametrize("both_ways", [False, True])
def test_a_read_image_is_seen_both_ways_with_the_option_and_a_drawn_one_in_order(both_ways):
    """In a reading row of a 3x3 image, the first cell's output depends on later cells (its neighbour (0, 1), the
    far corner (2, 2)) only with read_both_ways. In a drawing row (no <sep>) it never does; nor does a second row
    of the batch, its question shorter, change how the first is read."""
    torch.manual_seed(0)
    codes = torch.randint(0, 16, (2, 3, 3))
    read_rows = image_prefix(SPACE, pad_text(SPACE, [[1, 2], [3]], 4), codes)
    draw = text_to_image(SPACE, pad_text(SPACE, [[1, 2]], 4), codes[:1], torch.arange(9)[None])
    model = reading_model(read_both_ways=both_ways)
    first = 5  # <boi> stands at 4: the image's first token, then (0, 1) at 6 and (2, 2) at 13
    for batch, reads in ((read_rows, True), (draw, False)):
        for at in (6, 13):
            changed = batch.ids.clone()
            changed[0, at] = SPACE.image_start + (changed[0, at] - SPACE.image_start + 1) % 16
            with torch.no_grad():
                a, b = (model(ids, batch.pos, batch.pos)[0, first] for ids in (batch.ids, changed))
            assert (a - b).abs().max() > 1e-4 if reads and both_ways else torch.equal(a, b), (at, reads)
    with torch.no_grad():
        alone = model(read_rows.ids[:1], read_rows.pos[:1], read_rows.pos[:1])
        both = model(read_rows.ids, read_rows.pos, read_rows.pos)[:1]
    assert (alone - both).abs().max() < 1e-5


def det(shape, colour, x, y=30.0, half=5.0):
    return Detection(shape, colour, "small", (x - half, y - half, x + half, y + half), 0.99, 4 * half * half)


@pytest.mark.parametrize(
    "prompt, tag, found, said",
    [
        ("a red circle", "colors", [det("circle", "red", 20)], "yes"),
        ("a red circle", "colors", [det("circle", "blue", 20)], "no , the circle is blue"),
        ("a circle and a star", "two_object", [det("circle", "red", 20)], "no , there is no star"),
        ("three stars", "counting", [det("star", "red", x) for x in (10, 30)], "no , there are two stars"),
        ("three stars", "counting", [det("star", "red", x) for x in (8, 20, 32, 44)], "no , there are four stars"),
        ("a circle left of a star", "position", [det("circle", "red", 50), det("star", "red", 10)],
         "no , the circle is not left of the star"),
        ("a circle left of a star", "position", [det("circle", "red", 10), det("star", "red", 50)], "yes"),
    ],
)  # fmt: skip
def test_verdict_names_what_is_wrong(prompt, tag, found, said):
    meta = to_geneval(parse_description(prompt), tag, prompt)
    assert verdict(found, meta) == said
    assert is_yes(said) == (said == "yes")
    WORDS.encode(said), WORDS.encode(judge_question(prompt))  # every verdict and question is in the world's words


def test_verdict_of_true_scenes_is_yes():
    rng = np.random.default_rng(0)
    for prompt, tag in [("two blue squares", "counting"), ("a yellow star below a red circle", "position")]:
        scene = sample_scene_for(from_geneval(to_geneval(parse_description(prompt), tag, prompt)), rng)
        assert verdict(truth(scene), to_geneval(parse_description(prompt), tag, prompt)) == "yes"


def test_multitask_data_follows_the_mixture(reader):
    from tessera.data.examples import DataConfig

    ckpt, rows = reader
    assert rows[-1]["loss"] < rows[0]["loss"]
    bundle = load_bundle(ckpt)
    assert bundle.cfg.tasks == ("t2i", "caption", "qa", "judge")
    with pytest.raises(TesseraError, match="unknown task 'edit'"):
        DataConfig(tasks={"edit": 1.0}).validate()
    with pytest.raises(TesseraError, match="need the world's scenes"):
        DataConfig(source="shapes-classes", tasks={"t2i": 1.0, "qa": 1.0}).validate()


def test_a_trained_reader_answers_in_the_form_of_each_task(reader):
    ckpt, _ = reader
    bundle = load_bundle(ckpt)
    summary, rows = evaluate_understanding(bundle, n=24)
    for task in ("qa", "caption", "judge"):
        assert summary[task] == np.mean([r["correct"] for r in rows if r["task"] == task]), task
    qa = [r["answer"] for r in rows if r["task"] == "qa"]
    assert np.mean([a in ANSWERS for a in qa]) >= 0.9  # one word of the answer set, then <eos>
    judged = [r["answer"].split()[:1] for r in rows if r["task"] == "judge"]
    assert np.mean([w in (["yes"], ["no"]) for w in judged]) >= 0.9


def test_verdicts_are_scored_by_the_precision_and_recall_of_no():
    """Of 3 truly-no scenes the model says no to 2 (recall 2/3); of its 4 noes 2 are right (precision 1/2)."""
    truths = ["no , there is no star", "no , the circle is red", "no , there are two squares", "yes", "yes", "yes"]
    said = ["no , there is no star", "no , there is no circle", "yes", "no , there is no star", "no , x", "yes"]
    rows = [{"task": "judge", "truth": t, "answer": a, "correct": is_yes(t) == is_yes(a), "reason_correct": t == a}
            for t, a in zip(truths, said, strict=True)]  # fmt: skip
    summary = summarize(rows)
    assert summary["judge/no_recall"] == 2 / 3 and summary["judge/no_precision"] == 1 / 2
    assert summary["judge"] == 3 / 6 and summary["judge/reason"] == 1 / 3


def test_each_question_kind_is_scored_beside_its_commonest_answer_and_its_blind_score():
    """Three count questions, two of them 'one': always saying 'one' would score 2/3 (the base); a model that
    always says 'two' scores 1/3. Asked of other scenes' images it was right once (blind 1/3)."""
    rows = [{"task": "qa", "kind": "count", "truth": t, "answer": "two", "correct": t == "two", "blind": b}
            for t, b in (("one", True), ("two", False), ("one", False))]  # fmt: skip
    summary = summarize(rows)
    assert summary["qa/count"] == 1 / 3 and summary["qa/count/base"] == 2 / 3
    assert summary["qa/count/blind"] == 1 / 3 and summary["qa/blind"] == 1 / 3
    assert "| count | 3 | 0.333 | 0.272 | 0.667 | 0.333 |" in kinds_table(summary, rows)  # ± (1/3 * 2/3 / 3) ** 0.5


def test_ask_and_caption_commands(reader, tmp_path):
    from PIL import Image

    from tessera.cli import app

    ckpt, _ = reader
    image = tmp_path / "scene.png"
    Image.fromarray(np.full((48, 48, 3), 128, np.uint8)).save(image)
    runner = CliRunner()
    said = runner.invoke(app, ["ask", str(image), "how many circles are there ?", "--ckpt", str(ckpt)])
    assert said.exit_code == 0 and said.output.strip() in ANSWERS
    described = runner.invoke(app, ["caption", str(image), "--ckpt", str(ckpt)])
    assert described.exit_code == 0 and described.output.strip()
