"""GRPO on a tiny model: the loop raises a verifiable reward, scores what it sampled, and resumes."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, distinct_rewards, one_line_error, run_cli, two_ranks

from tessera.config import override
from tessera.data.prompts import HELD_OUT, prompt_pools, sample_prompts
from tessera.errors import TesseraError
from tessera.eval.shapes_eval import load_metadata
from tessera.model import bundle as bundles
from tessera.rl.grpo import advantages
from tessera.rl.trainer import RLConfig, RLTrainer
from tessera.train.trainer import TrainConfig, Trainer
from tessera.world.language import CATEGORIES


def rl_config(ckpt, **kw) -> RLConfig:
    items = {"init": str(ckpt), "reward": "brightness", "grpo.group_size": 8, "prompts_per_step": 4, "eval_every": 0}
    return override(RLConfig(), {**items, "update_batch": 16, "lr": 3e-3, "sampling.cfg_scale": 1.0, **kw})


def test_rl_raises_a_verifiable_reward(t2i_ckpt, tmp_path):
    trainer = RLTrainer(rl_config(t2i_ckpt, steps=30), tmp_path / "rl", progress=False)
    rows = trainer.fit()
    first = np.mean([r["reward_mean"] for r in rows[:3]])
    last = np.mean([r["reward_mean"] for r in rows[-3:]])
    assert last > first + 0.02, (first, last)  # codes span about 0.48-0.62 in brightness
    assert all(r["ratio"] == pytest.approx(1.0, abs=1e-4) for r in rows)  # mu = 1: scoring reproduces sampling
    assert {"reward_std", "entropy", "samples_per_s", "clip_fraction", "reward/counting"} <= set(rows[-1])
    kl = [r["kl"] for r in rows]  # measured against the frozen initial model
    assert kl[0] < 1e-6 < kl[-1]


def test_rows_whose_advantage_is_zero_are_left_out_of_the_update(t2i_ckpt, tmp_path, monkeypatch):
    """They add nothing to the gradient: the step is the same without them, for fewer passes."""
    leaving, keeping = (RLTrainer(rl_config(t2i_ckpt, steps=1), tmp_path / n, progress=False) for n in "ab")
    roll = leaving.rollouts()["draw"]
    roll.rewards[:16] = 0.5  # two of the four groups agree
    monkeypatch.setattr(keeping, "micro_batches", lambda roll, adv: [slice(0, 16), slice(16, 32)])
    before = {k: v.clone() for k, v in keeping.model.state_dict().items()}
    for trainer in (leaving, keeping):  # plain gradient steps, to compare the gradients
        trainer.opt = torch.optim.SGD(trainer.model.parameters(), lr=1.0)
    assert leaving.update({"draw": roll})["rows_updated"] == 0.5
    assert keeping.update({"draw": roll})["rows_updated"] == 1.0
    after = keeping.model.state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in after.items())
    for k, v in leaving.model.state_dict().items():
        assert torch.allclose(v, after[k], atol=1e-6), k


def test_a_step_with_no_row_to_learn_from_still_moves_by_momentum(t2i_ckpt, tmp_path, monkeypatch):
    """Every group agrees: no row is rescored, and Adam moves the weights as it would with zero gradients."""
    leaving, keeping = (RLTrainer(rl_config(t2i_ckpt, steps=2), tmp_path / n, progress=False) for n in "ab")
    monkeypatch.setattr(keeping, "micro_batches", lambda roll, adv: [slice(0, 16), slice(16, 32)])
    roll = leaving.rollouts()["draw"]
    for trainer in (leaving, keeping):
        trainer.update({"draw": roll})
    roll.rewards[:] = 0.5
    before = {k: v.clone() for k, v in leaving.model.state_dict().items()}
    assert leaving.update({"draw": roll})["rows_updated"] == 0.0
    keeping.update({"draw": roll})
    after = leaving.model.state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in after.items())
    for k, v in keeping.model.state_dict().items():
        assert torch.equal(v, after[k]), k


def test_focus_draws_the_categories_whose_groups_disagree(t2i_ckpt, tmp_path):
    """With focus=true the prompts come mostly from the one category whose groups' rewards differ; in turn without."""
    noise = np.random.default_rng(0)

    def reward(metadata, images, texts):
        return np.array([noise.random() if m["tag"] == "position" else 1.0 for m in metadata], np.float32)

    share = {}
    for focus in (False, True):
        trainer = RLTrainer(rl_config(t2i_ckpt, focus=focus), tmp_path / str(focus), progress=False)
        trainer.rewards, trainer.weights = {"reward": reward}, {"reward": 1.0}
        tags = [m["tag"] for _ in range(14) for m in trainer.rollouts()["draw"].metadata[::8]]
        share[focus] = tags[-32:].count("position") / 32
    assert share[False] < 0.2 and share[True] > 0.4, share


