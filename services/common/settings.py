"""Settings from the environment (12-factor): one frozen value read at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name}={raw!r} is not a flag; use 1/0, true/false, yes/no or on/off")


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


def _choice(name: str, valid: tuple[str, ...], default: str) -> str:
    value = os.environ.get(name) or default
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not one of: {', '.join(valid)}")
    return value


def _positive_int(name: str, default: int) -> int:
    value = _float(name, default)
    if value != int(value) or value < 1:
        raise ValueError(f"{name}={os.environ.get(name)!r} must be a whole number >= 1")
    return int(value)


@dataclass(frozen=True)
class Settings:
    """Everything a service reads from its environment."""

    service_name: str
    host: str = "127.0.0.1"
    port: int = 8080
    replica_id: str = ""
    service_version: str = "v1"
    state_dir: Path = Path(".cloudmart")
    database_url: str | None = None
    redis_url: str | None = None
    nats_url: str | None = None
    mongo_url: str | None = None
    auth_jwks_url: str | None = None
    jwt_issuer: str = "cloudmart-auth"
    jwt_audience: str = "cloudmart"
    product_url: str | None = None
    demo_password: str = "cloudmart"
    rate_limit_rps: float = 1000.0
    rate_limit_burst: float = 2000.0
    token_ttl_s: int = 3600
    log_level: str = "INFO"
    api_docs: bool = False  # /openapi.json and /docs (off unless CLOUDMART_API_DOCS=1)
    max_body_bytes: int = 64 * 1024
    user_url: str | None = None  # auth: the user service, which keeps the credentials
    login_max_failures_account: int = 10
    login_max_failures_ip: int = 100
    login_failure_window_s: int = 300
    metrics_auth: str = "token"  # "token": /metrics needs the scrape token; "none": open (a cluster's NetworkPolicy guards it)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, default_name: str) -> "Settings":
        """Read the settings of service ``default_name`` (``SERVICE_NAME`` overrides)."""
        env = os.environ
        name = env.get("SERVICE_NAME") or default_name
        port_raw = env.get("PORT", "8080")
        try:
            port = int(port_raw)
        except ValueError:
            raise ValueError(f"PORT={port_raw!r} is not an integer") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"PORT={port} is outside 0..65535")
        return cls(
            service_name=name,
            host=env.get("HOST", "127.0.0.1"),
            port=port,
            replica_id=env.get("REPLICA_ID") or f"{name}-0",
            service_version=env.get("SERVICE_VERSION", "v1"),
            state_dir=Path(env.get("CLOUDMART_STATE_DIR", ".cloudmart")),
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            nats_url=env.get("NATS_URL") or None,
            mongo_url=env.get("MONGO_URL") or None,
            auth_jwks_url=env.get("AUTH_JWKS_URL") or None,
            jwt_issuer=env.get("JWT_ISSUER", "cloudmart-auth"),
            jwt_audience=env.get("JWT_AUDIENCE", "cloudmart"),
            product_url=(env.get("PRODUCT_URL") or "").rstrip("/") or None,
            demo_password=env.get("CLOUDMART_DEMO_PASSWORD", "cloudmart"),
            rate_limit_rps=_float("RATE_LIMIT_RPS", 1000.0),
            rate_limit_burst=_float("RATE_LIMIT_BURST", 2000.0),
            token_ttl_s=int(_float("TOKEN_TTL_S", 3600)),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            api_docs=_flag("CLOUDMART_API_DOCS"),
            max_body_bytes=_positive_int("MAX_BODY_BYTES", 64 * 1024),
            user_url=(env.get("USER_URL") or "").rstrip("/") or None,
            login_max_failures_account=_positive_int("LOGIN_MAX_FAILURES_ACCOUNT", 10),
            login_max_failures_ip=_positive_int("LOGIN_MAX_FAILURES_IP", 100),
            login_failure_window_s=_positive_int("LOGIN_FAILURE_WINDOW_S", 300),
            metrics_auth=_choice("METRICS_AUTH", ("token", "none"), "token"),
        )
