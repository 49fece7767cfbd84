"""The GRPO objective against direct computations from its formulas on hand-made tensors."""

import math
import statistics

import pytest
import torch

from tessera.errors import TesseraError
from tessera.rl.grpo import GRPOConfig, advantages, grpo_loss, k3_kl

G = torch.Generator().manual_seed(0)
LOGP = -torch.rand(4, 5, generator=G) * 3
OLD = LOGP + torch.randn(4, 5, generator=G) * 0.4  # ratios well inside and outside [0.8, 1.2]
REF = LOGP + torch.randn(4, 5, generator=G) * 0.3
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
ADV = torch.tensor([1.5, -0.5, 0.25, -1.25])


def by_hand(loss_type, beta=0.0, eps_low=0.2, eps_high=0.2, max_len=0, active=None):
    per = []
    for i in range(4):
        row = []
        for t in range(5):
            r = math.exp(LOGP[i, t] - OLD[i, t])
            c = min(max(r, 1 - eps_low), 1 + eps_high)
            value = -min(r * ADV[i].item(), c * ADV[i].item())
            if beta:
                d = (REF[i, t] - LOGP[i, t]).item()
                value += beta * (math.exp(d) - d - 1)
            row.append(value * bool(MASK[i, t]))
        per.append(row)
    lengths = [int(m.sum()) for m in MASK]
    total = sum(map(sum, per))
    if loss_type == "grpo":
        return sum(sum(row) / n for row, n in zip(per, lengths, strict=True)) / 4
    if loss_type == "bnpo":
        return total / sum(lengths)
    if loss_type == "dr_grpo":
        return total / (4 * (max_len or 5))
    return total / (active if active is not None else sum(lengths))


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_loss_variants_match_their_formulas(loss_type, beta):
    cfg = GRPOConfig(group_size=2, beta=beta, loss_type=loss_type)
    loss, stats = grpo_loss(LOGP, OLD, ADV, MASK, cfg, ref_logp=REF)
    assert loss.item() == pytest.approx(by_hand(loss_type, beta), rel=1e-5)
    if beta:
        kl = [math.exp(d) - d - 1 for d in (REF - LOGP)[MASK].tolist()]
        assert stats["kl"] == pytest.approx(sum(kl) / len(kl), rel=1e-5)


def test_asymmetric_clip_max_len_and_global_token_count():
    cfg = GRPOConfig(group_size=2, epsilon_low=0.1, epsilon_high=0.28, loss_type="dr_grpo", max_len=8)
    assert grpo_loss(LOGP, OLD, ADV, MASK, cfg)[0].item() == pytest.approx(
        by_hand("dr_grpo", eps_low=0.1, eps_high=0.28, max_len=8), rel=1e-5
    )
    dapo = GRPOConfig(group_size=2, loss_type="dapo")
    assert grpo_loss(LOGP, OLD, ADV, MASK, dapo, active_tokens=40.0)[0].item() == pytest.approx(
        by_hand("dapo", active=40.0), rel=1e-5
    )


def test_advantages_per_group_batch_or_unscaled():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 0.0])
    groups = [rewards[i : i + 4].tolist() for i in (0, 4)]
    want = [(r - statistics.mean(g)) / (statistics.stdev(g) + 1e-4) for g in groups for r in g]
    assert advantages(rewards, 4).tolist() == pytest.approx(want, rel=1e-5)
    batch_std = statistics.stdev(rewards.tolist())
    want = [(r - statistics.mean(g)) / (batch_std + 1e-4) for g in groups for r in g]
    assert advantages(rewards, 4, "batch").tolist() == pytest.approx(want, rel=1e-5)
    assert advantages(rewards, 4, "none").tolist() == pytest.approx([r - statistics.mean(g) for g in groups for r in g])
    assert advantages(torch.ones(4), 4).abs().max() == 0  # a group that agrees teaches nothing
    assert advantages(torch.full((8,), 0.3), 8).abs().max() == 0  # exactly, though 0.3 * 8 / 8 rounds


def test_on_policy_step_has_ratio_one_and_pushes_up_good_samples():
    logp = LOGP.clone().requires_grad_(True)
    loss, stats = grpo_loss(logp, LOGP, ADV, MASK, GRPOConfig(group_size=2))
    assert stats["ratio"] == pytest.approx(1.0) and stats["clip_fraction"] == 0.0
    loss.backward()
    grad = logp.grad
    assert (grad[0][MASK[0]] < 0).all() and (grad[1][MASK[1]] > 0).all()  # descending raises good, lowers bad
    assert (grad[~MASK] == 0).all()  # padding takes no gradient


def test_clipped_tokens_take_no_gradient():
    logp = torch.zeros(1, 2, requires_grad=True)
    old = torch.tensor([[-1.0, 0.0]])  # ratio e (clipped for a positive advantage) and 1
    loss, stats = grpo_loss(
        logp, old, torch.tensor([1.0]), torch.ones(1, 2, dtype=torch.bool), GRPOConfig(group_size=2)
    )
    loss.backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 1] < 0 and stats["clip_fraction"] == 0.5


def test_k3_is_zero_only_on_agreement():
    assert k3_kl(torch.tensor([-1.0]), torch.tensor([-1.0])).item() == 0
    assert (k3_kl(torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0])) > 0).all()


def test_bad_settings():
    with pytest.raises(TesseraError, match="loss_type"):
        grpo_loss(LOGP, OLD, ADV, MASK, GRPOConfig(loss_type="ppo"))
    with pytest.raises(ValueError, match="reference"):
        grpo_loss(LOGP, OLD, ADV, MASK, GRPOConfig(beta=0.1))
