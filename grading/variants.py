"""Per-learner variants, learner stamps and hidden cases.

An instructor gives every learner a copy of the notebooks stamped with the learner's id and a
signature, ``HMAC-SHA256(secret, learner_id)``, computed with an instructor secret the learner
never sees (``cloudmart student-notebooks OUT/ --roster roster.csv``). The stamp sits in the
notebook's metadata and in its first code cell, which calls :func:`stamp`.

:func:`variant` turns the stamp into a number per exercise: ``0`` without a stamp (the solution
notebooks, nbval and the book stay deterministic), else a positive integer derived from the
signature and the exercise id. Exercises derive their scenario numbers from it, so a learner
cannot compute another learner's variant without the secret, and an answer copied from another
variant is scored against the wrong numbers.

Batch grading (:mod:`grading.batch`) verifies each submission's stamp with the secret and passes
the verified stamp to the kernel in ``CLOUDMART_LEARNER_STAMP``, which takes precedence over the
notebook's own stamp cell: editing that cell changes nothing but the learner's own feedback.

:func:`hidden_seeds` gives the seeds of cases a check scores on but the notebook never shows.
With the instructor secret in the environment they cannot be computed by a learner; without it
they come from a key in this package's source — hidden from the notebook, not from a reader of
the package.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SECRET_ENV",
    "STAMP_ENV",
    "Stamp",
    "current_stamp",
    "hidden_seeds",
    "rng",
    "sign",
    "stamp",
    "variant",
    "verify",
]

SECRET_ENV = "CLOUDMART_INSTRUCTOR_SECRET"
STAMP_ENV = "CLOUDMART_LEARNER_STAMP"
STAMP_TAG = "learner-stamp"
METADATA_KEY = "cloudmart"

_LEARNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{32}$")
# Key of the hidden cases when no instructor secret is set (see the module docstring).
_BUILTIN_HIDDEN_KEY = b"cloudmart-course hidden cases v1"


@dataclass(frozen=True)
class Stamp:
    """A learner id and its signature (32 hex digits)."""

    learner_id: str
    signature: str

    def to_env(self) -> str:
        return f"{self.learner_id}:{self.signature}"

    @classmethod
    def from_env(cls, text: str) -> "Stamp":
        learner_id, sep, signature = text.rpartition(":")
        if not sep:
            raise ValueError(f"{STAMP_ENV}={text!r} is invalid; expected LEARNER_ID:SIGNATURE")
        return cls(*check_stamp(learner_id, signature))


def check_learner_id(learner_id: object) -> str:
    """``learner_id`` if it is a valid id, else ``ValueError`` saying what is allowed."""
    if not isinstance(learner_id, str) or not _LEARNER_ID.match(learner_id):
        raise ValueError(
            f"learner id {learner_id!r} is invalid; use 1 to 64 letters, digits or ._@+- "
            "(starting with a letter or digit)")
    return learner_id


def check_stamp(learner_id: object, signature: object) -> tuple[str, str]:
    check_learner_id(learner_id)
    if not isinstance(signature, str) or not _SIGNATURE.match(signature):
        raise ValueError(f"signature {signature!r} is invalid; it must be 32 lowercase hex digits")
    return learner_id, signature  # type: ignore[return-value]


def _secret_bytes(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < 16:
        raise ValueError("the instructor secret is too short; use at least 16 characters")
    return key


def sign(learner_id: str, secret: str | bytes) -> str:
    """The signature of ``learner_id`` under the instructor ``secret``."""
    check_learner_id(learner_id)
    mac = hmac.new(_secret_bytes(secret), b"cloudmart-learner:" + learner_id.encode(),
                   hashlib.sha256)
    return mac.hexdigest()[:32]


def verify(learner_id: str, signature: str, secret: str | bytes) -> bool:
    """Whether ``signature`` is the signature of ``learner_id`` under ``secret``."""
    try:
        expected = sign(learner_id, secret)
    except ValueError:
        return False
    return isinstance(signature, str) and hmac.compare_digest(expected, signature)


_stamp: Stamp | None = None


def stamp(learner_id: str, signature: str) -> Stamp:
    """Set this kernel's learner stamp (the first cell of a stamped notebook calls it)."""
    global _stamp
    _stamp = Stamp(*check_stamp(learner_id, signature))
    return _stamp


def clear_stamp() -> None:
    """Forget the stamp set by :func:`stamp` (variant 0 again, unless the environment sets one)."""
    global _stamp
    _stamp = None


def current_stamp() -> Stamp | None:
    """The stamp in force: ``CLOUDMART_LEARNER_STAMP`` (set by batch grading) first, else the
    one set by :func:`stamp`, else ``None``."""
    if STAMP_ENV in os.environ:  # batch grading decides, even if only to say "no stamp"
        env = os.environ[STAMP_ENV]
        return Stamp.from_env(env) if env else None
    return _stamp


def variant(exercise_id: str) -> int:
    """The variant of ``exercise_id`` for the current learner: 0 without a stamp, else an
    integer in 1 .. 2**31 - 1 derived from the stamp's signature and the exercise id."""
    if not isinstance(exercise_id, str) or not exercise_id:
        raise ValueError(f"exercise_id={exercise_id!r} is invalid; it must be a non-empty string")
    s = current_stamp()
    if s is None:
        return 0
    digest = hashlib.sha256(f"{s.signature}:{exercise_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 1) + 1


def rng(exercise_id: str, v: int) -> np.random.Generator:
    """The random generator a scenario of variant ``v`` of ``exercise_id`` draws its numbers
    from (the same numbers for the same pair, on every machine)."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"variant={v!r} is invalid; it must be an integer >= 0")
    return np.random.default_rng([int(v), zlib.crc32(exercise_id.encode())])


def hidden_seeds(exercise_id: str, n: int) -> list[int]:
    """``n`` seeds of hidden cases of ``exercise_id``, keyed by the instructor secret when
    ``CLOUDMART_INSTRUCTOR_SECRET`` is set, else by a key built into the package."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is invalid; it must be an integer >= 1")
    secret = os.environ.get(SECRET_ENV)
    key = _secret_bytes(secret) if secret else _BUILTIN_HIDDEN_KEY
    seeds = []
    for i in range(n):
        mac = hmac.new(key, f"hidden:{exercise_id}:{i}".encode(), hashlib.sha256).digest()
        seeds.append(int.from_bytes(mac[:4], "big"))
    return seeds


def instructor_secret(required: bool = True, path: str | None = None) -> str | None:
    """The instructor secret from the file ``path`` or ``CLOUDMART_INSTRUCTOR_SECRET``."""
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            text = fh.read().strip()
        _secret_bytes(text)
        return text
    text = os.environ.get(SECRET_ENV)
    if text:
        _secret_bytes(text)
        return text
    if required:
        raise ValueError(f"no instructor secret: set {SECRET_ENV} or pass --secret-file")
    return None
