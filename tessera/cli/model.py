"""tessera train / generate / ask / caption: the autoregressive model."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from tessera.cli.common import Device, Dtype, Fresh, Guidance, Overrides, Seed, console, device, preset
from tessera.errors import InputError

MAX_IMAGES = 4096  # one command's images (-n)


def train(
    tokenizer: Annotated[Path, typer.Option(help="The visual tokenizer checkpoint the model draws with.")],
    data: Annotated[
        str, typer.Option(help="shapes | shapes-classes | a folder of class sub-folders | a captions .jsonl")
    ] = "shapes",
    preset_name: Annotated[
        str,
        typer.Option(
            "--preset", help="smoke | quick | full | gpu | gpt-b | conditions | video | think (tessera/configs/model/)"
        ),
    ] = "quick",
    config: Annotated[Path | None, typer.Option(help="A YAML config file instead of the preset.")] = None,
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint/, samples/, metrics.jsonl.")] = Path("runs/t2i"),
    fresh: Fresh = False,
    overrides: Overrides = None,
    seed: Seed = 0,
) -> None:
    """Train the autoregressive model (text- or class-to-image); resumes from the run's checkpoint unless --fresh.

    Runs on many processes under torchrun (gloo on CPU, nccl on GPU)."""
    from tessera.config import load
    from tessera.engine.loop import finish
    from tessera.train.trainer import TrainConfig, Trainer

    options = {"tokenizer": str(tokenizer), "data.source": data, "seed": seed}
    cfg = load(TrainConfig(), config or preset("model", preset_name), options, overrides)
    trainer = finish(Trainer(cfg, out, fresh=fresh))
    if trainer.processes.main:
        rows = trainer.engine.log.read()
        loss = rows[-1]["loss"] if rows else float("nan")
        console.print(f"step {trainer.step}: loss {loss:.3f}; checkpoint in {out}/checkpoint")
        if trainer.skipped:
            console.print(f"skipped {len(trainer.skipped)} unreadable examples (e.g. {next(iter(trainer.skipped))})")


def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw, e.g. 'a red circle left of a blue star'.")],
    ckpt: Annotated[Path, typer.Option(help="A model checkpoint folder (runs/<name>/checkpoint).")],
    n: Annotated[int, typer.Option("-n", "--n", min=1, max=MAX_IMAGES, help="How many images.")] = 8,
    out: Annotated[Path, typer.Option(help="The grid PNG; single images go to a folder of the same name.")] = Path(
        "samples.png"
    ),
    cfg_scale: Guidance = None,
    temperature: Annotated[float | None, typer.Option(min=0.0, help="Sampling temperature (> 0).")] = None,
    top_k: Annotated[int | None, typer.Option(min=0, help="Keep the k most likely codes (0: all).")] = None,
    top_p: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Nucleus mass (1: all).")] = None,
    order: Annotated[str | None, typer.Option(help="raster | random | spanning-tree (default: as trained).")] = None,
    introspect: Annotated[
        bool,
        typer.Option(
            help="Draw, judge your own image in words, draw again if it fails (a model from `tessera unified`); "
            "the grid's top row is the first image, the bottom row the final one."
        ),
    ] = False,
    condition: Annotated[
        str | None,
        typer.Option(
            help="segmentation:PATH or edges:PATH: draw the prompt on this map's layout (a model trained on seg2i "
            "or edge2i; the map as `tessera world render` draws it)."
        ),
    ] = None,
    image_scale: Annotated[
        float | None, typer.Option(min=0.0, help="Guidance of the --condition apart from the text's --cfg.")
    ] = None,
    think: Annotated[
        bool,
        typer.Option(
            help="Think while drawing: a thought before each band, a critique after it, a band scored low drawn "
            "again; writes chain.jsonl and a picture of each chain with its thoughts."
        ),
    ] = False,
    bands: Annotated[
        int | None, typer.Option(min=1, max=8, help="Bands for --think, equal heights (default: as trained).")
    ] = None,
    video: Annotated[
        bool,
        typer.Option(
            help="Draw clips, e.g. 'a red circle moving right' (a model trained on t2v): each clip as a GIF and "
            "its frames, the grid one row of frames per clip."
        ),
    ] = False,
    device_name: Device = "auto",
    dtype: Dtype = "float32",
    seed: Seed = 0,
) -> None:
    """Draw images for a prompt (after a segmentation or edge map with --condition), or clips with --video; writes
    the grid and each image or clip."""
    from tessera.generate.images import image_batches, write_images
    from tessera.generate.introspect import introspect as draw_chains
    from tessera.generate.introspect import write_chains
    from tessera.generate.thinking import think_and_draw
    from tessera.generate.thinking_eval import write_thinking
    from tessera.generate.video import write_videos
    from tessera.model.bundle import load as load_bundle
    from tessera.sequence.bands import Bands
    from tessera.sequence.tasks import Task
    from tessera.understand.answer import read_picture

    if out.suffix.lower() != ".png":
        raise InputError(f"--out {out} must be a .png file")
    if sum((introspect, condition is not None, video, think)) > 1:
        raise InputError("--introspect, --condition, --think and --video do not go together")
    bundle = load_bundle(ckpt, device(device_name), dtype)
    changes = {"cfg_scale": cfg_scale, "temperature": temperature, "top_k": top_k, "top_p": top_p,
               "image_scale": image_scale}  # fmt: skip
    sampling = dataclasses.replace(bundle.cfg.sampling, **{k: v for k, v in changes.items() if v is not None})
    pictures = None
    if condition is not None:
        kind, _, path = condition.partition(":")
        tasks = {"segmentation": Task.SEG2I, "edges": Task.EDGE2I}
        if kind not in tasks or not path:
            raise InputError(f"--condition is segmentation:PATH or edges:PATH, got {condition!r}")
        bundle.check_task(tasks[kind])
        pictures = read_picture(bundle, Path(path)).repeat(n, axis=0)
    if introspect:
        bundle.check_task(Task.INTROSPECT)
        chain = draw_chains(bundle, [prompt] * n, sampling, seed=seed)
        singles = write_chains(chain, out)
        for i, verdict in enumerate(chain.verdicts):
            console.print(f"{i:4d}  {verdict}" + ("  -> drawn again" if chain.redraw[i] else ""))
        console.print(f"{n} chains: grid {out} (top: first images, bottom: final), chains in {singles}/chain.jsonl")
        return
    if think:
        schedule = Bands.equal(bundle.cfg.grid[0], bands or bundle.cfg.bands)
        chain = think_and_draw(bundle, [prompt] * n, schedule, sampling, seed=seed)
        folder = write_thinking(chain, out, schedule)
        redrawn = sum(map(sum, chain.redrawn))
        console.print(f"{n} chains: grid {out} (top: bands as first drawn, bottom: final), {redrawn} bands drawn "
                      f"again; pictures and chain.jsonl in {folder}/")  # fmt: skip
        return
    batches = image_batches(
        bundle, [prompt] * n, sampling, order=order, seed=seed, progress=n >= 64, conditions=pictures, video=video
    )
    if video:
        folder = write_videos((clips for clips, _ in batches), out)
        console.print(f"{n} clips: grid {out} (a row of frames each), GIFs and frames in {folder}/")
        return
    singles = write_images((images for images, _ in batches), out)
    console.print(f"{n} images: grid {out}, single images in {singles}/")


def ask(
    image: Annotated[Path, typer.Argument(help="An image file (fitted to the model's canvas).")],
    question: Annotated[
        str, typer.Argument(help="A question in the world's words, e.g. 'how many red circles are there?'.")
    ],
    ckpt: Annotated[Path, typer.Option(help="A model trained with the qa or judge task.")],
    device_name: Device = "auto",
) -> None:
    """Answer a question about an image ('does this image show <prompt> ?' asks for a verdict and its reason)."""
    from tessera.model.bundle import load as load_bundle
    from tessera.sequence.tasks import Task
    from tessera.understand.answer import ask as ask_model
    from tessera.understand.answer import read_picture

    bundle = load_bundle(ckpt, device(device_name))
    bundle.check_task(Task.JUDGE if question.startswith("does this image show") else Task.QA)
    console.print(ask_model(bundle, read_picture(bundle, image), [question])[0])


def caption(
    image: Annotated[Path, typer.Argument(help="An image file (fitted to the model's canvas).")],
    ckpt: Annotated[Path, typer.Option(help="A model trained with the caption task.")],
    device_name: Device = "auto",
) -> None:
    """Describe an image in the world's words."""
    from tessera.model.bundle import load as load_bundle
    from tessera.sequence.tasks import Task
    from tessera.understand.answer import ask as ask_model
    from tessera.understand.answer import read_picture
    from tessera.world.language import CAPTION_QUESTION

    bundle = load_bundle(ckpt, device(device_name))
    bundle.check_task(Task.CAPTION)
    console.print(ask_model(bundle, read_picture(bundle, image), [CAPTION_QUESTION])[0])


