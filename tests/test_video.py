"""Text-to-video: motion in the grammar, straight-line clips, the held-out video prompts, the clip layout and its
exact rescoring, the metrics on true and broken clips, and the CLI on a tiny model."""

from __future__ import annotations

import dataclasses
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
from tessera.data.examples import video_text
from tessera.data.prompts import description_key, may_train_on, video_prompts
from tessera.eval.video import MIN_TRAVEL, TRACK_REACH, Track, follow, heading, line_error, score_videos
from tessera.generate.generator import generate, score
from tessera.generate.video import true_clips
from tessera.model.orders import make_orders
from tessera.model.sampling import SamplingConfig
from tessera.model.transformer import ModelConfig, Transformer
from tessera.sequence.ids import IdSpace
from tessera.sequence.layouts import grid_positions, pad_text, t2i_length, text_to_image
from tessera.tokenizer import build as visual
from tessera.train.trainer import TrainConfig, Trainer
from tessera.world.grammar import PromptError, parse_description
from tessera.world.language import video_caption
from tessera.world.scene import DIRECTIONS, VIDEO_FRAMES, add_straight_motion, direction_of, sample_scene

SPACE = IdSpace(n_text=10, n_image=16)


def _tracks(scene) -> list[Track]:
    """The scene's objects as tracks that know their true direction."""
    return [Track(o.shape, o.colour, o.size, o.box, ((o.x, o.y),), direction_of(o)) for o in scene.objects]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 3), canvas=st.sampled_from([32, 64]))
def test_straight_motion_and_its_caption_parse_back(seed, n, canvas):
    rng = np.random.default_rng(seed)
    scene = add_straight_motion(sample_scene(rng, canvas, n), rng)
    if scene is None:
        return
    for o in scene.objects:  # along one axis, fast enough, never bouncing
        assert direction_of(o) in DIRECTIONS
        assert math.hypot(o.vx, o.vy) * (VIDEO_FRAMES - 1) >= 0.14 * canvas - 1e-9
    for a, b in zip(scene.objects, scene.at_frame(VIDEO_FRAMES - 1).objects, strict=True):
        assert math.isclose(b.x, a.x + a.vx * (VIDEO_FRAMES - 1)) and math.isclose(b.y, a.y + a.vy * (VIDEO_FRAMES - 1))
    wanted = parse_description(video_caption(scene, rng))
    assert all(spec.motion in DIRECTIONS for spec in wanted.objects)
    assert wanted.holds(scene.objects, exact=True)  # a still frame: motion is not checked
    assert wanted.holds(_tracks(scene), exact=True)
    turned = [dataclasses.replace(t, motion="left" if t.motion != "left" else "right") for t in _tracks(scene)]
    assert not wanted.holds(turned, exact=True)


def test_motion_grammar_errors():
    assert parse_description("two red circles moving up").objects[0].motion == "up"
    with pytest.raises(PromptError, match="expected left, right, up or down"):
        parse_description("a red circle moving")
    with pytest.raises(PromptError, match="unknown word"):
        parse_description("a red circle moving sideways")


def test_video_prompts_are_kept_out_of_training():
    prompts = video_prompts()
    assert len(prompts) == 40 and len({description_key(p) for p in prompts}) == 40
    assert not any(may_train_on(p) for p in prompts)
    held = {description_key(p) for p in prompts}
    rng = np.random.default_rng(0)
    keys = [description_key(video_text(rng, 64)[0]) for _ in range(300)]
    assert not held & set(keys)
    assert any(len(k[0]) == 1 for k in keys)  # one-object clips are trained on, in other words than held out


def test_heading_and_line_error():
    assert heading([(10, 10), (20, 11)], 64) == "right"
    assert heading([(10, 10), (10, 2)], 64) == "up"
    assert heading([(10, 10), (10 + MIN_TRAVEL * 64 * 0.9, 10)], 64) is None  # too little travel
    assert heading([(10, 10), (20, 20)], 64) is None  # diagonal
    assert line_error(((0, 0), (1, 0), (2, 0), (3, 0))) == pytest.approx(0, abs=1e-9)
    assert line_error(((0, 0), (1, 3), (2, 0), (3, 3))) > 1


