"""Introspective generation (Janus-Pro-R1): draw, judge your own image in words, and draw again when it fails.

The chain is one sequence:
    text <boi> first image <eoi> <think> verdict </think> <eos>                       (verdict "yes")
    text <boi> first image <eoi> <think> verdict </think> <boi> second image <eoi>    (verdict "no , <reason>")
The second image is guided against the empty prompt (all <pad>), like the first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tessera.data.shapes import to_uint8
from tessera.generate.generator import Drawn, generate
from tessera.generate.sampling import SamplingConfig
from tessera.generate.text import GREEDY, Written, write
from tessera.model.bundle import Bundle
from tessera.model.orders import make_orders
from tessera.sequence.ids import IMAGE, TEXT, IdSpace
from tessera.sequence.layouts import NO_POS, Batch, grid_positions, text_to_image
from tessera.understand.texts import is_yes

VERDICT_LEN = 16  # verdict tokens before </think>


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


def judging_prompt(space: IdSpace, text: torch.Tensor, first: Drawn) -> Batch:
    """`text <boi> first image <eoi> <think>`: the prompt the verdict is written after."""
    drawn = text_to_image(space, text, first.codes, first.order)  # (B, L + N + 2), the image in drawing order
    think = torch.full_like(text[:, :1], space.special("<think>"))
    none = torch.full((len(text), 1, 3), NO_POS, dtype=torch.long, device=text.device)
    return Batch(
        torch.cat([drawn.ids, think], 1),
        torch.cat([drawn.pos, none], 1),
        torch.cat([drawn.slot, torch.full_like(think, TEXT)], 1),
        torch.zeros(len(text), drawn.ids.shape[1] + 1, dtype=torch.bool, device=text.device),
    )


def redraw_context(space: IdSpace, judged: Batch, verdict: Written) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows `judged + verdict` (through </think>), left-padded to one length: ids (B, P) and positions (B, P, 3)."""
    rows = [torch.cat([judged.ids[i], verdict.ids[i][verdict.mask[i]]]) for i in range(len(judged.ids))]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), space.special("<pad>"), dtype=torch.long, device=judged.ids.device)
    pos = torch.full((len(rows), length, 3), NO_POS, dtype=torch.long, device=judged.ids.device)
    for i, r in enumerate(rows):
        ids[i, length - len(r) :] = r
        pos[i, length - len(r) : length - len(r) + judged.pos.shape[1]] = judged.pos[i]
    return ids, pos


@torch.no_grad()
def introspect(
    bundle: Bundle,
    prompts: list[str],
    sampling: SamplingConfig | None = None,
    judging: SamplingConfig = GREEDY,
    seed: int = 0,
) -> Chain:
    """One chain per prompt: first image, the model's verdict on it, and a second image where it said no."""
    b, sampling = bundle, sampling or bundle.cfg.sampling
    device = b.model.output.weight.device
    gen = torch.Generator(device=device).manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)
    text = b.encode_prompts(prompts).to(device)
    h, w = b.cfg.grid
    first = generate(
        b.model, b.space, text, (h, w), make_orders(b.cfg.order, len(text), h, w, order_gen), sampling, gen
    )
    judged = judging_prompt(b.space, text, first)
    verdict = write(b.model, b.space, judged, VERDICT_LEN + 1, judging, gen, stop="</think>")
    verdicts = verdict.texts(b.space, b.text)
    ended = (verdict.ids == b.space.special("</think>")).any(1)
    redraw = torch.tensor([not is_yes(v) for v in verdicts], device=device) & ended
    first_images = to_uint8(b.tokenizer.decode(first.codes))
    final, second, context = first_images.copy(), None, None
    if redraw.any():
        rows = redraw.nonzero().squeeze(1)
        chosen = Written(verdict.ids[rows], verdict.logprobs[rows], verdict.mask[rows])
        ids, pos = redraw_context(b.space, judged.rows(rows), chosen)
        order = make_orders(b.cfg.order, len(rows), h, w, order_gen)
        second = generate(b.model, b.space, ids, (h, w), order, sampling, gen, text_pos=pos)
        final[rows.cpu().numpy()] = to_uint8(b.tokenizer.decode(second.codes))
        context = Batch(ids, pos, torch.full_like(ids, TEXT), torch.zeros_like(ids, dtype=torch.bool))
    return Chain(text, first, judged, verdict, verdicts, redraw, second, context, first_images, final)


