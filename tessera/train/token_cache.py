"""The token cache: every example's text ids and image codes, extracted once and kept on disk (as LlamaGen
pre-extracts codes), keyed by the data config, the seed, the visual tokenizer's weights and the code that makes the
examples (a change to the world's texts makes the cache again)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from safetensors.torch import load_file, save_file

from tessera.config import to_dict
from tessera.data.examples import WORLD_SOURCES, Chain, DataConfig, examples
from tessera.engine import checkpoint
from tessera.engine.checkpoint import write_atomically
from tessera.errors import CheckpointError, ConfigError, InputError
from tessera.pictures import to_tensor
from tessera.sequence.tasks import CONDITIONED, Task
from tessera.text.tokenizers import BPETokenizer, ClassTokenizer, TextTokenizer, WorldTokenizer, from_dict
from tessera.world.scene import VIDEO_FRAMES

console = Console(stderr=True)


@dataclass
class Examples:
    texts: list[list[int]]  # text-tokenizer ids: the prompt (t2i) or the question (understanding)
    codes: torch.Tensor  # (N, h, w) image codes
    text_tokenizer: TextTokenizer
    skipped: dict[str, str]
    tasks: list[str] = field(default_factory=list)  # per example; empty: all t2i
    answers: list[list[int]] = field(default_factory=list)  # per example (empty for t2i)
    conditions: torch.Tensor | None = None  # (N, K, h, w) codes of each example's visual conditions (zeros: none)
    clips: torch.Tensor | None = None  # (N, t, h, w) codes of each text-to-video example's clip (zeros: none)
    drafts: torch.Tensor | None = None  # (N, h, w) codes of each thinking example's draft image (zeros: none)
    chains: list[dict | None] = field(default_factory=list)  # thinking: {"thoughts", "critiques": ids, "draft"}


def _stacked(picture: np.ndarray | None, like: np.ndarray, k: int) -> np.ndarray:
    """An example's condition pictures as (k, H, W, 3): one picture, a stack of frames, or none (zeros)."""
    if picture is None:
        return np.zeros((k, *like.shape), dtype=like.dtype)
    frames = picture if picture.ndim == 4 else picture[None]
    return np.concatenate([frames, np.zeros((k - len(frames), *like.shape), dtype=like.dtype)])


def _chain_ids(chain: Chain, text_tok: TextTokenizer) -> dict:
    """A thinking chain with its texts as text-tokenizer ids."""
    return {"thoughts": [text_tok.encode(t) for t in chain.thoughts],
            "critiques": [text_tok.encode(c) for c in chain.critiques], "draft": chain.draft}  # fmt: skip


def _text_tokenizer(cfg: DataConfig, texts: list[str]):
    if cfg.source == "shapes":
        return WorldTokenizer()
    if cfg.source == "shapes-classes" or Path(cfg.source).is_dir():
        return ClassTokenizer(sorted(set(texts)))
    return BPETokenizer.train(texts, cfg.bpe_vocab)


DRAWN_BY = ("config.yaml", "model.safetensors", "tokenizer/config.yaml", "tokenizer/model.safetensors")


def _drafter_files(cfg: DataConfig) -> list[Path]:
    """The files the drawings of `data.drafts_from` depend on (CheckpointError when it is not a model checkpoint)."""
    folder = checkpoint.resolve(cfg.drafts_from)
    files = [folder / name for name in DRAWN_BY]
    missing = next((name for name, f in zip(DRAWN_BY, files, strict=True) if not f.is_file()), None)
    if missing:
        raise CheckpointError(f"data.drafts_from: {folder} is not a model checkpoint (no {missing})")
    return files


def _drafter(cfg: DataConfig, device: torch.device):
    """The model of `data.drafts_from`, on the tokenizer's device (CheckpointError names a wrong one)."""
    from tessera.model.bundle import load  # the data needs a model only here

    bundle = load(cfg.drafts_from, device)
    if bundle.cfg.canvas != cfg.canvas:
        raise ConfigError(f"data.drafts_from draws {bundle.cfg.canvas}-pixel images; the data's canvas is {cfg.canvas}")
    return bundle


def _cache_key(cfg: DataConfig, tokenizer_dir: Path, seed: int) -> str:
    h = hashlib.sha256(json.dumps({**to_dict(cfg), "seed": seed}, sort_keys=True).encode())
    package = Path(__file__).parents[1]
    for path in sorted([*package.glob("world/*.py"), *package.glob("data/*.py")]):  # the code that makes examples
        h.update(path.read_bytes())
    h.update((tokenizer_dir / "model.safetensors").read_bytes())
    for path in _drafter_files(cfg) if cfg.drafts_from else []:  # the model drawing the thinking chains' drafts
        h.update(path.read_bytes())
    if cfg.source in WORLD_SOURCES or not Path(cfg.source).exists():
        return h.hexdigest()[:16]
    for p in sorted(Path(cfg.source).rglob("*")) if Path(cfg.source).is_dir() else [Path(cfg.source)]:
        st = p.stat() if p.exists() else p.lstat()  # a dangling link counts as itself
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _examples(tensors: dict[str, torch.Tensor], meta: dict, text_tok: TextTokenizer, skipped: dict) -> Examples:
    """The cache's tensors and texts as Examples (codes as long; a tensor no example needs is absent: None)."""
    codes = {name: tensors[name].long() if name in tensors else None for name in ("conditions", "clips", "drafts")}
    return Examples(meta["texts"], tensors["codes"].long(), text_tok, skipped, meta["tasks"], meta["answers"],
                    **codes, chains=meta.get("chains", []))  # fmt: skip


