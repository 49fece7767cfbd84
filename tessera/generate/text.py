"""Write text after a prompt (an image and a question) with a KV cache; and rescore given text the same way.

`write` samples until every row has written <eos> or another stop token (or `max_len` tokens); `score_text`
recomputes the log-probs of written tokens in one teacher-forced pass under the same temperature and truncation
(RL relies on it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tessera.generate.sampling import log_distribution, sample_token
from tessera.model.sampling import SamplingConfig
from tessera.model.transformer import Transformer
from tessera.sequence.ids import TEXT, IdSpace
from tessera.sequence.layouts import NO_POS, Batch

GREEDY = SamplingConfig(top_k=1)


@dataclass
class Written:
    ids: torch.Tensor  # (B, M) sequence ids written; <pad> after <eos>
    logprobs: torch.Tensor  # (B, M) log-prob of each under the distribution it was drawn from; 0 after <eos>
    mask: torch.Tensor  # (B, M) bool: written tokens, <eos> included

    def texts(self, space: IdSpace, tokenizer) -> list[str]:
        return [tokenizer.decode(space.text_ids(row.tolist())) for row in self.ids]


@torch.no_grad()
def write(
    model: Transformer,
    space: IdSpace,
    prompt: Batch,  # ids (B, P) and pos (B, P, 3) of the prompt; it ends where text begins
    max_len: int,
    cfg: SamplingConfig = GREEDY,
    generator: torch.Generator | None = None,
    stop: str = "<eos>",
) -> Written:
    """Sample text after `prompt` until every row has written `stop` (kept) or max_len tokens."""
    cfg.validate()
    device = model.output.weight.device
    ids, pos = prompt.ids.to(device), prompt.pos.to(device)
    b, p = ids.shape
    none = torch.full((b, 1, 3), NO_POS, dtype=torch.long, device=device)
    cache = model.new_cache(b, p + max_len)
    logits = model(ids, pos, torch.cat([pos[:, 1:], none], dim=1), cache, 0)[:, -1]  # (B, V)
    allowed = space.allowed(TEXT, device)
    eos, pad = space.special(stop), space.special("<pad>")
    done = torch.zeros(b, dtype=torch.bool, device=device)
    out, logps, mask = [], [], []
    for i in range(max_len):
        logp = log_distribution(logits, None, allowed, cfg, guide=False)
        token = torch.where(done, pad, sample_token(logp, generator))  # (B,)
        out.append(token)
        logps.append(torch.where(done, 0.0, logp.gather(1, token[:, None]).squeeze(1)))
        mask.append(~done)
        done = done | (token == eos)
        if done.all() or i == max_len - 1:
            break
        logits = model(token[:, None], none, none, cache, p + i)[:, -1]
    return Written(torch.stack(out, 1), torch.stack(logps, 1), torch.stack(mask, 1))


def score_text(
    model: Transformer, space: IdSpace, prompt: Batch, ids: torch.Tensor, cfg: SamplingConfig = GREEDY
) -> torch.Tensor:
    """(B, M) log-probs of written ids (from `write`) under the sampling distribution, with grad; 0 after <eos>."""
    p = prompt.ids.shape[1]
    seq = torch.cat([prompt.ids.to(ids.device), ids], dim=1)[:, :-1]  # position t-1 scores token t
    pos = torch.cat([prompt.pos.to(ids.device), torch.full((*ids.shape, 3), NO_POS, device=ids.device)], dim=1)
    logits = model(seq, pos[:, :-1], pos[:, 1:])[:, p - 1 :]  # (B, M, V)
    allowed = space.allowed(TEXT, ids.device)
    logp = log_distribution(logits.flatten(0, 1), None, allowed, cfg, guide=False).view(*ids.shape, -1)
    out = logp.gather(2, ids[..., None]).squeeze(2)
    return torch.where(ids == space.special("<pad>"), 0.0, out.clamp(min=-1e4))
