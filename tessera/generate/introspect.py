"""Introspective generation (Janus-Pro-R1): draw, judge your own image in words, and draw again when it fails.

The chain is one sequence (`tessera.sequence.chains`); the second image is guided against the empty prompt (all
<pad>), like the first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tessera.engine.checkpoint import write_atomically
from tessera.eval.shapes_eval import score_images, summarize
from tessera.eval.verdicts import is_yes
from tessera.generate.generator import Drawn, generate
from tessera.generate.text import GREEDY, Written, write
from tessera.model.bundle import Bundle
from tessera.model.orders import make_orders
from tessera.model.sampling import SamplingConfig
from tessera.pictures import grid, save_png, to_uint8
from tessera.sequence.chains import VERDICT_LEN, judging_prompt, redraw_context
from tessera.sequence.layouts import Batch


@dataclass
class Chain:
    text: torch.Tensor  # (B, L) the prompts' sequence ids
    first: Drawn
    judged: Batch  # `text <boi> first image <eoi> <think>`: what the verdict was written after
    verdict: Written  # (B, M) up to and including </think>
    verdicts: list[str]
    redraw: torch.Tensor  # (B,) bool: the verdict said no
    second: Drawn | None  # the redrawn rows only (redraw.sum() of them), or None
    context: Batch | None  # what the second image was drawn after (redrawn rows)
    first_images: np.ndarray  # uint8 (B, H, W, 3)
    final_images: np.ndarray  # the second image where redrawn, else the first

    @property
    def tokens(self) -> torch.Tensor:
        """(B,) tokens drawn per chain: the first image, the verdict (its </think> included), the second image."""
        image = self.first.ids.shape[1]
        return image + self.verdict.mask.sum(1).cpu() + image * self.redraw.cpu()


@torch.no_grad()
def introspect(
    bundle: Bundle,
    prompts: list[str],
    sampling: SamplingConfig | None = None,
    judging: SamplingConfig = GREEDY,
    seed: int = 0,
) -> Chain:
    """One chain per prompt: first image, the model's verdict on it, and a second image where it said no."""
    sampling = sampling or bundle.cfg.sampling
    device = bundle.model.output.weight.device
    gen = torch.Generator(device=device).manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)
    text = bundle.encode_prompts(prompts).to(device)
    h, w = bundle.cfg.grid
    first = generate(
        bundle.model,
        bundle.space,
        text,
        (h, w),
        make_orders(bundle.cfg.order, len(text), h, w, order_gen),
        sampling,
        gen,
    )
    judged = judging_prompt(bundle.space, text, first.codes, first.order)
    verdict = write(bundle.model, bundle.space, judged, VERDICT_LEN + 1, judging, gen, stop="</think>")
    verdicts = verdict.texts(bundle.space, bundle.text_tokenizer)
    ended = (verdict.ids == bundle.space.special("</think>")).any(1)
    redraw = torch.tensor([not is_yes(v) for v in verdicts], device=device) & ended
    first_images = to_uint8(bundle.image_tokenizer.decode(first.codes))
    final, second, context = first_images.copy(), None, None
    if redraw.any():
        rows = redraw.nonzero().squeeze(1)
        context = redraw_context(bundle.space, judged.rows(rows), verdict.ids[rows], verdict.mask[rows])
        order = make_orders(bundle.cfg.order, len(rows), h, w, order_gen)
        second = generate(bundle.model, bundle.space, context.ids, (h, w), order, sampling, gen, text_pos=context.pos)
        final[rows.cpu().numpy()] = to_uint8(bundle.image_tokenizer.decode(second.codes))
    return Chain(text, first, judged, verdict, verdicts, redraw, second, context, first_images, final)


def write_chains(chain: Chain, out: str | Path) -> Path:
    """A grid PNG at `out` (top row: the first images, bottom row: the final ones) and, in the folder of the same
    name, each first and final image with chain.jsonl (the verdicts, and which rows were drawn again)."""
    out = Path(out)
    singles = out.with_suffix("")
    lines = []
    for i, verdict in enumerate(chain.verdicts):
        save_png(chain.first_images[i], singles / f"{i:04d}-first.png")
        save_png(chain.final_images[i], singles / f"{i:04d}-final.png")
        redrawn = bool(chain.redraw[i])
        lines.append(
            {"first": f"{i:04d}-first.png", "verdict": verdict, "redrawn": redrawn, "final": f"{i:04d}-final.png"}
        )
    write_atomically(singles / "chain.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    save_png(grid(np.concatenate([chain.first_images, chain.final_images]), cols=len(lines)), out, scale=2)
    return singles


def evaluate_introspection(
    bundle: Bundle, metadata: list[dict], judge, per_prompt: int = 1, seed: int = 0, batch_size: int = 64
) -> dict:
    """ShapesEval of the first images (one-shot) and of the final images (introspective) of the same chains, how
    often the model's own yes/no agrees with the judge's on its first image, and the tokens drawn per image."""
    metas = [m for m in metadata for _ in range(per_prompt)]
    first, final, agree, redrawn, tokens = [], [], [], [], []
    for i in range(0, len(metas), batch_size):
        part = metas[i : i + batch_size]
        chain = introspect(bundle, [m["prompt"] for m in part], seed=seed + i)
        judged = score_images(chain.first_images, part, judge)
        first += judged
        final += score_images(chain.final_images, part, judge)
        agree += [is_yes(v) == row["correct"] for v, row in zip(chain.verdicts, judged, strict=True)]
        redrawn += chain.redraw.tolist()
        tokens += chain.tokens.tolist()
    return {
        "one_shot": summarize(first),
        "introspective": summarize(final),
        "self_eval_agreement": float(np.mean(agree)),
        "judge_says_yes": float(np.mean([r["correct"] for r in first])),
        "redrawn": float(np.mean(redrawn)),
        "tokens_per_image": float(np.mean(tokens)),
    }
