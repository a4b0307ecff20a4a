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
- `request-transformer`: header `remove`, `replace` (only where present), `add` (only where
  absent), `append`, in Kong's order; querystring and body changes are unsupported.
- `cors`: Envoy's CORS filter per route (origins, methods, headers, exposed headers, max age,
  credentials); preflights are answered before the JWT check, as Kong's plugin order does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cluster.dataplane import model as m
from cluster.dataplane.errors import ResourceError, positive_int

PLUGINS_ANNOTATION = "konghq.com/plugins"
KNOWN_PLUGINS = {"rate-limiting", "jwt", "key-auth", "request-transformer", "cors", "proxy-cache", "acl",
                 "basic-auth", "ip-restriction", "response-transformer", "correlation-id", "prometheus"}
TRANSLATED_PLUGINS = {"rate-limiting", "jwt", "request-transformer", "cors"}
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
    """What Kong resources add to the gateway: per-route buckets, JWT checks, header changes, CORS."""

    route_limits: dict[str, tuple[m.RateLimit, ...]] = field(default_factory=dict)   # HTTPRoute -> buckets
    route_jwt: dict[str, bool] = field(default_factory=dict)                          # HTTPRoute -> checked
    route_headers: dict[str, m.HeaderChanges] = field(default_factory=dict)
    route_cors: dict[str, m.CorsPolicy] = field(default_factory=dict)
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


def _pairs(obj: dict, where: str, values) -> tuple[tuple[str, str], ...]:
    out = []
    for i, item in enumerate(values or []):
        name, sep, value = str(item).partition(":")
        if not sep or not name:
            raise ResourceError(obj, f"{where}[{i}]", f"{item!r} is not 'header:value'")
        out.append((name.strip().lower(), value.strip()))
    return tuple(out)


def _request_transformer(obj: dict, report: TranslationReport) -> m.HeaderChanges:
    name = obj["metadata"]["name"]
    cfg = obj.get("config") or {}
    actions = ("remove", "rename", "replace", "add", "append")
    unknown = sorted(set(cfg) - set(actions) - {"http_method"})
    if unknown:
        raise ResourceError(obj, f"config.{unknown[0]}", "unknown field of the request-transformer plugin")
    parts: dict = {}
    for action in actions:
        spec = cfg.get(action) or {}
        if not isinstance(spec, dict):
            raise ResourceError(obj, f"config.{action}", "expected an object with headers / querystring / body")
        bad = sorted(set(spec) - {"headers", "querystring", "body", "uri", "json", "json_types"})
        if bad:
            raise ResourceError(obj, f"config.{action}.{bad[0]}", "unknown field")
        for kind in ("querystring", "body", "json", "uri", "json_types"):
            if spec.get(kind):
                report.add(name, f"config.{action}.{kind}", "unsupported", "only headers are transformed locally")
        headers = spec.get("headers") or []
        if not headers:
            continue
        if action == "remove":
            parts["remove"] = tuple(str(h).lower() for h in headers)
        elif action == "rename":
            report.add(name, "config.rename.headers", "unsupported", "Envoy cannot rename a header")
            continue
        else:
            parts[{"replace": "replace", "add": "add_if_absent", "append": "add"}[action]] = _pairs(
                obj, f"config.{action}.headers", headers)
        report.add(name, f"config.{action}.headers", "honoured")
    if cfg.get("http_method"):
        report.add(name, "config.http_method", "unsupported")
    return m.HeaderChanges(**parts)


def _cors(obj: dict, report: TranslationReport) -> m.CorsPolicy:
    name = obj["metadata"]["name"]
    cfg = obj.get("config") or {}
    allowed = {"origins", "methods", "headers", "exposed_headers", "credentials", "max_age", "preflight_continue",
               "private_network", "allow_origin_absent"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ResourceError(obj, f"config.{unknown[0]}", "unknown field of the cors plugin")
    origins = cfg.get("origins") or ["*"]
    matches = tuple(m.StringMatch("prefix", "") if o == "*" else m.StringMatch("exact", str(o)) for o in origins)
    report.add(name, "config.origins", "honoured", "exact origins or '*'; regular expressions are taken literally")
    methods = tuple(cfg.get("methods") or ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE",
                                           "CONNECT"))
    max_age = cfg.get("max_age")
    if max_age is not None:
        max_age = positive_int(obj, "config.max_age", max_age, minimum=0)
    if cfg.get("preflight_continue"):
        report.add(name, "config.preflight_continue", "unsupported", "Envoy answers preflights itself")
    for fld in ("methods", "headers", "exposed_headers", "credentials", "max_age"):
        if fld in cfg:
            report.add(name, f"config.{fld}", "honoured")
    return m.CorsPolicy(matches, methods, tuple(cfg.get("headers") or ()), tuple(cfg.get("exposed_headers") or ()),
                        max_age, bool(cfg.get("credentials", False)))


def translate(objects: list[dict], issuer: JwtIssuer | None = None) -> KongConfig:
    """Kong plugins of the HTTPRoutes (by annotation) and global KongClusterPlugins → KongConfig."""
    plugins = _plugin_objects(objects)
    out = KongConfig()
    limits = {n: _rate_limits(o, out.report) for n, o in plugins.items() if o["plugin"] == "rate-limiting"}
    jwts = {n: _jwt(o, issuer, out.report) for n, o in plugins.items() if o["plugin"] == "jwt"}
    transformers = {n: _request_transformer(o, out.report) for n, o in plugins.items()
                    if o["plugin"] == "request-transformer"}
    cors = {n: _cors(o, out.report) for n, o in plugins.items() if o["plugin"] == "cors"}
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
        changes = [transformers[p] for p in attached if p in transformers]
        if len(changes) > 1:
            raise ResourceError(obj, f"metadata.annotations.{PLUGINS_ANNOTATION}", "more than one request-transformer")
        if changes:
            out.route_headers[route] = changes[0]
        policies = [cors[p] for p in attached if p in cors]
        if len(policies) > 1:
            raise ResourceError(obj, f"metadata.annotations.{PLUGINS_ANNOTATION}", "more than one cors plugin")
        if policies:
            out.route_cors[route] = policies[0]
    if jwts:
        out.jwt = next(iter(jwts.values()))
    return out
