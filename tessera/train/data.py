"""Training examples as (text, image codes), tokenized once and cached on disk (as LlamaGen pre-extracts codes).

Sources: `shapes` (the world's prompts and captions, text-to-image; with `tasks` also captioning, questions and
judging of the world's scenes), `shapes-classes` (one coloured shape, class-to-image), a folder of class
sub-folders (class-to-image), or a JSONL of {"image", "caption"} lines (text-to-image, BPE text tokenizer).
Unreadable files are skipped and counted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import track
from safetensors.torch import load_file, save_file

from tessera.config import to_dict
from tessera.data.folders import IMAGE_EXTS, fit
from tessera.data.shapes import to_tensor
from tessera.errors import ConfigError, InputError
from tessera.pictures import load_image
from tessera.text.tokenizers import BPETokenizer, ClassTokenizer, WorldTokenizer, class_name, from_dict
from tessera.understand.texts import TASKS
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
    tasks: dict[str, float] = field(default_factory=lambda: {"t2i": 1.0})  # world: task -> share of examples
    question_len: int = 24  # understanding tasks: question tokens (left-padded) and answer tokens
    answer_len: int = 24

    def validate(self) -> None:
        unknown = set(self.tasks) - set(TASKS)
        if unknown:
            raise ConfigError(f"unknown task {sorted(unknown)[0]!r}; expected some of {', '.join(TASKS)}")
        if set(self.tasks) != {"t2i"} and self.source != "shapes":
            raise ConfigError("understanding tasks need the world's scenes: data.source=shapes")
        if not self.tasks or min(self.tasks.values()) < 0 or sum(self.tasks.values()) <= 0:
            raise ConfigError("data.tasks needs positive shares")


@dataclass
class Examples:
    texts: list[list[int]]  # text-tokenizer ids: the prompt (t2i) or the question (understanding)
    codes: torch.Tensor  # (N, h, w) image codes
    text_tokenizer: WorldTokenizer | ClassTokenizer | BPETokenizer
    skipped: dict[str, str]
    tasks: list[str] = field(default_factory=list)  # per example; empty: all t2i
    answers: list[list[int]] = field(default_factory=list)  # per example (empty for t2i)


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


def understanding_example(task: str, rng: np.random.Generator, canvas: int):
    """(question, answer, scene) for caption | qa | judge. Judging pairs a ShapesEval-style prompt with a scene
    drawn for it or for another prompt of its category; the answer is the verdict on the true scene."""
    from tessera.eval.shapes_eval import distinct_prompts
    from tessera.understand import texts
    from tessera.world import language as lang
    from tessera.world.constraints import sample_scene_for, to_geneval

    if task == "judge":
        category = lang.CATEGORIES[rng.integers(len(lang.CATEGORIES))]
        pool = distinct_prompts(category)
        prompt, drawn = pool[rng.integers(len(pool))], pool[rng.integers(len(pool))]
        scene = sample_scene_for(parse_description(prompt if rng.random() < 0.5 else drawn), rng, canvas)
        meta = to_geneval(parse_description(prompt), category, prompt)
        return texts.judge_question(prompt), texts.verdict(texts.truth(scene), meta), scene
    scene = sample_scene(rng, canvas)
    if task == "caption":
        return texts.CAPTION_QUESTION, lang.caption(scene, rng), scene
    question, answer = lang.question_answer(scene, rng)
    return question, answer, scene


Example = tuple[str, str, str, np.ndarray]  # (task, text, answer, uint8 image); t2i examples have no answer


def _world(cfg: DataConfig, seed: int) -> Iterator[Example]:
    rng = np.random.default_rng(seed)
    tokenizer = WorldTokenizer()
    tasks, shares = list(cfg.tasks), np.array(list(cfg.tasks.values()), dtype=float)
    made = 0
    while made < cfg.examples:
        if cfg.source == "shapes-classes":
            text = f"{COLOURS[rng.integers(len(COLOURS))]} {SHAPES[rng.integers(len(SHAPES))]}"
            from tessera.world.constraints import sample_scene_for

            scene = sample_scene_for(parse_description(f"a {text}"), rng, cfg.canvas)
            made += 1
            yield "t2i", text, "", render_image(scene)
            continue
        task = tasks[0] if len(tasks) == 1 else tasks[rng.choice(len(tasks), p=shares / shares.sum())]
        if task == "t2i":
            (text, scene), answer = world_text(rng, cfg.canvas, cfg.prompt_share), ""
            if len(tokenizer.encode(text)) > cfg.text_len:
                continue
        else:
            text, answer, scene = understanding_example(task, rng, cfg.canvas)
            if len(tokenizer.encode(text)) > cfg.question_len or len(tokenizer.encode(answer)) > cfg.answer_len:
                continue
        made += 1
        yield task, text, answer, render_image(scene)


def _folder(cfg: DataConfig, skipped: dict) -> Iterator[Example]:
    root = Path(cfg.source)
    classes = sorted(d for d in root.iterdir() if d.is_dir())
    for d in classes:
        for path in sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTS):
            try:
                yield "t2i", class_name(d.name), "", fit(load_image(path), cfg.canvas)
            except (OSError, ValueError) as e:
                skipped[str(path)] = e.__class__.__name__


def _jsonl(cfg: DataConfig, skipped: dict) -> Iterator[Example]:
    path = Path(cfg.source)
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            image, caption = path.parent / item["image"], str(item["caption"])
            if not caption.strip():
                raise ValueError("empty caption")
            yield "t2i", caption, "", fit(load_image(image), cfg.canvas)
        except (OSError, ValueError, KeyError, TypeError) as e:
            skipped[f"{path}:{n}"] = f"{e.__class__.__name__}: {str(e)[:80]}"


def _examples(cfg: DataConfig, seed: int, skipped: dict) -> tuple[Iterator[Example], int | None]:
    """The examples' stream and its length if known."""
    if cfg.source in ("shapes", "shapes-classes"):
        check_canvas(cfg.canvas)
        return _world(cfg, seed), cfg.examples
    path = Path(cfg.source)
    if path.is_dir():
        return _folder(cfg, skipped), None
    if path.is_file() and path.suffix == ".jsonl":
        return _jsonl(cfg, skipped), None
    raise ConfigError(f"data source {cfg.source!r}: expected shapes, shapes-classes, a folder or a .jsonl file")


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
    cfg.validate()
    tokenizer_dir = Path(tokenizer_dir)
    key = _cache_key(cfg, tokenizer_dir, seed)
    folder = Path(cfg.cache)
    codes_path, meta_path = folder / f"tokens-{key}.safetensors", folder / f"tokens-{key}.json"
    if codes_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        codes = load_file(str(codes_path))["codes"].long()
        tasks, answers = meta.get("tasks", []), meta.get("answers", [])
        return Examples(meta["texts"], codes, from_dict(meta["text"]), {}, tasks, answers)
    skipped: dict[str, str] = {}
    stream, total = _examples(cfg, seed, skipped)
    items, codes, batch = [], [], []  # items: (task, text, answer)

    def flush():
        pixels = to_tensor(np.stack([item[-1] for item in batch])).to(next(tokenizer.parameters()).device)
        codes.append(tokenizer.encode(pixels).to(torch.int32).cpu())
        items.extend(item[:-1] for item in batch)
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
    ids = [text_tok.encode(t) for _, t, _ in items]
    answers = [text_tok.encode(a) if a else [] for _, _, a in items]
    too_long = max(len(i) for i, task in zip(ids, tasks, strict=True) if task == "t2i") if "t2i" in tasks else 0
    if too_long > cfg.text_len:
        raise ConfigError(f"a caption has {too_long} text tokens; raise data.text_len (now {cfg.text_len})")
    all_codes = torch.cat(codes)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"codes": all_codes}, str(codes_path))
    meta = {"texts": ids, "tasks": tasks, "answers": answers, "text": text_tok.to_dict(), "source": cfg.source}
    meta_path.write_text(json.dumps(meta))
    return Examples(ids, all_codes.long(), text_tok, skipped, tasks, answers)
