"""Redis and NATS take no anonymous client, and a service publishes only its own events.

Before, any local user could `HSET auth:user:eve … roles '["admin"]'` in Redis or publish a forged
`orders.payment_requested` of 1 cent on NATS. Now each client has its own user: the credentials
are in files only the owner can read (`infra.json`, the servers' configuration), and a NATS user's
permissions allow publishing on its own stream's subjects alone.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess

import nats
import nats.errors
import pytest
import redis

from services import infra


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    state = tmp_path_factory.mktemp("creds") / "state"
    started = infra.start_infra(state)
    try:
        yield started
    finally:
        started.stop()
        infra.purge_postgres(state)


def test_redis_refuses_a_client_without_credentials(servers):
    anonymous = redis.Redis(host="127.0.0.1", port=servers.servers["redis"]["port"], socket_timeout=2)
    with pytest.raises(redis.AuthenticationError):
        anonymous.hset("auth:user:eve", "roles", '["admin"]')
    wrong = redis.Redis.from_url(servers.redis_url_for("order").replace(servers.secrets["redis"]["order"], "guess"))
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    # A service's own user works.
    own = redis.Redis.from_url(servers.env_for("product")["REDIS_URL"], socket_timeout=2)
    assert own.set("product:cache-probe", "1") and own.get("product:cache-probe") == b"1"


async def _connect(url: str, errors: list):
    async def on_error(exc):
        errors.append(exc)

    return await nats.connect(url, error_cb=on_error, allow_reconnect=False, connect_timeout=2)


def test_nats_refuses_a_client_without_credentials(servers):
    port = servers.servers["nats"]["port"]

    async def attempt():
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await _connect(f"nats://127.0.0.1:{port}", [])

    asyncio.run(attempt())


def test_a_service_cannot_publish_another_services_events(servers):
    from nats.js import api

    async def scenario():
        errors: list = []
        admin = await _connect(servers.nats_url, [])
        js = admin.jetstream()
        for name in ("ORDERS", "INVENTORY"):
            await js.add_stream(api.StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
        inventory = await _connect(servers.env_for("inventory")["NATS_URL"], errors)
        ijs = inventory.jetstream(timeout=2)
        own = await ijs.publish("inventory.reserved", b"{}")
        with pytest.raises(nats.errors.TimeoutError):   # refused: no ack ever comes
            await ijs.publish("orders.payment_requested", b'{"amount_cents": 1}')
        await inventory.close()
        before = (await js.stream_info("ORDERS")).state.messages
        await admin.close()
        return own.seq, before, errors

    seq, orders_messages, errors = asyncio.run(scenario())
    assert seq >= 1
    assert orders_messages == 0, "the forged event reached the ORDERS stream"
    assert any("permissions violation for publish" in str(e) and "orders.payment_requested" in str(e)
               for e in errors), errors


def test_the_credentials_are_readable_by_their_owner_only(servers):
    root = servers.state_dir / "infra"
    for name in ("infra.json", "nats.conf", "redis-users.acl"):
        mode = stat.S_IMODE((root / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"
    if os.geteuid() == 0 and subprocess.run(["which", "runuser"], capture_output=True).returncode == 0:
        # Another local user cannot read them (root cannot test this on itself).
        done = subprocess.run(["runuser", "-u", "nobody", "--", "/bin/cat", str(root / "infra.json")],
                              capture_output=True, text=True)
        assert done.returncode != 0 and "Permission denied" in done.stderr


def test_a_new_state_folder_is_private(tmp_path):
    state = tmp_path / "fresh" / "state"
    infra.private_folder(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    # One the user made already keeps its mode.
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o750)
    mine.chmod(0o750)
    infra.private_folder(mine)
    assert stat.S_IMODE(mine.stat().st_mode) == 0o750
