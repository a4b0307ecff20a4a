"""Auth request/response models."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TokenPublic(BaseModel):
    """An OAuth2 access token (RFC 6749 §5.1)."""

    access_token: str
    token_type: str = Field("bearer", description="Always 'bearer'")
    expires_in: int = Field(description="Lifetime in seconds")
    scope: str = Field("", description="Granted roles, space separated")


class JwkPublic(BaseModel):
    kty: str
    kid: str
    use: str
    alg: str
    n: str
    e: str


class JwksPublic(BaseModel):
    keys: list[JwkPublic]


class VerifyPublic(BaseModel):
    """Result of a forward-auth check; identity is also returned as headers."""

    authenticated: bool
    sub: str | None = None
    roles: list[str] = []


class Problem(BaseModel):
    detail: str
