"""A LlamaGen-layout class-to-image GPT (random weights under its published names and shapes, built here, not from
tessera's modules) imports into a tessera checkpoint that gives the logits of a direct reading of LlamaGen's
forward (fused wqkv, interleaved 2D rotary pairs, a class token whose query and key are zeroed), then generates
through the CLI and rescores its own samples exactly."""

import pytest
import torch
import torch.nn.functional as F
from conftest import one_line_error, run_cli
from test_llamagen_import import N as CODES
from test_llamagen_import import llamagen_state as vq_state

from tessera.generate.generator import generate, score
from tessera.model import bundle as bundles
from tessera.model.orders import make_orders
from tessera.model.sampling import SamplingConfig
from tessera.sequence.layouts import text_to_image, unconditional

DIM, LAYERS, HEADS, KV_HEADS, CLASSES, SIDE = 128, 2, 2, 1, 10, 4  # head width 64, as LlamaGen's; 4x4 codes
NAMES = [f"class {chr(97 + i)}" for i in range(CLASSES)]


def gpt_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under LlamaGen's c2i GPT names and shapes (class table with the dropped-class row)."""
    g = torch.Generator().manual_seed(seed)
    hd, hidden = DIM // HEADS, -(-int(8 * DIM / 3) // 256) * 256

    def linear(rows: int, cols: int) -> torch.Tensor:
        return torch.randn(rows, cols, generator=g) * cols**-0.5

    sd = {
        "cls_embedding.embedding_table.weight": torch.randn(CLASSES + 1, DIM, generator=g),
        "tok_embeddings.weight": torch.randn(CODES, DIM, generator=g),
        "norm.weight": 1 + 0.1 * torch.randn(DIM, generator=g),
        "output.weight": linear(CODES, DIM),
    }
    for i in range(LAYERS):
        p = f"layers.{i}."
        sd[p + "attention.wqkv.weight"] = linear((HEADS + 2 * KV_HEADS) * hd, DIM) * 3  # sharp attention
        sd[p + "attention.wo.weight"] = linear(DIM, DIM)
        sd[p + "feed_forward.w1.weight"] = linear(hidden, DIM)
        sd[p + "feed_forward.w3.weight"] = linear(hidden, DIM)
        sd[p + "feed_forward.w2.weight"] = linear(DIM, hidden)
        sd[p + "attention_norm.weight"] = 1 + 0.1 * torch.randn(DIM, generator=g)
        sd[p + "ffn_norm.weight"] = 1 + 0.1 * torch.randn(DIM, generator=g)
    return sd


