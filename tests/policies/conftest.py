"""Fixtures of the policy and scan tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def in_ci() -> bool:
    """CI must have every tool; a developer's machine may lack one and then skips that check."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
