"""The training engine on a toy trainer: work every n steps, the schedule, EMA, exact resume of every kind of
random generator, and the refusals (a foreign folder, another kind of run, another process count)."""

import json
import os

import numpy as np
import pytest
import torch

from tessera.engine import checkpoint
from tessera.engine.ema import EMA
from tessera.engine.loop import Engine
from tessera.engine.runfolder import LOCK, MARKER
from tessera.engine.schedule import WarmupCosine
from tessera.errors import CheckpointError, ConfigError, DivergedError, InputError


class Toy:
    """A linear model fitted to noise drawn from torch's global generator, a torch.Generator and numpy."""

    def __init__(self, run, steps=6, title="toy", config=None, **engine):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(3, 1)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=0.1)
        self.ema = EMA(self.model, 0.5)
        self.gen, self.rng = torch.Generator().manual_seed(1), np.random.default_rng(2)
        self.engine = Engine(run, title, steps, self.write, config or {"lr": 0.1}, **engine)
        self.engine.track(model=self.model, opt=self.opt, ema=self.ema, data=self.gen, noise=self.rng)
        self.engine.schedule(self.opt, WarmupCosine(0.1, warmup=2, steps=steps))

    def write(self, folder, trainer, state):
        checkpoint.save(folder, "toy", {}, self.model.state_dict(), trainer, state)

    def step(self):
        x = torch.randn(4, 3) + torch.randn(4, 3, generator=self.gen) + float(self.rng.normal())
        loss = self.model(torch.nn.functional.dropout(x, 0.5)).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}


def test_resume_restores_every_part_and_generator(tmp_path):
    straight = Toy(tmp_path / "a", save_every=2)
    start = straight.model.weight.detach().clone()
    straight.engine.fit(straight.step)
    ema = straight.ema.module.weight
    assert not torch.equal(ema, start) and not torch.equal(ema, straight.model.weight)  # averaged every step
    cut = Toy(tmp_path / "b", save_every=2)
    cut.engine.fit(cut.step, until=3)  # killed after step 3: saved at step 2
    again = Toy(tmp_path / "b", save_every=2)
    assert again.engine.resume() and again.engine.step == 2
    rows = again.engine.fit(again.step)
    for name in ("model", "ema"):
        a, b = getattr(straight, name).state_dict(), getattr(again, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert [r["loss"] for r in rows] == [r["loss"] for r in straight.engine.log.read()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # step 3 was logged, cut, and logged again once


def test_hooks_run_every_n_steps_after_the_last_and_at_start(tmp_path):
    toy = Toy(tmp_path, steps=5, log_every=10)
    calls = []
    toy.engine.every(2, lambda: calls.append(toy.engine.step) or {"probe": float(toy.engine.step)}, at_start=True)
    toy.engine.every(0, lambda: calls.append("never"))
    rows = toy.engine.fit(toy.step)
    assert calls == [0, 2, 4, 5]
    assert [r["step"] for r in rows] == [0, 2, 4, 5] and [r["probe"] for r in rows] == [0, 2, 4, 5]


def test_the_schedule_sets_the_rate_of_each_step(tmp_path):
    schedule = WarmupCosine(1.0, warmup=2, steps=6, min_ratio=0.1)
    assert [schedule(s) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert schedule(6) == pytest.approx(0.1) and schedule(100) == pytest.approx(0.1)
    rates = [schedule(s) for s in range(2, 7)]
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))  # cosine: down from the peak
    toy = Toy(tmp_path)
    seen = []
    toy.engine.fit(lambda: seen.append(toy.opt.param_groups[0]["lr"]) or toy.step())
    assert seen == [WarmupCosine(0.1, warmup=2, steps=6)(s) for s in range(6)]
    assert [r["lr"] for r in toy.engine.log.read()] == seen


def test_ema_averages_parameters_and_copies_buffers():
    model = torch.nn.BatchNorm1d(2)
    ema = EMA(model, 0.75)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.running_mean.fill_(5.0)
    ema.update()
    assert torch.allclose(ema.module.weight, torch.full((2,), 0.75 * 1.0 + 0.25 * 2.0))
    assert torch.equal(ema.module.running_mean, model.running_mean)


def test_fresh_deletes_only_a_run_folder_and_never_an_input(tmp_path):
    mine = tmp_path / "run"
    toy = Toy(mine)
    toy.engine.fit(toy.step)
    (mine / "extra.txt").write_text("x")
    Toy(mine, fresh=True).engine.close()
    assert sorted(p.name for p in mine.iterdir()) == sorted([LOCK, MARKER])
    theirs = tmp_path / "photos"
    theirs.mkdir()
    (theirs / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a tessera run folder"):
        Toy(theirs, fresh=True)
    assert sorted(p.name for p in theirs.iterdir()) == ["holiday.jpg"]
    again = Toy(mine)
    again.engine.fit(again.step)
    inside = mine / "checkpoint"
    with pytest.raises(ConfigError, match="holds this run's own input"):
        Toy(mine, fresh=True, inputs=[inside])
    with pytest.raises(ConfigError, match="holds this run's own input"):  # a save would replace it
        Toy(mine, inputs=[inside])
    assert (inside / "model.safetensors").exists()


def test_a_second_run_on_the_same_folder_is_refused_until_the_first_ends(tmp_path):
    first = Toy(tmp_path)
    with pytest.raises(InputError, match=f"in use by pid {os.getpid()}"):
        Toy(tmp_path)
    first.engine.fit(first.step)
    second = Toy(tmp_path)  # the first has finished: the folder is free
    assert second.engine.resume() and second.engine.step == 6


def test_a_diverging_run_stops_naming_the_step_and_keeps_its_last_checkpoint(tmp_path):
    toy = Toy(tmp_path, steps=6, save_every=2)
    step = toy.step
    toy.step = lambda: step() if toy.engine.step < 3 else toy.engine.check_finite(loss=float("nan"))
    with pytest.raises(DivergedError, match="step 4: the loss is nan; the run stopped .* step 2, is kept"):
        toy.engine.fit(toy.step)
    saved = checkpoint.load_weights(tmp_path / "checkpoint")
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 2
    assert all(torch.isfinite(v).all() for v in saved.values())
    with torch.no_grad():
        toy.model.weight.fill_(float("inf"))
    with pytest.raises(DivergedError, match="model weights are not finite; not saved"):
        toy.engine.save()
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 2


def test_a_checkpoint_of_another_run_or_process_count_is_refused(tmp_path):
    toy = Toy(tmp_path)
    toy.engine.fit(toy.step)
    judge = Toy(tmp_path, title="judge")
    with pytest.raises(CheckpointError, match="holds a toy run, not a judge run"):
        judge.engine.resume()
    judge.engine.close()
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    trainer = torch.load(tmp_path / "checkpoint" / "trainer.pt", weights_only=True)
    trainer["generators"] *= 2  # as if two processes had saved it
    checkpoint.save(tmp_path / "checkpoint", "toy", {}, toy.model.state_dict(), trainer, state)
    with pytest.raises(CheckpointError, match="saved by 2 processes"):
        Toy(tmp_path).engine.resume()


def test_resuming_with_changed_settings_says_what_changed(tmp_path, capsys):
    toy = Toy(tmp_path, steps=2)
    toy.engine.fit(toy.step)
    again = Toy(tmp_path, steps=4, config={"lr": 0.2})
    assert again.engine.resume()
    again.engine.close()
    assert "changed settings: lr: 0.1 -> 0.2" in " ".join(capsys.readouterr().err.split())
