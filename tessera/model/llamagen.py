"""Import a LlamaGen class-to-image GPT checkpoint (GPT-B/L/XL/XXL/XXXL) and its VQ into a tessera model checkpoint.

LlamaGen's GPT is the same LLaMA block as tessera's. What differs is mapped, not approximated:
- its class embedding (a table with one extra row, the dropped class of guidance, as every released c2i model
  has) becomes text ids of class names, with the dropped class on <pad>, tessera's unconditional prompt;
- its fused `wqkv` splits into wq, wk, wv, and each head's query and key channels are reordered from LlamaGen's
  interleaved rotary pairs (2i, 2i+1) to tessera's (i, i + head_dim/2);
- its 2D rotary positions are `rope: grid`, and its sequence, class then image with no <boi>, is `boi: false`;
- the image ids' input and output rows are its token embedding and output head; tessera's learned grid and
  target embeddings start at zero, so the imported model computes LlamaGen's logits exactly.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import torch

from tessera.errors import CheckpointError, InputError
from tessera.model import bundle as bundles
from tessera.model.sampling import SamplingConfig
from tessera.model.transformer import ModelConfig, Transformer
from tessera.sequence.ids import SPECIALS
from tessera.text.tokenizers import ClassTokenizer
from tessera.tokenizer.llamagen import import_llamagen as import_vq
from tessera.tokenizer.llamagen import read_state

GPT_PARTS = ("cls_embedding.", "tok_embeddings.", "layers.", "norm.", "output.")
HEAD_DIM = 64  # every released LlamaGen GPT (B 768/12, L 1024/16, XL 1280/20, XXL 1536/24, XXXL 2560/40)
SAMPLING = SamplingConfig(cfg_scale=4.0, top_k=2000)  # LlamaGen's class-to-image sampling defaults


def infer_config(state: dict[str, torch.Tensor], heads: int | None = None) -> ModelConfig:
    """The shape of a LlamaGen GPT from its tensors; `heads` when its head width is not 64."""
    needed = ("cls_embedding.embedding_table.weight", "tok_embeddings.weight", "norm.weight", "output.weight")
    missing = [k for k in needed if k not in state]
    layers = sorted({int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k))})
    if missing or not layers:
        what = ", ".join(missing) if missing else "no transformer layers"
        raise CheckpointError(f"not a LlamaGen class-to-image GPT state dict: {what}")
    vocab, dim = state["tok_embeddings.weight"].shape
    n_head = heads or dim // HEAD_DIM
    if n_head < 1 or dim % n_head:
        raise CheckpointError(f"the GPT's width {dim} does not divide into {n_head} heads; give --heads")
    head_dim = dim // n_head
    qkv = state["layers.0.attention.wqkv.weight"].shape[0]
    n_kv_head = (qkv // head_dim - n_head) // 2
    hidden = state["layers.0.feed_forward.w1.weight"].shape[0]
    cfg = ModelConfig(dim=dim, n_layer=len(layers), n_head=n_head, n_kv_head=n_kv_head, ffn_multiple=256, rope="grid")
    if qkv != (n_head + 2 * n_kv_head) * head_dim or n_kv_head < 1 or n_head % n_kv_head:
        raise CheckpointError(f"wqkv has {qkv} rows, which {n_head} heads of {head_dim} cannot make; give --heads")
    if -(-int(8 * dim / 3) // 256) * 256 != hidden:
        raise CheckpointError(f"feed-forward width {hidden} is not LlamaGen's default for width {dim}")
    return cfg


def interleaved_to_halves(w: torch.Tensor, heads: int) -> torch.Tensor:
    """(heads * hd, D) query or key rows: each head's channels (0, 1, 2, 3, ..) reordered to (0, 2, .., 1, 3, ..)."""
    hd = w.shape[0] // heads
    order = torch.cat([torch.arange(0, hd, 2), torch.arange(1, hd, 2)])
    return w.view(heads, hd, -1)[:, order].reshape_as(w)


