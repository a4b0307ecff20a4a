"""Fixtures: one real infrastructure (PostgreSQL, Redis, NATS) and one set of service processes
per test session, stopped at the end (also on failure)."""

from __future__ import annotations

import time

import httpx
import pytest

from services.infra import start_infra
from svc_stack import Stack

DEMO_PASSWORD = "cloudmart"


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


def get_token(auth_url: str, username: str, password: str = DEMO_PASSWORD) -> str:
    response = httpx.post(auth_url + "/api/auth/token",
                          data={"grant_type": "password", "username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture(scope="session")
def tokens(stack) -> dict[str, str]:
    return {name: get_token(stack.url("auth"), name) for name in ("alice", "bob", "admin")}


@pytest.fixture(scope="session")
def headers(tokens) -> dict[str, dict]:
    return {name: {"Authorization": f"Bearer {tok}"} for name, tok in tokens.items()}


def wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.1):
    """Poll ``predicate`` until it returns a truthy value (returned), or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s (last value: {last!r})")
