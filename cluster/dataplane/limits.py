"""How many Envoys still fit in this user's inotify budget.

Every file-based xDS subscription of an Envoy (LDS, CDS, the shared RDS, one SDS per secret) and
every certificate file a secret watches costs that Envoy one inotify instance. Linux limits the
instances per user (`fs.inotify.max_user_instances`, 128 by default), shared by every process of
that user: editors, file watchers, other CloudMarts. An Envoy that cannot get one aborts, so the
mesh checks before it starts a sidecar instead:

    budget()                    # {"max": 128, "held": 3, "free": 125, "per_envoy": 7, "envoys": 17}
    check(envoys=10, what="up --mesh")      # raises InotifyBudgetError when they would not fit
"""

from __future__ import annotations

import os
from pathlib import Path

SYSCTL = "fs.inotify.max_user_instances"
SYSCTL_PATH = Path("/proc/sys/fs/inotify/max_user_instances")
# LDS, CDS, RDS, SDS for the certificate and for the CA, and the two files those secrets watch
# (measured on a running sidecar; tests/cluster/test_mesh.py asserts it).
PER_ENVOY = 7
DEFAULT_MAX = 128


class InotifyBudgetError(RuntimeError):
    """More Envoys were asked for than this user's inotify instances allow."""


def max_instances() -> int:
    try:
        return int(SYSCTL_PATH.read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_MAX


def instances_of(pid: int) -> int:
    """inotify instances a process holds (its `anon_inode:inotify` file descriptors)."""
    count = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return 0
    for fd in fds:
        try:
            if os.readlink(fd) == "anon_inode:inotify":
                count += 1
        except OSError:
            continue
    return count


def held(uid: int | None = None) -> int:
    """inotify instances held by every process of `uid` (this user by default)."""
    uid = os.getuid() if uid is None else uid
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
        except OSError:
            continue
        total += instances_of(int(entry.name))
    return total


def budget() -> dict:
    """The limit, what this user holds, what is free, and how many more Envoys fit."""
    limit, used = max_instances(), held()
    free = max(0, limit - used)
    return {"max": limit, "held": used, "free": free, "per_envoy": PER_ENVOY, "envoys": free // PER_ENVOY}


def check(envoys: int, what: str) -> dict:
    """Raise InotifyBudgetError (one line naming the sysctl) unless `envoys` more Envoys fit."""
    b = budget()
    need = envoys * PER_ENVOY
    if need > b["free"]:
        raise InotifyBudgetError(
            f"{what}: {envoys} Envoy(s) need {need} inotify instances, but this user holds {b['held']} of "
            f"{b['max']} ({b['free']} free); raise the limit (sudo sysctl {SYSCTL}={max(512, b['held'] + need)}) "
            f"or stop other CloudMarts")
    return b
