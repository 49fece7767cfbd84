"""Tokenizers: shapes and dtypes, gradients, quantizers, training, resume, checkpoints, the LlamaGen import."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tessera.config import load, override
from tessera.data.shapes import ShapesSource
from tessera.errors import TesseraError
from tessera.tokenizer import build as tok
from tessera.tokenizer.conv import ConvVQ, ConvVQConfig
from tessera.tokenizer.omni import OmniConfig, OmniTok
from tessera.tokenizer.patch import PatchVQ
from tessera.tokenizer.quantizers import QuantizerConfig, VectorQuantizer, make_quantizer
from tessera.tokenizer.train import TokenizerTrainConfig, TokenizerTrainer
from tessera.world.scene import PALETTE

TINY_CONV = ConvVQConfig(
    ch=16,
    ch_mult=(1, 2, 2, 4),
    z_channels=32,
    num_res_blocks=1,
    norm_groups=4,
    quantizer=QuantizerConfig(codebook_size=64),
)
TINY_OMNI = OmniConfig(
    width=32,
    heads=2,
    window_blocks=1,
    full_blocks=1,
    temporal_blocks=1,
    window=2,
    quantizer=QuantizerConfig(codebook_size=64),
)


@pytest.fixture(params=["conv", "omni"])
def model(request):
    torch.manual_seed(0)
    return (ConvVQ(TINY_CONV) if request.param == "conv" else OmniTok(TINY_OMNI)).eval()


def test_image_codes_and_pixels(model):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    codes = model.encode(x)
    assert codes.shape == (2, 4, 4) and codes.dtype == torch.long == model.encode(x).dtype
    assert model.grid((32, 32)) == (4, 4)
    assert int(codes.max()) < model.codebook_size
    y = model.decode(codes)
    assert y.shape == x.shape and y.dtype == torch.float32
    recon, q = model(x)
    assert recon.shape == x.shape and torch.equal(q.codes, codes)


def test_video_codes_and_pixels(model):
    x = torch.rand(2, 3, 9, 32, 32) * 2 - 1
    codes = model.encode(x)
    t = 9 if isinstance(model, ConvVQ) else 3  # frame by frame, or first frame + temporal patches of 4
    assert codes.shape == (2, t, 4, 4) and model.grid((9, 32, 32)) == (t, 4, 4)
    assert model.decode(codes).shape == x.shape


def test_omni_first_frame_is_the_image():
    """Causal temporal attention: the first frame's codes do not depend on later frames."""
    model = OmniTok(TINY_OMNI).eval()
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    later = x.clone()
    later[:, :, 1:] = torch.rand(1, 3, 8, 32, 32)
    assert torch.equal(model.encode(x)[:, 0], model.encode(later)[:, 0])
    assert torch.equal(model.encode(x[:, :, 0]), model.encode(x)[:, 0])


def test_straight_through_gradient_reaches_the_encoder(model):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    recon, q = model(x)
    F.mse_loss(recon, x).backward()  # the reconstruction alone, no quantizer loss
    first = model.encoder.conv_in.weight if isinstance(model, ConvVQ) else model.embed_first.weight
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["vq", "fsq", "lfq"])
def test_quantizers_round_trip(kind):
    torch.manual_seed(0)
    q = make_quantizer(QuantizerConfig(kind=kind, codebook_size=256, dim=8, fsq_levels=(4, 4, 4, 4))).train()
    z = torch.randn(4, 8, 3, 5)
    out = q(z)
    assert out.latent.shape == z.shape and out.codes.shape == (4, 3, 5)
    assert torch.allclose(q.lookup(out.codes), out.latent, atol=1e-5)
    assert 1 <= float(out.perplexity) <= q.codebook_size


