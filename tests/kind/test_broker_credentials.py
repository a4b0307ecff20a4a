"""The kind target's NATS and Redis take no anonymous client and give each service its own user,
with the local target's permissions; each service gets only its own URL, from a Secret.

The rendered configuration is also run by the real servers (nats-server, redis-server) on
loopback: an anonymous client is refused, a service cannot publish another service's events, and
the readiness probe's user can PING and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nats
import nats.errors
import pytest
import redis

from cluster import broker_config
from services import infra

SERVICES = {"auth", "user", "product", "inventory", "order", "payment", "notification"}


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def secret(objects, prefix: str) -> dict[str, str]:
    (found,) = [o for o in by_kind(objects, "Secret") if o["metadata"]["name"].rsplit("-", 1)[0] == prefix]
    return {k: base64.b64decode(v).decode() for k, v in found["data"].items()}


def workload(objects, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == name]
    return found["spec"]["template"]["spec"]


def test_the_broker_files_are_what_the_local_rules_make():
    assert broker_config.stale() == [], "run `python -m cluster.broker_config --write`"
    # The services that publish events are those that get a NATS user; Redis is auth's and product's.
    publishers = {s for s, subjects in infra.NATS_EVENT_SUBJECTS.items() if subjects and s != "monolith"}
    assert set(broker_config.NATS_SERVICES) == publishers


@pytest.mark.parametrize("overlay", ["base", "istio", "kong"])
def test_nats_config_has_a_user_per_service_with_the_local_permissions(rendered, overlay):
    objects = rendered[overlay]
    conf = json.loads(secret(objects, "nats-config")["nats.conf"])
    users = {u["user"]: u for u in conf["authorization"]["users"]}
    assert set(users) == {*broker_config.NATS_SERVICES, "course"}
    assert "no_auth_user" not in conf and "no_auth_user" not in conf["authorization"]
    for name, user in users.items():
        assert user["password"] and user["permissions"] == infra._nats_permissions(name), name
    spec = workload(objects, "nats")
    container = spec["containers"][0]
    assert container["args"] == ["-c", "/etc/nats/nats.conf"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts["config"] == "/etc/nats" and volumes["config"]["secret"]["secretName"].startswith("nats-config-")
    assert conf["jetstream"]["store_dir"] == mounts["data"]


@pytest.mark.parametrize("overlay", ["base", "istio", "kong"])
def test_redis_has_no_default_user_and_a_user_per_service(rendered, overlay):
    objects = rendered[overlay]
    files = secret(objects, "redis-acl")
    lines = files["users.acl"].splitlines()
    assert lines[0] == "user default off"
    users = {line.split()[1]: line for line in lines}
    assert set(users) == {"default", "probe", *broker_config.REDIS_SERVICES}
    assert users["probe"] == f"user probe on >{files['probe-password']} -@all +ping"
    container = workload(objects, "redis")["containers"][0]
    assert container["args"][-2:] == ["--aclfile", "/etc/redis/users.acl"]
    assert "--user probe" in container["readinessProbe"]["exec"]["command"][-1]


@pytest.mark.parametrize("overlay", ["base", "istio", "kong"])
def test_each_service_gets_only_its_own_broker_url_from_a_secret(rendered, overlay):
    objects = rendered[overlay]
    urls = secret(objects, "cloudmart-broker")
    nats_users = {u["user"]: u["password"] for u in json.loads(secret(objects, "nats-config")["nats.conf"])["authorization"]["users"]}
    acl = {line.split()[1]: line for line in secret(objects, "redis-acl")["users.acl"].splitlines()}
    (config,) = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].startswith("cloudmart-config-")]
    assert not {"NATS_URL", "REDIS_URL"} & set(config["data"]), "no shared, credential-less broker URL"
    for dep in by_kind(objects, "Deployment"):
        if dep["metadata"]["labels"].get("app.kubernetes.io/component") != "service":
            continue
        service = dep["metadata"]["name"].removesuffix("-canary")
        env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        for var, kind, users in (("NATS_URL", "nats", broker_config.NATS_SERVICES),
                                 ("REDIS_URL", "redis", broker_config.REDIS_SERVICES)):
            if service not in users:
                assert var not in env, (service, var)
                continue
            ref = env[var]["valueFrom"]["secretKeyRef"]
            assert ref["name"].startswith("cloudmart-broker-") and ref["key"] == f"{var}_{service.upper()}"
            url = urlsplit(urls[ref["key"]])
            assert url.username == service, (service, url.username)
            password = unquote(url.password)
            if kind == "nats":
                assert nats_users[service] == password
            else:
                assert acl[service].startswith(f"user {service} on >{password} ")
    assert {d["metadata"]["name"].removesuffix("-canary") for d in by_kind(objects, "Deployment")} >= SERVICES


# ----- the real servers run the rendered configuration ---------------------------------------------


def _start(cmd: list[str], log: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        infra._wait_port(port, 15, proc, cmd[0])
    except BaseException:
        _stop(proc)
        raise
    return proc


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def _url(template: str, port: int) -> str:
    parts = urlsplit(template)
    return parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{port}").geturl()


def test_real_nats_server_runs_the_config_and_enforces_it(rendered, tmp_path):
    conf = json.loads(secret(rendered["base"], "nats-config")["nats.conf"])
    port, monitor = infra.free_port(), infra.free_port()
    conf.update(listen=f"127.0.0.1:{port}", http_port=monitor, jetstream={"store_dir": str(tmp_path / "js")})
    path = tmp_path / "nats.conf"
    path.write_text(json.dumps(conf))
    urls = secret(rendered["base"], "cloudmart-broker")
    proc = _start([infra._nats_binary(), "-c", str(path)], tmp_path / "nats.log", port)
    try:
        async def scenario():
            with pytest.raises(nats.errors.Error, match="Authorization Violation"):
                await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False, connect_timeout=2)
            order = await nats.connect(_url(urls["NATS_URL_ORDER"], port), allow_reconnect=False, connect_timeout=2)
            js = order.jetstream(timeout=2)
            await js.add_stream(name="ORDERS", subjects=["orders.>"])        # its own stream: allowed
            assert (await js.publish("orders.created", b"{}")).seq == 1
            errors: list = []

            async def on_error(exc):
                errors.append(str(exc))

            payment = await nats.connect(_url(urls["NATS_URL_PAYMENT"], port), allow_reconnect=False, connect_timeout=2,
                                         error_cb=on_error)
            with pytest.raises(nats.errors.TimeoutError):                     # refused: no ack ever comes
                await payment.jetstream(timeout=2).publish("orders.payment_requested", b'{"amount_cents": 1}')
            assert (await js.stream_info("ORDERS")).state.messages == 1
            assert any('permissions violation for publish to "orders.payment_requested"' in e for e in errors), errors
            await payment.close()
            await order.close()

        asyncio.run(scenario())
    finally:
        _stop(proc)


def test_real_redis_server_runs_the_acl_and_enforces_it(rendered, tmp_path):
    files = secret(rendered["base"], "redis-acl")
    acl = tmp_path / "users.acl"
    acl.write_text(files["users.acl"])
    port = infra.free_port()
    proc = _start([infra._redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                   "--dir", str(tmp_path), "--aclfile", str(acl)], tmp_path / "redis.log", port)
    try:
        anonymous = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        with pytest.raises(redis.AuthenticationError):
            anonymous.hset("auth:user:eve", "roles", '["admin"]')
        probe = redis.Redis(host="127.0.0.1", port=port, username="probe", password=files["probe-password"], socket_timeout=2)
        assert probe.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            probe.set("product:X", '{"price_cents": 1}')
        product = redis.Redis.from_url(_url(secret(rendered["base"], "cloudmart-broker")["REDIS_URL_PRODUCT"], port),
                                       socket_timeout=2)
        assert product.set("product:cache-probe", "1") and product.get("product:cache-probe") == b"1"
    finally:
        _stop(proc)
