"""Password hashing (PBKDF2-SHA256 from the standard library) in a self-describing string."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_ITERATIONS = 120_000


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
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(base64.b64encode(digest).decode(), expected)
