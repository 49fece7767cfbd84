"""Thinking while generating: band schedules, thoughts and critiques from the world (parsed back), critiques from
the judge on a partial image, and the interleaved layout."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, one_line_error
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tessera.cli.common import preset
from tessera.config import load as load_config
from tessera.config import override
from tessera.data.examples import thinking_example
from tessera.errors import CheckpointError, ConfigError
from tessera.eval.critique import band_critique, drawn_so_far
from tessera.eval.shapes_eval import first_prompts
from tessera.generate import thinking, thinking_eval
from tessera.generate.generator import generate, score
from tessera.model.bundle import load as load_bundle
from tessera.model.sampling import SamplingConfig
from tessera.model.transformer import ModelConfig, Transformer
from tessera.rl.trainer import RLConfig, RLTrainer
from tessera.sequence.bands import Bands, BandStep, chain_length, thinking_batch, thinking_row
from tessera.sequence.ids import IMAGE, IdSpace
from tessera.sequence.layouts import pad_text
from tessera.train.trainer import TrainConfig, Trainer
from tessera.world.constraints import sample_scene_for
from tessera.world.grammar import PromptError, parse_description
from tessera.world.render import render_image
from tessera.world.scene import COLOURS, SHAPES, SIZES, Scene, sample_scene
from tessera.world.thoughts import (
    MAX_SCORE,
    REDRAW_BELOW,
    Critique,
    Thought,
    band_thought,
    parse_critique,
    parse_thought,
)

SPACE = IdSpace(n_text=10, n_image=16)


def _edges(bands: Bands, canvas: int) -> list[float]:
    rows = sum(bands.heights)
    return [canvas * sum(bands.heights[:k]) / rows for k in range(len(bands) + 1)]


def test_equal_bands():
    assert Bands.equal(16, 3).heights == (6, 5, 5)
    assert Bands.equal(8, 4).heights == (2, 2, 2, 2)
    assert list(Bands.equal(16, 3).rows(1)) == list(range(6, 11))
    with pytest.raises(ConfigError, match="do not fit"):
        Bands.equal(4, 5)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 4), canvas=st.sampled_from([32, 64]))
def test_thoughts_say_what_each_band_holds(seed, k, canvas):
    scene = sample_scene(np.random.default_rng(seed), canvas)
    bands = Bands.equal(canvas // 4, k)
    edges = _edges(bands, canvas)
    thoughts = [band_thought(scene, b, edges) for b in range(k)]
    for t in thoughts:
        assert parse_thought(t.text()) == t
    attributes = [(o.shape, o.colour, o.size) for o in scene.objects]
    for attrs in attributes:  # each object told whole once, or as a top, middles and a bottom in band order
        if attributes.count(attrs) > 1:  # twins: the texts cannot tell their parts apart
            continue
        parts = [p.part for t in thoughts for p in t.objects if (p.shape, p.colour, p.size) == attrs]
        assert parts.count("whole") + parts.count("top") >= 1
        told = [p for p in parts if p != "whole"]
        if told:
            assert told[0] == "top" and told[-1] == "bottom" and set(told[1:-1]) <= {"middle"}


@settings(max_examples=60, deadline=None)
@given(
    score=st.integers(0, MAX_SCORE),
    missing=st.lists(st.tuples(st.sampled_from(SHAPES), st.sampled_from(COLOURS), st.sampled_from(SIZES)), max_size=2),
    extra=st.lists(st.tuples(st.sampled_from((*SHAPES, None)), st.sampled_from(COLOURS), st.sampled_from(SIZES)),
                   max_size=2),
    seed=st.integers(0, 1000),
)  # fmt: skip
def test_critiques_parse_back(score, missing, extra, seed):
    thought = band_thought(sample_scene(np.random.default_rng(seed), 64), 0, [0, 32, 64])
    critique = Critique(score, tuple(missing), tuple(extra), thought)
    assert parse_critique(critique.text()) == critique


@pytest.mark.parametrize(
    "text, named",
    [
        ("band four of three , nothing", "does not exist"),
        ("band one of three , a red circle on the left", "size, colour and shape"),
        ("band one of three , a large red circle", "on the left"),
        ("score eleven of ten , fine , band one of one , nothing", "zero to ten"),
        ("score two of ten , red , band one of one , nothing", "fine, missing or extra"),
    ],
)
def test_thought_grammar_names_the_problem(text, named):
    parse = parse_critique if text.startswith("score") else parse_thought
    with pytest.raises(PromptError, match=named):
        parse(text)


def test_critique_from_the_judge(judge):
    rng = np.random.default_rng(5)
    scenes = [sample_scene(rng, 64, 3) for _ in range(12)]
    edges = [0.0, 64 / 3, 128 / 3, 64.0]
    low = 0
    for scene in scenes:
        image = render_image(scene)
        for band in range(3):
            cut = edges[band + 1]
            thought = band_thought(scene, band, edges)
            true = band_critique(judge.read(drawn_so_far(image, cut)[None])[0], scene, cut, thought)
            assert true.score == MAX_SCORE and not true.missing and not true.extra, (band, true)
        # drop the first object that is wholly above the last cut but one: its band loses it
        gone = Scene(64, scene.objects[1:])
        due = scene.objects[0].box[3]
        cut = next(e for e in edges[1:] if e >= due)
        found = judge.read(drawn_so_far(render_image(gone), cut)[None])[0]
        critique = band_critique(found, scene, cut, band_thought(scene, 0, edges))
        o = scene.objects[0]
        assert critique.score < MAX_SCORE and (o.shape, o.colour, o.size) in critique.missing
        low += critique.score < MAX_SCORE
    assert low == len(scenes)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_chain_from_a_models_own_drawing_drafts_the_first_band_that_reads_wrong(judge, seed):
    """TwiG's traces from a model's own judged samples: given the model's prompt and drawing (here a blank canvas),
    the chain is for that prompt, its draft is the first band whose critique from the judge is low, and the draft
    image is the true image with that band, and only that band, as the model drew it."""
    blank = np.full((64, 64, 3), render_image(Scene(64, ()))[0, 0], np.uint8)
    bands = Bands.equal(16)
    text, scene, chain, mixed = thinking_example(np.random.default_rng(seed), 64, bands, judge, 0.8, 0.0,
                                                 ("two green circles", blank))  # fmt: skip
    assert text == "two green circles" and [(o.shape, o.colour) for o in scene.objects] == [("circle", "green")] * 2
    scores = [parse_critique(c).score for c in chain.critiques]
    assert chain.draft >= 0 and scores[chain.draft] < REDRAW_BELOW
    assert all(score >= REDRAW_BELOW for score in scores[: chain.draft])
    edges = _edges(bands, 64)
    rows = slice(math.ceil(edges[chain.draft]), math.ceil(edges[chain.draft + 1]))
    truth = render_image(scene)
    assert np.array_equal(mixed[rows], blank[rows])
    mixed[rows] = truth[rows]
    assert np.array_equal(mixed, truth)
    for band in range(chain.draft):  # an earlier band drawn blank reads right: the draft is the first that does not
        earlier = truth.copy()
        earlier[math.ceil(edges[band]) : math.ceil(edges[band + 1])] = blank[0, 0]
        found = judge.read(drawn_so_far(earlier, edges[band + 1])[None])[0]
        assert band_critique(found, scene, edges[band + 1], band_thought(scene, band, edges)).score >= REDRAW_BELOW
    elsewhere = render_image(sample_scene_for(parse_description("two green circles"), np.random.default_rng(99), 64))
    _, truth_again, right, none = thinking_example(np.random.default_rng(seed), 64, bands, judge, 0.8, 0.0,
                                                   ("two green circles", elsewhere))  # fmt: skip
    assert truth_again == scene and right.draft == -1 and none is None  # drawn right, in its own layout: no draft


def test_thinking_layout():
    bands = Bands.equal(4, 2)  # a 4 x 3 grid in two bands of two rows
    thought = [1, 2]
    steps = [
        BandStep(thought, torch.arange(6) % 16),
        BandStep(thought, torch.arange(6, 12) % 16, learn=False, critique=[3], redraw=torch.zeros(6, dtype=torch.long)),
    ]
    row = thinking_row(SPACE, pad_text(SPACE, [[4]], 2)[0].tolist(), steps, bands, 3)
    image = row.slot[0] == IMAGE
    cells = row.pos[0][image]  # (n, 3)
    assert len(cells) == 18 and cells[:12, 1:].tolist() == [[r, c] for r in range(4) for c in range(3)]
    assert cells[12:].tolist() == cells[6:12].tolist()  # the redrawn band sits on the same cells
    assert row.loss[0][image].tolist() == [True] * 6 + [False] * 6 + [True] * 6  # not the model's own band
    ids = row.ids[0].tolist()
    think, end = SPACE.special("<think>"), SPACE.special("</think>")
    assert (
        ids.count(think) == 3 and ids.count(end) == 3 and row.loss[0][[i for i, t in enumerate(ids) if t == end]].all()
    )
    assert row.ids.shape[1] <= chain_length(2, 3, bands, 2, 1)
    plain = [steps[0], BandStep(thought, torch.arange(6, 12) % 16)]
    batch = thinking_batch(SPACE, pad_text(SPACE, [[1], [2, 3]], 2), [steps, plain], bands, 3)
    short = thinking_row(SPACE, pad_text(SPACE, [[4]], 2)[0].tolist(), plain, bands, 3).ids.shape[1]
    assert batch.ids.shape == (2, row.ids.shape[1]) and not batch.loss[1, short:].any() and batch.loss[1, :short].any()


def test_a_band_after_bands_rescores_exactly():
    """Guidance that keeps the image drawn so far: the sampler's log-probs are the scorer's."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=SPACE.size, dim=32, n_layer=2, n_head=4, n_kv_head=2,
                                    max_seq_len=64, max_grid=4)).eval()  # fmt: skip
    torch.nn.init.normal_(model.output.weight, std=0.3)
    bands = Bands.equal(4, 2)
    text = pad_text(SPACE, [[4]], 2)[0].tolist()
    first = thinking_row(SPACE, text, [BandStep([1, 2], torch.arange(8) % 16)], Bands((2,)), 4)  # band one, 2 rows
    prefix = first.rows([0, 0])
    order = bands.cells(1, 4).expand(2, -1)
    cfg = SamplingConfig(cfg_scale=3.0, temperature=1.0, top_k=0, top_p=1.0)
    drawn = generate(model, SPACE, prefix.ids, (4, 4), order, cfg, torch.Generator().manual_seed(0),
                     text_pos=prefix.pos, keep_images=True)  # fmt: skip
    assert (drawn.codes.flatten(1)[:, :8] == -1).all() and (drawn.codes.flatten(1)[:, 8:] >= 0).all()
    rescored = score(model, SPACE, prefix.ids, drawn.ids, order, (4, 4), cfg, text_pos=prefix.pos, keep_images=True)
    torch.testing.assert_close(rescored, drawn.logprobs, atol=1e-5, rtol=1e-5)
    blind = score(model, SPACE, prefix.ids, drawn.ids, order, (4, 4), cfg, text_pos=prefix.pos)
    assert not torch.allclose(blind, drawn.logprobs, atol=1e-3)  # the unconditional rows differ


