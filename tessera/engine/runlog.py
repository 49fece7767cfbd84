"""A run's metrics: JSON lines in runs/<name>/metrics.jsonl, and TensorBoard events when tensorboard is installed."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(folder: str | Path) -> list[dict]:
    """The rows of folder/metrics.jsonl ([] when there is none)."""
    path = Path(folder) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class RunLog:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "metrics.jsonl"
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.folder / "tb"))
        except ImportError:  # tensorboard is optional
            self.tb = None

    def log(self, step: int, **metrics: float) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(k, v, step)

    def truncate(self, step: int) -> None:
        """Drop lines past `step` (a resumed run repeats them)."""
        if self.path.exists():
            keep = [line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= step]
            self.path.write_text("".join(line + "\n" for line in keep))

    def read(self) -> list[dict]:
        return read_metrics(self.folder)