def _box(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise InputError(f"a box is x0,y0,x1,y1 in pixels, got {text!r}")
    x0, y0, x1, y1 = (int(p) for p in parts)
    return x0, y0, x1, y1


def edit(
    image: Annotated[Path, typer.Argument(help="The image to edit (a PNG at the model's canvas).")],
    prompt: Annotated[
        str,
        typer.Argument(
            help="With a mask or box: the whole scene after the edit, e.g. 'a red circle'. Without: an edit "
            "instruction, e.g. 'make the red circle blue' (a model trained on instruct)."
        ),
    ],
    ckpt: Annotated[Path, typer.Option(help="A model checkpoint folder (best: trained with order=spanning-tree).")],
    keep: Annotated[Path | None, typer.Option(help="A mask PNG: white pixels are kept, the rest redrawn.")] = None,
    keep_box: Annotated[str | None, typer.Option(help="Keep this box x0,y0,x1,y1 and redraw the rest.")] = None,
    erase_box: Annotated[str | None, typer.Option(help="Redraw this box x0,y0,x1,y1 and keep the rest.")] = None,
    out: Annotated[Path, typer.Option(help="Folder: sheet.png (original | kept | edits) and edit-<i>.png.")] = Path(
        "edits"
    ),
    n: Annotated[int, typer.Option("-n", "--n", min=1, max=64, help="How many edits.")] = 4,
    method: Annotated[
        str,
        typer.Option(
            help="root: the kept region as the tree's root | reject: draw trees until it is a prefix | raster: "
            "the kept tokens, then the rest row by row (a raster-trained model's order)."
        ),
    ] = "root",
    device_name: Device = "auto",
    seed: Seed = 0,
) -> None:
    """Redraw part of an image for a prompt, keeping the rest token for token (inpaint, outpaint, erase); or, with
    no mask or box, follow an edit instruction (recolour, move, add or remove an object)."""
    from tessera.generate.edit import box_mask, kept_view
    from tessera.generate.edit import edit as edit_image
    from tessera.model.bundle import load as load_bundle
    from tessera.pictures import grid, load_image, save_png

    masks = sum(x is not None for x in (keep, keep_box, erase_box))
    if masks > 1:
        raise InputError("give at most one of --keep MASK.png, --keep-box or --erase-box")
    bundle = load_bundle(ckpt, device(device_name))
    if masks == 0:
        _follow_instruction(bundle, image, prompt, out, n, seed)
        return
    picture, canvas = load_image(image), bundle.cfg.canvas
    if keep is not None:
        mask = load_image(keep).mean(axis=-1) >= 128
    else:
        mask = box_mask(_box(keep_box or erase_box), canvas, inside=keep_box is not None)
    result = edit_image(bundle, picture, mask, prompt, n, method=method, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    sheet = grid([picture, kept_view(picture, result.keep), *result.images], cols=n + 2)
    save_png(sheet, out / "sheet.png", scale=2)
    for i, im in enumerate(result.images):
        save_png(im, out / f"edit-{i}.png")
    draws = f"; trees drawn per order: {result.draws}" if method == "reject" else ""
    console.print(
        f"kept {int(result.keep.sum())} of {result.keep.numel()} tokens; {n} edits in {out}/ (sheet.png){draws}"
    )


def _follow_instruction(bundle, image: Path, instruction: str, out: Path, n: int, seed: int) -> None:
    """`tessera edit IMAGE "make the red circle blue"`: n images drawn after the source image and the instruction."""
    from tessera.generate.images import draw_images
    from tessera.pictures import grid, save_png
    from tessera.sequence.tasks import Task
    from tessera.understand.answer import read_picture

    bundle.check_task(Task.INSTRUCT)
    picture = read_picture(bundle, image)
    images, _ = draw_images(
        bundle, [instruction] * n, seed=seed, conditions=picture.repeat(n, axis=0), instructions=True
    )
    out.mkdir(parents=True, exist_ok=True)
    save_png(grid([picture[0], *images], cols=n + 1), out / "sheet.png", scale=2)
    for i, im in enumerate(images):
        save_png(im, out / f"edit-{i}.png")
    console.print(f"{n} edits for {instruction!r} in {out}/ (sheet.png: the source, then the edits)")


def predict(
    clip: Annotated[Path, typer.Argument(help="A clip: a GIF or video file, or a folder of frame images.")],
    ckpt: Annotated[Path, typer.Option(help="A model checkpoint trained on predict (the conditions preset).")],
    frames: Annotated[int, typer.Option(min=1, max=64, help="How many frames to draw after the clip.")] = 3,
    out: Annotated[Path, typer.Option(help="The clip and its continuation as a GIF; frames go to a folder.")] = Path(
        "prediction.gif"
    ),
    device_name: Device = "auto",
    seed: Seed = 0,
) -> None:
    """Continue a clip: draw its next frames one at a time, each after the model's number of earlier frames."""
    import numpy as np

    from tessera.data.folders import read_clip
    from tessera.generate.images import draw_images
    from tessera.model.bundle import load as load_bundle
    from tessera.pictures import regular_file, save_gif, save_png
    from tessera.sequence.tasks import Task

    if out.suffix.lower() != ".gif":
        raise InputError(f"--out {out} must be a .gif file")
    bundle = load_bundle(ckpt, device(device_name))
    bundle.check_task(Task.PREDICT)
    k = bundle.cfg.context_frames
    try:
        given = list(read_clip(clip if clip.is_dir() else regular_file(clip), bundle.cfg.canvas))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read clip {clip}: {type(e).__name__}") from e
    if len(given) < k:
        raise InputError(f"{clip} has {len(given)} frames; this model draws each frame after {k}")
    drawn = list(given)
    for i in range(frames):
        images, _ = draw_images(bundle, [""], seed=seed + i, conditions=np.stack(drawn[-k:])[None])
        drawn.append(images[0])
    save_gif(np.stack(drawn), out)
    folder = out.with_suffix("")
    for i, frame in enumerate(drawn):
        save_png(frame, folder / f"{i:04d}.png")
    console.print(f"{frames} frames after the clip's {len(given)}: {out}, every frame in {folder}/")


checkpoints = typer.Typer(help="Model checkpoints from elsewhere.", no_args_is_help=True)


@checkpoints.command("import-llamagen")
def import_llamagen(
    gpt: Annotated[Path, typer.Argument(help="A LlamaGen class-to-image GPT checkpoint (c2i_B_256.pt, ...).")],
    vq: Annotated[Path, typer.Argument(help="Its VQ checkpoint (vq_ds16_c2i.pt).")],
    out: Annotated[Path, typer.Argument(help="The model checkpoint folder to write.")],
    image_size: Annotated[int, typer.Option(min=8, help="The images it draws (256 or 384 for the releases).")] = 256,
    classes: Annotated[
        Path | None, typer.Option(help="Class names, one per line, in class order (default: the class numbers).")
    ] = None,
    heads: Annotated[int | None, typer.Option(min=1, help="Attention heads (default: width / 64).")] = None,
) -> None:
    """Convert a LlamaGen GPT and its VQ into a tessera checkpoint with the same logits; prompts are class names
    or numbers (`tessera generate 207 --ckpt OUT`)."""
    from tessera.model.llamagen import import_gpt

    bundle = import_gpt(gpt, vq, out, image_size, classes, heads)
    m = bundle.model.cfg
    console.print(
        f"imported a {m.n_layer}-layer, {m.dim}-wide GPT ({bundle.model.num_params() / 1e6:.1f}M parameters), "
        f"{bundle.cfg.n_text} classes, {bundle.cfg.n_image} codes on a {bundle.cfg.grid[0]}x{bundle.cfg.grid[1]} "
        f"grid, into {out}"
    )
