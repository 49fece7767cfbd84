"""SeqTok: one ordered sequence of tokens per image, causal among themselves, decodable from any prefix; the AR
model, the sampler, rescoring and GRPO run on its one-row grid unchanged."""

import copy
import json

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, one_line_error

from tessera.cli.common import preset
from tessera.config import load, override
from tessera.data.shapes import ShapesSource
from tessera.errors import ConfigError
from tessera.generate.generator import score
from tessera.generate.images import image_batches
from tessera.model.bundle import load as load_bundle
from tessera.model.orders import make_orders
from tessera.rl.trainer import RLConfig, RLTrainer
from tessera.tokenizer import build as visual
from tessera.tokenizer.train import TokenizerTrainConfig, TokenizerTrainer
from tessera.train.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """A smoke patch tokenizer (64 codes at 32 x 32), fitted by k-means: the proxy whose codes SeqTok predicts."""
    cfg = load(TokenizerTrainConfig(), preset("tokenizer", "patch-smoke"), {"steps": 60, "save_every": 60}, [])
    run = tmp_path_factory.mktemp("proxy") / "run"
    TokenizerTrainer(cfg, run, progress=False).fit()
    return run / "checkpoint"


def seq_config(proxy, **options) -> TokenizerTrainConfig:
    return load(TokenizerTrainConfig(), preset("tokenizer", "seq-smoke"), {"tokenizer.seq.proxy_init": str(proxy)}
                | options, [])  # fmt: skip


@pytest.fixture(scope="module")
def seq_run(proxy, tmp_path_factory):
    """The smoke SeqTok (8 tokens at 32 x 32) after a few steps: (run folder, trainer)."""
    run = tmp_path_factory.mktemp("seq") / "run"
    trainer = TokenizerTrainer(seq_config(proxy, steps=5, save_every=5), run, progress=False)
    trainer.fit()
    return run, trainer


def test_training_leaves_the_proxy_as_it_was_fitted(proxy, seq_run):
    """The proxy's codebook is the decoder's fixed vocabulary: five training steps must not move it."""
    fitted = visual.load(proxy)[0].state_dict()
    trained = seq_run[1].model.proxy.state_dict()
    assert [k for k in fitted if not torch.equal(fitted[k], trained[k])] == []
    assert not copy.deepcopy(seq_run[1].model).train().proxy.training


def test_token_k_reads_only_the_image_and_tokens_before_it(seq_run):
    model = copy.deepcopy(seq_run[1].model).eval()
    x = seq_run[1].images.sample(4, np.random.default_rng(0))
    before, _ = model._encode(x)  # (B, C, n)
    with torch.no_grad():
        model.queries[5:].add_(torch.randn_like(model.queries[5:]))
    after, _ = model._encode(x)
    assert torch.allclose(before[..., :5], after[..., :5], atol=1e-6)  # tokens 0-4 do not see queries 5..
    assert not torch.allclose(before[..., 5:], after[..., 5:], atol=1e-3)


@pytest.mark.parametrize("decoder", ["codes", "flow"])
def test_any_prefix_decodes_and_longer_prefixes_reconstruct_better(proxy, decoder):
    """Fitted to 16 scenes with 4 codes per token (one token tells at most 4 scenes apart), each longer prefix
    reconstructs them better: the sequence is ordered, and the decoder (the code head, or the rectified flow)
    reads only the prefix it is given. The flow's fixed noise makes decoding repeatable."""
    cfg = seq_config(proxy, **{"tokenizer.seq.quantizer.codebook_size": 4, "tokenizer.seq.decoder": decoder})
    torch.manual_seed(0)
    model = visual.build(cfg.tokenizer)
    model.start_from(visual.load(proxy)[0])
    x = ShapesSource(32).sample(16, np.random.default_rng(0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(120):
        model.train()
        loss = model(x)[1].loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    codes = model.encode(x)
    assert codes.shape == (16, 1, 8) and model.grid((32, 32)) == (1, 8)
    errors = [(model.decode(codes[..., :k]) - x).pow(2).mean().item() for k in (1, 2, 4, 8)]
    assert errors[3] < errors[2] < errors[1] < errors[0], errors
    assert errors[3] < (x.mean(0, keepdim=True) - x).pow(2).mean().item()  # better than any one picture for all
    assert torch.equal(model.decode(codes[..., :3]), model.decode(codes[..., :3]))
    with torch.no_grad():
        assert (model(x)[0] - model.decode(codes)).abs().max() < 1e-5  # eval mode reconstructs from all the tokens
    with pytest.raises(ConfigError, match="9 codes"):
        model.decode(torch.zeros(1, 1, 9, dtype=torch.long))
    clips = x[:2, :, None].expand(-1, -1, 3, -1, -1)  # (2, 3, T=3, H, W): frame by frame
    assert model.encode(clips).shape == (2, 3, 1, 8)


def test_a_seq_tokenizer_needs_its_proxy():
    with pytest.raises(ConfigError, match="proxy_init"):
        load(TokenizerTrainConfig(), preset("tokenizer", "seq-smoke"), {}, []).validate()


def test_the_model_samples_rescores_and_trains_by_grpo_on_seq_codes(seq_run, tmp_path):
    folder = seq_run[0] / "checkpoint"
    cfg = override(
        TrainConfig(),
        {"model": TINY_MODEL, "data": {"examples": 32, "canvas": 32, "text_len": 16, "cache": str(tmp_path / "c")},
         "tokenizer": str(folder), "steps": 3, "batch_size": 8, "warmup": 1, "sample_every": 1000,
         "code_vectors": True},
    )  # fmt: skip
    Trainer(cfg, tmp_path / "t2i", progress=False).fit()
    bundle = load_bundle(tmp_path / "t2i" / "checkpoint")
    assert bundle.cfg.grid == (1, 8)
    (images, drawn), *_ = image_batches(bundle, ["a red circle", "two blue stars"], order="random", seed=1)
    assert images.shape == (2, 32, 32, 3) and drawn.codes.shape == (2, 1, 8)
    orders = make_orders("random", 2, 1, 8, torch.Generator().manual_seed(1))
    text = bundle.encode_prompts(["a red circle", "two blue stars"])
    rescored = score(bundle.model, bundle.space, text, drawn.ids, orders, (1, 8), bundle.cfg.sampling)
    assert (rescored - drawn.logprobs).abs().max() < 1e-5
    options = {"init": str(tmp_path / "t2i" / "checkpoint"), "reward": "brightness", "steps": 2,
               "grpo.group_size": 4, "prompts_per_step": 2, "eval_every": 0, "update_batch": 8}  # fmt: skip
    rl = override(RLConfig(), options)
    rows = RLTrainer(rl, tmp_path / "rl", progress=False).fit()
    assert all(r["ratio_start"] == pytest.approx(1.0, abs=1e-4) for r in rows)


def test_tokenizer_eval_reports_the_prefix_curve(seq_run, cli, tmp_path):
    folder = str(seq_run[0] / "checkpoint")
    done = cli("tokenizer", "eval", folder, "--n", "8", "--canvas", "32", "--prefixes", "1,8", "--out",
               str(tmp_path / "m.json"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "first 1 tokens" in done.stdout and "first 8 tokens" in done.stdout
    rows = json.loads((tmp_path / "m.json").read_text())["prefixes"]
    assert [r["tokens"] for r in rows] == [1, 8, "originals"] and rows[-1]["psnr"] is None
    assert "the originals" in done.stdout
    one_line_error(cli("tokenizer", "eval", folder, "--canvas", "32", "--prefixes", "1,9"), "--prefixes")
