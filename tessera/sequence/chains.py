"""The introspection chain (Janus-Pro-R1) as a layout of the one stream: draw, judge your own image in words, and
draw again after "no".

    text <boi> first image <eoi> <think> verdict </think> <eos>                       (verdict "yes")
    text <boi> first image <eoi> <think> verdict </think> <boi> second image <eoi>    (verdict "no , <reason>")

The first image keeps its drawing order and grid cells; so does the second.
"""

from __future__ import annotations

import torch

from tessera.sequence.ids import IMAGE, TEXT, IdSpace
from tessera.sequence.layouts import NO_POS, Batch, grid_positions, stack, text_to_image

VERDICT_LEN = 16  # verdict tokens before </think>


def chain_length(text_len: int, n_image: int) -> int:
    """Tokens in the longest chain: text, two images with their <boi>/<eoi>, <think> verdict </think>."""
    return text_len + 2 * (n_image + 2) + VERDICT_LEN + 2


def judging_prompt(space: IdSpace, text: torch.Tensor, codes: torch.Tensor, order: torch.Tensor) -> Batch:
    """text (B, L), the first image's codes (B, h, w) and drawing order (B, N) -> `text <boi> image <eoi> <think>`,
    the prompt a verdict is written after (no loss)."""
    drawn = text_to_image(space, text, codes, order)  # (B, L + N + 2), the image in drawing order
    think = torch.full_like(text[:, :1], space.special("<think>"))
    none = torch.full((len(text), 1, 3), NO_POS, dtype=torch.long, device=text.device)
    return Batch(
        torch.cat([drawn.ids, think], 1),
        torch.cat([drawn.pos, none], 1),
        torch.cat([drawn.slot, torch.full_like(think, TEXT)], 1),
        torch.zeros(len(text), drawn.ids.shape[1] + 1, dtype=torch.bool, device=text.device),
    )


def redraw_context(space: IdSpace, judged: Batch, verdict: torch.Tensor, written: torch.Tensor) -> Batch:
    """Rows `judged + verdict` (the written tokens through </think>; written: (B, M) bool), left-padded to one
    length: the prompt the second image is drawn after (no loss)."""
    rows = [torch.cat([judged.ids[i], verdict[i][written[i]]]) for i in range(len(judged.ids))]
    length = max(len(r) for r in rows)
    device = judged.ids.device
    ids = torch.full((len(rows), length), space.special("<pad>"), dtype=torch.long, device=device)
    pos = torch.full((len(rows), length, 3), NO_POS, dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        ids[i, length - len(r) :] = r
        pos[i, length - len(r) : length - len(r) + judged.pos.shape[1]] = judged.pos[i]
    return Batch(ids, pos, torch.full_like(ids, TEXT), torch.zeros_like(ids, dtype=torch.bool))


def stretch(ids: list[int], slot: int, loss: bool, pos: torch.Tensor | None = None) -> Batch:
    """One stretch of a row: (1, n) ids with their positions (NO_POS unless given), slot and loss."""
    n = len(ids)
    pos = torch.full((n, 3), NO_POS, dtype=torch.long) if pos is None else pos
    return Batch(torch.tensor([ids]), pos[None], torch.full((1, n), slot), torch.full((1, n), loss, dtype=torch.bool))


def concat(parts: list[Batch]) -> Batch:
    """Stretches of one row, in order, as one (1, T) Batch."""
    return Batch(*(torch.cat([getattr(p, f) for p in parts], 1) for f in ("ids", "pos", "slot", "loss")))


def introspection_batch(
    space: IdSpace,
    text: torch.Tensor,  # (B, L) prompts
    first_ids: torch.Tensor,  # (B, N) the model's own first image, in its drawing order
    first_order: torch.Tensor,  # (B, N)
    verdicts: list[list[int]],  # text-tokenizer ids of each verdict
    redraw: list[bool],  # the verdict says no
    second_codes: torch.Tensor,  # (B, h, w) the image to draw after "no" (ignored after "yes")
    second_order: torch.Tensor,  # (B, N)
    grid: tuple[int, int],
) -> Batch:
    """Whole chains as one training Batch (right-padded). The loss falls on the verdict and </think>, then on <eos>
    or on the second image - not on the first image, which is the model's own sample."""
    special = space.special
    rows = []
    for i, said in enumerate(verdicts):
        parts = [
            stretch([*text[i].cpu().tolist(), special("<boi>")], TEXT, False),
            stretch(first_ids[i].cpu().tolist(), IMAGE, False, grid_positions(first_order[i : i + 1].cpu(), grid)[0]),
            stretch([special("<eoi>"), special("<think>")], TEXT, False),
            stretch([*space.text(said), special("</think>")], TEXT, True),
        ]
        if redraw[i]:
            order = second_order[i].cpu()
            image = space.image(second_codes[i].flatten().cpu()[order]).tolist()
            parts += [
                stretch([special("<boi>")], TEXT, True),
                stretch(image, IMAGE, True, grid_positions(order[None], grid)[0]),
                stretch([special("<eoi>")], TEXT, True),
            ]
        else:
            parts.append(stretch([special("<eos>")], TEXT, True))
        rows.append(concat(parts))
    return stack(rows, space)