def test_vq_initialises_from_data_and_restarts_dead_codes():
    torch.manual_seed(0)
    q = VectorQuantizer(QuantizerConfig(codebook_size=32, dim=4, restart_below=0.5, decay=0.5)).train()
    z = torch.randn(64, 4, 1, 1) + 5.0  # far from the initial codebook
    q(z)
    assert bool(q.initialised)
    book = F.normalize(q.embedding.weight, dim=-1)
    assert (book @ F.normalize(z.flatten(1), dim=-1).t()).max(1).values.min() > 0.99  # every code is a data vector
    for _ in range(5):
        q(z[:1].repeat(64, 1, 1, 1))  # only one code is used: the rest go dead and are restarted from the batch
    assert (q.ema_count >= 0.5).all()


def _tiny_train(steps: int, **kw) -> TokenizerTrainConfig:
    pairs = {
        "tokenizer": {
            "arch": "conv",
            "conv": {
                "ch": 16,
                "ch_mult": [1, 2, 2, 4],
                "z_channels": 32,
                "num_res_blocks": 1,
                "quantizer": {"codebook_size": 64},
            },
        },
        "canvas": 32,
        "steps": steps,
        "batch_size": 8,
        "warmup": 2,
        "log_every": 1,
        "sample_every": 1000,
        "save_every": 4,
        "lr": 3e-3,
    } | kw
    return override(TokenizerTrainConfig(), pairs)


def test_training_lowers_the_loss(tmp_path):
    trainer = TokenizerTrainer(_tiny_train(30, recon="l2"), tmp_path, progress=False)
    rows = trainer.fit()
    first, last = np.mean([r["rec"] for r in rows[:5]]), np.mean([r["rec"] for r in rows[-5:]])
    assert last < 0.7 * first
    assert (tmp_path / "checkpoint" / "model.safetensors").exists() and (tmp_path / "samples").is_dir()


def test_resume_continues_exactly(tmp_path):
    full = TokenizerTrainer(_tiny_train(8), tmp_path / "a", progress=False)
    full.fit()
    half = TokenizerTrainer(_tiny_train(8), tmp_path / "b", progress=False)
    half.fit(until=4)  # as if killed right after the step-4 save
    resumed = TokenizerTrainer(_tiny_train(8), tmp_path / "b", progress=False)
    assert resumed.engine.resume() and resumed.step == 4
    resumed.fit()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    steps = [r["step"] for r in resumed.engine.log.read()]
    assert steps == list(range(1, 9))  # no step lost or logged twice


