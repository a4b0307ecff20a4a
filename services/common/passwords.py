"""Password hashing (PBKDF2-SHA256 from the standard library) in a self-describing string.

One PBKDF2 costs tens of milliseconds of CPU. The async forms run it in a small thread pool
(``hashlib`` releases the GIL while it hashes), never on the event loop, and admit at most
``MAX_WAITING`` hashes at once: beyond that :class:`HasherBusy` (a 503 with ``Retry-After``)
answers at once instead of queueing without bound, so a flood of logins cannot make every
other request of the process wait.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from concurrent.futures import ThreadPoolExecutor

_ITERATIONS = 120_000

#: Threads hashing at once, and hashes admitted (running or waiting) per process.
POOL_THREADS = 2
MAX_WAITING = 16

_pool: ThreadPoolExecutor | None = None
_admitted = 0
_dummy_hash: str | None = None


class HasherBusy(Exception):
    """Too many password hashes are already running or waiting in this process."""


def hash_password(password: str) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<hash>``."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _ITERATIONS)
    return "$".join(["pbkdf2_sha256", str(_ITERATIONS), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()])


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches ``encoded`` (constant-time comparison)."""
    try:
        scheme, iterations, salt, expected = encoded.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(base64.b64encode(digest).decode(), expected)


async def _in_pool(fn, *args):
    global _pool, _admitted
    if _admitted >= MAX_WAITING:
        raise HasherBusy(f"{_admitted} password hashes already in progress")
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="pbkdf2")
    _admitted += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)
    finally:
        _admitted -= 1


async def hash_password_async(password: str) -> str:
    """:func:`hash_password` in the hashing pool."""
    return await _in_pool(hash_password, password)


async def verify_password_async(password: str, encoded: str | None) -> bool:
    """:func:`verify_password` in the hashing pool. Without a stored hash (unknown user), a
    dummy hash is checked anyway, so an unknown username costs as long as a wrong password."""
    global _dummy_hash
    if not encoded:
        if _dummy_hash is None:
            _dummy_hash = await _in_pool(hash_password, os.urandom(12).hex())
        await _in_pool(verify_password, password, _dummy_hash)
        return False
    return await _in_pool(verify_password, password, encoded)
