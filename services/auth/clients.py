"""Registered OAuth2 clients and the scopes each role may be granted.

* ``storefront``: a browser client (public: it cannot keep a secret), authorization code + PKCE
  (S256 only) with exactly registered redirect URIs, as RFC 9700 (OAuth 2.0 Security BCP) asks.
* service clients (``services.common.demo.DEMO_CLIENTS``): ``client_credentials``.
* the password grant stays for the course's scripts and load generator; RFC 9700 §2.4 says it
  MUST NOT be used, and the lessons say so.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Scopes a token may carry, by the role of its subject (the union over the subject's roles).
ROLE_SCOPES: dict[str, tuple[str, ...]] = {
    "customer": ("catalog:read", "orders:read", "orders:write", "profile"),
    "admin": ("catalog:read", "catalog:write", "orders:read", "orders:write", "profile", "admin",
              "keys:rotate", "tokens:revoke"),
}


@dataclass(frozen=True)
class PublicClient:
    client_id: str
    redirect_uris: tuple[str, ...]


#: Browser clients (authorization code + PKCE). Redirect URIs compare as exact strings.
PUBLIC_CLIENTS: dict[str, PublicClient] = {
    "storefront": PublicClient("storefront", ("http://localhost:3000/callback",
                                              "http://127.0.0.1:3000/callback")),
}


def allowed_scopes(roles: list[str]) -> list[str]:
    out: list[str] = []
    for role in roles:
        for scope in ROLE_SCOPES.get(role, ()):
            if scope not in out:
                out.append(scope)
    return out


def grant_scopes(roles: list[str], requested: str | None) -> list[str]:
    """The scopes to grant: all the roles allow when none are asked, else exactly those asked.
    ``ValueError`` names any asked scope the roles do not allow."""
    allowed = allowed_scopes(roles)
    if requested is None or not requested.strip():
        return allowed
    asked = list(dict.fromkeys(requested.split()))
    extra = [s for s in asked if s not in allowed]
    if extra:
        raise ValueError(f"scope {' '.join(extra)!r} is not allowed for this subject; allowed: {' '.join(allowed)}")
    return asked