def test_gan_and_ema_train_and_resume_exactly(tmp_path):
    """The discriminator starts at gan_start; its weights, its optimizer and the EMA all survive a resume."""
    cfg = _tiny_train(6, gan_start=2, ema=0.9, save_every=3)
    straight = TokenizerTrainer(cfg, tmp_path / "a", progress=False)
    rows = straight.fit()
    assert [("d_loss" in r) for r in rows] == [False, False, True, True, True, True]
    TokenizerTrainer(cfg, tmp_path / "b", progress=False).fit(
        until=4
    )  # killed after step 4; the last save was at step 3
    resumed = TokenizerTrainer(cfg, tmp_path / "b", progress=False)
    assert resumed.engine.resume() and resumed.step == 3
    resumed.fit()
    for name in ("model", "discs"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    ema, _ = tok.load(tmp_path / "b" / "checkpoint")  # the published weights are the EMA's
    assert all(torch.equal(v, straight.ema.module.state_dict()[k]) for k, v in ema.state_dict().items())
    assert not torch.equal(ema.encoder.conv_in.weight, straight.model.encoder.conv_in.weight)


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = OmniTok(TINY_OMNI).eval()
    cfg = tok.TokenizerConfig(arch="omni", omni=TINY_OMNI)
    tok.save(tmp_path / "ok", model, cfg)
    loaded, loaded_cfg = tok.load(tmp_path / "ok")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loaded_cfg == cfg and torch.equal(loaded.encode(x), model.encode(x))
    with pytest.raises(TesseraError, match="not a tessera checkpoint"):
        tok.load(tmp_path)
    (tmp_path / "ok" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(TesseraError, match="corrupt"):
        tok.load(tmp_path / "ok")
    tok.save(tmp_path / "other", ConvVQ(TINY_CONV), tok.TokenizerConfig(arch="conv", conv=TINY_CONV))
    (tmp_path / "other" / "config.yaml").write_text(
        (tmp_path / "other" / "config.yaml").read_text().replace("ch: 16", "ch: 32")
    )
    with pytest.raises(TesseraError, match="does not fit"):
        tok.load(tmp_path / "other")
    (tmp_path / "other" / "config.yaml").write_text("kind: model\n")
    with pytest.raises(TesseraError, match="not a tokenizer checkpoint"):
        tok.load(tmp_path / "other")


def test_presets_load():
    from importlib import resources
    from pathlib import Path

    root = Path(str(resources.files("tessera") / "configs" / "tokenizer"))
    names = sorted(p.stem for p in root.glob("*.yaml"))
    expected = {"conv-quick", "conv-full", "omni-quick", "omni-video-quick", "conv-smoke", "omni-smoke"}
    expected |= {"patch-smoke", "patch-masks"}
    assert expected <= set(names)
    for p in root.glob("*.yaml"):
        cfg = load(TokenizerTrainConfig(), p)
        arch = getattr(cfg.tokenizer, cfg.tokenizer.arch)
        colours = getattr(arch, "colours", 0) or 1  # a mask tokenizer codes each mask in each colour
        assert tok.build(cfg.tokenizer).codebook_size == arch.quantizer.codebook_size * colours, p.name


def test_eval_reports_every_metric(tmp_path):
    from tessera.eval.judge import Judge
    from tessera.tokenizer.evaluate import evaluate

    model = ConvVQ(TINY_CONV)
    images = evaluate(model, ShapesSource(32), n=8, batch=4, judge=Judge.load(), progress=False)
    assert {"psnr", "ssim", "codebook_usage", "perplexity", "judge_relative", "judge_agreement_f1"} <= set(images)
    clips = evaluate(OmniTok(TINY_OMNI), ShapesSource(32, video=True), n=4, batch=2, progress=False)
    assert len(clips["psnr_per_frame"]) == 9 and "temporal_consistency" in clips
    json.dumps(images), json.dumps(clips)


def test_video_folder_reads_gifs_and_frame_folders_and_skips_bad_ones(tmp_path):
    from tessera.data.folders import VideoFolder
    from tessera.pictures import save_gif, save_png

    rng = np.random.default_rng(0)
    save_gif(rng.integers(0, 256, (9, 48, 40, 3), dtype=np.uint8), tmp_path / "a.gif")
    for t in range(9):
        save_png(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), tmp_path / "frames" / f"{t:03d}.png")
    save_gif(rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8), tmp_path / "short.gif")  # too few frames
    (tmp_path / "broken.mp4").write_bytes(b"nope")
    source = VideoFolder(tmp_path, canvas=32)
    clips = source.sample(6, np.random.default_rng(1))
    assert clips.shape == (6, 3, 9, 32, 32) and clips.min() >= -1 and clips.max() <= 1
    assert set(source.skipped) == {str(tmp_path / "short.gif"), str(tmp_path / "broken.mp4")}