def reference_logits(sd: dict[str, torch.Tensor], classes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """LlamaGen's teacher-forced forward, read off the state dict: class (B,), codes (B, N) raster -> (B, N, V)."""
    x = torch.cat([sd["cls_embedding.embedding_table.weight"][classes][:, None], sd["tok_embeddings.weight"][codes]], 1)
    x = x[:, :-1]  # (B, N, D): the class, then every code but the last
    b, t, d = x.shape
    hd, half = d // HEADS, d // HEADS // 2
    freqs = 1.0 / (10000 ** (torch.arange(0, half, 2)[: half // 2].float() / half))
    per_row = torch.outer(torch.arange(SIDE).float(), freqs)  # (side, hd/4)
    grid = torch.cat([per_row[:, None].expand(-1, SIDE, -1), per_row[None].expand(SIDE, -1, -1)], -1).flatten(0, 1)
    table = torch.cat([torch.zeros(1, half, 2), torch.stack([grid.cos(), grid.sin()], -1)])[:t]  # class: zeros

    def rope(v: torch.Tensor) -> torch.Tensor:  # (B, T, H, hd), pairs (2i, 2i+1)
        pairs = v.reshape(*v.shape[:-1], -1, 2)
        c, s = table[None, :, None, :, 0], table[None, :, None, :, 1]
        a, bb = pairs[..., 0], pairs[..., 1]
        return torch.stack([a * c - bb * s, bb * c + a * s], -1).flatten(3)

    def norm(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    causal = torch.ones(t, t, dtype=torch.bool).tril()
    for i in range(LAYERS):
        p = f"layers.{i}."
        h = norm(x, sd[p + "attention_norm.weight"])
        q, k, v = (h @ sd[p + "attention.wqkv.weight"].T).split([d, KV_HEADS * hd, KV_HEADS * hd], -1)
        q = rope(q.view(b, t, HEADS, hd)).transpose(1, 2)
        k = rope(k.view(b, t, KV_HEADS, hd)).transpose(1, 2).repeat_interleave(HEADS // KV_HEADS, 1)
        v = v.view(b, t, KV_HEADS, hd).transpose(1, 2).repeat_interleave(HEADS // KV_HEADS, 1)
        att = (q @ k.transpose(-1, -2) * hd**-0.5).masked_fill(~causal, float("-inf")).softmax(-1)
        x = x + (att @ v).transpose(1, 2).reshape(b, t, d) @ sd[p + "attention.wo.weight"].T
        h = norm(x, sd[p + "ffn_norm.weight"])
        ff = F.silu(h @ sd[p + "feed_forward.w1.weight"].T) * (h @ sd[p + "feed_forward.w3.weight"].T)
        x = x + ff @ sd[p + "feed_forward.w2.weight"].T
    return norm(x, sd["norm.weight"]) @ sd["output.weight"].T


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """LlamaGen GPT and VQ files, and the tessera checkpoint `tessera model import-llamagen` makes of them."""
    folder = tmp_path_factory.mktemp("llamagen")
    sd = gpt_state()
    torch.save({"model": sd, "steps": torch.tensor(7)}, folder / "gpt.pt")
    torch.save({"model": vq_state()}, folder / "vq.pt")
    (folder / "names.txt").write_text("\n".join(NAMES) + "\n")
    args = [str(folder / "gpt.pt"), str(folder / "vq.pt"), str(folder / "ckpt"), "--image-size", "8"]
    result = run_cli("model", "import-llamagen", *args, "--classes", str(folder / "names.txt"))
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert "2-layer, 128-wide" in said and "10 classes, 16 codes on a 4x4 grid" in said
    return folder, sd, bundles.load(folder / "ckpt")


def test_the_imported_gpt_gives_llamagen_logits(imported):
    _, sd, bundle = imported
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, CODES, (3, SIDE, SIDE), generator=g)
    classes = torch.tensor([0, 4, 9])
    text = bundle.encode_prompts([NAMES[c] for c in classes])
    raster = torch.arange(SIDE * SIDE).expand(3, -1)
    dropped = torch.full_like(classes, CLASSES)  # LlamaGen's unconditional class; tessera's all-<pad> prompt
    cases = ((text, classes), (unconditional(bundle.space, text), dropped))
    for prompt, their_classes in cases:
        want = reference_logits(sd, their_classes, codes.flatten(1))
        batch = text_to_image(bundle.space, prompt, codes, raster)
        assert batch.ids.shape[1] == 1 + SIDE * SIDE + 1  # class, image, <eoi>: no <boi>, as LlamaGen's
        with torch.no_grad():
            got = bundle.model(*batch.inputs())[:, : SIDE * SIDE, bundle.space.image_start :]
        assert want.abs().max() > 1 and torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_classes_by_name_or_number_and_exact_rescoring(imported):
    _, _, bundle = imported
    assert bundle.encode_prompts(["3"]).tolist() == bundle.encode_prompts([NAMES[3]]).tolist()
    assert bundle.cfg.sampling.cfg_scale == 4.0 and bundle.cfg.sampling.top_k == 2000
    text = bundle.encode_prompts([NAMES[1], NAMES[2]])
    order = make_orders("raster", 2, SIDE, SIDE, torch.Generator().manual_seed(0))
    cfg = SamplingConfig(cfg_scale=4.0, top_k=6)
    drawn = generate(bundle.model, bundle.space, text, (SIDE, SIDE), order, cfg, torch.Generator().manual_seed(1))
    with torch.no_grad():
        again = score(bundle.model, bundle.space, text, drawn.ids, order, (SIDE, SIDE), cfg)
    assert torch.allclose(drawn.logprobs, again, atol=1e-4)


def test_the_import_generates_through_the_cli_and_refuses_bad_input(imported, tmp_path):
    folder, _, _ = imported
    ckpt = str(folder / "ckpt")
    result = run_cli(
        "generate", NAMES[5], "--ckpt", ckpt, "-n", "2", "--out", str(tmp_path / "a.png"), "--dtype", "bfloat16"
    )
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "a").glob("*.png"))) == 2
    one_line_error(run_cli("generate", "3", "--ckpt", ckpt, "--dtype", "float8"), "float8")
    one_line_error(run_cli("generate", "class z", "--ckpt", ckpt, "--out", str(tmp_path / "b.png")), "class z")
    vq_only = [str(folder / "vq.pt"), str(folder / "vq.pt"), str(tmp_path / "c")]
    one_line_error(run_cli("model", "import-llamagen", *vq_only), "cls_embedding")
    (tmp_path / "two.txt").write_text("a\nb\n")
    bad_names = [
        str(folder / "gpt.pt"),
        str(folder / "vq.pt"),
        str(tmp_path / "d"),
        "--classes",
        str(tmp_path / "two.txt"),
    ]
    one_line_error(run_cli("model", "import-llamagen", *bad_names, "--image-size", "8"), "10 distinct classes")


def test_rl_runs_on_the_import_with_class_prompts(imported, tmp_path):
    folder, _, _ = imported
    ckpt, out = str(folder / "ckpt"), str(tmp_path / "rl")
    small = ["steps=1", "prompts_per_step=2", "grpo.group_size=2", "update_batch=4", "eval_every=0"]
    result = run_cli("rl", "--init", ckpt, "--reward", "brightness", "--out", out, *small)
    assert result.returncode == 0, result.stderr
    rl = bundles.load(tmp_path / "rl" / "checkpoint")
    assert rl.cfg.boi is False and rl.model.cfg.rope == "grid" and rl.text_tokenizer.names == NAMES
    one_line_error(run_cli("rl", "--init", ckpt, "--out", str(tmp_path / "rl2"), *small), "brightness")