def introspection_batch(
    space: IdSpace,
    text: torch.Tensor,  # (B, L) prompts
    first_ids: torch.Tensor,  # (B, N) the model's own first image, in its drawing order
    first_order: torch.Tensor,  # (B, N)
    verdicts: list[list[int]],  # text-tokenizer ids of each verdict
    redraw: list[bool],  # the verdict says no
    second_codes: torch.Tensor,  # (B, h, w) the image to draw after "no" (ignored after "yes")
    second_order: torch.Tensor,  # (B, N)
    width: int,
) -> Batch:
    """Whole chains as one training Batch (right-padded). The loss falls on the verdict and </think>, then on <eos>
    or on the second image - not on the first image, which is the model's own sample."""
    special = space.special
    rows = []
    for i, said in enumerate(verdicts):
        cells = grid_positions(first_order[i : i + 1].cpu(), width)[0]  # (N, 3)
        judged = [*space.text(said), special("</think>")]
        parts = [  # (ids, positions or None, slot, loss)
            (text[i].cpu().tolist() + [special("<boi>")], None, TEXT, False),
            (first_ids[i].cpu().tolist(), cells, IMAGE, False),
            ([special("<eoi>"), special("<think>")], None, TEXT, False),
            (judged, None, TEXT, True),
        ]
        if redraw[i]:
            order = second_order[i].cpu()
            image = space.image(second_codes[i].flatten().cpu()[order]).tolist()
            parts += [
                ([special("<boi>")], None, TEXT, True),
                (image, grid_positions(order[None], width)[0], IMAGE, True),
            ]
            parts.append(([special("<eoi>")], None, TEXT, True))
        else:
            parts.append(([special("<eos>")], None, TEXT, True))
        ids = torch.tensor([t for p in parts for t in p[0]])
        pos = torch.cat([p[1] if p[1] is not None else torch.full((len(p[0]), 3), NO_POS) for p in parts])
        slot = torch.tensor([p[2] for p in parts for _ in p[0]])
        loss = torch.tensor([p[3] for p in parts for _ in p[0]])
        rows.append((ids, pos, slot, loss))
    t = max(len(r[0]) for r in rows)
    out = Batch(
        torch.full((len(rows), t), special("<pad>"), dtype=torch.long),
        torch.full((len(rows), t, 3), NO_POS, dtype=torch.long),
        torch.full((len(rows), t), TEXT, dtype=torch.long),
        torch.zeros(len(rows), t, dtype=torch.bool),
    )
    for i, (ids, pos, slot, loss) in enumerate(rows):
        n = len(ids)
        out.ids[i, :n], out.pos[i, :n], out.slot[i, :n], out.loss[i, :n] = ids, pos, slot, loss
    return out


def evaluate_introspection(
    bundle: Bundle, metadata: list[dict], judge, per_prompt: int = 1, seed: int = 0, batch_size: int = 64
) -> dict:
    """ShapesEval of the first images (one-shot) and of the final images (introspective) of the same chains, and
    how often the model's own yes/no agrees with the judge's on its first image."""
    from tessera.eval.shapes_eval import score_images, summarize

    metas = [m for m in metadata for _ in range(per_prompt)]
    first, final, agree, redrawn = [], [], [], []
    for i in range(0, len(metas), batch_size):
        part = metas[i : i + batch_size]
        chain = introspect(bundle, [m["prompt"] for m in part], seed=seed + i)
        judged = score_images(chain.first_images, part, judge)
        first += judged
        final += score_images(chain.final_images, part, judge)
        agree += [is_yes(v) == row["correct"] for v, row in zip(chain.verdicts, judged, strict=True)]
        redrawn += chain.redraw.tolist()
    return {
        "one_shot": summarize(first),
        "introspective": summarize(final),
        "self_eval_agreement": float(np.mean(agree)),
        "judge_says_yes": float(np.mean([r["correct"] for r in first])),
        "redrawn": float(np.mean(redrawn)),
    }
