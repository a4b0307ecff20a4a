"""The session fixtures of a live service stack: one real infrastructure (PostgreSQL, Redis, NATS)
and one set of service processes, stopped at the end (also on failure), plus demo tokens.

A ``conftest.py`` imports these names to get its own stack: tests/services and tests/security each
have one, so the login throttling the security tests provoke never reaches the service tests.
"""

from __future__ import annotations

import pytest

from services.infra import start_infra
from svc_stack import Stack, get_token


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