def convert(state: dict[str, torch.Tensor], cfg: ModelConfig, n_classes: int) -> dict[str, torch.Tensor]:
    """LlamaGen GPT tensors -> the state dict of a tessera Transformer built from `cfg` (vocab set)."""
    model = Transformer(cfg)
    out = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    classes = state["cls_embedding.embedding_table.weight"]
    text_start = len(SPECIALS)
    image_start = text_start + n_classes
    emb = out["tok_embeddings.weight"]
    emb[text_start:image_start] = classes[:n_classes]
    emb[SPECIALS.index("<pad>")] = classes[n_classes]  # the dropped class: the unconditional prompt
    emb[image_start:] = state["tok_embeddings.weight"]
    out["output.weight"][image_start:] = state["output.weight"]
    out["norm.weight"] = state["norm.weight"]
    hd = cfg.dim // cfg.n_head
    for i in range(cfg.n_layer):
        src, dst = f"layers.{i}.", f"layers.{i}."
        wq, wk, wv = state[src + "attention.wqkv.weight"].split([cfg.dim, cfg.n_kv_head * hd, cfg.n_kv_head * hd])
        out[dst + "attention.wq.weight"] = interleaved_to_halves(wq, cfg.n_head)
        out[dst + "attention.wk.weight"] = interleaved_to_halves(wk, cfg.n_kv_head)
        out[dst + "attention.wv.weight"] = wv
        for name in ("attention.wo", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"):
            out[f"{dst}{name}.weight"] = state[f"{src}{name}.weight"]
        for name in ("attention_norm", "ffn_norm"):
            out[f"{dst}{name}.weight"] = state[f"{src}{name}.weight"]
    return out


def class_names(path: str | Path | None, n_classes: int) -> list[str]:
    """One name per line of `path`, or the class numbers; InputError when the count is not the GPT's."""
    if path is None:
        return [str(i) for i in range(n_classes)]
    names = [" ".join(line.split()) for line in Path(path).read_text().splitlines() if line.strip()]
    if len(names) != n_classes or len(set(names)) != len(names):
        raise InputError(f"{path} must name {n_classes} distinct classes, one per line; it has {len(names)} names")
    return names


def import_gpt(
    gpt: str | Path,
    vq: str | Path,
    out: str | Path,
    image_size: int = 256,
    classes: str | Path | None = None,
    heads: int | None = None,
) -> bundles.Bundle:
    """Convert a LlamaGen c2i GPT checkpoint and its VQ into a model checkpoint folder `out`; returns the bundle."""
    state = {k: v.float() for k, v in read_state(gpt, GPT_PARTS).items()}
    cfg = infer_config(state, heads)
    n_classes = state["cls_embedding.embedding_table.weight"].shape[0] - 1  # the last row: the dropped class
    names = class_names(classes, n_classes)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = import_vq(vq, Path(tmp) / "tokenizer")
        if image_size % tokenizer.factor:
            raise InputError(f"--image-size must be a multiple of the VQ's stride {tokenizer.factor}, got {image_size}")
        n_image, side = state["tok_embeddings.weight"].shape[0], image_size // tokenizer.factor
        if tokenizer.codebook_size != n_image:
            raise CheckpointError(f"the VQ has {tokenizer.codebook_size} codes; the GPT draws {n_image}")
        cfg.vocab_size, cfg.image_codes = len(SPECIALS) + n_classes + n_image, n_image
        cfg.max_seq_len, cfg.max_grid = side * side + 2, side
        config = bundles.BundleConfig(
            model=cfg, n_text=n_classes, n_image=n_image, text_len=1, grid=(side, side), canvas=image_size,
            sampling=SAMPLING, boi=False,
        )  # fmt: skip
        model = Transformer(cfg)
        model.load_state_dict(convert(state, cfg, n_classes))
        bundle = bundles.Bundle(config, model.eval(), ClassTokenizer(names), tokenizer)
        bundles.save(out, bundle, model.state_dict(), Path(tmp) / "tokenizer")
    return bundle