@pytest.fixture(scope="module")
def true_set():
    prompts = video_prompts()[::4]  # five of one object, five of two
    return prompts, true_clips(prompts, 64, seed=1000)


def test_metrics_pass_true_clips_and_fail_broken_ones(judge, true_set):
    prompts, clips = true_set
    truth = score_videos(judge, prompts, clips)
    assert truth["success"] == 1.0 and truth["track_px"] < 1.0
    still = score_videos(judge, prompts, np.repeat(clips[:, :1], VIDEO_FRAMES, axis=1))
    assert still["first"] == 1.0 and still["motion"] == 0.0 and still["success"] == 0.0
    backwards = score_videos(judge, prompts, clips[:, ::-1].copy())
    assert backwards["motion"] == 0.0
    vanishing = clips.copy()
    vanishing[:, VIDEO_FRAMES // 2] = vanishing[:, VIDEO_FRAMES // 2, :1, :1]  # a blank middle frame
    gone = score_videos(judge, prompts, vanishing)
    assert gone["persist"] == 0.0 and gone["motion"] == 0.0 and gone["last"] == 1.0
    shuffled = clips[:, np.random.default_rng(0).permutation(VIDEO_FRAMES)]
    assert score_videos(judge, prompts, shuffled)["track_px"] > 2 * truth["track_px"]


def test_follow_drops_a_track_that_jumps(judge, true_set):
    prompts, clips = true_set
    found = judge.read(clips[0])
    tracks, lost = follow(found, 64)
    assert lost == 0 and len(tracks) == len(found[0])
    assert tracks[0].motion == parse_description(prompts[0]).objects[0].motion
    far = TRACK_REACH * 64 + 1  # the object leaps in frame 4: its track ends there
    leap = [list(f) for f in found]
    d = leap[4][0]
    leap[4][0] = dataclasses.replace(d, box=(d.box[0] + far, d.box[1], d.box[2] + far, d.box[3]))
    tracks, lost = follow(leap, 64)
    assert lost == 1 and len(tracks) == len(found[0]) - 1


def test_clip_positions_count_frames():
    order = torch.tensor([[0, 5, 16, 47]])
    pos = grid_positions(order, (3, 4, 4), frame=1)
    assert pos.tolist() == [[[1, 0, 0], [1, 1, 1], [2, 0, 0], [3, 3, 3]]]
    codes = torch.arange(48).view(1, 3, 4, 4) % SPACE.n_image
    batch = text_to_image(SPACE, pad_text(SPACE, [[1, 2]], 3), codes, torch.arange(48)[None])
    image = batch.pos[0, 4:-1]
    assert image[:, 0].tolist() == [t for t in range(3) for _ in range(16)]
    assert SPACE.codes(batch.ids[0, 4:-1]).tolist() == codes.flatten().tolist()


def test_clip_sampling_rescored_exactly():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=SPACE.size, dim=32, n_layer=2, n_head=4, n_kv_head=2,
                                    max_seq_len=64, max_grid=4, max_frames=4)).eval()  # fmt: skip
    torch.nn.init.normal_(model.output.weight, std=0.3)  # the zero-initialised head would give uniform logits
    text = pad_text(SPACE, [[1, 2], [3]], 3)
    grid = (3, 3, 4)
    order = make_orders("random", 2, 9, 4, torch.Generator().manual_seed(0))
    cfg = SamplingConfig(cfg_scale=2.0, temperature=1.0, top_k=0, top_p=1.0)
    drawn = generate(model, SPACE, text, grid, order, cfg, torch.Generator().manual_seed(0))
    assert drawn.codes.shape == (2, 3, 3, 4)
    rescored = score(model, SPACE, text, drawn.ids, order, grid, cfg)
    torch.testing.assert_close(rescored, drawn.logprobs, atol=1e-5, rtol=1e-5)
    as_image = score(model, SPACE, text, drawn.ids, order % 12, (3, 4), cfg)  # every token in frame 0
    assert not torch.allclose(as_image, drawn.logprobs, atol=1e-3)


