"""Fixtures of the security tests: their own live service stack (tests/services/stack_fixtures.py),
so that what these tests provoke (throttled logins, refused events) never reaches tests/services."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from stack_fixtures import headers, infra, stack, tokens  # noqa: E402,F401 (fixtures)
