"""Import a LlamaGen (or Janus) VQ checkpoint into a tessera ConvVQ checkpoint folder.

The module tree and parameter names of ConvVQ are LlamaGen's, so the import only unwraps the file, infers the
config from the tensor shapes, checks every key, and fills the EMA buffers LlamaGen does not have.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tessera.engine.checkpoint import load_into
from tessera.errors import CheckpointError
from tessera.tokenizer import build as tok
from tessera.tokenizer.conv import ConvVQ, ConvVQConfig
from tessera.tokenizer.quantizers import QuantizerConfig

PREFIXES = ("gen_vision_model.", "module.", "vq_model.", "_orig_mod.")  # Janus, DDP, wrapped, compiled checkpoints
VQ_PARTS = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
DROPPED = ("quantize.codebook_used",)  # LlamaGen's usage buffer: not a weight


def read_state(path: str | Path, parts: tuple[str, ...] = VQ_PARTS) -> dict[str, torch.Tensor]:
    """The tensors under `parts` of a .pt/.pth/.bin (weights only, never unpickled code) or .safetensors file,
    unwrapped from LlamaGen's {"model": ..} (or "ema", "state_dict") and from wrappers' key prefixes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint file: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file is bad input
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise CheckpointError(f"cannot read {path}: {reason}") from e
    for key in ("ema", "model", "state_dict"):  # LlamaGen saves {"model": ..., "ema": ...}; prefer EMA weights
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
            break
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    state = {}
    for k, v in raw.items():
        for p in PREFIXES:
            if k.startswith(p):
                k = k[len(p) :]
        if k.startswith(parts):
            state[k] = v
    return state


def infer_config(state: dict[str, torch.Tensor]) -> ConvVQConfig:
    """The ConvVQConfig a LlamaGen VQ state dict was built with, read from its tensor shapes."""
    needed = ("encoder.conv_in.weight", "encoder.conv_out.weight", "quantize.embedding.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheckpointError(f"not a LlamaGen VQ state dict: missing {', '.join(missing)}")
    ch = state["encoder.conv_in.weight"].shape[0]
    levels = sorted({int(m.group(1)) for k in state if (m := re.match(r"encoder\.conv_blocks\.(\d+)\.", k))})
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.conv_blocks\.0\.res\.(\d+)\.", k))}
    first = [f"encoder.conv_blocks.{i}.res.0.conv1.weight" for i in levels]
    missing = [k for k in first if k not in state]
    if not levels or not blocks or missing:
        raise CheckpointError(f"not a LlamaGen VQ state dict: no encoder levels, or missing {', '.join(missing[:3])}")
    ch_mult = tuple(state[k].shape[0] // ch for k in first)
    n, dim = state["quantize.embedding.weight"].shape
    return ConvVQConfig(
        ch=ch,
        ch_mult=ch_mult,
        z_channels=state["encoder.conv_out.weight"].shape[0],
        num_res_blocks=len(blocks),
        quantizer=QuantizerConfig(kind="vq", codebook_size=n, dim=dim, l2_norm=True, ema=False),
    )


def import_llamagen(path: str | Path, out: str | Path) -> ConvVQ:
    """Convert a LlamaGen/Janus VQ checkpoint file into a tokenizer checkpoint folder; returns the model."""
    state = {k: v.float() for k, v in read_state(path).items() if k not in DROPPED}
    cfg = infer_config(state)
    model = ConvVQ(cfg)
    emb = state["quantize.embedding.weight"]
    state |= {
        "quantize.ema_count": torch.ones(emb.shape[0]),
        "quantize.ema_sum": emb.clone(),
        "quantize.initialised": torch.tensor(True),
    }
    load_into(model, state, str(path))
    tok.save(out, model, tok.TokenizerConfig(arch="conv", conv=cfg))
    return model.eval()