def test_separate_advantages_and_periodic_shapes_eval(t2i_ckpt, tmp_path):
    spec = {"reward": "brightness:1,colour_share:2", "separate_advantages": True}
    cfg = rl_config(t2i_ckpt, steps=2, eval_every=2, eval_prompts=1, eval_per_prompt=2, **spec)
    trainer = RLTrainer(cfg, tmp_path / "rl", progress=False)
    roll = trainer.rollouts()["draw"]
    parts = roll.parts
    assert torch.allclose(roll.rewards, parts["brightness"] + 2 * parts["colour_share"])
    own = [advantages(parts[n], 8) for n in ("brightness", "colour_share")]
    assert torch.allclose(trainer.advantages(roll, trainer.weights), own[0] + 2 * own[1])
    rows = trainer.fit()
    evals = [r for r in rows if "eval/overall" in r]
    assert [r["step"] for r in evals] == [0, 2]
    for r in evals:  # 1 prompt x 2 images per category: each accuracy is 0, 0.5 or 1
        cats = [r[f"eval/{c}"] for c in CATEGORIES]
        assert set(cats) <= {0.0, 0.5, 1.0} and r["eval/overall"] == pytest.approx(np.mean(cats))
        assert {f"held_out/{c}" for c in HELD_OUT} <= set(r)
    assert {"reward/brightness", "reward/colour_share"} <= set(rows[-1])


def test_guided_rollouts_are_scored_with_guidance_and_resume(t2i_ckpt, tmp_path):
    guided = {"sampling.cfg_scale": 3.0, "sampling.top_k": 8}
    cfg = rl_config(t2i_ckpt, steps=4, save_every=2, mu=2, focus=True, **guided)  # focus's state resumes too
    straight = RLTrainer(cfg, tmp_path / "a", progress=False)
    rows = straight.fit()
    assert all(r["ratio_start"] == pytest.approx(1.0, abs=1e-4) for r in rows)  # each rollout's first pass
    assert rows[0]["ratio"] != pytest.approx(1.0, abs=1e-4)  # the second pass runs on the updated policy
    cut = RLTrainer(cfg, tmp_path / "b", progress=False)
    cut.fit(until=3)
    again = RLTrainer(cfg, tmp_path / "b", progress=False)
    assert again.engine.resume() and again.step == 2
    again.fit()
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k


def test_benchmark_prompts_are_held_out():
    train, held = prompt_pools()
    benchmark = {m["prompt"] for m in load_metadata() if m["tag"] in HELD_OUT}
    for category in HELD_OUT:
        assert not benchmark & set(train[category]) and not set(held[category]) & set(train[category])
        assert held[category] and not benchmark & set(held[category])
    drawn = sample_prompts(train, 12, np.random.default_rng(0))
    assert len({m["tag"] for m in drawn}) == 6 and all(m["prompt"] in train[m["tag"]] for m in drawn)


def test_rl_keeps_out_what_its_models_data_kept_out(t2i_ckpt, tmp_path):
    """A model trained with data.hold_out carries it in its checkpoint; RL from it never draws those prompts."""
    held = ["an orange circle", "a star below a square"]
    data = {"examples": 16, "canvas": 32, "text_len": 16, "cache": str(tmp_path / "cache"), "hold_out": held}
    items = {"model": TINY_MODEL, "data": data, "tokenizer": str(t2i_ckpt / "tokenizer"), "steps": 1, "batch_size": 4}
    Trainer(override(TrainConfig(), items), tmp_path / "run", progress=False).fit()
    assert bundles.load(tmp_path / "run" / "checkpoint").cfg.hold_out == held

    def drawn(ckpt, run: str) -> set[str]:
        trainer = RLTrainer(rl_config(ckpt), tmp_path / run, progress=False)  # a folder each: a trainer holds its lock
        return {m["prompt"] for m in trainer.prompts(600)}

    assert set(held) <= drawn(t2i_ckpt, "rl-without")  # drawn without it, so the test can fail
    assert not set(held) & drawn(tmp_path / "run" / "checkpoint", "rl-with")


