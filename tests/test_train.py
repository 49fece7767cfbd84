"""Training the autoregressive model: data and token cache, learning, exact resume, a killed run, gradient
accumulation, bf16 autocast, and 2 DDP ranks against one process."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import two_ranks
from PIL import Image

from tessera.config import override
from tessera.data.examples import DataConfig
from tessera.model import bundle as bundles
from tessera.sequence.layouts import Batch
from tessera.text.tokenizers import BPETokenizer, ClassTokenizer
from tessera.tokenizer import build as visual
from tessera.train.token_cache import extract
from tessera.train.trainer import TrainConfig, Trainer

TINY = {
    "model": {"dim": 64, "n_layer": 2, "n_head": 4, "n_kv_head": 2, "max_seq_len": 64, "max_grid": 8},
    "data": {"examples": 64, "canvas": 32, "text_len": 16},
    "batch_size": 8,
    "warmup": 2,
    "log_every": 1,
    "sample_every": 1000,
    "save_every": 5,
}


def config(tokenizer_dir, tmp_path, **kw) -> TrainConfig:
    items = {**TINY, "tokenizer": str(tokenizer_dir), "data.cache": str(tmp_path / "cache"), **kw}
    return override(TrainConfig(), items)


@pytest.mark.parametrize("code_vectors", [False, True])
def test_training_lowers_the_loss(tokenizer_dir, tmp_path, code_vectors):
    cfg = config(tokenizer_dir, tmp_path, steps=40, lr=3e-3, code_vectors=code_vectors, **{"data.examples": 16})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    rows = trainer.fit()
    assert trainer.texts.shape == (16, 16) and trainer.codes.shape == (16, 4, 4)
    first, last = rows[0]["loss"], np.mean([r["loss"] for r in rows[-5:]])
    assert first == pytest.approx(np.log(32), abs=0.05)  # zero-initialised head: uniform over the 32 codes
    assert last < first - 1.0, (first, last)
    b = bundles.load(tmp_path / "run" / "checkpoint")
    assert b.cfg.grid == (4, 4) and b.space.n_image == 32
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in b.model.state_dict().items())
    if code_vectors:  # the checkpoint carries the tokenizer's code vectors with it
        assert torch.equal(b.model.code_vectors, visual.code_vectors(visual.load(tokenizer_dir)[0]))


def test_resume_continues_exactly(tokenizer_dir, tmp_path):
    cfg = config(tokenizer_dir, tmp_path, steps=12, ema=0.9, order="random", **{"model.dropout": 0.1})
    straight = Trainer(cfg, tmp_path / "a", progress=False)
    straight.fit()
    cut = Trainer(cfg, tmp_path / "b", progress=False)
    cut.fit(until=7)  # killed after step 7: the last save was at step 5
    again = Trainer(cfg, tmp_path / "b", progress=False)
    assert again.engine.resume() and again.step == 5
    again.fit()
    for k, v in straight.model.state_dict().items():  # dropout draws from torch's generator: it is restored too
        assert torch.equal(v, again.model.state_dict()[k]), k
    for k, v in straight.ema.state_dict().items():
        assert torch.equal(v, again.ema.state_dict()[k]), k
    a = [r["loss"] for r in straight.engine.log.read()]
    b = [r["loss"] for r in again.engine.log.read()]
    assert a == b and len(a) == 12  # the metrics of the lost steps were redone, not duplicated


def test_killed_run_resumes_from_its_last_checkpoint(tokenizer_dir, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "tessera.cli", "train", "--tokenizer", str(tokenizer_dir), "--preset", "smoke"]
    args += ["--out", str(run), "data.canvas=32", f"data.cache={tmp_path / 'cache'}", "data.examples=32"]
    args += ["steps=400", "save_every=20", "sample_every=1000", "log_every=1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    state = run / "checkpoint" / "state.json"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = json.loads(state.read_text())["step"]
    assert 20 <= saved < 400
    logged = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert max(logged) - saved < 20 + 5  # lost: at most the steps since the last save
    finish = subprocess.run([*args[:-4], "steps=60", "save_every=20", "sample_every=1000", "log_every=1"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert finish.returncode == 0, finish.stderr
    steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert steps == list(range(1, 61)) if saved <= 60 else steps[-1] == saved


def test_data_sources_and_cache(tokenizer_dir, tmp_path):
    tok, _ = visual.load(tokenizer_dir)
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    for name in ("golden_retriever", "tabby cat"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "tabby cat" / "broken.png").write_bytes(b"not a png")
    folder = extract(DataConfig(source=str(root), canvas=32, cache=str(tmp_path / "c")), tok, tokenizer_dir)
    assert isinstance(folder.text_tokenizer, ClassTokenizer)
    assert folder.text_tokenizer.names == ["golden retriever", "tabby cat"] and len(folder.texts) == 6
    assert list(folder.skipped) == [str(root / "tabby cat" / "broken.png")]
    lines = [{"image": f"pets/golden_retriever/{i}.png", "caption": f"a dog number {i}"} for i in range(3)]
    lines.append({"image": "missing.png", "caption": "lost"})
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + "{broken\n")
    captions = DataConfig(source=str(tmp_path / "captions.jsonl"), canvas=32, cache=str(tmp_path / "c"), bpe_vocab=300)
    first = extract(captions, tok, tokenizer_dir)
    assert isinstance(first.text_tokenizer, BPETokenizer) and len(first.texts) == 3 and len(first.skipped) == 2
    assert first.text_tokenizer.decode(first.texts[1]).strip() == "a dog number 1"
    cached = extract(captions, None, tokenizer_dir)  # from the cache: no tokenizer needed
    assert torch.equal(cached.codes, first.codes) and cached.texts == first.texts


def test_token_cache_is_rebuilt_when_its_inputs_change(tokenizer_dir, tmp_path):
    tok, _ = visual.load(tokenizer_dir)
    cache = tmp_path / "cache"
    cfg = DataConfig(examples=16, canvas=32, text_len=16, cache=str(cache))
    first = extract(cfg, tok, tokenizer_dir, progress=False)
    assert torch.equal(extract(cfg, None, tokenizer_dir, progress=False).codes, first.codes)  # read back, not made
    extract(dataclasses.replace(cfg, examples=20), tok, tokenizer_dir, progress=False)
    extract(cfg, tok, tokenizer_dir, seed=1, progress=False)
    other = tmp_path / "other-tokenizer"
    shutil.copytree(tokenizer_dir, other)
    retrained, tok_cfg = visual.load(other)
    with torch.no_grad():
        retrained.quantize.embedding.weight.mul_(-1)
    visual.save(other, retrained, tok_cfg)
    recoded = extract(cfg, retrained, other, progress=False)
    assert not torch.equal(recoded.codes, first.codes) and recoded.texts == first.texts
    assert len(list(cache.glob("tokens-*.safetensors"))) == 4  # data, seed and tokenizer weights each make a key


def _fixed_batch(trainer: Trainer, n: int) -> Batch:
    """n rows drawn once with the trainer's own generator."""
    trainer.cfg = dataclasses.replace(trainer.cfg, batch_size=n)
    return trainer.batch()


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_gradient_accumulation_equals_one_big_batch(tokenizer_dir, tmp_path):
    one = Trainer(config(tokenizer_dir, tmp_path, steps=1), tmp_path / "one", progress=False)
    full = _fixed_batch(one, 8)
    one.batch = lambda: full
    one.accumulate()
    cfg = config(tokenizer_dir, tmp_path, steps=1, batch_size=4, grad_accum=2)
    two = Trainer(cfg, tmp_path / "two", progress=False)
    halves = iter([full.rows(slice(0, 4)), full.rows(slice(4, 8))])
    two.batch = lambda: next(halves)
    two.accumulate()
    a, b = _grads(one.model), _grads(two.model)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5 < max(float(a[k].abs().max()) for k in a)


