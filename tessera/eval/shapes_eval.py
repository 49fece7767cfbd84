"""ShapesEval: GenEval's prompts, folder layout and scoring rules, on the Shapes world with the judge as detector.

Beside GenEval's rule (the named objects are there), a strict rule that clutter cannot fool: the objects the judge
reads are exactly the prompt's scene, none missing and none extra, no mark that is not a clean shape, every object
read with confidence. Each image also reports how many objects it holds against how many the prompt asks for.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import track

from tessera.engine.checkpoint import write_atomically
from tessera.errors import InputError
from tessera.eval.judge import CLUTTER, Detection, Judge
from tessera.pictures import grid, rgb8, save_png
from tessera.world.constraints import RELATIONS, from_geneval, sample_scene_for, to_geneval
from tessera.world.grammar import parse_description
from tessera.world.language import CATEGORIES, distinct_prompts, noun_phrase
from tessera.world.render import render_image
from tessera.world.scene import COLOURS, SHAPES, relative_position

VERSION = "v1"
CATEGORY_SIZES = {
    "single_object": 80,
    "two_object": 99,
    "counting": 80,
    "colors": 94,
    "position": 100,
    "color_attr": 100,
}
# Where the world has more distinct prompts than GenEval's budget needs, ShapesEval uses only some of them, so
# later stages (RL) can train on the rest and test on a second unseen set: colors 24 of 40, position 48 of 80.
DISTINCT_USED = {"colors": 24, "position": 48}
IMAGES_PER_PROMPT = 4
METADATA_PATH = resources.files("tessera.eval") / "data" / f"shapes_eval_{VERSION}.jsonl"
# The compositional split: colour-shape pairs that no training scene or text ever holds (each colour once, every
# shape at least once). Its own prompts ask for them alone (colors) and beside a seen pair (color_attr).
UNSEEN_PAIRS = frozenset(
    {("star", "red"), ("square", "orange"), ("circle", "yellow"), ("diamond", "green"),
     ("triangle", "blue"), ("circle", "purple"), ("star", "white"), ("diamond", "black")}
)  # fmt: skip
COMPOSITIONAL_PATH = resources.files("tessera.eval") / "data" / f"compositional_{VERSION}.jsonl"


def make_metadata(seed: int = 0) -> list[dict]:
    """The benchmark's prompt lines: each category's distinct prompts in a seeded order, cycled to its size."""
    rng = np.random.default_rng(seed)
    lines = []
    for category, size in CATEGORY_SIZES.items():
        pool = distinct_prompts(category)
        pool = [pool[i] for i in rng.permutation(len(pool))][: DISTINCT_USED.get(category, len(pool))]
        for prompt in itertools.islice(itertools.cycle(pool), size):
            lines.append(to_geneval(parse_description(prompt), category, prompt))
    return lines


def make_compositional(seed: int = 0, per_pair: int = 4) -> list[dict]:
    """The compositional split's prompt lines: each unseen pair alone (colors), and beside `per_pair` seen pairs of
    other shapes and colours, in either order (color_attr)."""
    rng = np.random.default_rng(seed)
    texts = [(noun_phrase((shape, colour, None)), "colors") for shape, colour in sorted(UNSEEN_PAIRS)]
    for shape, colour in sorted(UNSEEN_PAIRS):
        seen = [(s, c) for s in SHAPES for c in COLOURS if s != shape and c != colour and (s, c) not in UNSEEN_PAIRS]
        for i in rng.permutation(len(seen))[:per_pair]:
            pair = [noun_phrase((shape, colour, None)), noun_phrase((*seen[i], None))]
            texts.append((" and ".join(pair[:: int(rng.choice([-1, 1]))]), "color_attr"))
    return [to_geneval(parse_description(text), tag, text) for text, tag in texts]


def load_metadata(path: str | Path | None = None) -> list[dict]:
    text = METADATA_PATH.read_text() if path is None else Path(path).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def first_prompts(n: int) -> list[dict]:
    """The first n ShapesEval prompts of each category, category by category (0: all 553, in file order)."""
    meta = load_metadata()
    return [m for c in CATEGORIES for m in [x for x in meta if x["tag"] == c][:n]] if n else meta


@dataclass
class ScoreConfig:
    """GenEval's detector options, by its names. The judge's confidence (shape x colour probability) is not
    Mask2Former's score, so the stricter counting threshold is set for it: 0.5 rather than GenEval's 0.9."""

    threshold: float = 0.3
    counting_threshold: float = 0.5
    max_objects: int = 16
    position_threshold: float = 0.1
    strict_threshold: float = 0.5  # strict: every object the judge reads must be at least this confident


def group_by_class(detections: Sequence[Detection], tag: str, cfg: ScoreConfig) -> dict[str, list[Detection]]:
    """Detections above the tag's confidence threshold, per shape class, most confident first."""
    cut = cfg.counting_threshold if tag == "counting" else cfg.threshold
    groups: dict[str, list[Detection]] = {}
    for d in sorted(detections, key=lambda d: -d.confidence):
        if d.confidence > cut and len(groups.get(d.shape, [])) < cfg.max_objects:
            groups.setdefault(d.shape, []).append(d)
    return groups


