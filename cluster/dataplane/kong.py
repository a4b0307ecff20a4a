"""Kong resources → the intermediate model: CloudMart's implementation of Kong's documented behaviour.

Kong itself cannot run on the local target (no wheel ships it), so its plugins become Envoy
filters, field by field, and every field lands in a `TranslationReport` as honoured,
approximated (with what differs) or unsupported. Plugins attach to HTTPRoutes by the
`konghq.com/plugins` annotation, as with Kong's Ingress Controller, or globally with a
KongClusterPlugin labelled `global: "true"`.

- `rate-limiting`: each window (second, minute, hour, day) is a fixed-window bucket (an Envoy
  token bucket refilled whole each window, so it counts like Kong's `local` policy), per route
  where the plugin is attached; `limit_by` ip, header and consumer; `policy: local` counts per
  gateway replica, like Kong's; `redis`/`cluster` are approximated by `local`.
- `jwt`: RS256 tokens checked by Envoy's `jwt_authn` against the auth service's JWKS (standing
  for the consumer credential's `rsa_public_key`); `anonymous` lets a request without a token
  through, as Kong does with an anonymous consumer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cluster.dataplane import model as m
from cluster.dataplane.errors import ResourceError, positive_int

PLUGINS_ANNOTATION = "konghq.com/plugins"
KNOWN_PLUGINS = {"rate-limiting", "jwt", "key-auth", "request-transformer", "cors", "proxy-cache", "acl",
                 "basic-auth", "ip-restriction", "response-transformer", "correlation-id", "prometheus"}
TRANSLATED_PLUGINS = {"rate-limiting", "jwt"}
WINDOWS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
CONSUMER_HEADER = "x-consumer-username"


@dataclass
class TranslationReport:
    """One line per plugin field: honoured / approximated / unsupported, with a note."""

    entries: list[tuple[str, str, str, str]] = field(default_factory=list)   # (object, field, status, note)

    def add(self, obj: str, fld: str, status: str, note: str = "") -> None:
        self.entries.append((obj, fld, status, note))

    def status(self, obj: str, fld: str) -> str | None:
        return next((s for o, f, s, _ in self.entries if o == obj and f == fld), None)

    def lines(self) -> list[str]:
        return [f"{o} {f}: {s}" + (f" ({n})" if n else "") for o, f, s, n in self.entries]


@dataclass(frozen=True)
class JwtIssuer:
    """Where the gateway gets the signing keys of the consumer credential's issuer."""

    issuer: str
    jwks_cluster: str
    jwks_uri: str


@dataclass
class KongConfig:
    """What Kong resources add to the gateway: per-route buckets and JWT checks, and the report."""

    route_limits: dict[str, tuple[m.RateLimit, ...]] = field(default_factory=dict)   # HTTPRoute -> buckets
    route_jwt: dict[str, bool] = field(default_factory=dict)                          # HTTPRoute -> checked
    jwt: m.JwtAuth | None = None
    report: TranslationReport = field(default_factory=TranslationReport)


def _plugin_objects(objects: list[dict]) -> dict[str, dict]:
    out = {}
    for obj in objects:
        if obj.get("kind") in ("KongPlugin", "KongClusterPlugin"):
            name = obj.get("metadata", {}).get("name")
            plugin = obj.get("plugin")
            if plugin not in KNOWN_PLUGINS:
                raise ResourceError(obj, "plugin", f"{plugin!r} is not a Kong plugin "
                                    f"(known: {', '.join(sorted(KNOWN_PLUGINS))})")
            if plugin not in TRANSLATED_PLUGINS:
                raise ResourceError(obj, "plugin", f"{plugin} is not honoured by the local data plane yet "
                                    f"(honoured: {', '.join(sorted(TRANSLATED_PLUGINS))}); use the kind target")
            out[name] = obj
    return out


