"""A pipeline runs named stages in order in one folder and records each in stages.json.

A stage is finished when its record is complete and was made from the same inputs: its own config and the stages
before it. A rerun reuses finished stages; an interrupted stage continues (its trainer resumes); a stage whose
inputs changed starts again from nothing, and so does every stage after it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from tessera.engine.checkpoint import write_atomically
from tessera.engine.loop import Trainable, finish
from tessera.engine.runfolder import RunFolder

console = Console()


class Pipeline:
    def __init__(self, folder: str | Path, title: str, fresh: bool = False):
        self.folder = Path(folder)
        self.claim = RunFolder(self.folder, title, fresh)  # checked, locked (until this process ends), marked
        self.path = self.folder / "stages.json"
        self.records: dict[str, dict] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.chain = ""  # the key of the last stage: every stage depends on all before it

    def stage(self, name: str, config: Any, fn: Callable[[bool], Any]) -> Any:
        """Run fn(fresh) unless a finished record with the same inputs exists; returns its JSON-able result."""
        key = hashlib.sha256(json.dumps([self.chain, config], sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.chain = key
        record = self.records.get(name)
        if record is not None and record["key"] == key and record["done"]:
            console.print(f"{name}: finished earlier, reused")
            return record["result"]
        fresh = record is not None and record["key"] != key  # its inputs changed: what it left is stale
        self._record(name, {"key": key, "done": False})
        start = time.time()
        result = fn(fresh)
        self._record(name, {"key": key, "done": True, "seconds": round(time.time() - start, 1), "result": result})
        return result

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.claim.release()  # another run may use the folder now

    def result(self, name: str) -> Any:
        return self.records[name]["result"]

    def timings(self) -> dict[str, float]:
        return {name: r["seconds"] for name, r in self.records.items() if r.get("done")}

    def _record(self, name: str, record: dict) -> None:
        self.records[name] = record
        write_atomically(self.path, json.dumps(self.records, indent=1) + "\n")


def reached(trainer: Trainable) -> dict:
    """Finish a training stage (resuming its run if it was cut short); its result: the step reached."""
    return {"step": finish(trainer).engine.step}
