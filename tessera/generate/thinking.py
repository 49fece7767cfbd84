"""Think while drawing (TwiG): before each band the model writes a thought, then draws the band; after it, a
critique with a score, and a band scored below the threshold is drawn once more.

Every phase continues the same growing sequence (`sequence.bands`): text by `write`, bands by `generate` with the
prompt's earlier bands in `text_pos`; guidance's unconditional rows keep the image drawn so far and pad the text.
Each phase is kept, so every token of a chain can be rescored exactly (TwiG-GRPO).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from tessera.errors import CheckpointError
from tessera.generate.generator import generate, score
from tessera.generate.text import GREEDY, score_text, write
from tessera.model.bundle import Bundle
from tessera.model.sampling import SamplingConfig
from tessera.pictures import to_uint8
from tessera.sequence.bands import Bands, chain_length
from tessera.sequence.layouts import NO_POS, Batch, grid_positions
from tessera.world.grammar import PromptError
from tessera.world.thoughts import REDRAW_BELOW, parse_critique, parse_thought

THOUGHT_LEN = 40  # tokens a thought or a critique may take before its </think>


@dataclass
class Phase:
    """One sampling call of a chain: the rows it served, the prompt they continued, and what was drawn (a thought
    or critique: text ids with their mask; a band: image ids in `order`), with each token's log-prob."""

    kind: str  # thought | band | critique | redraw
    rows: list[int]
    prompt: Batch
    ids: torch.Tensor  # (b, M)
    mask: torch.Tensor  # (b, M) bool: tokens drawn
    logprobs: torch.Tensor  # (b, M)
    order: torch.Tensor | None = None  # (b, M) a band's cells; None for text


@dataclass
class ThinkingChain:
    prompts: list[str]
    thoughts: list[list[str]] = field(default_factory=list)  # per row, per band
    critiques: list[list[str]] = field(default_factory=list)  # per row, per band ("" when not asked)
    scores: list[list[int | None]] = field(default_factory=list)  # the critique's score; None: it does not parse
    redrawn: list[list[bool]] = field(default_factory=list)
    first_images: np.ndarray | None = None  # (B, H, W, 3): every band as first drawn
    critiqued: np.ndarray | None = None  # (B, H, W, 3): the image the last critique saw (earlier redraws in place)
    images: np.ndarray | None = None  # (B, H, W, 3): the final image, redrawn bands in place
    phases: list[Phase] = field(default_factory=list)  # every sampling call, in order (for exact rescoring)

    @property
    def tokens(self) -> float:
        """Tokens drawn per chain, text and image (the </think> closing a cut-short text not counted)."""
        return sum(int(p.mask.sum()) for p in self.phases) / len(self.prompts)

    def line(self, i: int) -> dict:
        """Chain i's prompt, thoughts, critiques, their scores and the bands drawn again."""
        return {"prompt": self.prompts[i], "thoughts": self.thoughts[i], "critiques": self.critiques[i],
                "scores": self.scores[i], "redrawn": self.redrawn[i]}  # fmt: skip


class _Rows:
    """Each row's sequence so far as (id, position) pairs, handed to the samplers left-padded."""

    def __init__(self, space, text: torch.Tensor):
        self.space = space
        self.ids = [row.tolist() for row in text]
        self.pos = [[(NO_POS,) * 3 for _ in row] for row in self.ids]

    def add(self, i: int, ids: list[int], pos: list[tuple[int, int, int]] | None = None) -> None:
        self.ids[i] += ids
        self.pos[i] += pos or [(NO_POS,) * 3] * len(ids)

    def add_special(self, name: str) -> None:
        for i in range(len(self.ids)):
            self.add(i, [self.space.special(name)])

    def batch(self, device) -> Batch:
        length = max(len(r) for r in self.ids)
        pad = self.space.special("<pad>")
        ids = torch.tensor([[pad] * (length - len(r)) + r for r in self.ids], device=device)
        pos = torch.tensor([[(NO_POS,) * 3] * (length - len(p)) + p for p in self.pos], device=device)
        return Batch(ids, pos, torch.zeros_like(ids), torch.zeros_like(ids, dtype=torch.bool))


