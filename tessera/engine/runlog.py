"""A run's metrics: JSON lines in runs/<name>/metrics.jsonl, and TensorBoard events when tensorboard is installed.

A line cut short by a kill is skipped when the log is read, and dropped when a resumed run cuts the log back to
its checkpoint's step.
"""

from __future__ import annotations

import json
from pathlib import Path

from tessera.engine.checkpoint import write_atomically


def _rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            row = json.loads(line)
        except ValueError:  # the last line of a killed run
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def read_metrics(folder: str | Path) -> list[dict]:
    """The rows of folder/metrics.jsonl ([] when there is none)."""
    return _rows(Path(folder) / "metrics.jsonl")


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
        """Keep the whole rows up to `step` (a resumed run logs the later ones again); step -1: none."""
        if self.path.exists():
            keep = [row for row in _rows(self.path) if row["step"] <= step]
            write_atomically(self.path, "".join(json.dumps(row) + "\n" for row in keep))

    def read(self) -> list[dict]:
        return read_metrics(self.folder)