def test_a_patch_codebook_is_fitted_by_online_kmeans(tmp_path):
    """PatchVQ: no network; codes are the nearest codebook patches, and fitting makes them match the world."""
    x = ShapesSource(32).sample(64, np.random.default_rng(9))

    def fitted(steps: int) -> tuple[PatchVQ, float]:
        cfg = override(
            TokenizerTrainConfig(),
            {"tokenizer": {"arch": "patch", "patch": {"patch": 4, "quantizer": {"codebook_size": 256, "dim": 48,
             "l2_norm": False, "commitment": 0.0, "restart_below": 0.003}}}, "canvas": 32, "steps": steps,
             "batch_size": 16, "warmup": 0, "log_every": 1, "sample_every": 1000, "save_every": steps},
        )  # fmt: skip
        trainer = TokenizerTrainer(cfg, tmp_path / str(steps), progress=False)
        trainer.fit()
        assert not any(p.requires_grad for p in trainer.model.parameters())
        model, _ = tok.load(tmp_path / str(steps) / "checkpoint")
        mse = ((model.decode(model.encode(x)) - x) ** 2).mean()
        return model, float(10 * torch.log10(4 / mse))

    _, seeded = fitted(1)  # the codebook as seeded from the first batch
    model, psnr = fitted(30)
    assert psnr > seeded + 1.0 and psnr > 29  # held-out images, not the training batches
    codes = model.encode(x[:4])
    assert codes.shape == (4, 8, 8) and model.grid((32, 32)) == (8, 8)
    assert torch.equal(model.encode(model.decode(codes)), codes)  # a decoded code is its own patch: it codes back
    clips = model.encode(ShapesSource(32, video=True).sample(2, np.random.default_rng(3)))
    assert clips.shape == (2, 9, 8, 8)
    with pytest.raises(TesseraError, match="dim = 3 x patch"):
        tok.build(override(tok.TokenizerConfig(), {"arch": "patch", "patch": {"quantizer": {"dim": 8}}}))


def test_mask_codes_find_the_worlds_colours_and_keep_edges_a_whole_patch_codebook_loses(mask_tokenizer_dir, tmp_path):
    """PatchVQ with colours: a code is a coverage mask times a colour the tokenizer found in flat regions; at 8 x 8
    patches it reconstructs held-out scenes better than a whole-patch codebook of as many codes."""
    x = ShapesSource(32).sample(64, np.random.default_rng(9))

    def psnr(model) -> float:
        return float(10 * torch.log10(4 / ((model.decode(model.encode(x)) - x) ** 2).mean()))

    vq = {"l2_norm": False, "commitment": 0.0, "restart_below": 0.003}
    cfg = override(
        TokenizerTrainConfig(),
        {"tokenizer": {"arch": "patch", "patch": {"patch": 8, "quantizer": {"codebook_size": 2048, "dim": 192, **vq}}},
         "canvas": 32, "steps": 30, "batch_size": 16, "warmup": 0, "log_every": 1, "sample_every": 1000,
         "save_every": 30},
    )  # fmt: skip
    TokenizerTrainer(cfg, tmp_path / "whole", progress=False).fit()
    masks, whole = tok.load(mask_tokenizer_dir)[0], tok.load(tmp_path / "whole" / "checkpoint")[0]
    assert masks.codebook_size == 256 * 8 and psnr(masks) > psnr(whole) + 1, (psnr(masks), psnr(whole))
    found = {tuple(int(v) for v in c) for c in (masks.quantize.palette * 127.5 + 127.5).round()}
    assert found == set(PALETTE.values())
    codes = masks.encode(x[:4])
    assert codes.shape == (4, 4, 4)
    again = masks.decode(masks.encode(masks.decode(codes)))
    assert torch.allclose(again, masks.decode(codes), atol=1e-5)  # a decoded code codes back to itself
    blank = torch.full((1, 3, 32, 32), 128 / 127.5 - 1)
    empty = masks.encode(blank)
    assert len(empty.unique()) == 1 and int(empty[0, 0, 0]) % 8 == 0  # the background: one code, colour 0
    assert torch.allclose(masks.decode(empty), blank, atol=1 / 127.5)
    assert tok.code_vectors(masks).shape == (256 * 8, 192)
    with pytest.raises(TesseraError, match="dim = patch"):
        tok.build(override(tok.TokenizerConfig(), {"arch": "patch", "patch": {"colours": 8}}))
    bad = {"colours": 8, "background": [0, 0, 300], "quantizer": {"dim": 16}}
    with pytest.raises(TesseraError, match="background must be"):
        tok.build(override(tok.TokenizerConfig(), {"arch": "patch", "patch": bad}))
