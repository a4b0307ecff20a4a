"""Client side of the local target: start, find, command and stop the detached supervisor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cluster.supervisor import STATE_FILE, kill_group
from services.infra import pid_alive, port_is_free, private_folder

DEFAULT_GATEWAY_PORT = 8080
UP_TIMEOUT_S = 120.0



def error_message(resp: httpx.Response, key: str = "detail") -> str:
    """The message of an error answer: its JSON `key` (FastAPI's "detail", OpenCost's "message"),
    else its text."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text
    return str(body.get(key, resp.text)) if isinstance(body, dict) else resp.text

class TargetError(RuntimeError):
    """A clear, one-line reason why the local target cannot do what was asked."""


REPO_ROOT = Path(__file__).resolve().parent.parent


def default_state_dir() -> Path:
    """One CloudMart per user, whatever the working directory (a notebook kernel runs in the
    notebook's folder): `.cloudmart/` at the root of the checkout this package runs from, else
    the user's state folder (`$XDG_STATE_HOME/cloudmart`, `~/.local/state/cloudmart`)."""
    if (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "cluster" / "manifests").is_dir():
        return REPO_ROOT / ".cloudmart"
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "cloudmart"


def state_dir(path: str | os.PathLike | None = None) -> Path:
    """The state folder: argument, else `CLOUDMART_STATE_DIR`, else :func:`default_state_dir`."""
    return Path(path or os.environ.get("CLOUDMART_STATE_DIR") or default_state_dir()).resolve()


