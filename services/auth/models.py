"""Auth request/response models."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TokenPublic(BaseModel):
    """An OAuth2 access token (RFC 6749 §5.1)."""

    access_token: str
    token_type: str = Field("bearer", description="Always 'bearer'")
    expires_in: int = Field(description="Lifetime in seconds")
    scope: str = Field("", description="Granted OAuth2 scopes, space separated")


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


class RotateRequest(BaseModel):
    overlap: bool = Field(True, description="true: the published next key starts signing (planned); "
                                            "false: a new, never-published key signs at once (emergency)")


class KeyRingPublic(BaseModel):
    """The key ring by key id (never a key itself)."""

    current_kid: str
    next_kid: str | None
    retired_kids: list[str]
    published_kids: list[str]
    rotations: int
    read_only: bool


class RevokePublic(BaseModel):
    revoked: bool = Field(description="False when the token was already invalid or expired (RFC 7009 §2.2)")
    listed_for_s: int = Field(description="Seconds the token's jti stays on the deny list (its remaining lifetime)")