def check_clauses(
    detections: Sequence[Detection], meta: dict, cfg: ScoreConfig | None = None
) -> list[tuple[bool, str]]:
    """GenEval's rule clause by clause: (holds, why not) for each include clause, then each exclude clause."""
    cfg = cfg or ScoreConfig()
    objects = group_by_class(detections, meta["tag"], cfg)
    results, matched_groups = [], []
    for req in meta.get("include", []):
        cls, n = req["class"], req["count"]
        found = objects.get(cls, [])[:n]
        matched, reason = len(found) >= n, f"expected {cls}>={n}, found {len(found)}"
        if matched and "color" in req:
            colours = [d.colour for d in found]
            matched = colours.count(req["color"]) >= n
            reason = f"expected {req['color']} {cls}>={n}, found {', '.join(colours)}"
        if matched and "position" in req:
            rel, target = req["position"]
            group = matched_groups[target]
            matched, reason = group is not None, f"no target for {cls} to be {rel}"
            for a, b in itertools.product(found, group or []):
                seen = relative_position(a.box, b.box, cfg.position_threshold)
                if rel not in seen:
                    matched = False
                    reason = f"expected {cls} {rel} target, found {' and '.join(sorted(seen)) or 'none'}"
                    break
        results.append((matched, "" if matched else reason))
        matched_groups.append(found if matched else None)
    for req in meta.get("exclude", []):
        have = len(objects.get(req["class"], []))
        ok = have < req["count"]
        results.append((ok, "" if ok else f"expected {req['class']}<{req['count']}, found {have}"))
    return results


def strict(detections: Sequence[Detection], meta: dict, cfg: ScoreConfig | None = None) -> tuple[bool, str]:
    """The strict rule for one image: what the judge reads is exactly the prompt's scene (exact counts, the
    relations, nothing else), with no clutter and no object below the strict confidence; (holds, why not)."""
    cfg = cfg or ScoreConfig()
    clutter = sum(d.shape == CLUTTER for d in detections)
    if clutter:
        return False, f"{clutter} marks that are not objects"
    unclear = [d.shape for d in detections if d.confidence < cfg.strict_threshold]
    if unclear:
        return False, f"unclear {', '.join(unclear)}"
    if not from_geneval(meta).holds(detections, exact=True, margin=cfg.position_threshold):
        found = ", ".join(f"{d.colour} {d.shape}" for d in detections) or "nothing"
        return False, f"not exactly the scene: found {found}"
    return True, ""


OUTCOMES = ("exact", "extras", "colour or place", "shapes or count", "no clean shape")