def test_reading_rollouts_learn_and_share_the_policy_with_drawing(reader, tmp_path):
    """CoRL's unified step: drawing and reading rollouts update one policy; a reading reward rises."""
    ckpt, _ = reader
    yes_or_no = lambda metadata, images, texts: np.array([t in ("yes", "no") for t in texts], np.float32)  # noqa: E731
    both = RLTrainer(rl_config(ckpt, read={"qa": 1.0}, steps=1, prompts_per_step=1), tmp_path / "both", progress=False)
    both.rewards, both.weights = {"distinct": distinct_rewards}, {"distinct": 1.0}  # it draws one image 8 times
    row = both.fit()[-1]
    assert row["rows_updated"] == 1.0
    assert {"reward_mean", "read/reward_mean", "read/ratio_start", "read/kl", "read/reward/qa", "ratio_start"} <= set(
        row
    )
    assert row["read/ratio_start"] == pytest.approx(1.0, abs=1e-4) and row["ratio_start"] == pytest.approx(
        1.0, abs=1e-4
    )
    items = {"draw": False, "read": {"qa": 1.0}, "read_per_step": 8, "steps": 20, "lr": 1e-3}
    trainer = RLTrainer(rl_config(ckpt, **items), tmp_path / "rl", progress=False)
    trainer.read_rewards, trainer.read_weights = {"yes_or_no": yes_or_no}, {"yes_or_no": 1.0}
    rows = trainer.fit()
    first = np.mean([r["read/reward_mean"] for r in rows[:3]])
    last = np.mean([r["read/reward_mean"] for r in rows[-3:]])
    assert last > first + 0.25, (first, last)  # a one-word yes/no answer, from about 1 in 10


def test_reading_needs_a_model_that_reads(t2i_ckpt, tmp_path):
    with pytest.raises(TesseraError, match="not trained to qa"):
        RLTrainer(rl_config(t2i_ckpt, read={"qa": 1.0}), tmp_path / "rl", progress=False)
    with pytest.raises(TesseraError, match="cycle reward needs a model that captions"):
        RLTrainer(rl_config(t2i_ckpt, reward="shapes_eval:1,cycle:1"), tmp_path / "rl", progress=False)
    with pytest.raises(TesseraError, match="nothing to train"):
        rl_config(t2i_ckpt, draw=False).validate()
    with pytest.raises(TesseraError, match="unknown task 'edit'"):
        rl_config(t2i_ckpt, read={"edit": 1.0}).validate()
    with pytest.raises(TesseraError, match="would be ignored"):  # chains are rewarded their own three ways
        rl_config(t2i_ckpt, introspect=True).validate()
    with pytest.raises(TesseraError, match="would be ignored"):
        rl_config(t2i_ckpt, introspect=True, reward="shapes_eval", separate_advantages=True).validate()


def test_rl_command_trains_resumes_and_refuses_bad_input(t2i_ckpt, tmp_path):
    out = tmp_path / "rl"
    args = ["rl", "--init", str(t2i_ckpt), "--reward", "brightness", "--out", str(out), "steps=2", "save_every=1"]
    args += ["eval_every=0", "prompts_per_step=1", "grpo.group_size=4", "update_batch=4", "sampling.cfg_scale=1"]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert "step 2: reward" in done.stdout
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    longer = run_cli(*args, "steps=3")  # resumes at step 2 and says what changed
    assert longer.returncode == 0 and "changed settings: steps: 2 -> 3" in " ".join(longer.stderr.split())
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    one_line_error(run_cli("rl", "--init", str(tmp_path / "nothing")), "not a tessera checkpoint")
    one_line_error(run_cli(*args, "--reward", "beauty"), "unknown reward 'beauty'")
    one_line_error(run_cli(*args, "mu=0"), "mu must be >= 1")


def _fsdp_rank(rank: int, cfg: RLConfig, run, out) -> None:
    """One of two gloo ranks of sharded GRPO; rank 0 saves what each drew and its first-pass ratios."""
    trainer = RLTrainer(cfg, run, progress=False)
    seen, step = [], trainer.train_step
    trainer.train_step = lambda: (out := step(), seen.append((out["ratio_start"], out["kl"])))[0]
    drawn, rollouts = [], trainer.rollouts
    trainer.rollouts = lambda: (rolls := rollouts(), drawn.append([m["prompt"] for m in rolls["draw"].metadata]))[0]
    trainer.fit()
    both = trainer.processes.gather((seen, drawn))
    if rank == 0:
        torch.save(both, out)
    trainer.processes.end()


def test_two_fsdp_ranks_run_grpo_with_exact_rescoring(t2i_ckpt, tmp_path):
    cfg = rl_config(
        t2i_ckpt, steps=2, prompts_per_step=2, fsdp=True, **{"grpo.group_size": 4, "sampling.cfg_scale": 3.0}
    )
    two_ranks(_fsdp_rank, cfg, tmp_path / "rl", tmp_path / "ranks.pt")
    (seen0, drawn0), (seen1, drawn1) = torch.load(tmp_path / "ranks.pt", weights_only=False)
    assert all(r == pytest.approx(1.0, abs=1e-4) for r, _ in seen0 + seen1)  # the sharded policy rescores exactly
    assert seen0[0][1] < 1e-6 < seen0[1][1]  # KL to the sharded reference: 0 at first, then not
    assert drawn0 != drawn1  # each process draws its own prompts
    before = bundles.load(t2i_ckpt).model.state_dict()
    after = bundles.load(tmp_path / "rl" / "checkpoint").model.state_dict()
    assert max(float((after[k] - v).abs().max()) for k, v in before.items()) > 1e-4
