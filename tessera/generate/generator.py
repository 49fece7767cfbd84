"""Draw image tokens after a prompt, in any order, with a KV cache and classifier-free guidance in one batch.

`generate` samples; `score` recomputes the same log-probs of given tokens in one teacher-forced pass.
Both route logits through `sampling.log_distribution`, so the two agree (RL relies on it).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from tessera.generate.sampling import log_distribution, sample_token
from tessera.model.sampling import SamplingConfig
from tessera.model.transformer import Transformer
from tessera.sequence.ids import IMAGE, TEXT, IdSpace
from tessera.sequence.layouts import (
    CONTENT,
    NO_POS,
    TEXT_PART,
    Batch,
    Conditions,
    blank,
    condition_prompt,
    grid_positions,
    stack,
)

LOGP_FLOOR = -1e4  # a token outside today's support scores this, not -inf: its ratio is 0 and its KL finite


@dataclass
class Drawn:
    codes: torch.Tensor  # (B, h, w) image codes on the grid, or (B, t, h, w) a clip's; -1 where not drawn
    order: torch.Tensor  # (B, N) raster index of each generated token, in generation order
    ids: torch.Tensor  # (B, N) generated ids (one id space), in generation order
    logprobs: torch.Tensor  # (B, N) log-prob of each under the distribution it was drawn from


def _rows(
    space: IdSpace,
    text: torch.Tensor,  # (B, L)
    cfg: SamplingConfig,
    text_pos: torch.Tensor | None,  # (B, L, 3) or None
    conditions: Conditions | None,
    keep_images: bool = False,
) -> Batch:
    """The prompts the model runs, each ending in <boi> (where the space has one): the conditioned rows, then with
    guidance the rows with the text dropped (where there are visual conditions) and the unconditional rows (all
    <pad>, or with `keep_images` only the prompt's image tokens kept). (R, P) with R = k B."""
    if conditions is None:
        pos = torch.full((*text.shape, 3), NO_POS, dtype=torch.long, device=text.device)
        if text_pos is not None:
            pos = text_pos.to(text.device)
        head = Batch(text, pos, torch.full_like(text, TEXT), torch.zeros_like(text, dtype=torch.bool))
    else:
        head = condition_prompt(space, text, conditions.to(text.device))
    rows = [head]
    if cfg.guided:
        if conditions is not None:
            rows.append(blank(space, head, (TEXT_PART,)))
        rows.append(blank(space, head, keep_images=keep_images))
    both = stack(rows, space)
    if not space.boi:
        return both
    boi = torch.full_like(both.ids[:, :1], space.special("<boi>"))
    part = None if both.part is None else torch.cat([both.part, torch.full_like(boi, CONTENT)], 1)
    return Batch(
        torch.cat([both.ids, boi], 1),
        torch.cat([both.pos, torch.full_like(both.pos[:, :1], NO_POS)], 1),
        torch.cat([both.slot, torch.full_like(boi, TEXT)], 1),
        torch.cat([both.loss, torch.zeros_like(boi, dtype=torch.bool)], 1),
        part,
    )


def _split(logits: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(R, ..) logits -> (conditioned, unconditional or None, text dropped or None)."""
    rows = logits.split(batch)
    if len(rows) == 1:
        return rows[0], None, None
    return rows[0], rows[-1], rows[1] if len(rows) == 3 else None


@torch.no_grad()
def generate(
    model: Transformer,
    space: IdSpace,
    text: torch.Tensor,  # (B, L) sequence ids of the prompts (left-padded)
    grid: tuple[int, ...],  # (h, w), or a clip's (t, h, w)
    order: torch.Tensor,  # (B, N) raster indices over the grid in generation order
    cfg: SamplingConfig,
    generator: torch.Generator | None = None,
    text_pos: torch.Tensor | None = None,  # (B, L, 3) positions of the prompt's tokens (an earlier image in it)
    given: torch.Tensor | None = None,  # (B, K) image ids taken as the first K tokens of the order (editing)
    conditions: Conditions | torch.Tensor | None = None,  # codes (B, C, h, w) of visual conditions (any-to-image)
    keep_images: bool = False,  # guidance's unconditional rows keep text_pos's image tokens (a band after bands)
) -> Drawn:
    cfg.validate()
    conditions = None if conditions is None else Conditions.of(conditions)
    device = model.output.weight.device
    text, order = text.to(device), order.to(device)
    batch, n = text.shape[0], order.shape[1]
    rows = _rows(space, text, cfg, text_pos, conditions, keep_images)
    r, p = rows.ids.shape
    k = r // batch  # 1, 2 with guidance, 3 with guidance of visual conditions
    target = grid_positions(order, grid, 0 if conditions is None else conditions.drawn).repeat(k, 1, 1)  # (R, N, 3)
    allowed = space.allowed(IMAGE, device)
    cache = model.new_cache(r, p + n)

    tpos = torch.cat([rows.pos[:, 1:], target[:, :1]], dim=1)  # the prompt's last token is told where the first goes
    logits = model(rows.ids, rows.pos, tpos, cache, 0, rows.part)[:, -1]  # (R, V)
    ids, logps = [], []
    for i in range(n):
        cond, uncond, image_only = _split(logits, batch)
        logp = log_distribution(cond, uncond, allowed, cfg, cfg.guides(i, n), image_only)
        token = given[:, i].to(device) if given is not None and i < given.shape[1] else sample_token(logp, generator)
        ids.append(token)
        logps.append(logp.gather(1, token[:, None]).squeeze(1))
        if i == n - 1:
            break
        step_ids = token.repeat(k)[:, None]  # (R, 1): every row continues with the drawn token
        logits = model(step_ids, target[:, i : i + 1], target[:, i + 1 : i + 2], cache, p + i)[:, -1]
    ids_t = torch.stack(ids, dim=1)  # (B, N)
    codes = ids_t.new_full((batch, math.prod(grid)), -1).scatter_(1, order, space.codes(ids_t)).view(batch, *grid)
    return Drawn(codes, order, ids_t, torch.stack(logps, dim=1))


def score(
    model: Transformer,
    space: IdSpace,
    text: torch.Tensor,  # (B, L)
    ids: torch.Tensor,  # (B, N) image ids in generation order
    order: torch.Tensor,  # (B, N)
    grid: tuple[int, ...],  # (h, w), or a clip's (t, h, w)
    cfg: SamplingConfig,
    train_unconditional: bool = True,
    text_pos: torch.Tensor | None = None,
    conditions: Conditions | torch.Tensor | None = None,  # codes (B, C, h, w)
    keep_images: bool = False,
) -> torch.Tensor:
    """(B, N) log-probs of the given tokens under the sampling distribution, in one forward pass (with grad);
    a token the distribution cannot draw (after a policy update) scores LOGP_FLOOR. With guidance and
    train_unconditional=False the guidance rows run without grad: the same values, gradients through the
    conditional rows alone."""
    batch, n = ids.shape
    conditions = None if conditions is None else Conditions.of(conditions)
    rows = _rows(space, text, cfg, text_pos, conditions, keep_images)
    r, p = rows.ids.shape
    k = r // batch
    seq = torch.cat([rows.ids, ids.repeat(k, 1)], dim=1)[:, :-1]  # (R, P + N - 1): the last token predicts nothing
    frame = 0 if conditions is None else conditions.drawn
    pos = torch.cat([rows.pos, grid_positions(order, grid, frame).repeat(k, 1, 1)], 1)
    parts = None if rows.part is None else torch.cat([rows.part, torch.zeros_like(seq[:, p:])], 1)

    def forward(rows: slice) -> torch.Tensor:  # (rows, N, V): position t-1 scores token t
        part = None if parts is None else parts[rows]
        return model(seq[rows], pos[rows, :-1], pos[rows, 1:], segment=part)[:, p - 1 :]

    if k == 1 or train_unconditional:
        logits = forward(slice(None))
    else:
        with torch.no_grad():
            guidance_logits = forward(slice(batch, None))
        logits = torch.cat([forward(slice(0, batch)), guidance_logits])
    cond, uncond, image_only = _split(logits, batch)
    allowed = space.allowed(IMAGE, ids.device)
    out, start = [], 0

    def cut(x: torch.Tensor | None, part: slice) -> torch.Tensor | None:
        return None if x is None else x[:, part]

    for guide, run in itertools.groupby(cfg.guides(i, n) for i in range(n)):  # runs of positions guided alike
        part = slice(start, start + len(list(run)))
        logp = log_distribution(cond[:, part], cut(uncond, part), allowed, cfg, guide, cut(image_only, part))
        out.append(logp.gather(2, ids[:, part, None]).squeeze(2))  # (B, run)
        start = part.stop
    return torch.cat(out, dim=1).clamp(min=LOGP_FLOOR)
