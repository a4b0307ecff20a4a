"""The desired state on disk: one JSON file in the state folder, replaced atomically.

`<state>/control/desired.json` holds the objects applied on top of the manifests, the manifests'
objects that were deleted, and each Deployment's revision history. It is written to a temporary
file in the same folder, flushed to disk and renamed over the old one (`os.replace`), so a reader
or a supervisor started after a crash sees either the old state or the new one, never a mix; an
apply that is refused does not write at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

STORE_FILE = "desired.json"
FORMAT = 1


class StoreError(RuntimeError):
    """The desired-state file exists but cannot be read: nothing is guessed."""


class Store:
    """Read and replace the desired-state file."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / STORE_FILE

    @staticmethod
    def empty() -> dict:
        return {"format": FORMAT, "applied": {}, "deleted": [], "history": {}}

    def read(self) -> dict:
        """The stored state (an empty one when nothing was ever applied)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return self.empty()
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StoreError(f"{self.path}: not valid JSON ({exc}); move it away to start from the manifests") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StoreError(f"{self.path}: not a desired-state file of format {FORMAT}")
        for name, default in self.empty().items():
            data.setdefault(name, default)
        return data

    def write(self, data: dict) -> None:
        """Replace the stored state atomically (temporary file, fsync, rename)."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.folder / f".{STORE_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
