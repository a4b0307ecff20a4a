"""Fixtures: the live service stack of stack_fixtures.py, and the monolith on the same
infrastructure."""

from __future__ import annotations

import pytest

from stack_fixtures import headers, infra, stack, tokens  # noqa: F401 (fixtures)
from svc_stack import ServiceProcess, free_port


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