def _ddp_rank(rank: int, cfg: TrainConfig, run, batch, out) -> None:
    """One of two gloo ranks: the DDP gradient of its half of `batch`; rank 0 saves it."""
    trainer = Trainer(cfg, run, progress=False)
    mine = batch.rows(slice(4 * rank, 4 * rank + 4))
    trainer.batch = lambda: mine
    trainer.accumulate()
    if rank == 0:
        torch.save(_grads(trainer.model), out)
    trainer.processes.end()  # neither rank leaves while the other still talks to it


def test_two_ddp_ranks_equal_one_process(tokenizer_dir, tmp_path):
    cfg = config(tokenizer_dir, tmp_path, steps=1)
    one = Trainer(cfg, tmp_path / "one", progress=False)
    full = _fixed_batch(one, 8)
    one.batch = lambda: full
    one.accumulate()
    out = tmp_path / "grads.pt"
    two_ranks(_ddp_rank, dataclasses.replace(cfg, batch_size=4), tmp_path / "ddp", full, out)
    a, b = _grads(one.model), torch.load(out, weights_only=True)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5 < max(float(a[k].abs().max()) for k in a)


def _recording(trainer: Trainer, batches: list[Batch]) -> list[float]:
    """Feed the trainer `batches` in turn; the list fills with each step's loss."""
    feed, losses, step = iter(batches), [], trainer.train_step
    trainer.batch = lambda: next(feed)
    trainer.train_step = lambda: (out := step(), losses.append(out["loss"]))[0]
    return losses