@pytest.fixture(scope="module")
def video_ckpt(tmp_path_factory):
    """A tiny model trained on text-to-image and text-to-video over a tiny untrained OmniTok (3 code frames)."""
    root = tmp_path_factory.mktemp("video")
    torch.manual_seed(0)
    tok_cfg = override(visual.TokenizerConfig(), {"arch": "omni", "omni": {
        "width": 32, "heads": 2, "window_blocks": 1, "full_blocks": 1, "temporal_blocks": 1, "window": 4,
        "quantizer": {"codebook_size": 32, "dim": 4}}})  # fmt: skip
    visual.save(root / "tok", visual.build(tok_cfg), tok_cfg)
    cfg = override(TrainConfig(), {
        "model": TINY_MODEL | {"max_seq_len": 80}, "tokenizer": str(root / "tok"),
        "data": {"examples": 48, "canvas": 32, "text_len": 24, "cache": str(root / "cache"),
                 "tasks": {"t2i": 1, "t2v": 1}},
        "steps": 3, "batch_size": 8, "warmup": 1, "sample_every": 1000})  # fmt: skip
    trainer = Trainer(cfg, root / "run", progress=False)
    batch = trainer.batch()
    frames = batch.pos[..., 0][batch.loss]
    assert frames.max() == 2  # clip tokens sit in code frames 0..2
    trainer.fit()
    return root / "run" / "checkpoint"


def test_generate_video_cli(cli, video_ckpt, tmp_path):
    out = tmp_path / "clips.png"
    result = cli("generate", "a red circle moving right", "--ckpt", str(video_ckpt), "--video", "-n", "2",
                 "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    gif = Image.open(tmp_path / "clips" / "0001.gif")
    assert gif.n_frames == VIDEO_FRAMES and gif.size == (32, 32)
    assert len(list((tmp_path / "clips" / "0000").glob("*.png"))) == VIDEO_FRAMES
    sheet = Image.open(out)
    assert sheet.size == (2 * (VIDEO_FRAMES * 34 + 2), 2 * (2 * 34 + 2))  # two rows of nine frames, scaled twice
    bad = cli("generate", "a red circle moving sideways", "--ckpt", str(video_ckpt), "--video")
    one_line_error(bad, "sideways")


def test_video_needs_a_video_model(cli, t2i_ckpt, tmp_path):
    result = cli("generate", "a red circle moving right", "--ckpt", str(t2i_ckpt), "--video",
                 "--out", str(tmp_path / "x.png"))  # fmt: skip
    one_line_error(result, "t2v")


def test_eval_conditions_scores_video(cli, video_ckpt, tmp_path):
    result = cli("eval", "conditions", "--ckpt", str(video_ckpt), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "conditions.json").read_text())["t2v"]
    assert set(scores) >= {"first", "last", "persist", "motion", "success", "track_px"}
    assert scores["motion"]["copy"] == 0.0  # a held first frame never moves
    assert (tmp_path / "t2v.png").exists() and Image.open(tmp_path / "t2v-0-drawn.gif").n_frames == VIDEO_FRAMES
    report = (tmp_path / "report.html").read_text()
    assert "t2v: model, ceiling, copy (the first frame held)" in report and "t2v-0-ceiling.gif" in report


def test_the_video_preset_fits_its_clips():
    cfg = load_config(TrainConfig(), preset("model", "video"), {"tokenizer": "tok"})
    cfg.validate()
    assert "t2v" in cfg.data.tasks
    clip = VIDEO_FRAMES * (cfg.data.canvas // 4) ** 2  # PatchVQ: 4x4 patches, frame by frame
    assert cfg.model.max_seq_len >= t2i_length(cfg.data.text_len, clip) and cfg.model.max_frames >= VIDEO_FRAMES
