"""Draw image tokens after a prompt, in any order, with a KV cache and classifier-free guidance in one batch.

`generate` samples; `score` recomputes the same log-probs of given tokens in one teacher-forced pass.
Both route logits through `sampling.log_distribution`, so the two agree (RL relies on it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from tessera.generate.sampling import log_distribution, sample_token
from tessera.model.sampling import SamplingConfig
from tessera.model.transformer import Transformer
from tessera.sequence.ids import IMAGE, IdSpace
from tessera.sequence.layouts import NO_POS, grid_positions, prefix, unconditional

LOGP_FLOOR = -1e4  # a token outside today's support scores this, not -inf: its ratio is 0 and its KL finite


@dataclass
class Drawn:
    codes: torch.Tensor  # (B, h, w) image codes on the grid
    order: torch.Tensor  # (B, N) raster index of each generated token, in generation order
    ids: torch.Tensor  # (B, N) generated ids (one id space), in generation order
    logprobs: torch.Tensor  # (B, N) log-prob of each under the distribution it was drawn from


def _rows(space: IdSpace, text: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """The prompts the model runs: [cond; uncond] when guiding, else cond alone. (B or 2B, L + 1)."""
    rows = prefix(space, text)
    return torch.cat([rows, prefix(space, unconditional(space, text))]) if cfg.guided else rows


def _split(logits: torch.Tensor, batch: int, cfg: SamplingConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    return (logits[:batch], logits[batch:]) if cfg.guided else (logits, None)


def _prompt_positions(rows: int, p: int, text_pos: torch.Tensor | None, device) -> torch.Tensor:
    """(R, P, 3): NO_POS, except the conditional rows' own prompt positions when given."""
    pos = torch.full((rows, p, 3), NO_POS, dtype=torch.long, device=device)
    if text_pos is not None:
        pos[: len(text_pos), : p - 1] = text_pos.to(device)
    return pos


@torch.no_grad()
def generate(
    model: Transformer,
    space: IdSpace,
    text: torch.Tensor,  # (B, L) sequence ids of the prompts (left-padded)
    grid: tuple[int, int],
    order: torch.Tensor,  # (B, h*w) raster indices in generation order
    cfg: SamplingConfig,
    generator: torch.Generator | None = None,
    text_pos: torch.Tensor | None = None,  # (B, L, 3) positions of the prompt's tokens (an earlier image in it)
    given: torch.Tensor | None = None,  # (B, K) image ids taken as the first K tokens of the order (editing)
) -> Drawn:
    cfg.validate()
    device = model.output.weight.device
    text, order = text.to(device), order.to(device)
    batch, (h, w) = text.shape[0], grid
    n = h * w
    rows = _rows(space, text, cfg)  # (R, P)
    r, p = rows.shape
    k = r // batch  # 2 with guidance, else 1
    target = grid_positions(order, w).repeat(k, 1, 1)  # (R, N, 3)
    allowed = space.allowed(IMAGE, device)
    cache = model.new_cache(r, p + n)

    pos = _prompt_positions(r, p, text_pos, device)
    tpos = torch.cat([pos[:, 1:], target[:, :1]], dim=1)  # <boi> is told where the first image token goes
    logits = model(rows, pos, tpos, cache, 0)[:, -1]  # (R, V)
    ids, logps = [], []
    for i in range(n):
        cond, uncond = _split(logits, batch, cfg)
        logp = log_distribution(cond, uncond, allowed, cfg, cfg.guides(i, n))
        token = given[:, i].to(device) if given is not None and i < given.shape[1] else sample_token(logp, generator)
        ids.append(token)
        logps.append(logp.gather(1, token[:, None]).squeeze(1))
        if i == n - 1:
            break
        step_ids = token.repeat(k)[:, None]  # (R, 1): both rows continue with the drawn token
        logits = model(step_ids, target[:, i : i + 1], target[:, i + 1 : i + 2], cache, p + i)[:, -1]
    ids_t = torch.stack(ids, dim=1)  # (B, N)
    codes = torch.empty_like(ids_t).scatter_(1, order, space.codes(ids_t)).view(batch, h, w)
    return Drawn(codes, order, ids_t, torch.stack(logps, dim=1))


def score(
    model: Transformer,
    space: IdSpace,
    text: torch.Tensor,  # (B, L)
    ids: torch.Tensor,  # (B, N) image ids in generation order
    order: torch.Tensor,  # (B, N)
    width: int,
    cfg: SamplingConfig,
    train_unconditional: bool = True,
    text_pos: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, N) log-probs of the given tokens under the sampling distribution, in one forward pass (with grad);
    a token the distribution cannot draw (after a policy update) scores LOGP_FLOOR. With guidance and
    train_unconditional=False the unconditional rows run without grad: the same values, gradients through the
    conditional rows alone."""
    batch, n = ids.shape
    rows = _rows(space, text, cfg)  # (R, P)
    r, p = rows.shape
    k = r // batch
    seq = torch.cat([rows, ids.repeat(k, 1)], dim=1)[:, :-1]  # (R, P + N - 1): the last token predicts nothing
    pos = torch.cat([_prompt_positions(r, p, text_pos, ids.device), grid_positions(order, width).repeat(k, 1, 1)], 1)

    def forward(part: slice) -> torch.Tensor:  # (rows, N, V): position t-1 scores token t
        return model(seq[part], pos[part, :-1], pos[part, 1:])[:, p - 1 :]

    if k == 1 or train_unconditional:
        logits = forward(slice(None))
    else:
        with torch.no_grad():
            uncond_logits = forward(slice(batch, None))
        logits = torch.cat([forward(slice(0, batch)), uncond_logits])
    cond, uncond = _split(logits, batch, cfg)
    allowed = space.allowed(IMAGE, ids.device)
    out, start = [], 0
    for guide, run in itertools.groupby(cfg.guides(i, n) for i in range(n)):  # runs of positions guided alike
        part = slice(start, start + len(list(run)))
        logp = log_distribution(cond[:, part], None if uncond is None else uncond[:, part], allowed, cfg, guide)
        out.append(logp.gather(2, ids[:, part, None]).squeeze(2))  # (B, run)
        start = part.stop
    return torch.cat(out, dim=1).clamp(min=LOGP_FLOOR)
