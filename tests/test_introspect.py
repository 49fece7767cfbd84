"""Introspective generation (Janus-Pro-R1): the chain layout, chains that rescore exactly, three advantages."""

from types import SimpleNamespace

import numpy as np
import torch

from tessera.config import override
from tessera.generate.introspect import introspect
from tessera.model.bundle import load as load_bundle
from tessera.model.sampling import SamplingConfig
from tessera.rl.grpo import advantages
from tessera.rl.rollouts import Rollout, chain_segments, introspect_rollout
from tessera.rl.trainer import RLConfig, RLTrainer
from tessera.sequence.chains import introspection_batch
from tessera.sequence.ids import IMAGE, IdSpace
from tessera.sequence.layouts import NO_POS, pad_text
from tessera.train.introspect import IntrospectConfig, IntrospectionTrainer

SPACE = IdSpace(n_text=10, n_image=16)


def test_chain_layout():
    s = SPACE.special
    text = pad_text(SPACE, [[1, 2], [3]], 3)
    order = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
    first = SPACE.image(torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]]))
    second = torch.tensor([[[1, 2], [3, 4]], [[13, 14], [15, 0]]])  # (B, h=2, w=2)
    batch = introspection_batch(SPACE, text, first, order, [[4], [5, 6]], [False, True], second, order, grid=(2, 2))
    yes, no = batch.ids.tolist()
    head = 3 + 1 + 4 + 2  # text <boi> first image <eoi> <think>
    assert yes[:head] == [*text[0].tolist(), s("<boi>"), *first[0].tolist(), s("<eoi>"), s("<think>")]
    assert yes[head : head + 3] == [*SPACE.text([4]), s("</think>"), s("<eos>")]
    assert all(t == s("<pad>") for t in yes[head + 3 :]) and not batch.loss[0, head + 3 :].any()
    assert batch.loss[0].nonzero().squeeze(1).tolist() == [head, head + 1, head + 2]  # verdict, </think>, <eos>
    # no: the second image follows in its own order, on its own grid cells, all trained
    second_ids = SPACE.image(second[1].flatten()[order[1]]).tolist()
    assert no[head:] == [*SPACE.text([5, 6]), s("</think>"), s("<boi>"), *second_ids, s("<eoi>")]
    assert batch.loss[1, head:].all() and not batch.loss[1, :head].any()
    cells = batch.pos[1, head + 4 : head + 8]
    assert (
        cells[:, 1:].tolist() == [[1, 1], [1, 0], [0, 1], [0, 0]]
        and (batch.slot[1, head + 4 : head + 8] == IMAGE).all()
    )
    assert (batch.pos[1, head : head + 4] == NO_POS).all()
    assert batch.pos[0, 4:8, 1:].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]  # the first image keeps its cells


def test_three_advantages_each_speak_for_their_tokens():
    g = 4
    parts = {
        "first": torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 1]),
        "honest": torch.tensor([1.0, 1, 0, 1, 1, 1, 1, 0]),
        "final": torch.tensor([1.0, 1, 0, 1, 0, 1, 1, 1]),
    }
    verdict = torch.tensor([[1, 1, 0]] * 8, dtype=torch.bool)
    second = torch.zeros(8, 2, dtype=torch.bool)
    second[[1, 2, 5, 6]] = True  # the rows that drew again
    segments = chain_segments(2, verdict, second)
    roll = Rollout(
        [{}] * 8,
        torch.zeros(8, 7),
        torch.ones(8, 7, dtype=torch.bool),
        parts["final"],
        parts,
        None,
        {},
        segments=segments,
    )
    fake = SimpleNamespace(cfg=override(RLConfig(), {"grpo.group_size": g}))  # advantages reads cfg.grpo alone
    adv = RLTrainer.advantages(fake, roll, {})
    own = {k: advantages(v, g) for k, v in parts.items()}
    assert adv.shape == (8, 7)
    assert torch.allclose(adv[:, :2], own["first"][:, None].expand(-1, 2))
    assert torch.allclose(adv[:, 2:4], own["honest"][:, None].expand(-1, 2)) and (adv[:, 4] == 0).all()
    assert torch.allclose(adv[:, 5:], own["final"][:, None] * second)
    assert (adv[[0, 3, 4, 7], 5:] == 0).all()  # no second image, nothing for the final reward to push


def test_chains_rescore_exactly(reader, judge):
    ckpt, _ = reader
    bundle = load_bundle(ckpt)
    nudge = torch.zeros(bundle.space.size)  # verdicts that end early, some "yes": some rows draw again, some stop
    nudge[bundle.space.special("</think>")] = 10.0
    bundle.model.register_forward_hook(lambda module, args, out: out + nudge)  # on the logits
    metadata = [{"prompt": p, "tag": "colors", "include": [{"class": "circle", "count": 1}]}
                for p in ["a red circle", "a blue star"] for _ in range(4)]  # fmt: skip
    for yes in (4.0, 6.0, 2.0, 8.0):  # a tiny model's verdicts lean one way: find the bias that mixes them
        nudge[bundle.space.text(bundle.text_tokenizer.encode("yes"))[0]] = yes
        roll = introspect_rollout(bundle, metadata, SamplingConfig(cfg_scale=2.0), SamplingConfig(), judge, seed=0)
        chain_rows = roll.segments["final"].any(1)
        if chain_rows.any() and not chain_rows.all():
            break
    assert chain_rows.any() and not chain_rows.all(), "want rows that drew again and rows that stopped"
    rescored = roll.rescore(bundle.model, slice(None))
    assert ((rescored - roll.old_logp).abs() * roll.mask).max() < 1e-4
    n = bundle.cfg.grid[0] * bundle.cfg.grid[1]
    assert roll.segments["first"][:, :n].all() and not roll.segments["first"][:, n:].any()
    chain = introspect(bundle, [m["prompt"] for m in metadata], SamplingConfig(cfg_scale=2.0), SamplingConfig(), 0)
    kept = ~chain.redraw.numpy()
    assert np.array_equal(chain.final_images[kept], chain.first_images[kept])  # where it stopped, the first stays
    assert np.array_equal(chain.redraw.numpy(), chain_rows.numpy())  # the same seed draws the same chains
    assert torch.equal(chain.tokens, roll.mask.sum(1).cpu())  # every token drawn is one the rollout scores
    assert set(roll.parts) == {"first", "honest", "final"}
    assert torch.equal(
        roll.parts["honest"],
        1
        - (
            roll.parts["first"] - torch.tensor([v.split()[:1] == ["yes"] for v in roll.texts], dtype=torch.float32)
        ).abs(),
    )


def test_introspection_training_resumes_exactly(reader, tmp_path):
    ckpt, _ = reader
    cfg = IntrospectConfig(init=str(ckpt), chains=8, steps=6, batch_size=4, warmup=2, log_every=1, save_every=3)
    straight = IntrospectionTrainer(cfg, tmp_path / "a", progress=False)
    rows = straight.fit()
    IntrospectionTrainer(cfg, tmp_path / "b", progress=False).fit(until=4)  # killed after step 4, saved at 3
    again = IntrospectionTrainer(cfg, tmp_path / "b", progress=False)
    assert again.engine.resume() and again.step == 3
    again.fit()
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in straight.model.state_dict().items())
    assert [r["step"] for r in again.engine.log.read()] == [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5, 6]
    tuned = load_bundle(tmp_path / "b" / "checkpoint")
    assert tuned.cfg.tasks[-1] == "introspect" and tuned.cfg.model.max_seq_len >= 16 + 2 * 18 + 18
