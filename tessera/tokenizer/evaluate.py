"""Tokenizer metrics: PSNR, SSIM, codebook usage and perplexity, the judge on reconstructions, video consistency."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from rich.progress import track

from tessera.data.shapes import ShapesSource
from tessera.engine.checkpoint import write_atomically
from tessera.eval.judge import Judge
from tessera.eval.metrics import object_counts, psnr, structural_similarity
from tessera.pictures import to_uint8


def _f1(counts) -> float:
    p, r = counts.precision, counts.recall
    return 2 * p * r / (p + r) if p + r else 0.0


@torch.no_grad()
def evaluate(
    model,
    source,
    n: int = 256,
    batch: int = 32,
    seed: int = 0,
    judge: Judge | None = None,
    progress: bool = True,
) -> dict:
    """Metrics over n held-out samples of `source` (images, or clips when source.video)."""
    model.eval()
    rng = np.random.default_rng(seed)
    video = getattr(source, "video", False)
    psnrs, ssims, codes = [], [], []
    frame_psnr, frame_ssim, flicker, motion = [], [], [], []
    found_orig, found_recon, truth = [], [], []
    for start in track(range(0, n, batch), description="evaluating tokenizer", disable=not progress):
        k = min(batch, n - start)
        if isinstance(source, ShapesSource):
            scenes = source.scenes(k, rng)
            x = source.render(scenes)
        else:
            scenes, x = None, source.sample(k, rng)
        recon, q = model(x)
        recon = recon.clamp(-1, 1)
        if q.codes is not None:
            codes.append(q.codes.flatten())
        if video:  # (B, 3, T, H, W): score every frame, and how motion is reproduced
            t = x.shape[2]
            flat_r, flat_x = (v.transpose(1, 2).flatten(0, 1) for v in (recon, x))
            frame_psnr.append(psnr(flat_r, flat_x).reshape(k, t))
            frame_ssim.append(structural_similarity(flat_r, flat_x).reshape(k, t))
            dr, dx = recon.diff(dim=2), x.diff(dim=2)
            flicker.append((dr - dx).abs().flatten(1).mean(1))
            motion.append(dx.abs().flatten(1).mean(1))
            first_x, first_r = x[:, :, 0], recon[:, :, 0]
        else:
            psnrs.append(psnr(recon, x))
            ssims.append(structural_similarity(recon, x))
            first_x, first_r = x, recon
        if judge is not None:
            found_orig += judge.read(to_uint8(first_x))
            found_recon += judge.read(to_uint8(first_r))
            if scenes is not None:
                truth += [s.objects for s in scenes]
    out: dict = {"samples": n, "video": video}
    if video:
        fp, fs = torch.cat(frame_psnr), torch.cat(frame_ssim)
        out |= {
            "psnr": float(fp.mean()),
            "ssim": float(fs.mean()),
            "psnr_per_frame": [round(float(v), 2) for v in fp.mean(0)],
            "ssim_per_frame": [round(float(v), 4) for v in fs.mean(0)],
            "flicker": float(torch.cat(flicker).mean()),
            "temporal_consistency": 1 - float(torch.cat(flicker).mean() / torch.cat(motion).mean().clamp_min(1e-8)),
        }
    else:
        out |= {"psnr": float(torch.cat(psnrs).mean()), "ssim": float(torch.cat(ssims).mean())}
    if codes:
        hist = torch.bincount(torch.cat(codes), minlength=model.codebook_size).float()
        p = hist / hist.sum()
        out |= {
            "codebook_size": model.codebook_size,
            "codebook_usage": float((hist > 0).float().mean()),
            "perplexity": math.exp(float(-(p * p.clamp_min(1e-12).log()).sum())),
        }
    if judge is not None:
        out["judge_agreement_f1"] = _f1(object_counts(found_recon, found_orig))
        if truth:
            acc_orig, acc_recon = _f1(object_counts(found_orig, truth)), _f1(object_counts(found_recon, truth))
            out |= {
                "judge_f1_originals": acc_orig,
                "judge_f1_reconstructions": acc_recon,
                "judge_relative": acc_recon / acc_orig if acc_orig else 0.0,
            }
    return out


@torch.no_grad()
def prefix_curve(model, source: ShapesSource, judge: Judge, lengths: list[int], n: int = 256, batch: int = 32,
                 seed: int = 0) -> list[dict]:  # fmt: skip
    """A sequence tokenizer decoded from its first k tokens, for each k of `lengths`: PSNR, and the judge's
    object F1 against the scenes' true objects (and, at the tokenizer's own length, the originals')."""
    model.eval()
    rng = np.random.default_rng(seed)
    scenes = source.scenes(n, rng)
    x = source.render(scenes)
    codes = torch.cat([model.encode(x[i : i + batch]) for i in range(0, n, batch)])  # (n, 1, tokens)
    truth = [s.objects for s in scenes]
    rows = []
    for k in lengths:
        recon = torch.cat([model.decode(codes[i : i + batch, ..., :k]) for i in range(0, n, batch)])
        found = judge.read(to_uint8(recon))
        rows.append({"tokens": k, "psnr": float(psnr(recon, x).mean()), "judge_f1": _f1(object_counts(found, truth))})
    originals = _f1(object_counts(judge.read(to_uint8(x)), truth))
    rows.append({"tokens": "originals", "psnr": None, "judge_f1": originals})  # the judge's own misses
    return rows


def write_metrics(path: str | Path, metrics: dict) -> None:
    """The metrics of `evaluate` as a JSON file."""
    write_atomically(path, json.dumps(metrics, indent=2) + "\n")
