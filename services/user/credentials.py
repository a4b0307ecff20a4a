"""Checking a password against the credentials table (the user service's, or the monolith's)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.passwords import verify_password_async
from services.user.models import Credential


async def check(session: AsyncSession, username: str, password: str) -> list[str] | None:
    """The roles of ``username`` if ``password`` is right, else None. The hash runs in the
    hashing pool; an unknown username costs one hash too (no timing hint that it exists)."""
    credential = await session.get(Credential, username)
    ok = await verify_password_async(password, credential.password_hash if credential else None)
    if not ok or credential is None:
        return None
    return [role for role in credential.roles.split(",") if role]