def _fsdp_rank(rank: int, cfg: TrainConfig, run, batches, out) -> None:
    """One of two gloo ranks training sharded on its half of each batch; rank 0 saves both ranks' mean losses."""
    trainer = Trainer(cfg, run, progress=False)
    losses = _recording(trainer, [b.rows(slice(4 * rank, 4 * rank + 4)) for b in batches])
    trainer.fit()  # saves the checkpoint at the end, every process taking part
    shards = sum(p.to_local().numel() for p in trainer.model.parameters())
    both = trainer.processes.gather((losses, shards))
    if rank == 0:
        torch.save({"losses": np.mean([b[0] for b in both], axis=0).tolist(), "shards": [b[1] for b in both]}, out)
    trainer.processes.end()


def test_two_fsdp_ranks_follow_the_loss_curve_of_one_process(tokenizer_dir, tmp_path):
    cfg = config(tokenizer_dir, tmp_path, steps=3, lr=3e-3)
    one = Trainer(cfg, tmp_path / "one", progress=False)
    batches = [_fixed_batch(one, 8) for _ in range(3)]
    losses = _recording(one, batches)
    one.fit()
    out = tmp_path / "fsdp.pt"
    two_ranks(_fsdp_rank, dataclasses.replace(cfg, batch_size=4, fsdp=True), tmp_path / "fsdp", batches, out)
    sharded = torch.load(out, weights_only=True)
    assert losses[0] > losses[-1] + 0.01 and np.allclose(sharded["losses"], losses, atol=1e-5), (sharded, losses)
    assert sum(sharded["shards"]) == one.model.num_params() and max(sharded["shards"]) < 0.6 * one.model.num_params()
    saved = bundles.load(tmp_path / "fsdp" / "checkpoint").model.state_dict()  # gathered whole by the main rank
    assert max(float((saved[k] - v).abs().max()) for k, v in one.model.state_dict().items()) < 1e-5


def test_a_colour_head_learns_mask_times_colour_codes_and_draws_them(mask_tokenizer_dir, tokenizer_dir, tmp_path):
    from tessera.errors import TesseraError
    from tessera.generate.images import draw_images

    cfg = config(mask_tokenizer_dir, tmp_path, steps=40, lr=3e-3, code_vectors=True,
                 **{"model.colour_head": True, "data.examples": 16})  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    rows = trainer.fit()
    model = trainer.model
    assert model.cfg.code_colours == 8 and model.output.weight.shape[0] == model.image_start + 256  # a row per mask
    first, last = rows[0]["loss"], np.mean([r["loss"] for r in rows[-5:]])
    assert first == pytest.approx(np.log(256 * 8), abs=0.05)  # zero-initialised: uniform mask, then uniform colour
    assert last < first - 2.0, (first, last)
    images, drawn = draw_images(bundles.load(tmp_path / "run" / "checkpoint"), ["a red circle", "a blue square"])
    assert images.shape == (2, 32, 32, 3) and drawn[0].codes.shape == (2, 4, 4)
    with pytest.raises(TesseraError, match="colour_head"):  # whole-patch codes have no colours to score apart
        Trainer(config(tokenizer_dir, tmp_path, **{"model.colour_head": True}), tmp_path / "bad", progress=False)


