"""One step's samples for GRPO: drawing (prompts -> images) and reading (images + questions -> answers).

A Rollout keeps what the update needs: each sample's old log-probs and mask, its rewards, and how to rescore a
slice of its rows under a model (with grad) by the same distribution it was sampled from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tessera.data.examples import conditioned_example, understanding_example
from tessera.eval.conditions import ConditionCase
from tessera.eval.shapes_eval import score_images
from tessera.eval.verdicts import is_yes
from tessera.generate import thinking
from tessera.generate.generator import generate, score
from tessera.generate.images import condition_codes
from tessera.generate.introspect import introspect
from tessera.generate.text import score_text, write
from tessera.model.bundle import Bundle
from tessera.model.orders import make_orders
from tessera.model.sampling import SamplingConfig
from tessera.pictures import to_uint8
from tessera.rl.rewards import Reward, combine
from tessera.sequence.layouts import image_prefix, pad_text
from tessera.sequence.tasks import Task
from tessera.world.grammar import parse_edit
from tessera.world.render import render_image
from tessera.world.thoughts import MAX_SCORE


@dataclass
class Rollout:
    metadata: list[dict]  # one per sample; "tag" groups the reward statistics
    old_logp: torch.Tensor  # (B, T)
    mask: torch.Tensor  # (B, T) bool: sampled tokens
    rewards: torch.Tensor  # (B,) weighted sum
    parts: dict[str, torch.Tensor]  # reward name -> (B,)
    rescore: Callable[[torch.nn.Module, slice | torch.Tensor], torch.Tensor]  # (model, rows) -> (rows, T) log-probs;
    # rows: a slice, or indices (a chain's rollout, with segments, takes slices only)
    seconds: dict[str, float]  # generate_s, reward_s
    images: np.ndarray | None = None  # drawn images (drawing rollouts)
    texts: list[str] | None = None  # written answers (reading rollouts)
    segments: dict[str, torch.Tensor] | None = None  # reward name -> (B, T) tokens its own advantage applies to


def _rewarded(rewards: dict[str, Reward], weights: dict[str, float], metadata, images, texts, device):
    values = {name: fn(metadata, images, texts) for name, fn in rewards.items()}
    parts = {name: torch.tensor(v, device=device, dtype=torch.float32) for name, v in values.items()}
    return torch.tensor(combine(values, weights), device=device, dtype=torch.float32), parts


@torch.no_grad()
def draw_rollout(
    bundle: Bundle,
    metadata: list[dict],  # each prompt's metadata, repeated group_size times (adjacent)
    sampling: SamplingConfig,
    rewards: dict[str, Reward],
    weights: dict[str, float],
    gen: torch.Generator,
    order_seed: int,
    train_unconditional: bool = False,
) -> Rollout:
    """Images for the prompts (after each one's visual condition, where the metadata holds a "case": any-to-image),
    rewarded, with the exact rescoring of their tokens."""
    device = bundle.model.output.weight.device
    text = _encode(bundle, metadata).to(device)
    conditions = None
    if "case" in metadata[0]:
        conditions = condition_codes(bundle, np.stack([m["case"].condition for m in metadata]))
    h, w = bundle.cfg.grid
    order = make_orders(bundle.cfg.order, len(metadata), h, w, torch.Generator().manual_seed(order_seed))
    start = time.time()
    drawn = generate(bundle.model, bundle.space, text, (h, w), order, sampling, gen, conditions=conditions)
    images = to_uint8(bundle.image_tokenizer.decode(drawn.codes))
    drawn_at = time.time()
    total, parts = _rewarded(rewards, weights, metadata, images, [""] * len(metadata), device)
    seconds = {"generate_s": drawn_at - start, "reward_s": time.time() - drawn_at}

    def rescore(model: torch.nn.Module, rows: slice | torch.Tensor) -> torch.Tensor:
        args = (bundle.space, text[rows], drawn.ids[rows], drawn.order[rows], (h, w), sampling)
        given = None if conditions is None else conditions.rows(rows)
        return score(model, *args, train_unconditional=train_unconditional, conditions=given)

    mask = torch.ones_like(drawn.ids, dtype=torch.bool)
    return Rollout(metadata, drawn.logprobs, mask, total, parts, rescore, seconds, images=images)


def _encode(bundle: Bundle, metadata: list[dict]) -> torch.Tensor:
    """(B, text_len): the prompts, all at once; a conditioned rollout's texts one by one, each an edit instruction
    (instruct), a caption (maps) or none (frame prediction)."""
    if "case" not in metadata[0]:
        return bundle.encode_prompts([m["prompt"] for m in metadata])
    rows = []
    for m in metadata:
        if not m["prompt"]:
            rows.append(pad_text(bundle.space, [[]], bundle.cfg.text_len))
        else:
            rows.append(bundle.encode_prompts([m["prompt"]], instructions=m["case"].task == Task.INSTRUCT))
    return torch.cat(rows)


def condition_examples(
    tasks: dict[str, float],
    n: int,
    group_size: int,
    rng: np.random.Generator,
    canvas: int,
    fits,
    context: int = 2,
    edits: list[str] | None = None,
    hold_out: frozenset[tuple] = frozenset(),
) -> list[dict]:
    """n conditioned cases on fresh scenes (tasks drawn by share) whose texts the model `fits`, each repeated
    group_size times: metadata lines with the case. Instruction edits are of the kinds `edits` (at random; none
    given: any)."""
    names, shares = list(tasks), np.array(list(tasks.values()), dtype=float)
    out = []
    while len(out) < n * group_size:
        task = names[rng.choice(len(names), p=shares / shares.sum())]
        op = edits[rng.integers(len(edits))] if edits and task == Task.INSTRUCT else None
        text, scene, picture, shown = conditioned_example(task, rng, canvas, op, context, hold_out)
        if text and not fits(text):
            continue
        kind = task if task != Task.INSTRUCT else f"{task}/{parse_edit(text).op}"
        case = ConditionCase(task, kind, text, picture, scene, shown)
        out += [{"prompt": text, "case": case, "tag": kind}] * group_size
    return out


def read_examples(
    tasks: dict[str, float],
    n: int,
    group_size: int,
    rng: np.random.Generator,
    canvas: int,
    hold_out: frozenset[tuple] = frozenset(),
):
    """n questions on fresh scenes (tasks drawn by share), each repeated group_size times: metadata lines; no
    question or caption says what a `hold_out` key says."""
    names, shares = list(tasks), np.array(list(tasks.values()), dtype=float)
    out = []
    for _ in range(n):
        task = names[rng.choice(len(names), p=shares / shares.sum())]
        question, truth, scene = understanding_example(task, rng, canvas, hold_out)
        out += [{"task": task, "tag": task, "question": question, "truth": truth, "scene": scene}] * group_size
    return out


@torch.no_grad()
def read_rollout(
    bundle: Bundle,
    metadata: list[dict],  # from read_examples
    sampling: SamplingConfig,
    rewards: dict[str, Reward],
    weights: dict[str, float],
    gen: torch.Generator,
) -> Rollout:
    device = bundle.model.output.weight.device
    start = time.time()
    images = np.stack([render_image(m["scene"]) for m in metadata])
    prompt = image_prefix(
        bundle.space,
        bundle.encode_questions([m["question"] for m in metadata]).to(device),
        bundle.encode_images(images),
    )
    written = write(bundle.model, bundle.space, prompt, bundle.cfg.answer_len + 1, sampling, gen)
    texts = written.texts(bundle.space, bundle.text_tokenizer)
    written_at = time.time()
    total, parts = _rewarded(rewards, weights, metadata, images, texts, device)
    seconds = {"generate_s": written_at - start, "reward_s": time.time() - written_at}

    def rescore(model: torch.nn.Module, rows: slice | torch.Tensor) -> torch.Tensor:
        return score_text(model, bundle.space, prompt.rows(rows), written.ids[rows], sampling)

    return Rollout(metadata, written.logprobs, written.mask, total, parts, rescore, seconds, texts=texts)


def chain_segments(n_first: int, verdict_mask: torch.Tensor, second_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Which tokens of a chain each of its three rewards speaks for: (B, N + M + N) bool masks."""
    b = len(verdict_mask)
    first = torch.zeros(b, n_first, dtype=torch.bool, device=verdict_mask.device)
    blank_v, blank_s = torch.zeros_like(verdict_mask), torch.zeros_like(second_mask)
    return {
        "first": torch.cat([~first, blank_v, blank_s], 1),
        "honest": torch.cat([first, verdict_mask, blank_s], 1),
        "final": torch.cat([first, blank_v, second_mask], 1),
    }


@torch.no_grad()
def introspect_rollout(
    bundle: Bundle,
    metadata: list[dict],  # each prompt's metadata, repeated group_size times (adjacent)
    sampling: SamplingConfig,
    judging: SamplingConfig,
    judge,
    seed: int,
    train_unconditional: bool = False,
) -> Rollout:
    """Chains (first image, verdict, second image where it said no) rewarded three ways, each reward with its own
    tokens: the first image's quality, the verdict's honesty (1 - |judge's 0/1 - said yes|), the final quality."""

    device = bundle.model.output.weight.device
    start = time.time()
    chain = introspect(bundle, [m["prompt"] for m in metadata], sampling, judging, seed)
    done = time.time()
    first = torch.tensor([r["correct"] for r in score_images(chain.first_images, metadata, judge)], dtype=torch.float32)
    final = torch.tensor([r["correct"] for r in score_images(chain.final_images, metadata, judge)], dtype=torch.float32)
    said_yes = torch.tensor([is_yes(v) for v in chain.verdicts], dtype=torch.float32)
    parts = {"first": first, "honest": 1 - (first - said_yes).abs(), "final": final}
    parts = {k: v.to(device) for k, v in parts.items()}
    n = chain.first.ids.shape[1]
    rows = chain.redraw.nonzero().squeeze(1)
    second_logp = torch.zeros_like(chain.first.logprobs)
    second_mask = torch.zeros_like(chain.first.ids, dtype=torch.bool)
    if chain.second is not None:
        second_logp[rows], second_mask[rows] = chain.second.logprobs, True
    text, judged, grid = chain.text, chain.judged, bundle.cfg.grid
    where = torch.full((len(metadata),), -1, dtype=torch.long, device=device)  # row -> its index among the redrawn
    where[rows] = torch.arange(len(rows), device=device)

    def rescore(model: torch.nn.Module, part: slice) -> torch.Tensor:
        f = score(model, bundle.space, text[part], chain.first.ids[part], chain.first.order[part], grid, sampling,
                  train_unconditional)  # fmt: skip
        v = score_text(model, bundle.space, judged.rows(part), chain.verdict.ids[part], judging)
        s = torch.zeros_like(f)
        mine = where[part]
        if (mine >= 0).any():
            k = mine[mine >= 0]
            ctx = chain.context
            s2 = score(model, bundle.space, ctx.ids[k], chain.second.ids[k], chain.second.order[k], grid, sampling,
                       train_unconditional, text_pos=ctx.pos[k])  # fmt: skip
            s = s.index_put(((mine >= 0).nonzero().squeeze(1),), s2)
        return torch.cat([f, v, s], 1)

    old = torch.cat([chain.first.logprobs, chain.verdict.logprobs, second_logp], 1)
    mask = torch.cat([torch.ones_like(chain.first.ids, dtype=torch.bool), chain.verdict.mask, second_mask], 1)
    seconds = {"generate_s": done - start, "reward_s": time.time() - done}
    total = parts["final"]
    roll = Rollout(metadata, old, mask, total, parts, rescore, seconds, images=chain.final_images, texts=chain.verdicts)
    roll.segments = chain_segments(n, chain.verdict.mask, second_mask)
    return roll


@torch.no_grad()
def thinking_rollout(
    bundle: Bundle,
    metadata: list[dict],  # each prompt's metadata, repeated group_size times (adjacent)
    sampling: SamplingConfig,
    writing: SamplingConfig,
    judge,
    seed: int,
    train_unconditional: bool = False,
) -> Rollout:
    """Thinking chains (TwiG-GRPO) rewarded three ways, each with its own tokens: the final image by the strict
    rule (every token of the chain), the honesty of the last critique (1 - |its score / 10 - the strict rule on
    the image it saw|; 0 when it does not parse: the critiques' tokens), and the format (the share of
    thoughts and critiques that parse, the thought naming its own band: the thoughts' and critiques' tokens)."""
    device = bundle.model.output.weight.device
    start = time.time()
    chain = thinking.think_and_draw(bundle, [m["prompt"] for m in metadata], sampling=sampling, writing=writing,
                                    seed=seed)  # fmt: skip
    done = time.time()
    seen = [r["strict"] for r in score_images(chain.critiqued, metadata, judge)]
    final = [r["strict"] for r in score_images(chain.images, metadata, judge)]
    honest = [0.0 if said[-1] is None else 1 - abs(said[-1] / MAX_SCORE - ok)
              for said, ok in zip(chain.scores, seen, strict=True)]  # fmt: skip
    formed = [thinking.well_formed(chain, i) for i in range(len(metadata))]
    parts = {name: torch.tensor(v, dtype=torch.float32, device=device)
             for name, v in (("final", final), ("honest", honest), ("format", formed))}  # fmt: skip
    old, mask = thinking.chain_logprobs(chain)
    kinds = {"final": ("thought", "band", "critique", "redraw"), "honest": ("critique",),
             "format": ("thought", "critique")}  # fmt: skip
    segments = thinking.chain_segments(chain, kinds)

    def rescore(model: torch.nn.Module, rows: slice) -> torch.Tensor:
        picked = list(range(len(metadata)))[rows]
        logp = thinking.rescore_chain(bundle, model, chain, sampling, writing, picked, train_unconditional)
        return nn.functional.pad(logp, (0, old.shape[1] - logp.shape[1]))  # the batch's width

    seconds = {"generate_s": done - start, "reward_s": time.time() - done}
    texts = [" | ".join(t) for t in chain.thoughts]
    roll = Rollout(metadata, old, mask, parts["final"], parts, rescore, seconds, images=chain.images, texts=texts)
    roll.segments = segments
    return roll
