"""Fixtures of the security tests: one real infrastructure and one set of service processes per
session (the same harness as tests/services), plus an attacker's raw access to the event bus."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from services.infra import start_infra  # noqa: E402
from svc_stack import Stack, get_token  # noqa: E402


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