def test_generate_thinks_zero_shot(cli, unified_run, tmp_path):
    ckpt = unified_run / "unified" / "checkpoint"
    done = cli("generate", "a red circle", "--ckpt", str(ckpt), "--think", "-n", "2", "--out", str(tmp_path / "t.png"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "t" / "chain.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(len(x["thoughts"]) == len(x["critiques"]) == len(x["redrawn"]) == 3 for x in lines)
    picture = Image.open(tmp_path / "t" / lines[0]["chain"])
    assert picture.size == (32 * 4 + 640, 32 * 4)
    one_line_error(cli("generate", "a red circle", "--ckpt", str(ckpt), "--think", "--bands", "8"), "max_seq_len")


def test_bands_scored_low_are_drawn_again(unified_run, monkeypatch):
    bundle = load_bundle(unified_run / "unified" / "checkpoint")
    said = itertools.count()  # critiques come row by row: the first row's score low, the second's high
    monkeypatch.setattr(thinking, "parse_critique", lambda text: Critique(0 if next(said) % 2 == 0 else MAX_SCORE,
                                                                          (), (), Thought(0, 1, ())))  # fmt: skip
    chain = thinking.think_and_draw(bundle, ["a red circle", "a blue star"], seed=0)
    assert chain.redrawn == [[True] * 3, [False] * 3] and chain.scores[1] == [MAX_SCORE] * 3
    assert np.array_equal(chain.images[1], chain.first_images[1])
    assert not np.array_equal(chain.images[0], chain.first_images[0])
    assert chain.tokens > 2 * bundle.cfg.grid[0] * bundle.cfg.grid[1]  # thoughts, critiques and the redrawn bands


@pytest.fixture(scope="module")
def thinker(tokenizer_dir, tmp_path_factory):
    """A tiny model trained a few steps on thinking chains of the world (every chain drafts a band)."""
    root = tmp_path_factory.mktemp("think")
    cfg = override(TrainConfig(), {
        "model": TINY_MODEL | {"max_seq_len": 400}, "tokenizer": str(tokenizer_dir),
        "data": {"examples": 24, "canvas": 32, "text_len": 16, "cache": str(root / "cache"),
                 "tasks": {"think": 1}, "draft_share": 1.0},
        "steps": 2, "batch_size": 4, "warmup": 1, "sample_every": 1000})  # fmt: skip
    trainer = Trainer(cfg, root / "run", progress=False)
    losses = [row["loss"] for row in trainer.fit()]
    return trainer, root / "run" / "checkpoint", losses


def test_thinking_chains_train(thinker):
    trainer, _, losses = thinker
    drafted = [c for c in trainer.chains if c["draft"] >= 0]
    assert drafted and all(parse_critique(trainer.bundle.text_tokenizer.decode(c["critiques"][c["draft"]])).score
                           < REDRAW_BELOW for c in drafted)  # fmt: skip
    kept = [c for c in trainer.chains if c["draft"] < 0]
    assert all(parse_critique(trainer.bundle.text_tokenizer.decode(t)).score >= REDRAW_BELOW
               for c in kept for t in c["critiques"])  # fmt: skip
    batch = trainer.batch()
    space = trainer.bundle.space
    assert (batch.ids == space.special("<think>")).sum(1).max() == 2 * len(trainer.bands)  # thought and critique
    assert np.isfinite(losses).all()


def test_thinking_chains_from_a_models_own_drawings(thinker, tokenizer_dir, tmp_path):
    """data.drafts_from: the drafts are the model's own drawings of training prompts; a tiny model draws every
    prompt wrong, so every chain has a draft, critiqued low."""
    _, ckpt, _ = thinker
    data = {"examples": 8, "canvas": 32, "text_len": 16, "cache": str(tmp_path / "cache"), "tasks": {"think": 1},
            "draft_share": 1.0, "drafts_from": str(ckpt)}  # fmt: skip
    options = {"model": TINY_MODEL | {"max_seq_len": 400}, "tokenizer": str(tokenizer_dir), "data": data,
               "steps": 1, "batch_size": 4, "warmup": 1, "sample_every": 1000}  # fmt: skip
    cfg = override(TrainConfig(), options)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert np.isfinite([row["loss"] for row in trainer.fit()]).all()
    decode = trainer.bundle.text_tokenizer.decode
    assert all(c["draft"] >= 0 and parse_critique(decode(c["critiques"][c["draft"]])).score < REDRAW_BELOW
               for c in trainer.chains)  # fmt: skip
    with pytest.raises(ConfigError, match="add think"):
        override(TrainConfig(), {"data": {"drafts_from": str(ckpt)}}).data.validate()
    with pytest.raises(CheckpointError, match="not a model checkpoint"):
        cfg.data.drafts_from = str(tmp_path)
        Trainer(cfg, tmp_path / "elsewhere", progress=False)
    with pytest.raises(ConfigError, match="32-pixel"):
        cfg.data.drafts_from, cfg.data.canvas = str(ckpt), 64
        Trainer(cfg, tmp_path / "run64", progress=False)


def test_generate_thinks_after_training(cli, thinker, tmp_path):
    _, ckpt, _ = thinker
    done = cli("generate", "a red circle", "--ckpt", str(ckpt), "--think", "-n", "2", "--out", str(tmp_path / "t.png"))
    assert done.returncode == 0, done.stderr
    line = json.loads((tmp_path / "t" / "chain.jsonl").read_text().splitlines()[0])
    assert line["bands"] == [2, 1, 1]  # three bands over the tiny tokenizer's four rows


def test_evaluate_thinking(thinker, judge):
    _, ckpt, _ = thinker
    bundle = load_bundle(ckpt)
    metadata = first_prompts(1)
    summary, images, lines = thinking_eval.evaluate_thinking(bundle, metadata, judge, per_prompt=2, batch_size=8)
    assert images.shape == (2 * len(metadata), 32, 32, 3) and len(lines) == len(images)
    assert summary["first"]["images"] == summary["final"]["images"] == len(images)
    redrawn = np.array([any(line["redrawn"]) for line in lines])
    assert summary["chains_redrawn"] == pytest.approx(redrawn.mean())
    grid_tokens = bundle.cfg.grid[0] * bundle.cfg.grid[1]
    assert summary["tokens_per_image"] >= grid_tokens + 3  # every band, and at least a token of each thought
    for key in ("redraw_fixes", "critiques_parsed", "low_precision", "low_recall", "bands_redrawn"):
        assert 0.0 <= summary[key] <= 1.0


def test_the_think_preset_fits_its_chains():
    cfg = load_config(TrainConfig(), preset("model", "think"), {"tokenizer": "tok"})
    cfg.validate()
    rows = cfg.data.canvas // 4  # the recipe's 4 x 4-patch tokenizer
    longest = chain_length(cfg.data.text_len, rows, Bands.equal(rows, cfg.data.bands), cfg.data.thought_len,
                           cfg.data.thought_len)  # fmt: skip
    assert "think" in cfg.data.tasks and cfg.model.max_seq_len >= longest


def test_whole_chains_rescore_exactly(unified_run, monkeypatch):
    """Every text and image token of a chain, redrawn bands included, rescored under the distribution sampled."""
    bundle = load_bundle(unified_run / "unified" / "checkpoint")
    said = itertools.count()
    monkeypatch.setattr(thinking, "parse_critique", lambda text: Critique(0 if next(said) % 2 == 0 else MAX_SCORE,
                                                                          (), (), Thought(0, 1, ())))  # fmt: skip
    sampling, writing = SamplingConfig(cfg_scale=2.0), SamplingConfig(temperature=1.0, top_k=0, top_p=1.0)
    chain = thinking.think_and_draw(bundle, ["a red circle", "a blue star"], sampling=sampling, writing=writing)
    old, mask = thinking.chain_logprobs(chain)
    new = thinking.rescore_chain(bundle, bundle.model, chain, sampling, writing)
    assert all(chain.redrawn[0]) and not any(chain.redrawn[1])  # the first row drew its bands twice
    assert ((new - old).abs() * mask).max() < 1e-4
    assert (old[mask] < 0).all()  # sampled at temperature 1: no token was certain
    second = thinking.rescore_chain(bundle, bundle.model, chain, sampling, writing, rows=[1])
    assert torch.allclose(second, new[1:, : second.shape[1]]) and not new[1, second.shape[1] :].any()
    segments = thinking.chain_segments(chain, {"text": ("thought", "critique"), "image": ("band", "redraw")})
    assert torch.equal(segments["text"] | segments["image"], mask) and not (segments["text"] & segments["image"]).any()
    grid = bundle.cfg.grid[0] * bundle.cfg.grid[1]
    assert segments["image"].sum(1).tolist() == [2 * grid, grid]  # the first row drew every band twice
    greedy = thinking.rescore_chain(bundle, bundle.model, chain, sampling, SamplingConfig(top_k=1))
    assert ((greedy - old).abs() * mask).max() > 1  # scored under another distribution, the text differs


def test_twig_grpo_scores_what_it_sampled(unified_run, tmp_path):
    cfg = override(RLConfig(), {
        "init": str(unified_run / "unified" / "checkpoint"), "think": True, "prompts_per_step": 1,
        "grpo.group_size": 3, "steps": 2, "eval_every": 0, "update_batch": 3, "sampling.cfg_scale": 2.0,
        "lr": 1e-3,
    })  # fmt: skip
    rows = [r for r in RLTrainer(cfg, tmp_path / "rl", progress=False).fit() if "reward_mean" in r]
    assert len(rows) == 2 and all(r["ratio_start"] == pytest.approx(1.0, abs=1e-4) for r in rows)
    assert all({"reward/final", "reward/honest", "reward/format"} <= set(r) for r in rows)
    with pytest.raises(ConfigError, match="choose one"):
        override(RLConfig(), {"init": "x", "think": True, "introspect": True}).validate()