@torch.no_grad()
def think_and_draw(
    bundle: Bundle,
    prompts: list[str],
    bands: Bands | None = None,
    sampling: SamplingConfig | None = None,
    writing: SamplingConfig = GREEDY,
    critique: bool = True,
    seed: int = 0,
) -> ThinkingChain:
    """One interleaved chain per prompt: per band a thought, the band, and (with `critique`) a critique and the
    band once more where it scores below REDRAW_BELOW."""
    sampling = sampling or bundle.cfg.sampling
    space, model = bundle.space, bundle.model
    device = model.output.weight.device
    gen = torch.Generator(device=device).manual_seed(seed)
    h, w = bundle.cfg.grid
    bands = bands or Bands.equal(h)
    longest = chain_length(bundle.cfg.text_len, w, bands, THOUGHT_LEN, THOUGHT_LEN if critique else 0)
    if longest > model.cfg.max_seq_len:
        raise CheckpointError(
            f"this model reads at most {model.cfg.max_seq_len} tokens; thinking in {len(bands)} bands takes up to "
            f"{longest}: train one with model.max_seq_len >= {longest}"
        )
    rows = _Rows(space, bundle.encode_prompts(prompts))
    out = ThinkingChain(prompts, [[] for _ in prompts], [[] for _ in prompts], [[] for _ in prompts],
                        [[] for _ in prompts])  # fmt: skip
    first = torch.zeros(len(prompts), h * w, dtype=torch.long, device=device)
    codes = first.clone()

    def text(kind: str) -> list[str]:
        rows.add_special("<think>")
        prompt = rows.batch(device)
        written = write(model, space, prompt, THOUGHT_LEN, writing, gen, stop="</think>")
        out.phases.append(Phase(kind, list(range(len(prompts))), prompt, written.ids, written.mask, written.logprobs))
        texts = written.texts(space, bundle.text_tokenizer)
        for i in range(len(prompts)):
            said = written.ids[i][written.mask[i]].tolist()
            if said[-1:] != [space.special("</think>")]:
                said.append(space.special("</think>"))  # cut short: closed, so the band follows
            rows.add(i, said)
        return [t.replace("</think>", "").strip() for t in texts]

    def band(b: int, which: list[int], kind: str) -> torch.Tensor:
        cells = bands.cells(b, w).to(device)
        order = cells.expand(len(which), -1)
        prompt = rows.batch(device).rows(which)  # generate adds the <boi>
        drawn = generate(model, space, prompt.ids, (h, w), order, sampling, gen, text_pos=prompt.pos, keep_images=True)
        done = torch.ones_like(drawn.ids, dtype=torch.bool)
        out.phases.append(Phase(kind, which, prompt, drawn.ids, done, drawn.logprobs, order))
        positions = [(NO_POS,) * 3] + [tuple(p) for p in grid_positions(cells[None], (h, w))[0].tolist()]
        for k, i in enumerate(which):
            rows.add(i, [space.special("<boi>"), *drawn.ids[k].tolist(), space.special("<eoi>")],
                     positions + [(NO_POS,) * 3])  # fmt: skip
        return drawn.codes.flatten(1)[:, cells]  # (len(which), n)

    everyone = list(range(len(prompts)))
    for b in range(len(bands)):
        for i, thought in enumerate(text("thought")):
            out.thoughts[i].append(thought)
        cells = bands.cells(b, w).to(device)
        first[:, cells] = codes[:, cells] = band(b, everyone, "band")
        if b == len(bands) - 1:
            out.critiqued = to_uint8(bundle.image_tokenizer.decode(codes.view(-1, h, w)))
        if not critique:
            continue
        again = []
        for i, said in enumerate(text("critique")):
            try:
                score = parse_critique(said).score
            except PromptError:
                score = None
            out.critiques[i].append(said)
            out.scores[i].append(score)
            out.redrawn[i].append(score is not None and score < REDRAW_BELOW)
            if out.redrawn[i][-1]:
                again.append(i)
        if again:
            codes[torch.tensor(again, device=device)[:, None], cells] = band(b, again, "redraw")
    decode = bundle.image_tokenizer.decode
    out.first_images = to_uint8(decode(first.view(-1, h, w)))
    out.images = to_uint8(decode(codes.view(-1, h, w)))
    return out


