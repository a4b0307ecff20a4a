"""The embedded infrastructure starts from a private folder (mode 0700), as root and as a user.

As root, PostgreSQL runs as the system user `pgserver`, which cannot enter a folder of mode 0700
that root owns (like /root, or `mktemp -d`). The binaries and the data then live under
`CLOUDMART_PG_HOME`; the permissions of the user's own folders are never changed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from services import infra

REPO = Path(__file__).resolve().parents[2]
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL runs as another user only under root")


def _private(path: Path) -> Path:
    path.mkdir(parents=True)
    path.chmod(0o700)
    return path


@pytest.fixture
def pg_home(tmp_path_factory, monkeypatch):
    """A CLOUDMART_PG_HOME of the test's own (in a folder everyone can enter, like /var/lib)."""
    base = Path("/var/tmp") / f"cloudmart-test-{os.getpid()}"
    base.mkdir(mode=0o755, exist_ok=True)
    base.chmod(0o755)
    monkeypatch.setenv("CLOUDMART_PG_HOME", str(base / "pg"))
    try:
        yield base / "pg"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@root_only
def test_root_starts_postgres_from_a_private_folder(tmp_path: Path, pg_home: Path, monkeypatch):
    private = _private(tmp_path / "private")
    # The checkout itself sits in the private folder too: copy the wheel's PostgreSQL there.
    install = private / "site-packages" / "pgserver" / "pginstall"
    shutil.copytree(infra._pg_install_dir(), install, symlinks=True)
    libs = infra._pg_install_dir().parent.parent / "pgserver.libs"
    if libs.is_dir():
        shutil.copytree(libs, install.parent.parent / "pgserver.libs", symlinks=True)
    monkeypatch.setattr(infra, "_pg_install_dir", lambda: install)
    state = private / "checkout" / ".cloudmart"
    modes_before = {p: _mode(p) for p in (tmp_path, private)}

    layout = infra.pg_layout(state)
    assert layout.user == infra.PG_SERVER_USER and layout.relocated
    assert layout.bin_dir.is_relative_to(pg_home) and layout.data_dir.is_relative_to(pg_home)

    started = infra.start_infra(state)
    try:
        pg = started.servers["postgres"]
        assert Path(pg["data_dir"]).is_relative_to(pg_home)
        with infra._pg_admin_connect(pg["port"], started.secrets["pg_superuser"]) as conn:
            assert conn.execute("SELECT current_setting('data_directory')").fetchone()[0] == pg["data_dir"]
        # A service's own role works (what the services use).
        import psycopg

        with psycopg.connect(started.database_url("order"), connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == "order"
    finally:
        started.stop()
    assert {p: _mode(p) for p in modes_before} == modes_before, "the user's folders were loosened"
    assert _mode(private) == 0o700
    # No password file is left where another user could read it.
    assert not list(pg_home.rglob("*.pw")) and not list(state.rglob("*.pw"))

    # A restart finds the same data; `purge` deletes it.
    again = infra.start_infra(state)
    try:
        assert again.servers["postgres"]["data_dir"] == pg["data_dir"]
    finally:
        again.stop()
    infra.purge_postgres(state)
    assert not Path(pg["data_dir"]).exists()


@root_only
def test_data_of_a_deleted_state_folder_is_collected(tmp_path: Path, pg_home: Path):
    state = _private(tmp_path / "private") / ".cloudmart"
    started = infra.start_infra(state)
    started.stop()
    data = Path(started.servers.get("postgres", {}).get("data_dir") or json.loads(
        (state / "infra" / "infra.json").read_text())["last_servers"]["postgres"]["data_dir"])
    assert data.exists()
    shutil.rmtree(tmp_path / "private")
    other = _private(tmp_path / "other") / ".cloudmart"
    infra.pg_layout(other, create=True)
    assert not data.parent.exists(), "data of a state folder that no longer exists is removed"


@root_only
def test_up_says_in_one_line_when_postgres_cannot_run(tmp_path: Path, monkeypatch):
    private = _private(tmp_path / "private")
    state = private / ".cloudmart"
    monkeypatch.setenv("CLOUDMART_PG_HOME", str(_private(tmp_path / "closed") / "pg"))
    env = {**os.environ, "CLOUDMART_STATE_DIR": str(state), "CLOUDMART_GATEWAY_PORT": str(infra.free_port())}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "cluster.cli", "up"], capture_output=True, text=True,
                          env=env, timeout=60, cwd=REPO)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(tmp_path / "closed") in lines[0] and "normal user" in lines[0]
    assert not (state / "supervisor.json").exists(), "nothing was started"