def outcome(
    detections: Sequence[Detection], meta: dict, correct: bool, exact: bool, cfg: ScoreConfig | None = None
) -> str:
    """Where an image stands, the first that applies: exact (the strict rule holds); no clean shape (the judge
    reads only marks, or nothing); extras (GenEval's rule holds, beside marks, extra shapes or an unclear one);
    colour or place (the asked shapes in the asked numbers, but a colour or a relation wrong); shapes or count."""
    if exact:
        return "exact"
    if all(d.shape == CLUTTER for d in detections):
        return "no clean shape"
    if correct:
        return "extras"
    shapes_only = meta | {"include": [{"class": i["class"], "count": i["count"]} for i in meta["include"]]}
    return "colour or place" if all(ok for ok, _ in check_clauses(detections, shapes_only, cfg)) else "shapes or count"


def asked(meta: dict) -> int:
    """How many objects a prompt asks for."""
    return sum(item["count"] for item in meta["include"])


def score(detections: Sequence[Detection], meta: dict, cfg: ScoreConfig | None = None) -> tuple[bool, str]:
    """GenEval's rule for one image: every include clause holds (count, colour, position) and no exclude does."""
    results = check_clauses(detections, meta, cfg)
    return all(ok for ok, _ in results), "; ".join(reason for ok, reason in results if not ok)


def write_ground_truth(
    out: str | Path,
    metadata: list[dict],
    canvas: int = 64,
    seed: int = 0,
    per_prompt: int = IMAGES_PER_PROMPT,
    progress: bool = True,
) -> None:
    """Render `per_prompt` true scenes per prompt into GenEval's layout: out/<index>/{metadata.jsonl, samples/}."""
    rng = np.random.default_rng(seed)
    for index, meta in track(list(enumerate(metadata)), description="rendering ground truth", disable=not progress):
        folder = Path(out) / f"{index:05d}"
        (folder / "samples").mkdir(parents=True, exist_ok=True)
        (folder / "metadata.jsonl").write_text(json.dumps(meta) + "\n")
        constraints = from_geneval(meta)
        for k in range(per_prompt):
            Image.fromarray(render_image(sample_scene_for(constraints, rng, canvas))).save(
                folder / "samples" / f"{k:04d}.png"
            )


def metadata_problem(meta) -> str | None:
    """What is wrong with a GenEval metadata line, or None if it can be scored."""
    if not isinstance(meta, dict) or not isinstance(meta.get("tag"), str):
        return "metadata is not a mapping with a 'tag'"
    if meta["tag"] not in CATEGORIES:
        return f"unknown tag {meta['tag']!r}; ShapesEval's are {', '.join(CATEGORIES)}"
    include = meta.get("include")
    if not isinstance(include, list) or not include:
        return "metadata has no 'include' list"
    for i, item in enumerate(include):
        if not isinstance(item, dict) or not isinstance(item.get("class"), str):
            return f"include[{i}] has no 'class'"
        if item["class"] not in SHAPES:
            return f"include[{i}]: unknown class {item['class']!r}"
        if not isinstance(item.get("count"), int) or item["count"] < 1:
            return f"include[{i}] has no positive integer 'count'"
        if "color" in item and item["color"] not in COLOURS:
            return f"include[{i}]: unknown color {item['color']!r}"
        pos = item.get("position")
        if pos is not None and not (
            isinstance(pos, list)
            and len(pos) == 2
            and pos[0] in RELATIONS
            and isinstance(pos[1], int)
            and 0 <= pos[1] < i
        ):
            return f"include[{i}] 'position' must be [relation, index of an earlier include]"
    for i, item in enumerate(meta.get("exclude", [])):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("class"), str)
            or item.get("class") not in SHAPES
            or not isinstance(item.get("count"), int)
        ):
            return f"exclude[{i}] needs a known 'class' and an integer 'count'"
    return None