def test_bf16_autocast_runs_the_model_in_bf16(tokenizer_dir, tmp_path):
    fp32 = Trainer(config(tokenizer_dir, tmp_path, steps=1), tmp_path / "fp32", progress=False)
    bf16 = Trainer(config(tokenizer_dir, tmp_path, steps=1, amp="bf16"), tmp_path / "bf16", progress=False)
    batch = _fixed_batch(fp32, 8)
    fp32.batch = bf16.batch = lambda: batch
    torch.nn.init.normal_(fp32.model.output.weight, std=0.3)  # the zero-initialised head would give log(V) in any dtype
    bf16.model.load_state_dict(fp32.model.state_dict())
    seen = []
    bf16.model.layers[0].feed_forward.w1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    a, b = fp32.accumulate()["loss"], bf16.accumulate()["loss"]
    assert seen == [torch.bfloat16] and all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert a != b and abs(a - b) < 0.02 * a


def test_class_to_image_is_the_same_layout(tokenizer_dir, tmp_path):
    from tessera.errors import TesseraError
    from tessera.generate.images import draw_images

    cfg = config(tokenizer_dir, tmp_path, steps=2, **{"data.source": "shapes-classes", "data.examples": 200})
    trainer = Trainer(cfg, tmp_path / "c2i", progress=False)
    trainer.fit()
    b = bundles.load(tmp_path / "c2i" / "checkpoint")
    assert isinstance(b.text_tokenizer, ClassTokenizer) and "red circle" in b.text_tokenizer.names
    assert b.text_tokenizer.vocab_size <= 40
    images, drawn = draw_images(b, ["red circle", b.text_tokenizer.names[-1]])
    assert images.shape == (2, 32, 32, 3) and drawn[0].codes.shape == (2, 4, 4)
    with pytest.raises(TesseraError, match="unknown class"):
        draw_images(b, ["red dodecahedron"])


def test_masked_loss_weighs_text_and_image_tokens_apart():
    from tessera.sequence.ids import IMAGE, TEXT, IdSpace
    from tessera.train.trainer import masked_loss

    space = IdSpace(n_text=4, n_image=6)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, space.size, generator=g)
    slots = torch.tensor([[IMAGE] * 5, [IMAGE, IMAGE, TEXT, TEXT, TEXT]])
    targets = torch.tensor([[12, 13, 14, 15, 16], [12, 17, 8, 9, space.special("<eos>")]])
    mask = torch.tensor([[True] * 5, [True, True, True, False, True]])
    allowed = {k: space.allowed(k) for k in (IMAGE, TEXT)}

    def ce(b, t):
        row = logits[b, t].masked_fill(~allowed[int(slots[b, t])], float("-inf"))
        return torch.nn.functional.cross_entropy(row[None], targets[b, t][None])

    image = torch.stack([ce(b, t) for b in range(2) for t in range(5) if mask[b, t] and slots[b, t] == IMAGE])
    text = torch.stack([ce(1, 2), ce(1, 4)])
    loss, _ = masked_loss(logits, targets, slots, mask, space, text_weight=2.0)
    assert torch.allclose(loss, image.mean() + 2.0 * text.mean())
    only_image, _ = masked_loss(logits[:1], targets[:1], slots[:1], mask[:1], space)
    assert torch.allclose(only_image, image[:5].mean())  # text-to-image alone: the plain mean over image tokens