def _read(codes_path: Path, meta_path: Path) -> Examples:
    meta = json.loads(meta_path.read_text())
    tensors = load_file(str(codes_path))
    if len(meta["texts"]) != len(tensors["codes"]):
        raise ValueError("texts and codes differ in number")
    return _examples(tensors, meta, from_dict(meta["text"]), {})


@torch.no_grad()
def extract(cfg: DataConfig, tokenizer, tokenizer_dir: str | Path, seed: int = 0, progress: bool = True) -> Examples:
    """Texts and image codes of every example, from the cache when this data and tokenizer were seen before."""
    cfg.validate()
    tokenizer_dir = Path(tokenizer_dir)
    key = _cache_key(cfg, tokenizer_dir, seed)
    folder = Path(cfg.cache)
    codes_path, meta_path = folder / f"tokens-{key}.safetensors", folder / f"tokens-{key}.json"
    if codes_path.exists() and meta_path.exists():
        try:
            return _read(codes_path, meta_path)
        except Exception as e:  # a cache cut short or damaged: made again
            console.print(f"the token cache {codes_path.name} is unreadable ({type(e).__name__}); rebuilding it")
    skipped: dict[str, str] = {}
    grid_rows = tokenizer.grid((cfg.canvas, cfg.canvas))[0]
    device = next(tokenizer.parameters()).device
    own = None
    if cfg.drafts_from:
        from tessera.generate.images import own_drawings

        think = cfg.tasks[Task.THINK] / sum(cfg.tasks.values())
        n = max(1, math.ceil(cfg.examples * think * cfg.draft_share))
        own = own_drawings(_drafter(cfg, device), n, seed, progress)
    stream, total = examples(cfg, seed, skipped, grid_rows, own)
    items, codes, conditions, clips, drafts, batch = [], [], [], [], [], []  # items: (task, text, answer)
    most = cfg.context_frames if Task.PREDICT in cfg.tasks else 1  # visual conditions an example may have

    def flush():
        images = np.stack([item[3] for item in batch])
        codes.append(tokenizer.encode(to_tensor(images).to(device)).to(torch.int32).cpu())
        given = [item[4] if item[0] in CONDITIONED else None for item in batch]
        if any(g is not None for g in given):
            pictures = np.stack([_stacked(g, images[i], most) for i, g in enumerate(given)])  # (B, K, H, W, 3)
            coded = tokenizer.encode(to_tensor(pictures.reshape(-1, *images.shape[1:])).to(device))
            conditions.append(coded.reshape(len(batch), most, *coded.shape[1:]).to(torch.int32).cpu())
        else:
            conditions.append(torch.zeros(len(batch), most, *codes[-1].shape[1:], dtype=torch.int32))
        if Task.T2V in cfg.tasks:  # the clips of text-to-video examples; zeros for the others
            coded = torch.zeros(
                len(batch), *tokenizer.video_grid((VIDEO_FRAMES, *images.shape[1:3])), dtype=torch.int32
            )
            rows = [i for i, item in enumerate(batch) if item[0] == Task.T2V]
            if rows:
                videos = to_tensor(np.stack([batch[i][4] for i in rows])).to(device)  # (b, 3, T, H, W)
                coded[rows] = tokenizer.encode(videos).to(torch.int32).cpu()
            clips.append(coded)  # (B, t, h, w)
        if Task.THINK in cfg.tasks:  # the draft images of thinking examples; zeros for the others
            coded = torch.zeros_like(codes[-1])
            rows = [i for i, item in enumerate(batch) if item[0] == Task.THINK and item[4] is not None]
            if rows:
                coded[rows] = tokenizer.encode(to_tensor(np.stack([batch[i][4] for i in rows])).to(device)).int().cpu()
            drafts.append(coded)
        items.extend(item[:3] for item in batch)
        batch.clear()

    for item in track(stream, description="tokenizing examples", total=total, disable=not progress):
        batch.append(item)
        if len(batch) == 256:
            flush()
    if batch:
        flush()
    if not items:
        example = f" (e.g. {next(iter(skipped))})" if skipped else ""
        raise InputError(f"no readable examples in {cfg.source}{example}")
    text_tok = _text_tokenizer(cfg, [t for _, t, _ in items])
    tasks = [task for task, _, _ in items]
    ids = [text_tok.encode(t) if t else [] for _, t, _ in items]  # frame prediction has no text
    answers = [text_tok.encode(a) if isinstance(a, str) and a else [] for _, _, a in items]
    chains = [_chain_ids(a, text_tok) if isinstance(a, Chain) else None for _, _, a in items]
    drawn = [
        len(i) for i, task in zip(ids, tasks, strict=True) if task in (Task.T2I, Task.T2V, Task.THINK, *CONDITIONED)
    ]
    too_long = max(drawn, default=0)
    if too_long > cfg.text_len:
        raise ConfigError(f"a caption has {too_long} text tokens; raise data.text_len (now {cfg.text_len})")
    tensors = {"codes": torch.cat(codes)}
    if any(task in CONDITIONED for task in tasks):
        tensors["conditions"] = torch.cat(conditions)
    if clips:
        tensors["clips"] = torch.cat(clips)
    if drafts:
        tensors["drafts"] = torch.cat(drafts)
    folder.mkdir(parents=True, exist_ok=True)
    partial = codes_path.with_name(codes_path.name + ".tmp")
    save_file(tensors, str(partial))
    os.replace(partial, codes_path)  # the codes whole, then their texts: a cache is there only when both are
    meta = {"texts": ids, "tasks": tasks, "answers": answers, "text": text_tok.to_dict(), "source": cfg.source}
    if any(chains):
        meta["chains"] = chains
    write_atomically(meta_path, json.dumps(meta))
    return _examples(tensors, meta, text_tok, skipped)