def gateway_port(port: int | None = None) -> int:
    """The gateway port: argument, else `CLOUDMART_GATEWAY_PORT`, else 8080."""
    raw = port if port is not None else os.environ.get("CLOUDMART_GATEWAY_PORT", DEFAULT_GATEWAY_PORT)
    try:
        value = int(raw)
    except ValueError:
        raise TargetError(f"CLOUDMART_GATEWAY_PORT={raw!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise TargetError(f"gateway port {value} is out of range 1..65535")
    return value


class LocalTarget:
    """Handle on one local CloudMart (one state folder)."""

    def __init__(self, state: str | os.PathLike | None = None):
        self.state_dir = state_dir(state)

    # ----- discovery ---------------------------------------------------------------------
    def _state(self) -> dict | None:
        path = self.state_dir / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if pid_alive(data.get("pid")) else None

    def is_up(self) -> bool:
        """Whether a supervisor runs for this state folder."""
        return self._state() is not None

    def _request(self, method: str, path: str, body: dict | None = None, timeout_s: float = 90.0) -> dict:
        state = self._state()
        if state is None:
            raise TargetError(f"CloudMart is not up (state folder {self.state_dir}); run 'cloudmart up'")
        try:
            resp = httpx.request(method, f"http://127.0.0.1:{state['control_port']}{path}", json=body,
                                 headers={"Authorization": f"Bearer {state['token']}"}, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise TargetError(f"the supervisor does not answer: {exc}") from None
        if resp.status_code >= 400:
            raise TargetError(error_message(resp, "detail"))
        return resp.json()

    def status(self) -> dict:
        """Live status from the supervisor (target, gateway URL, per deployment wanted/ready)."""
        return self._request("GET", "/status", timeout_s=10)

    # ----- lifecycle ---------------------------------------------------------------------
    def up(self, *, mesh: bool = False, monolith: bool = False, replicas: dict[str, int] | None = None,
           port: int | None = None, wait: bool = True, timeout_s: float = UP_TIMEOUT_S,
           with_components: tuple[str, ...] = (), owner_pid: int | None = None) -> dict:
        """Start the supervisor if it is not running, and wait until every replica is ready.

        `owner_pid`: the supervisor stops everything once that process is gone (a notebook passes
        its kernel's pid, so a killed kernel does not leave this CloudMart running)."""
        if self.is_up():
            return self.wait_ready(timeout_s) if wait else self.status()
        port = gateway_port(port)
        if not port_is_free(port):
            raise TargetError(f"gateway port 127.0.0.1:{port} is already taken "
                              f"(set CLOUDMART_GATEWAY_PORT to another port)")
        for name, n in (replicas or {}).items():
            if not isinstance(n, int) or n < 0:
                raise TargetError(f"--replicas {name}={n}: the count must be a whole number >= 0")
        if mesh and not monolith:
            self._check_mesh_budget(replicas or {})
        if not os.environ.get("DATABASE_URL"):
            from services.infra import pg_layout

            try:   # before anything starts: can the embedded PostgreSQL run from here at all?
                pg_layout(self.state_dir)
            except RuntimeError as exc:
                raise TargetError(str(exc)) from None
        private_folder(self.state_dir)
        (self.state_dir / "logs").mkdir(exist_ok=True, mode=0o700)
        cmd = [sys.executable, "-m", "cluster.supervisor", "--state-dir", str(self.state_dir),
               "--gateway-port", str(port)]
        if mesh:
            cmd.append("--mesh")
        if monolith:
            cmd.append("--monolith")
        if replicas:
            cmd += ["--replicas", ",".join(f"{k}={v}" for k, v in replicas.items())]
        if with_components:
            cmd += ["--with", ",".join(with_components)]
        if owner_pid is not None:
            if not isinstance(owner_pid, int) or owner_pid <= 0:
                raise TargetError(f"owner_pid: got {owner_pid!r}; valid: the pid of a running process")
            cmd += ["--owner-pid", str(owner_pid)]
        if os.environ.get("CLOUDMART_MANIFESTS"):
            cmd += ["--manifests", os.environ["CLOUDMART_MANIFESTS"]]
        log_path = self.state_dir / "logs" / "supervisor.log"
        with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as logf:   # owner only
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=str(REPO_ROOT))
        deadline = time.monotonic() + timeout_s
        while self._state() is None:
            if proc.poll() is not None:
                raise TargetError(f"the supervisor exited with code {proc.returncode}: {_last_error(log_path)}")
            if time.monotonic() > deadline:
                kill_group(proc.pid)
                raise TargetError(f"the supervisor did not start within {timeout_s:.0f} s; see {log_path}")
            time.sleep(0.05)
        return self.wait_ready(max(1.0, deadline - time.monotonic()), proc) if wait else self.status()

    @staticmethod
    def _check_mesh_budget(replicas: dict[str, int]) -> None:
        """Before anything starts: do the gateway and one sidecar per replica fit in this user's
        inotify instances (`cluster.dataplane.limits`)?"""
        from cluster import topology
        from cluster.dataplane import limits

        manifests = Path(os.environ["CLOUDMART_MANIFESTS"]) if os.environ.get("CLOUDMART_MANIFESTS") \
            else topology.BASE_DIR
        deployments = topology.load(manifests).deployments
        envoys = 1 + sum(replicas.get(name, dep.replicas) for name, dep in deployments.items())
        try:
            limits.check(envoys, "up --mesh")
        except limits.InotifyBudgetError as exc:
            raise TargetError(str(exc)) from None

    def wait_ready(self, timeout_s: float = UP_TIMEOUT_S, proc: subprocess.Popen | None = None) -> dict:
        """Block until every wanted replica is ready; returns the status."""
        deadline = time.monotonic() + timeout_s
        while True:
            if proc is not None and proc.poll() is not None:
                raise TargetError(f"the supervisor exited with code {proc.returncode}: "
                                  f"{_last_error(self.state_dir / 'logs' / 'supervisor.log')}")
            try:
                status = self.status()
            except TargetError:
                status = None
            if status and status["ready"]:
                return status
            if time.monotonic() > deadline:
                waiting = [f"{k} (server down)" for k, v in (status or {}).get("infra", {}).items()
                           if v.get("alive") is False]
                waiting += [n for n, d in (status or {}).get("deployments", {}).items() if d["ready"] < d["wanted"]]
                raise TargetError(f"not ready after {timeout_s:.0f} s: {', '.join(waiting) or 'supervisor'}; "
                                  f"see {self.state_dir / 'logs'}")
            time.sleep(0.1)

    def down(self, purge: bool = False, timeout_s: float = 60.0) -> bool:
        """Stop everything this state folder's supervisor started; `purge` also deletes the data."""
        state_path = self.state_dir / STATE_FILE
        raw = None
        try:
            raw = json.loads(state_path.read_text())
        except (OSError, ValueError):
            pass
        was_up = False
        if raw and pid_alive(raw.get("pid")):
            was_up = True
            try:
                self._request("POST", "/shutdown", timeout_s=5)
            except TargetError:
                os.kill(raw["pid"], signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while pid_alive(raw["pid"]) and time.monotonic() < deadline:
                time.sleep(0.05)
        if raw:
            # Whatever is left (a supervisor killed hard): kill the process groups it recorded.
            _kill_recorded(raw)
            state_path.unlink(missing_ok=True)
        try:
            from services.infra import _load, _terminate  # noqa: PLC0415

            for info in (_load(self.state_dir).get("servers") or {}).values():
                _terminate(info.get("pid"), fast=True, timeout_s=10)
        except ImportError:
            pass
        if purge:
            import shutil

            from services.infra import purge_postgres

            purge_postgres(self.state_dir)
            if self.state_dir.exists():
                shutil.rmtree(self.state_dir)
        return was_up

    # ----- commands ----------------------------------------------------------------------
    def scale(self, deployment: str, replicas: int) -> dict:
        """Set the replica count of a Deployment."""
        return self._request("POST", "/scale", {"deployment": deployment, "replicas": replicas})

    def kill(self, deployment: str, replica: str | None = None) -> dict:
        """SIGKILL one replica (random unless named); the supervisor restarts it."""
        return self._request("POST", "/kill", {"deployment": deployment, "replica": replica})

    def canary(self, service: str, weight: int) -> dict:
        """Send `weight` percent of the service's traffic to its canary backend."""
        return self._request("POST", "/canary", {"service": service, "weight": weight})

    # ----- the control plane (cluster/control) ---------------------------------------------
    def _control(self, method: str, path: str, body: dict | None = None, params: dict | None = None,
                 timeout_s: float = 60.0) -> dict:
        """A control-plane call; a refusal raises `ApplyError` (its HTTP status kept as `.status`)."""
        from cluster.control import ApplyError, ApplyResult

        state = self._state()
        if state is None:
            raise TargetError(f"CloudMart is not up (state folder {self.state_dir}); run 'cloudmart up'")
        try:
            resp = httpx.request(method, f"http://127.0.0.1:{state['control_port']}{path}", json=body,
                                 params=params, headers={"Authorization": f"Bearer {state['token']}"},
                                 timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise TargetError(f"the supervisor does not answer: {exc}") from None
        if resp.status_code in (400, 403, 404, 409, 422):
            try:
                data = resp.json()
            except ValueError:
                data = {}
            result = ApplyResult.from_dict(data["result"]) if isinstance(data.get("result"), dict) else None
            raise ApplyError(str(data.get("detail") or resp.text), data.get("reasons"), result, status=resp.status_code)
        if resp.status_code >= 400:
            raise TargetError(error_message(resp, "detail"))
        return resp.json()

    def apply(self, objects: list[dict], dry_run: bool = False) -> dict:
        """Apply objects (already read into dicts); the ApplyResult as a dict."""
        return self._control("POST", "/apply", {"objects": objects, "dry_run": dry_run})

    def delete_objects(self, objects: list[dict], dry_run: bool = False) -> dict:
        return self._control("POST", "/delete", {"objects": objects, "dry_run": dry_run})

    def diff(self, objects: list[dict]) -> str:
        return self._control("POST", "/diff", {"objects": objects})["diff"]

    def get_objects(self, kind: str, name: str | None = None) -> list[dict]:
        return self._control("GET", "/objects", params={"kind": kind, **({"name": name} if name else {})})["items"]

    def audit(self) -> list[dict]:
        return self._control("GET", "/audit")["violations"]

    def rollout(self, deployment: str) -> dict:
        return self._control("GET", "/rollout", params={"deployment": deployment})

    def reset_objects(self) -> list[str]:
        """Prune and restore the desired state back to the manifests; what changed."""
        return self._control("POST", "/objects/reset")["changed"]

    def rollout_undo(self, deployment: str, to_revision: int | None = None) -> dict:
        return self._control("POST", "/rollout/undo", {"deployment": deployment, "to_revision": to_revision})


def _kill_recorded(raw: dict) -> None:
    status = raw.get("status") or {}
    pids = [status.get("gateway_pid"), raw.get("pid")]
    for dep in (status.get("deployments") or {}).values():
        for rep in dep.get("replicas", []):
            pids += [rep.get("pid"), rep.get("sidecar_pid")]
    for pid in pids:
        if pid_alive(pid):
            kill_group(pid, signal.SIGKILL)


def _last_error(log_path: Path) -> str:
    try:
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line.strip()[-300:]
    return lines[-1].strip()[-300:] if lines else "no log"