def read_folder(images: str | Path) -> tuple[list[tuple[dict, Path]], list[str]]:
    """(metadata, image path) for every sample in a GenEval-layout folder, and the problems found on the way."""
    root = Path(images)
    if not root.is_dir():
        raise InputError(f"no such folder: {root}")
    items, problems = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
        try:
            meta = json.loads((folder / "metadata.jsonl").read_text().splitlines()[0])
        except (OSError, IndexError, ValueError) as e:
            problems.append(f"{folder.name}: unreadable metadata ({e.__class__.__name__})")
            continue
        problem = metadata_problem(meta)
        if problem:
            problems.append(f"{folder.name}: {problem}")
            continue
        meta.setdefault("prompt", "")
        samples = folder / "samples"
        names = sorted(p for p in samples.iterdir() if re.fullmatch(r"\d+\.png", p.name)) if samples.is_dir() else []
        problems += [f"{p}: not a regular file" for p in names if not p.is_file()]
        names = [p for p in names if p.is_file()]
        if not names:
            problems.append(f"{folder.name}: no samples/<n>.png images")
        items += [(meta, p) for p in names]
    return items, problems


def score_images(
    images: np.ndarray, metadata: Sequence[dict], judge: Judge, cfg: ScoreConfig | None = None
) -> list[dict]:
    """Judge uint8 images (B, H, W, 3) against their metadata lines: one row per image."""
    rows = []
    for meta, dets in zip(metadata, judge.read(images), strict=True):
        ok, reason = score(dets, meta, cfg)
        exact, why = strict(dets, meta, cfg)
        rows.append(
            {
                "tag": meta["tag"],
                "prompt": meta["prompt"],
                "correct": ok,
                "reason": reason,
                "strict": exact,
                "strict_reason": why,
                "outcome": outcome(dets, meta, ok, exact, cfg),
                "asked": asked(meta),
                "objects": [d.to_dict() for d in dets],
            }
        )
    return rows


def evaluate_folder(
    images: str | Path, judge: Judge, cfg: ScoreConfig | None = None, progress: bool = True
) -> tuple[dict, list[dict]]:
    """Score every image in a GenEval-layout folder. Returns (summary, one row per image)."""
    items, problems = read_folder(images)
    if not items:
        raise InputError(f"no <index>/samples/<n>.png images with metadata under {images}")
    rows = []
    batch: list[tuple[dict, Path, np.ndarray]] = []

    def flush():
        by_size: dict[tuple, list] = {}
        for item in batch:
            by_size.setdefault(item[2].shape, []).append(item)
        for group in by_size.values():
            scored = score_images(np.stack([g[2] for g in group]), [g[0] for g in group], judge, cfg)
            rows.extend({"filename": str(g[1])} | row for g, row in zip(group, scored, strict=True))
        batch.clear()

    for meta, path in track(items, description="scoring images", disable=not progress):
        try:
            with Image.open(path) as im:
                picture = rgb8(im)
            if picture.shape[0] != picture.shape[1]:
                raise ValueError("not square")
            batch.append((meta, path, picture))
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            problems.append(f"{path}: unreadable image ({e.__class__.__name__})")
        if len(batch) == 256:
            flush()
    flush()
    if not rows:
        raise InputError(f"none of the {len(items)} images under {images} could be read (e.g. {problems[-1]})")
    return summarize(rows, problems), rows


def summarize(rows: list[dict], problems: Sequence[str] = ()) -> dict:
    """Per-category accuracy and overall = the mean of the category accuracies (GenEval's summary); the same for
    the strict rule (strict, strict/<category>); objects read and asked for per image."""
    tags = [tag for tag in CATEGORIES if any(r["tag"] == tag for r in rows)]

    def mean_of(key: str, tag: str) -> float:
        return float(np.mean([r[key] for r in rows if r["tag"] == tag]))

    summary = {"overall": float(np.mean([mean_of("correct", t) for t in tags])) if tags else 0.0}
    summary |= {tag: mean_of("correct", tag) for tag in tags}
    if rows and "strict" in rows[0]:
        summary["strict"] = float(np.mean([mean_of("strict", t) for t in tags]))
        summary |= {f"strict/{tag}": mean_of("strict", tag) for tag in tags}
        summary["objects_per_image"] = float(np.mean([len(r["objects"]) for r in rows]))
        summary["objects_asked_per_image"] = float(np.mean([r["asked"] for r in rows]))
    if rows and "outcome" in rows[0]:
        summary["outcomes"] = {
            tag: {o: float(np.mean([r["outcome"] == o for r in rows if r["tag"] == tag])) for o in OUTCOMES}
            for tag in tags
        }
    summary["images"] = len(rows)
    summary["skipped"] = list(problems)
    return summary


