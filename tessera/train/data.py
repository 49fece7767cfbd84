"""Training examples as (text, image codes), tokenized once and cached on disk (as LlamaGen pre-extracts codes).

Sources: `shapes` (the world's prompts and captions, text-to-image), `shapes-classes` (one coloured shape,
class-to-image), a folder of class sub-folders (class-to-image), or a JSONL of {"image", "caption"} lines
(text-to-image, BPE text tokenizer). Unreadable files are skipped and counted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import track
from safetensors.torch import load_file, save_file

from tessera.config import to_dict
from tessera.data.folders import IMAGE_EXTS, fit
from tessera.data.shapes import to_tensor
from tessera.errors import UserError
from tessera.pictures import load_image
from tessera.text.tokenizers import BPETokenizer, ClassTokenizer, WorldTokenizer, class_name, from_dict
from tessera.world.grammar import parse_description
from tessera.world.render import render_image
from tessera.world.scene import COLOURS, SHAPES, check_canvas, sample_scene


@dataclass
class DataConfig:
    source: str = "shapes"  # shapes | shapes-classes | a folder of class sub-folders | a captions .jsonl
    examples: int = 20000  # how many world examples to draw (user data: every readable file)
    canvas: int = 64
    text_len: int = 24  # text tokens per example, left-padded; longer texts are an error (world: redrawn)
    prompt_share: float = 0.8  # world: share of ShapesEval-style prompts (the rest: captions of random scenes)
    bpe_vocab: int = 4096
    cache: str = "runs/cache"


@dataclass
class Examples:
    texts: list[list[int]]  # text-tokenizer ids
    codes: torch.Tensor  # (N, h, w) image codes
    text_tokenizer: WorldTokenizer | ClassTokenizer | BPETokenizer
    skipped: dict[str, str]


def world_text(rng: np.random.Generator, canvas: int, prompt_share: float):
    """One (text, scene) pair: a ShapesEval-style prompt with a scene holding just what it names, or a random
    scene with its full caption."""
    from tessera.eval.shapes_eval import distinct_prompts
    from tessera.world import language as lang
    from tessera.world.constraints import sample_scene_for

    if rng.random() < prompt_share:
        pool = distinct_prompts(lang.CATEGORIES[rng.integers(len(lang.CATEGORIES))])
        text = pool[rng.integers(len(pool))]
        return text, sample_scene_for(parse_description(text), rng, canvas)
    scene = sample_scene(rng, canvas)
    return lang.caption(scene, rng), scene  # a whole description: partial ones would teach drawing unasked objects


def _world(cfg: DataConfig, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    tokenizer = WorldTokenizer()
    made = 0
    while made < cfg.examples:
        if cfg.source == "shapes-classes":
            text = f"{COLOURS[rng.integers(len(COLOURS))]} {SHAPES[rng.integers(len(SHAPES))]}"
            from tessera.world.constraints import sample_scene_for

            scene = sample_scene_for(parse_description(f"a {text}"), rng, cfg.canvas)
        else:
            text, scene = world_text(rng, cfg.canvas, cfg.prompt_share)
            if len(tokenizer.encode(text)) > cfg.text_len:
                continue
        made += 1
        yield text, render_image(scene)


def _folder(cfg: DataConfig, skipped: dict) -> Iterator[tuple[str, np.ndarray]]:
    root = Path(cfg.source)
    classes = sorted(d for d in root.iterdir() if d.is_dir())
    for d in classes:
        for path in sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTS):
            try:
                yield class_name(d.name), fit(load_image(path), cfg.canvas)
            except (OSError, ValueError) as e:
                skipped[str(path)] = e.__class__.__name__


def _jsonl(cfg: DataConfig, skipped: dict) -> Iterator[tuple[str, np.ndarray]]:
    path = Path(cfg.source)
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            image, caption = path.parent / item["image"], str(item["caption"])
            if not caption.strip():
                raise ValueError("empty caption")
            yield caption, fit(load_image(image), cfg.canvas)
        except (OSError, ValueError, KeyError, TypeError) as e:
            skipped[f"{path}:{n}"] = f"{e.__class__.__name__}: {str(e)[:80]}"


def _pairs(cfg: DataConfig, seed: int, skipped: dict) -> tuple[Iterator[tuple[str, np.ndarray]], int | None]:
    """The examples' (text, uint8 image) stream and its length if known."""
    if cfg.source in ("shapes", "shapes-classes"):
        check_canvas(cfg.canvas)
        return _world(cfg, seed), cfg.examples
    path = Path(cfg.source)
    if path.is_dir():
        return _folder(cfg, skipped), None
    if path.is_file() and path.suffix == ".jsonl":
        return _jsonl(cfg, skipped), None
    raise UserError(f"data source {cfg.source!r}: expected shapes, shapes-classes, a folder or a .jsonl file")


def _text_tokenizer(cfg: DataConfig, texts: list[str]):
    if cfg.source == "shapes":
        return WorldTokenizer()
    if cfg.source == "shapes-classes" or Path(cfg.source).is_dir():
        return ClassTokenizer(sorted(set(texts)))
    return BPETokenizer.train(texts, cfg.bpe_vocab)


def _cache_key(cfg: DataConfig, tokenizer_dir: Path, seed: int) -> str:
    h = hashlib.sha256(json.dumps({**to_dict(cfg), "seed": seed}, sort_keys=True).encode())
    h.update((tokenizer_dir / "model.safetensors").read_bytes())
    if not Path(cfg.source).exists() or cfg.source in ("shapes", "shapes-classes"):
        return h.hexdigest()[:16]
    for p in sorted(Path(cfg.source).rglob("*")) if Path(cfg.source).is_dir() else [Path(cfg.source)]:
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def extract(cfg: DataConfig, tokenizer, tokenizer_dir: str | Path, seed: int = 0, progress: bool = True) -> Examples:
    """Texts and image codes of every example, from the cache when this data and tokenizer were seen before."""
    tokenizer_dir = Path(tokenizer_dir)
    key = _cache_key(cfg, tokenizer_dir, seed)
    folder = Path(cfg.cache)
    codes_path, meta_path = folder / f"tokens-{key}.safetensors", folder / f"tokens-{key}.json"
    if codes_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return Examples(meta["texts"], load_file(str(codes_path))["codes"].long(), from_dict(meta["text"]), {})
    skipped: dict[str, str] = {}
    stream, total = _pairs(cfg, seed, skipped)
    texts, codes, batch = [], [], []

    def flush():
        pixels = to_tensor(np.stack([im for _, im in batch])).to(next(tokenizer.parameters()).device)
        codes.append(tokenizer.encode(pixels).to(torch.int32).cpu())
        texts.extend(t for t, _ in batch)
        batch.clear()

    for pair in track(stream, description="tokenizing examples", total=total, disable=not progress):
        batch.append(pair)
        if len(batch) == 256:
            flush()
    if batch:
        flush()
    if not texts:
        raise UserError(f"no readable examples in {cfg.source}" + (f" (e.g. {next(iter(skipped))})" if skipped else ""))
    text_tok = _text_tokenizer(cfg, texts)
    ids = [text_tok.encode(t) for t in texts]
    too_long = max(len(i) for i in ids)
    if too_long > cfg.text_len:
        raise UserError(f"a caption has {too_long} text tokens; raise data.text_len (now {cfg.text_len})")
    all_codes = torch.cat(codes)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"codes": all_codes}, str(codes_path))
    meta_path.write_text(json.dumps({"texts": ids, "text": text_tok.to_dict(), "source": cfg.source}))
    return Examples(ids, all_codes.long(), text_tok, skipped)