def _runuser() -> list[str] | None:
    for tool in (["runuser", "-u", "nobody", "--"], ["setpriv", "--reuid=nobody", "--regid=nogroup",
                                                         "--clear-groups", "--"]):
        if shutil.which(tool[0]):
            return tool
    return None


def _python_for_nobody() -> tuple[Path, str]:
    """A Python of this version that user nobody can run, and the PYTHONPATH to this environment.

    The environment's interpreter may sit under root's private home (pyenv); then a system Python
    of the same version runs the environment's packages."""
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    for candidate in (Path(sys.executable), Path(f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}")):
        if candidate.exists() and infra.blocked_for(candidate.resolve(), 65534, 65534) is None:
            blocked = infra.blocked_for(Path(site), 65534, 65534) or infra.blocked_for(REPO, 65534, 65534)
            if blocked is not None:
                pytest.skip(f"user nobody cannot enter {blocked}, where this checkout lives")
            return candidate, os.pathsep.join([str(REPO), site])
    pytest.skip("no Python of this version that user nobody can run")


@root_only
def test_an_unprivileged_user_starts_the_infrastructure_from_a_private_folder(tmp_path: Path):
    runner = _runuser()
    if runner is None:
        pytest.skip("neither runuser nor setpriv is installed")
    python, env_path = _python_for_nobody()
    home = Path("/var/tmp") / f"cloudmart-nobody-{os.getpid()}"   # pytest's own tmp folder is root's, 0700
    home.mkdir(exist_ok=True)
    os.chown(home, 65534, 65534)
    home.chmod(0o755)
    private = home / "private"
    private.mkdir()
    os.chown(private, 65534, 65534)
    private.chmod(0o700)
    state = private / ".cloudmart"
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(home),
           "PYTHONPATH": env_path}
    cmd = [*runner, str(python), "-m", "services.infra"]
    try:
        up = subprocess.run([*cmd, "up", "--state-dir", str(state)], capture_output=True, text=True, env=env,
                            timeout=120, cwd=str(home))
        assert up.returncode == 0, up.stderr[-2000:]
        status = json.loads(up.stdout)
        assert Path(status["servers"]["postgres"]["data_dir"]).is_relative_to(private)
        assert all(s["alive"] for s in status["servers"].values())
    finally:
        subprocess.run([*cmd, "down", "--state-dir", str(state)], capture_output=True, text=True, env=env,
                       timeout=60, cwd=str(home))
        mode = _mode(private)
        shutil.rmtree(home, ignore_errors=True)
    assert mode == 0o700


@root_only
def test_a_state_folder_made_again_at_the_same_path_gets_a_fresh_database(tmp_path: Path, pg_home: Path):
    """Its old data outside it would carry another superuser password: it is discarded, not reused."""
    state = _private(tmp_path / "private") / ".cloudmart"
    first = infra.start_infra(state)
    first.stop()
    shutil.rmtree(state)                       # deleted without `down --purge`, then made again
    again = infra.start_infra(state)
    try:
        with infra._pg_admin_connect(again.servers["postgres"]["port"], again.secrets["pg_superuser"]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert again.secrets["pg_superuser"] != first.secrets["pg_superuser"]
    finally:
        again.stop()
        infra.purge_postgres(state)