def write_results(folder: str | Path, summary: dict, rows: list[dict], version: str, title: str = "ShapesEval") -> None:
    """results.json (overall and one key per category), results.md headed `title (judge version)`, per-image
    results.jsonl and samples.png (the first images of each category, framed green when judged correct, red when
    wrong)."""
    folder = Path(folder)
    write_atomically(folder / "results.json", json.dumps(summary, indent=2) + "\n")
    write_atomically(folder / "results.md", f"{title} ({version})\n\n" + markdown_table(summary) + "\n")
    write_atomically(folder / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    save_png(sample_sheet(rows), folder / "samples.png", scale=2)


def score_folder(
    images: str | Path, judge: Judge, dest: str | Path | None = None, title: str = "ShapesEval"
) -> tuple[dict, list[dict]]:
    """Score a GenEval-layout folder and write the results (`write_results`) into dest (default: the folder)."""
    dest = Path(dest or images)
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--out {dest} is a file, not a folder")
    summary, rows = evaluate_folder(images, judge)
    dest.mkdir(parents=True, exist_ok=True)
    write_results(dest, summary, rows, judge.cfg.version, title)
    return summary, rows


def read_rows(folder: str | Path) -> list[dict]:
    """The per-image rows `write_results` left in a folder."""
    return [json.loads(line) for line in (Path(folder) / "results.jsonl").read_text().splitlines()]


def sample_sheet(rows: list[dict], per_category: int = 8) -> np.ndarray:
    """A picture for people: one row per category, its first images framed green (correct) or red (wrong)."""
    tiles = []
    for category in CATEGORIES:
        chosen = [r for r in rows if r["tag"] == category][:per_category]
        for r in chosen + [None] * (per_category - len(chosen)):
            tiles.append(framed(r))
    return grid(tiles, cols=per_category)


def framed(row: dict | None, size: int = 64, border: int = 2) -> np.ndarray:
    """A scored image from its file, framed green where GenEval's rule holds, red where not; white for None."""
    if row is None:
        return np.full((size + 2 * border, size + 2 * border, 3), 255, np.uint8)
    with Image.open(row["filename"]) as im:
        picture = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
    return frame(picture, row["correct"], border)


def frame(picture: np.ndarray, correct: bool, border: int = 2) -> np.ndarray:
    """(H, W, 3) uint8 -> (H + 2b, W + 2b, 3): green around it where correct, red where not."""
    tile = np.empty((picture.shape[0] + 2 * border, picture.shape[1] + 2 * border, 3), np.uint8)
    tile[:] = (40, 170, 60) if correct else (220, 40, 40)
    tile[border:-border, border:-border] = picture
    return tile


def markdown_table(summary: dict) -> str:
    """GenEval's rule and the strict one by category, and objects per image against those asked for."""
    cats = [c for c in CATEGORIES if c in summary]
    lines = ["| rule | overall | " + " | ".join(cats) + " |", "|---" * (len(cats) + 2) + "|"]
    lines.append(f"| GenEval | {summary['overall']:.3f} | " + " | ".join(f"{summary[c]:.3f}" for c in cats) + " |")
    if "strict" in summary:
        strict_cells = " | ".join(f"{summary[f'strict/{c}']:.3f}" for c in cats)
        lines.append(f"| strict | {summary['strict']:.3f} | {strict_cells} |")
        read, wanted = summary["objects_per_image"], summary["objects_asked_per_image"]
        lines += ["", f"objects per image: {read:.2f} read, {wanted:.2f} asked for"]
    if "outcomes" in summary:
        outcomes = summary["outcomes"]
        lines += ["", "| images that are | " + " | ".join(cats) + " |", "|---" * (len(cats) + 1) + "|"]
        lines += [f"| {o} | " + " | ".join(f"{outcomes[c][o]:.3f}" for c in cats) + " |" for o in OUTCOMES]
    return "\n".join(lines)
