"""The embedded infrastructure: real servers, reuse, restart with data kept, clean stop, CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import psycopg
import pytest
import redis

from services.infra import pid_alive, load_infra, start_infra


def _nats_roundtrip(url: str, publish: bool) -> int:
    import nats

    async def go():
        nc = await nats.connect(url)
        js = nc.jetstream()
        if publish:
            try:
                await js.add_stream(name="INFRATEST", subjects=["infratest.>"])
            except Exception:
                pass
            await js.publish("infratest.one", b"kept")
        info = await js.stream_info("INFRATEST")
        await nc.close()
        return info.state.messages
    return asyncio.run(go())


@pytest.mark.slow
def test_start_reuse_restart_keeps_data_and_stop_leaves_nothing(tmp_path):
    infra = start_infra(tmp_path)
    try:
        print("infra start-up seconds:", infra.startup_s)
        pids = {kind: info["pid"] for kind, info in infra.servers.items()}
        assert set(pids) == {"postgres", "redis", "nats"}
        # Idempotent: a second start reuses the running servers.
        again = start_infra(tmp_path)
        assert {k: v["pid"] for k, v in again.servers.items()} == pids
        # Write through each real server.
        with psycopg.connect(infra.database_url("order"), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('persisted')")
        redis.Redis.from_url(infra.redis_url).set("kept", "persisted")
        assert _nats_roundtrip(infra.nats_url, publish=True) == 1
        # Database per service: the order role cannot open the user database.
        # (a refusal for any other reason, e.g. a wrong password or a database that does not
        # exist, would not show the isolation: the error must be PostgreSQL's missing privilege)
        url = infra.database_url("order").rsplit("/", 1)[0] + "/user"
        with pytest.raises(psycopg.OperationalError, match='permission denied for database "user"'):
            psycopg.connect(url).close()
        with psycopg.connect(infra.database_url("user")) as conn:     # the database is there
            assert conn.execute("SELECT current_database()").fetchone() == ("user",)
    finally:
        infra.stop()
    assert not any(pid_alive(pid) for pid in pids.values()), "a server survived stop()"

    restarted = start_infra(tmp_path)
    try:
        assert all(info["pid"] not in pids.values() for info in restarted.servers.values())
        with psycopg.connect(restarted.database_url("order")) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == ("persisted",)
        assert redis.Redis.from_url(restarted.redis_url).get("kept") == b"persisted"
        assert _nats_roundtrip(restarted.nats_url, publish=False) == 1
    finally:
        restarted.stop()


def test_external_url_skips_the_embedded_server(tmp_path, monkeypatch, infra):
    monkeypatch.setenv("REDIS_URL", infra.redis_url)
    monkeypatch.setenv("NATS_URL", infra.nats_url)
    monkeypatch.setenv("DATABASE_URL", infra.database_url("order"))
    handle = start_infra(tmp_path)
    try:
        assert handle.servers == {}
        assert handle.env_for("payment") == {"REDIS_URL": infra.redis_url, "NATS_URL": infra.nats_url,
                                             "DATABASE_URL": infra.database_url("order"),
                                             "CLOUDMART_STATE_DIR": str(tmp_path.resolve())}
    finally:
        handle.stop()
    with pytest.raises(ValueError, match="unknown"):
        handle.env_for("nope")


@pytest.mark.slow
def test_cli_up_status_down_print_json(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "NATS_URL")}
    run = lambda *args: subprocess.run([sys.executable, "-m", "services.infra", *args, "--state-dir", str(tmp_path)],
                                       capture_output=True, text=True, env=env, timeout=120)
    try:
        up = run("up")
        assert up.returncode == 0, up.stderr
        status = json.loads(run("status").stdout)
        assert all(s["alive"] for s in status["servers"].values())
        assert status["env"]["order"]["DATABASE_URL"].startswith("postgresql://order:")
    finally:
        down = run("down")
    assert down.returncode == 0 and set(json.loads(down.stdout)["stopped"]) == {"nats", "postgres", "redis"}
    assert not any(pid_alive(s["pid"]) for s in status["servers"].values())
    assert load_infra(tmp_path).servers == {}
    bad = subprocess.run([sys.executable, "-m", "services.infra", "sideways"], capture_output=True, text=True)
    assert bad.returncode != 0 and "invalid choice" in bad.stderr
