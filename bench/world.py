"""Throughput of the world and the judge on this machine; prints one JSON line.

python bench/world.py
"""

import json
import platform
import time

import numpy as np
import torch

from tessera.eval.judge import Judge
from tessera.world import language as lang
from tessera.world.render import render_image, render_video
from tessera.world.scene import sample_scene


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng) for _ in range(500)]
    videos = [sample_scene(rng, video=True) for _ in range(50)]
    it = iter(scenes * 4)
    images = np.stack([render_image(s) for s in scenes])
    judge = Judge.load()
    judge.read(images[:64])  # warm-up
    start = time.perf_counter()
    judge.read(images)
    judge_rate = len(images) / (time.perf_counter() - start)
    vit = iter(videos)
    result = {
        "bench": "world",
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        "scenes_per_s": round(rate(lambda: sample_scene(rng), 500), 1),
        "render_64px_images_per_s": round(rate(lambda: render_image(next(it)), 1000), 1),
        "render_9frame_videos_per_s": round(rate(lambda: render_video(next(vit)), 50), 1),
        "captions_per_s": round(rate(lambda: lang.caption(scenes[0], rng), 2000), 1),
        "judge_images_per_s": round(judge_rate, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
