"""Validated field types shared by request models (bad input → 422 with a clear message)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, Field, StringConstraints


def _no_control_chars(value: str) -> str:
    if any(ord(ch) < 32 and ch not in "\t\n" for ch in value):
        raise ValueError("must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone UTF-16 surrogate (JSON "\ud800") is no character
        raise ValueError("must be valid Unicode text (no lone UTF-16 surrogates)") from None
    return value


#: Free text without NUL or other control characters (PostgreSQL rejects NUL bytes) and
#: without lone surrogates (they cannot be encoded, stored or hashed).
Text = Annotated[str, AfterValidator(_no_control_chars)]

ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"

#: An identifier: letters, digits, '_', '.', '-' (1–64 characters).
Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

#: The same rule for path parameters.
IdPath = Annotated[str, Path(pattern=ID_PATTERN, description="Identifier: [A-Za-z0-9_.-]{1,64}")]

#: A JSON integer, strictly: ``true`` or ``"1"`` is a 422, not one unit.
Quantity = Annotated[int, Field(strict=True, ge=1, le=1000, description="Units, 1–1000")]
