"""The one training loop every trainer runs.

A trainer builds its model, optimizers and data, tells the engine which parts hold state, and calls `fit` with its
own explicit step (`step() -> metrics`). The engine owns the rest: the run folder (metrics.jsonl, TensorBoard,
checkpoint/), the progress bar, learning-rate schedules, EMA, work every n steps, and saving and restoring every
part together with every random generator (torch's, CUDA's, numpy's and the trainer's own, on every process), so a
resumed run continues exactly where the saved one stood.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from rich.console import Console

from tessera.engine import checkpoint
from tessera.engine.distributed import Processes, Whole
from tessera.engine.ema import EMA
from tessera.engine.progress import progress_bar
from tessera.engine.runfolder import RunFolder
from tessera.engine.runlog import RunLog
from tessera.errors import CheckpointError, DivergedError

Writer = Callable[[Path, dict, dict], None]  # (folder, trainer state, JSON state): writes a checkpoint there
Stateful = torch.nn.Module | torch.optim.Optimizer | EMA | Whole
Generator = torch.Generator | np.random.Generator
console = Console(stderr=True)


@dataclass
class Hook:
    every: int
    fn: Callable[[], dict[str, float] | None]  # returns metrics for this step's log row, or None
    at_start: bool  # also before the first step of a run


class Trainable(Protocol):
    """A trainer on the engine: its engine, and fit() to run it."""

    engine: Engine

    def fit(self, until: int | None = None) -> list[dict]: ...


T = TypeVar("T", bound=Trainable)


def finish(trainer: T, resume: bool = True) -> T:
    """Resume the trainer's run from its checkpoint (when asked and there is one), train to its last step, and leave
    the process group of a run under torchrun."""
    if resume:
        trainer.engine.resume()
    trainer.fit()
    trainer.engine.processes.end()
    return trainer


class Engine:
    def __init__(
        self,
        run: str | Path,
        title: str,  # what runs here (train, tokenizer, rl, ...): a checkpoint of another title is not resumed
        steps: int,
        write: Writer,
        config: dict,  # the trainer's config, kept in state.json; a resume says what changed since
        *,
        log_every: int = 1,
        save_every: int = 0,  # 0: at the end only
        show: Sequence[str] = (),  # metrics shown beside the progress bar
        counts: Sequence[str] = (),  # per-step counts (e.g. tokens) logged as <name>_per_s over the run
        progress: bool = True,
        processes: Processes | None = None,
        fresh: bool = False,  # delete the run folder first (only a tessera run folder)
        inputs: Iterable[str | Path] = (),  # what the run reads (checkpoints, data): never inside what it deletes
    ):
        self.run, self.title, self.steps, self.write, self.config = Path(run), title, steps, write, config
        self.log_every, self.save_every, self.show, self.counts = log_every, save_every, tuple(show), tuple(counts)
        self.progress = progress
        self.processes = processes or Processes()
        self.folder = RunFolder(self.run, title, fresh, inputs) if self.processes.main else None
        self.log = RunLog(self.run) if self.processes.main else None
        self.step = self.saved = 0
        self.resumed_at = -1  # the step this process's run resumed at; the log is cut back to it before one row
        self.logging = False
        self.parts: dict[str, Stateful] = {}
        self.generators: dict[str, Generator] = {}
        self.schedules: list[tuple[torch.optim.Optimizer, Callable[[int], float]]] = []
        self.hooks: list[Hook] = []

    def close(self) -> None:
        """Let another run use the folder (fit does this when it ends; a run never fitted must say so)."""
        if self.folder is not None:
            self.folder.release()

    @property
    def ckpt(self) -> Path:
        return self.run / "checkpoint"

    @property
    def main(self) -> bool:
        return self.processes.main

    # -- what the trainer hands over ---------------------------------------------------------------------
    def track(self, **parts: Stateful | Generator | None) -> None:
        """Parts saved and restored with every checkpoint (None: left out): modules, optimizers, EMAs and random
        generators (the data order included). torch's global and CUDA generators are always kept."""
        for name, part in parts.items():
            if isinstance(part, torch.Generator | np.random.Generator):
                self.generators[name] = part
            elif part is not None:
                self.parts[name] = part

    def schedule(self, opt: torch.optim.Optimizer, lr_at: Callable[[int], float]) -> None:
        """Set opt's learning rate to lr_at(step) before every step (logged as lr)."""
        self.schedules.append((opt, lr_at))

    def every(self, n: int, fn: Callable[[], dict[str, float] | None], at_start: bool = False) -> None:
        """Run fn after every n-th step and after the last (n = 0: never), on the main process; the metrics it
        returns join that step's log row."""
        if n > 0:
            self.hooks.append(Hook(n, fn, at_start))

    def check_finite(self, **values: float | torch.Tensor) -> None:
        """DivergedError naming this step when a value (a loss, a gradient norm) is not finite: call it before the
        optimizer steps, so no non-finite weight is ever made, let alone saved."""
        for name, value in values.items():
            value = float(value.detach() if isinstance(value, torch.Tensor) else value)
            if not math.isfinite(value):
                raise DivergedError(
                    f"step {self.step + 1}: the {name.replace('_', ' ')} is {value}; the run stopped "
                    f"(its last checkpoint, step {self.saved}, is kept; a lower lr may help)"
                )

    def note(self, **metrics: float) -> None:
        """Log metrics at the current step (main process)."""
        if self.log is None:
            return
        if not self.logging:  # rows past the checkpoint resumed (all, without one) are from a run that was cut
            self.log.truncate(self.resumed_at)
            self.logging = True
        self.log.log(self.step, **metrics)

    # -- the loop ----------------------------------------------------------------------------------------
    def fit(self, step: Callable[[], dict[str, float]], until: int | None = None) -> list[dict]:
        """Run steps up to `steps` (or stop after step `until`, as a killed run would); returns the metrics log."""
        end = self.steps if until is None else min(until, self.steps)
        if self.folder is not None:
            self.folder.hold()
        try:
            return self._fit(step, end)
        finally:
            self.close()

    def _fit(self, step: Callable[[], dict[str, float]], end: int) -> list[dict]:
        if self.step == 0 and end > 0:
            first = self._run_hooks(at_start=True)
            if first:
                self.note(**first)
        started, start = self.step, time.time()
        counted = dict.fromkeys(self.counts, 0.0)
        with progress_bar(self.progress and self.main) as bar:
            task = bar.add_task(self.title, total=self.steps, completed=self.step)
            while self.step < end:
                lrs = self._set_lr()
                out = step()
                for part in self.parts.values():
                    if isinstance(part, EMA):
                        part.update()
                self.step += 1
                for name in counted:
                    counted[name] += out.pop(name)
                last = self.step == self.steps
                extra = self._run_hooks()
                if self.step % self.log_every == 0 or last or extra:
                    seconds = max(time.time() - start, 1e-9)
                    rates = {f"{name}_per_s": v / seconds for name, v in counted.items()}
                    self.note(**out, **lrs, **rates, steps_per_s=(self.step - started) / seconds, **extra)
                if (self.save_every and self.step % self.save_every == 0) or last:
                    self.save()
                bar.update(task, completed=self.step, description=self._describe(out))
        self.processes.barrier()  # every process has finished (and the main one has saved)
        return self.log.read() if self.log is not None else []

    def _set_lr(self) -> dict[str, float]:
        out = {}
        for opt, lr_at in self.schedules:
            lr = lr_at(self.step)
            for group in opt.param_groups:
                group["lr"] = lr
            out.setdefault("lr", lr)
        return out

    def _run_hooks(self, at_start: bool = False) -> dict[str, float]:
        """The hooks due now (before the first step: those run at start), on the main process; their metrics."""
        out: dict[str, float] = {}
        last = self.step == self.steps
        for hook in self.hooks if self.main else ():
            if hook.at_start if at_start else (self.step % hook.every == 0 or last):
                out |= hook.fn() or {}
        return out

    def _describe(self, out: dict[str, float]) -> str:
        shown = [f"{k} {out[k]:.4g}" for k in self.show if k in out]
        return "  ".join([self.title, *shown])

    # -- checkpoints -------------------------------------------------------------------------------------
    def save(self) -> None:
        """Write the checkpoint (every process takes part: each hands over its random generators)."""
        generators = self.processes.gather(self._generator_states())
        trainer: dict[str, Any] = {name: part.state_dict() for name, part in self.parts.items()}  # (a Whole gathers)
        for name, part in self.parts.items():
            weights = isinstance(part, torch.nn.Module | EMA) or (isinstance(part, Whole) and part.weights)
            tensors = trainer[name].values() if weights else ()
            if not all(torch.isfinite(t).all() for t in tensors if t.is_floating_point()):
                raise DivergedError(
                    f"step {self.step}: the {name} weights are not finite; not saved (step {self.saved} is kept)"
                )
        self.saved = self.step
        if not self.main:
            return
        trainer["generators"] = generators
        state = {"step": self.step, "trainer": self.title, "processes": self.processes.count, "config": self.config}
        self.write(self.ckpt, trainer, state)

    def resume(self) -> bool:
        """Restore every part from the run's checkpoint, if it has one; True if it did."""
        saved = checkpoint.resumable(self.ckpt)
        if saved is None:
            return False
        trainer, state = saved
        if state.get("trainer") != self.title:
            raise CheckpointError(f"{self.ckpt} holds a {state.get('trainer')} run, not a {self.title} run")
        generators = trainer["generators"]
        if len(generators) != self.processes.count:
            raise CheckpointError(
                f"{self.ckpt} was saved by {len(generators)} processes; resume it with as many "
                f"(now {self.processes.count}), or start a new run from its weights"
            )
        for name, part in self.parts.items():
            try:
                part.load_state_dict(trainer[name])
            except (KeyError, RuntimeError, ValueError) as e:
                reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else "missing"
                raise CheckpointError(f"{self.ckpt}: its {name} does not fit this run ({reason})") from e
        self._set_generator_states(generators[self.processes.rank])
        self.step = self.saved = self.resumed_at = state["step"]
        self._say_what_changed(state.get("config", {}))
        return True

    def _generator_states(self) -> dict[str, Any]:
        out: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            out["cuda"] = torch.cuda.get_rng_state_all()
        for name, g in self.generators.items():
            out[name] = g.get_state().cpu() if isinstance(g, torch.Generator) else g.bit_generator.state
        return out

    def _set_generator_states(self, states: dict[str, Any]) -> None:
        torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        for name, g in self.generators.items():
            if isinstance(g, torch.Generator):
                g.set_state(states[name])
            else:
                g.bit_generator.state = states[name]

    def _say_what_changed(self, saved: dict) -> None:
        changed = [f"{k}: {saved_v!r} -> {now!r}" for k, saved_v, now in _differences(saved, self.config)]
        if changed and self.main:
            console.print(f"resuming {self.run} at step {self.step} with changed settings: " + "; ".join(changed))


def _differences(a: dict, b: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(key, a's value, b's value) for every leaf that differs between two nested dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append((prefix + key, x, y))
    return out
