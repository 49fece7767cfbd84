"""Text-to-video with a model checkpoint: draw a clip per prompt, write GIFs and frames, and score the held-out
video prompts beside the tokenizer's ceiling."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tessera.data.prompts import video_prompts
from tessera.eval.conditions import EVAL_SEED
from tessera.eval.judge import Judge
from tessera.eval.video import score_videos
from tessera.generate.images import image_batches
from tessera.model.bundle import Bundle
from tessera.model.sampling import SamplingConfig
from tessera.pictures import grid, save_gif, save_png
from tessera.world.constraints import moving_scene_for
from tessera.world.grammar import parse_description
from tessera.world.render import render_video

SHEET_CLIPS = 4  # clips shown on the sheet, each as a row of drawn frames over a row of ceiling frames


def draw_videos(
    bundle: Bundle, prompts: list[str], sampling: SamplingConfig | None = None, seed: int = 0, batch_size: int = 16
) -> np.ndarray:
    """One clip per prompt: uint8 (N, T, H, W, 3)."""
    batches = image_batches(bundle, prompts, sampling, seed=seed, batch_size=batch_size, video=True)
    return np.concatenate([clips for clips, _ in batches])


def true_clips(prompts: list[str], canvas: int, seed: int) -> np.ndarray:
    """A clip of the world per prompt (its objects placed at random and moving as it says): (N, T, H, W, 3)."""
    rng = np.random.default_rng(seed)
    return np.stack([render_video(moving_scene_for(parse_description(p), rng, canvas)) for p in prompts])


def write_videos(batches: Iterable[np.ndarray], out: str | Path, shown: int = 8) -> Path:
    """Each clip as out/NNNN.gif and its frames out/NNNN/FF.png (out: `out` without its suffix) as its batch
    arrives, then at `out` a sheet of the first `shown`, one row of frames each; returns the folder."""
    out = Path(out)
    folder, first, n = out.with_suffix(""), [], 0
    for clips in batches:
        for clip in clips:
            save_gif(clip, folder / f"{n:04d}.gif")
            for t, frame in enumerate(clip):
                save_png(frame, folder / f"{n:04d}" / f"{t:02d}.png")
            n += 1
        first += list(clips[: shown - len(first)])
    save_png(grid([frame for clip in first for frame in clip], cols=len(first[0])), out, scale=2)
    return folder


@dataclass
class VideoResults:
    scores: dict[str, dict[str, float]]  # metric -> {"model", "ceiling", "copy"}
    prompts: list[str]
    drawn: np.ndarray  # (N, T, H, W, 3) uint8, one clip per prompt
    ceiling: np.ndarray  # (N, T, H, W, 3): a true clip per prompt through the tokenizer

    def sheet(self, clips: int = SHEET_CLIPS) -> np.ndarray:
        """The first clips' frames, a row drawn over a row of the ceiling each."""
        rows = [frame for i in range(min(clips, len(self.prompts))) for frame in (*self.drawn[i], *self.ceiling[i])]
        return grid(rows, cols=self.drawn.shape[1])


def video_scores(bundle: Bundle, judge: Judge, sampling: SamplingConfig | None = None, seed: int = 0) -> VideoResults:
    """On the held-out video prompts: per metric the model's score, the ceiling (the tokenizer's round trip of a
    true clip) and `copy` (that ceiling's first frame held: a clip that cannot move)."""
    prompts = [p for p in video_prompts() if bundle.fits(p)]
    drawn = draw_videos(bundle, prompts, sampling, seed)
    ceiling = bundle.round_trip(true_clips(prompts, bundle.cfg.canvas, EVAL_SEED + seed))
    still = np.repeat(ceiling[:, :1], ceiling.shape[1], axis=1)
    model, top, held = (score_videos(judge, prompts, clips) for clips in (drawn, ceiling, still))
    scores = {metric: {"model": model[metric], "ceiling": top[metric], "copy": held[metric]} for metric in model}
    return VideoResults(scores, prompts, drawn, ceiling)
