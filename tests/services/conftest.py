"""Fixtures: one real infrastructure (PostgreSQL, Redis, NATS) and one set of service processes
per test session, stopped at the end (also on failure)."""

from __future__ import annotations

import pytest

from services.infra import start_infra
from svc_stack import ServiceProcess, Stack, free_port, get_token


@pytest.fixture(scope="session")
def infra(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("cloudmart-state")
    handle = start_infra(state_dir)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def stack(infra, tmp_path_factory):
    s = Stack(infra=infra, log_dir=tmp_path_factory.mktemp("service-logs"))
    try:
        s.start_all()
        yield s
    finally:
        s.stop_all()


@pytest.fixture(scope="session")
def tokens(stack) -> dict[str, str]:
    return {name: get_token(stack.url("auth"), name) for name in ("alice", "bob", "admin")}


@pytest.fixture(scope="session")
def headers(tokens) -> dict[str, dict]:
    return {name: {"Authorization": f"Bearer {tok}"} for name, tok in tokens.items()}


@pytest.fixture(scope="session")
def monolith(stack, tmp_path_factory):
    """The monolith on the same infrastructure (its own database), started once when first needed."""
    port = free_port()
    env = stack.env_for("monolith")
    env.pop("AUTH_JWKS_URL", None)
    env.pop("PRODUCT_URL", None)
    env["PORT"] = str(port)
    proc = ServiceProcess("monolith", port, env, tmp_path_factory.mktemp("monolith") / "monolith.log")
    proc.start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
