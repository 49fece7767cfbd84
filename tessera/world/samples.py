"""The world for people to look at: a folder of sampled scenes with every text form, and a picture of a prompt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.progress import track

from tessera.errors import InputError
from tessera.pictures import grid, save_gif, save_png
from tessera.world import language as lang
from tessera.world.constraints import sample_scene_for
from tessera.world.grammar import parse_description
from tessera.world.render import render_image, render_map, render_video
from tessera.world.scene import Scene, add_motion, check_canvas, sample_scene

KINDS = ("image", "segmentation", "edges", "video")


def record(scene: Scene, image_name: str, rng: np.random.Generator) -> dict:
    """Every text form of a scene: full caption, partial description, one prompt per GenEval category, a question
    with its answer, an edit instruction with the edited scene, and the scene graph."""
    question, answer = lang.question_answer(scene, rng)
    try:
        edit, edited = lang.edit_instruction(scene, rng)
    except ValueError:  # rare: no object can be named alone and the scene is full
        edit, edited = None, None
    return {
        "image": image_name,
        "caption": lang.caption(scene, rng),
        "partial": lang.partial_description(scene, rng),
        "prompts": {c: p for c in lang.CATEGORIES if (p := lang.prompt(scene, c, rng)) is not None},
        "question": question,
        "answer": answer,
        "edit": edit,
        "edited_scene": edited.to_dict() if edited else None,
        "scene": scene.to_dict(),
    }


def write_samples(out: str | Path, n: int, canvas: int = 64, video: bool = False, seed: int = 0) -> None:
    """n scenes into `out`: NNNNN.png (and .gif clips with `video`), grid.png and captions.jsonl (one `record` each)."""
    check_canvas(canvas)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, records = [], []
    for i in track(range(n), description="sampling scenes", disable=n < 200):
        scene = sample_scene(rng, canvas, video=video)
        image = render_image(scene)
        if len(images) < 64:
            images.append(image)  # for the grid
        save_png(image, out / f"{i:05d}.png")
        if video:
            save_gif(render_video(scene), out / f"{i:05d}.gif")
        records.append(record(scene, f"{i:05d}.png", rng))
    save_png(grid(images), out / "grid.png", scale=2)
    (out / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def render_prompt(prompt: str, kind: str = "image", canvas: int = 64, seed: int = 0) -> np.ndarray:
    """A scene that satisfies the prompt, rendered: an image, its segmentation or edge map (H, W, 3) uint8, or a
    moving clip (T, H, W, 3)."""
    if kind not in KINDS:
        raise InputError(f"unknown --kind {kind!r}; expected one of {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    scene = sample_scene_for(parse_description(prompt), rng, canvas)
    if kind == "video":
        return render_video(add_motion(scene, rng))
    if kind in ("segmentation", "edges"):
        return render_map(scene, kind)
    return render_image(scene)