def _by_row(
    chain: ThinkingChain, values: list[torch.Tensor], rows: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per phase values for those of its rows among `rows` (default: all), in the phase's order -> (len(rows), T)
    each row's drawn tokens in the order drawn, right-padded, and the mask."""
    rows = list(range(len(chain.prompts))) if rows is None else rows
    where = {i: n for n, i in enumerate(rows)}
    parts: list[list[torch.Tensor]] = [[] for _ in rows]
    for phase, value in zip(chain.phases, values, strict=True):
        mine = [(k, i) for k, i in enumerate(phase.rows) if i in where]
        for n, (k, i) in enumerate(mine):
            parts[where[i]].append(value[n][phase.mask[k]])
    joined = [torch.cat(r) for r in parts]
    length = max(len(r) for r in joined)
    out = torch.zeros(len(joined), length, dtype=joined[0].dtype, device=joined[0].device)
    mask = torch.zeros(len(joined), length, dtype=torch.bool, device=joined[0].device)
    for i, r in enumerate(joined):
        out[i, : len(r)], mask[i, : len(r)] = r, True
    return out, mask


def well_formed(chain: ThinkingChain, i: int) -> float:
    """The share of chain i's thoughts and critiques that parse, each thought naming its own band."""
    ok = []
    for b, thought in enumerate(chain.thoughts[i]):
        try:
            ok.append(parse_thought(thought).band == b)
        except PromptError:
            ok.append(False)
    ok += [score is not None for score in chain.scores[i]]
    return float(np.mean(ok))


def chain_segments(chain: ThinkingChain, kinds: dict[str, tuple[str, ...]]) -> dict[str, torch.Tensor]:
    """Name -> (B, T) bool: the tokens of the phases of those kinds, in `chain_logprobs`' layout."""
    return {
        name: _by_row(chain, [torch.full_like(p.mask, p.kind in wanted) for p in chain.phases])[0]
        for name, wanted in kinds.items()
    }


def chain_logprobs(chain: ThinkingChain) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) the log-prob of every token each chain drew, text and image, as sampled; and the mask."""
    return _by_row(chain, [phase.logprobs for phase in chain.phases])


def rescore_chain(
    bundle: Bundle, model: torch.nn.Module, chain: ThinkingChain, sampling: SamplingConfig,
    writing: SamplingConfig = GREEDY, rows: list[int] | None = None, train_unconditional: bool = True,
) -> torch.Tensor:  # fmt: skip
    """(len(rows), T) the same log-probs of the chains `rows` (default: all) recomputed by `model` with grad, one
    teacher-forced pass per phase, in `chain_logprobs`' layout (padded to these rows' longest): what GRPO on whole
    chains needs."""
    h, w = bundle.cfg.grid
    wanted = set(range(len(chain.prompts)) if rows is None else rows)
    values = []
    for phase in chain.phases:
        k = [n for n, i in enumerate(phase.rows) if i in wanted]
        if not k:
            values.append(phase.ids[:0].float())
            continue
        prompt = phase.prompt.rows(k)
        if phase.order is None:
            values.append(score_text(model, bundle.space, prompt, phase.ids[k], writing))
        else:
            values.append(score(model, bundle.space, prompt.ids, phase.ids[k], phase.order[k], (h, w), sampling,
                                train_unconditional, text_pos=prompt.pos, keep_images=True))  # fmt: skip
    return _by_row(chain, values, rows)[0]
