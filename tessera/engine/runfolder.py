"""A run folder: a mark that tessera made it, an exclusive lock while a run writes there, and starting over
(--fresh) that deletes only a folder tessera made and never one that holds the run's own inputs.

The lock is an OS file lock (flock) on `.lock`: a second run on the same folder is refused and told who holds
it, and a killed run leaves nothing stuck, since the OS drops the lock with the process.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import shutil
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

from tessera.errors import ConfigError, InputError

MARKER = ".tessera-run"  # written into every run folder
LOCK = ".lock"


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check(folder: str | Path, fresh: bool, inputs: Iterable[str | Path] = ()) -> None:
    """ConfigError when the run may not use `folder`: --fresh on a folder tessera did not make, or one that holds
    an input of the run; and, fresh or not, an input inside the folder's checkpoint/ (a save would replace it)."""
    folder = Path(folder)
    for given in inputs:
        path = Path(given)
        if not str(given) or not path.exists():
            continue
        if _inside(path, folder / "checkpoint") or (fresh and _inside(path, folder)):
            raise ConfigError(f"--out {folder} holds this run's own input {path}; give another --out")
    foreign = folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / MARKER).exists()))
    if fresh and foreign:
        raise ConfigError(f"{folder} is not a tessera run folder; refusing to delete it (give a new --out)")


class RunFolder:
    """Claim a run folder for this process: checked, created, locked, emptied when fresh, and marked."""

    def __init__(self, path: str | Path, title: str, fresh: bool = False, inputs: Iterable[str | Path] = ()):
        self.path = Path(path)
        check(self.path, fresh, inputs)
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock = _acquire(self.path / LOCK)
        if fresh:
            for entry in self.path.iterdir():
                if entry.name != LOCK:
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        (self.path / MARKER).write_text(title + "\n")

    def hold(self) -> None:
        """Take the lock again after `release` (a run that trains once more)."""
        if self.lock.closed:
            self.lock = _acquire(self.path / LOCK)

    def release(self) -> None:
        """Let another run use the folder."""
        if not self.lock.closed:
            fcntl.flock(self.lock, fcntl.LOCK_UN)
            self.lock.close()


def _acquire(path: Path):
    """An open, exclusively locked lock file naming its holder; InputError naming the holder when it is taken."""
    lock = path.open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise InputError(f"{path.parent} is in use by {holder}; wait for it or give another --out") from None
    lock.seek(0)
    lock.truncate()
    since = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))[:160]
    lock.write(f"pid {os.getpid()} on {socket.gethostname()} since {since} ({command})")
    lock.flush()
    return lock