def _rate_limits(obj: dict, report: TranslationReport) -> tuple[m.RateLimit, ...]:
    name = obj["metadata"]["name"]
    cfg = obj.get("config") or {}
    allowed = set(WINDOWS) | {"month", "year", "limit_by", "header_name", "policy", "fault_tolerant",
                              "hide_client_headers", "error_code", "error_message", "redis", "sync_rate",
                              "path", "retry_after_jitter_max"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ResourceError(obj, f"config.{unknown[0]}", "unknown field of the rate-limiting plugin")
    limit_by = cfg.get("limit_by", "consumer")
    if limit_by == "ip":
        key = "ip"
        report.add(name, "config.limit_by", "honoured", "one bucket per client address")
    elif limit_by == "header":
        if not cfg.get("header_name"):
            raise ResourceError(obj, "config.header_name", "is required with limit_by: header")
        key = f"header:{cfg['header_name'].lower()}"
        report.add(name, "config.limit_by", "honoured", f"one bucket per {cfg['header_name']} value")
    elif limit_by in ("consumer", "credential"):
        key = f"header:{CONSUMER_HEADER}"
        report.add(name, "config.limit_by", "approximated",
                   "the consumer is the verified token's issuer; requests without one share a bucket, as "
                   "Kong falls back to the client address")
    elif limit_by == "service":
        key = None
        report.add(name, "config.limit_by", "honoured", "one bucket per route the plugin is attached to")
    else:
        raise ResourceError(obj, "config.limit_by", f"{limit_by!r} is not consumer, credential, ip, service or header")
    limits = []
    for window, seconds in WINDOWS.items():
        if window in cfg:
            limit = positive_int(obj, f"config.{window}", cfg[window])
            limits.append(m.RateLimit(f"{name}.{window}", limit, limit, seconds, key))
            report.add(name, f"config.{window}", "honoured", f"fixed window of {seconds:g} s")
    for window in ("month", "year"):
        if window in cfg:
            report.add(name, f"config.{window}", "unsupported", "windows longer than a day are not counted locally")
    if not limits:
        raise ResourceError(obj, "config", "needs at least one of second, minute, hour, day")
    policy = cfg.get("policy", "local")
    if policy == "local":
        report.add(name, "config.policy", "honoured", "counted per gateway replica, as Kong's local policy")
    elif policy in ("redis", "cluster"):
        report.add(name, "config.policy", "approximated", f"{policy} counts per gateway replica (as local)")
    else:
        raise ResourceError(obj, "config.policy", f"{policy!r} is not local, cluster or redis")
    error_code = cfg.get("error_code", 429)
    if error_code != 429:
        report.add(name, "config.error_code", "unsupported", "Envoy answers 429")
    if cfg.get("hide_client_headers"):
        report.add(name, "config.hide_client_headers", "honoured")
    report.add(name, "response headers", "approximated",
               "x-ratelimit-limit / -remaining / -reset (IETF draft 03) instead of Kong's X-RateLimit-*-<Window>")
    return tuple(m.RateLimit(rl.name, rl.max_tokens, rl.tokens_per_fill, rl.fill_interval_s, rl.key,
                             response_headers=not cfg.get("hide_client_headers", False)) for rl in limits)


def _jwt(obj: dict, issuer: JwtIssuer | None, report: TranslationReport) -> m.JwtAuth:
    name = obj["metadata"]["name"]
    cfg = obj.get("config") or {}
    allowed = {"key_claim_name", "claims_to_verify", "header_names", "uri_param_names", "cookie_names",
               "anonymous", "run_on_preflight", "maximum_expiration", "secret_is_base64", "realm"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ResourceError(obj, f"config.{unknown[0]}", "unknown field of the jwt plugin")
    if issuer is None:
        raise ResourceError(obj, "plugin", "no issuer is known to check tokens against (the auth service is missing)")
    for claim in cfg.get("claims_to_verify", []):
        if claim not in ("exp", "nbf"):
            raise ResourceError(obj, "config.claims_to_verify", f"{claim!r} is not exp or nbf")
    report.add(name, "config.claims_to_verify", "honoured", "Envoy always checks exp and nbf")
    key_claim = cfg.get("key_claim_name", "iss")
    if key_claim != "iss":
        raise ResourceError(obj, "config.key_claim_name", f"{key_claim!r}: only iss is honoured locally")
    report.add(name, "config.key_claim_name", "honoured", f"tokens of issuer {issuer.issuer!r}")
    headers = [h.lower() for h in cfg.get("header_names", ["authorization"])]
    if headers != ["authorization"]:
        report.add(name, "config.header_names", "unsupported", "only the Authorization header is read")
    for unsupported in ("uri_param_names", "cookie_names", "maximum_expiration"):
        if cfg.get(unsupported):
            report.add(name, f"config.{unsupported}", "unsupported")
    report.add(name, "credentials", "approximated", "the auth service's JWKS stands for the rsa_public_key "
               "of the consumer's jwt credential")
    anonymous = bool(cfg.get("anonymous"))
    report.add(name, "config.anonymous", "honoured", "a request without a token passes" if anonymous
               else "a request without a token gets 401")
    provider = m.JwtProvider(name=name, issuer=issuer.issuer, audiences=(), jwks_cluster=issuer.jwks_cluster,
                             jwks_uri=issuer.jwks_uri, claim_headers=((CONSUMER_HEADER, "iss"),), forward=True)
    return m.JwtAuth((provider,), allow_missing=anonymous)


def translate(objects: list[dict], issuer: JwtIssuer | None = None) -> KongConfig:
    """Kong plugins of the HTTPRoutes (by annotation) and global KongClusterPlugins → KongConfig."""
    plugins = _plugin_objects(objects)
    out = KongConfig()
    limits = {n: _rate_limits(o, out.report) for n, o in plugins.items() if o["plugin"] == "rate-limiting"}
    jwts = {n: _jwt(o, issuer, out.report) for n, o in plugins.items() if o["plugin"] == "jwt"}
    if len(jwts) > 1:
        names = sorted(jwts)
        raise ResourceError(plugins[names[1]], "plugin", f"a second jwt plugin (besides {names[0]}) is not honoured")
    global_names = [n for n, o in plugins.items() if o.get("kind") == "KongClusterPlugin"
                    and (o.get("metadata", {}).get("labels") or {}).get("global") == "true"]
    for obj in objects:
        if obj.get("kind") == "KongConsumer":
            out.report.add(obj["metadata"]["name"], "username", "honoured", "a consumer name")
        if obj.get("kind") != "HTTPRoute":
            continue
        route = obj["metadata"]["name"]
        annotation = (obj["metadata"].get("annotations") or {}).get(PLUGINS_ANNOTATION, "")
        attached = [p.strip() for p in annotation.split(",") if p.strip()] + global_names
        for p in attached:
            if p not in plugins:
                raise ResourceError(obj, f"metadata.annotations.{PLUGINS_ANNOTATION}", f"KongPlugin {p!r} does not exist")
        out.route_limits[route] = tuple(rl for p in attached if p in limits for rl in limits[p])
        out.route_jwt[route] = any(p in jwts for p in attached)
    if jwts:
        out.jwt = next(iter(jwts.values()))
    return out
