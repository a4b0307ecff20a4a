"""The intermediate model between Kubernetes-style resources and Envoy's v3 JSON.

Translators (`gateway_api`, `istio`, `kong`) fill these dataclasses; `envoy` renders them. Tests
check translations here, where a weight or a timeout is one field, rather than in Envoy's JSON.
Durations are seconds (float), percentages are 0–100.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# segment_prefix is Gateway API's PathPrefix (/a matches /a and /a/b, not /ab); prefix is a plain
# string prefix (Istio's uri.prefix).
PathKind = Literal["segment_prefix", "prefix", "exact", "regex"]
StringKind = Literal["exact", "prefix", "suffix", "regex", "present"]


@dataclass(frozen=True)
class StringMatch:
    """A string matcher: exact, prefix, suffix, regex, or presence ('present' ignores value)."""

    kind: StringKind
    value: str = ""


@dataclass(frozen=True)
class Endpoint:
    """One upstream address: a TCP host:port, or a Unix socket path (`pipe`)."""

    host: str = "127.0.0.1"
    port: int = 0
    pipe: str | None = None


@dataclass(frozen=True)
class CircuitBreaker:
    """Envoy's default-priority thresholds (Istio's DestinationRule connectionPool)."""

    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_requests: int | None = None
    max_retries: int | None = None


@dataclass(frozen=True)
class OutlierDetection:
    """Passive health checking: eject a host after consecutive errors (Istio's outlierDetection)."""

    consecutive_5xx: int | None = None
    consecutive_gateway_errors: int | None = None
    interval_s: float = 10.0
    base_ejection_time_s: float = 30.0
    max_ejection_percent: int = 10
    min_health_percent: int | None = None


@dataclass(frozen=True)
class UpstreamTLS:
    """mTLS towards the upstream with SDS secrets; the peer must present one of `peer_sans`."""

    cert_secret: str
    ca_secret: str
    sni: str | None = None
    peer_sans: tuple[str, ...] = ()       # SPIFFE URIs (URI SAN) the peer may present


@dataclass(frozen=True)
class Cluster:
    """An upstream cluster: static endpoints, balancing, pools, outlier detection, TLS."""

    name: str
    endpoints: tuple[Endpoint, ...]
    lb_policy: Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"] = "ROUND_ROBIN"
    connect_timeout_s: float = 2.0
    circuit_breaker: CircuitBreaker | None = None
    outlier_detection: OutlierDetection | None = None
    tls: UpstreamTLS | None = None
    max_requests_per_connection: int | None = None
    idle_timeout_s: float | None = None


@dataclass(frozen=True)
class HeaderMatch:
    name: str
    match: StringMatch
    invert: bool = False
    above: int | None = None          # instead of `match`: the value is an integer > above


@dataclass(frozen=True)
class QueryMatch:
    name: str
    match: StringMatch


@dataclass(frozen=True)
class RouteMatch:
    """Path, header, query and method conditions; all must hold."""

    path: str = "/"
    path_kind: PathKind = "prefix"
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()
    methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class WeightedCluster:
    cluster: str
    weight: int


@dataclass(frozen=True)
class RetryPolicy:
    """Envoy's retry policy; `retry_on` is Envoy's comma-separated condition list."""

    attempts: int
    retry_on: str = "5xx,connect-failure,refused-stream"
    per_try_timeout_s: float | None = None
    retriable_status_codes: tuple[int, ...] = ()
    retry_other_hosts: bool = True          # previous_hosts predicate, as Istio sets


@dataclass(frozen=True)
class Mirror:
    cluster: str
    percent: float = 100.0


@dataclass(frozen=True)
class Fault:
    """Injected delay and/or abort for a share of the requests (Istio's VirtualService fault)."""

    delay_s: float | None = None
    delay_percent: float = 0.0
    abort_status: int | None = None
    abort_percent: float = 0.0


@dataclass(frozen=True)
class HeaderChanges:
    """Request header changes (Gateway API's RequestHeaderModifier, Istio's headers.request)."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()            # appended to any value already there
    remove: tuple[str, ...] = ()
    add_if_absent: tuple[tuple[str, str], ...] = ()  # Kong request-transformer `add`
    replace: tuple[tuple[str, str], ...] = ()        # only where the header is present (Kong `replace`)


@dataclass(frozen=True)
class CorsPolicy:
    """Envoy's CORS policy of a route (Kong's `cors` plugin)."""

    origins: tuple[StringMatch, ...]
    methods: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_s: int | None = None
    credentials: bool = False


@dataclass(frozen=True)
class DirectResponse:
    status: int
    body: str = ""


@dataclass(frozen=True)
class Route:
    """One route: a match, then weighted clusters (or a direct response) and per-route policies."""

    name: str
    match: RouteMatch
    clusters: tuple[WeightedCluster, ...] = ()
    direct_response: DirectResponse | None = None
    timeout_s: float | None = None          # whole request, retries included (0 = none)
    retry: RetryPolicy | None = None
    request_headers: HeaderChanges = field(default_factory=HeaderChanges)
    mirrors: tuple[Mirror, ...] = ()
    prefix_rewrite: str | None = None
    full_path_rewrite: str | None = None
    host_rewrite: str | None = None
    fault: Fault | None = None
    cors: CorsPolicy | None = None
    rate_limits: tuple["RateLimit", ...] = ()   # buckets of this route only (Kong counts per route)
    jwt_disabled: bool = False                  # skip the listener's JWT check on this route
    unbuffered: bool = False          # the listener's body buffer (size limit) skips this route


@dataclass(frozen=True)
class VirtualHost:
    """Routes for some Host names; `request_headers` apply to every route (values may use Envoy's
    substitution formatters, such as %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%)."""

    name: str
    domains: tuple[str, ...] = ("*",)
    routes: tuple[Route, ...] = ()
    request_headers: HeaderChanges = field(default_factory=HeaderChanges)


@dataclass(frozen=True)
class JwtProvider:
    """A JWT issuer whose keys come from a JWKS URL served by `jwks_cluster`."""

    name: str
    issuer: str
    audiences: tuple[str, ...]
    jwks_cluster: str
    jwks_uri: str
    claim_headers: tuple[tuple[str, str], ...] = ()    # (header, claim)
    forward: bool = True                               # keep the Authorization header upstream
    cache_s: float = 300.0


@dataclass(frozen=True)
class JwtAuth:
    """Check JWTs from these providers; a request without a token passes if `allow_missing`."""

    providers: tuple[JwtProvider, ...]
    allow_missing: bool = True
    # A token jwt_authn cannot verify (unknown kid right after an emergency key rotation, bad
    # signature, expired) is not refused here but left to the listener's ext_authz check, which
    # knows the issuer's key ring at once; needs the listener's `ext_authz`.
    defer_failed: bool = False


@dataclass(frozen=True)
class ExtAuthz:
    """Ask an HTTP service about every request that carries a verified JWT (after `jwt_authn`):
    a 2xx lets it through, any other answer goes back to the client as it is; an unreachable or
    slow service is a 503 (fail closed)."""

    cluster: str
    path: str                       # the check's path (the original method and headers are sent)
    timeout_s: float = 1.0
    upstream_headers: tuple[str, ...] = ()   # headers of a 2xx answer copied onto the request


@dataclass(frozen=True)
class RbacPolicy:
    """One RBAC policy: any principal x any permission (each empty tuple = any)."""

    name: str
    principals: tuple[StringMatch, ...] = ()           # matched against the peer's URI SAN
    not_principals: tuple[StringMatch, ...] = ()
    request_principals: tuple[StringMatch, ...] = ()   # `iss/sub` of a verified JWT
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[StringMatch, ...] = ()
    not_paths: tuple[StringMatch, ...] = ()
    ports: tuple[int, ...] = ()
    not_ports: tuple[int, ...] = ()
    source_ips: tuple[str, ...] = ()                   # CIDRs


@dataclass(frozen=True)
class Rbac:
    """An RBAC filter; ALLOW with no policies denies everything (Istio's allow-nothing)."""

    action: Literal["ALLOW", "DENY"]
    policies: tuple[RbacPolicy, ...]


@dataclass(frozen=True)
class RateLimit:
    """A token bucket (Envoy's local_ratelimit), optionally one bucket per descriptor value.

    With `max_tokens == tokens_per_fill` the bucket is refilled whole every interval: a fixed
    window of `fill_interval_s`, Kong's `policy: local` counting. `key` picks one bucket per
    client address ('ip') or per value of a request header ('header:<name>').
    """

    name: str
    max_tokens: int
    tokens_per_fill: int
    fill_interval_s: float
    key: str | None = None
    response_headers: bool = True          # x-ratelimit-* headers (draft RFC), as Envoy writes them


@dataclass(frozen=True)
class DownstreamTLS:
    """TLS on a listener. mode STRICT: mTLS only; PERMISSIVE: mTLS and plaintext; DISABLE: none."""

    mode: Literal["STRICT", "PERMISSIVE", "DISABLE"]
    cert_secret: str
    ca_secret: str


@dataclass(frozen=True)
class Listener:
    """An HTTP listener: address, TLS mode, HTTP filters (in Istio's order), virtual hosts."""

    name: str
    virtual_hosts: tuple[VirtualHost, ...]
    host: str = "127.0.0.1"
    port: int = 0                    # 0: the kernel picks (read it back from the admin API)
    pipe: str | None = None          # a Unix socket instead of host:port
    tls: DownstreamTLS | None = None
    strip_headers: tuple[str, ...] = ()     # removed before any filter runs (spoofed identity)
    jwt: JwtAuth | None = None
    ext_authz: ExtAuthz | None = None      # runs after jwt_authn, only for requests with a verified JWT
    rbac: tuple[Rbac, ...] = ()      # evaluated in order: DENY policies, then ALLOW
    rate_limits: tuple[RateLimit, ...] = ()
    faults: bool = False             # add the fault filter (routes carry their own fault)
    stat_prefix: str | None = None
    request_timeout_s: float | None = None
    xff_num_trusted_hops: int = 0
    max_request_bytes: int | None = None    # a larger body is answered 413 (Envoy's buffer filter)
    json_errors: bool = False        # Envoy's own error replies (503, 429, 413, 401, 504) as JSON
    inline_routes: bool = False      # routes that never change: inline, not in the shared RDS


@dataclass(frozen=True)
class Secret:
    """An SDS secret: a certificate with its key, or a CA bundle to validate peers."""

    name: str
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None


@dataclass
class DataPlane:
    """Everything one Envoy serves: listeners, clusters and the secrets they name."""

    listeners: list[Listener] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)

    def cluster(self, name: str) -> Cluster:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)

    def listener(self, name: str) -> Listener:
        for l in self.listeners:
            if l.name == name:
                return l
        raise KeyError(name)

    def check(self) -> None:
        """Raise ValueError if a route or a provider names a cluster or secret that is not here."""
        clusters = {c.name for c in self.clusters}
        secrets = {s.name for s in self.secrets}
        if len(clusters) != len(self.clusters):
            raise ValueError("duplicate cluster names")
        if len({l.name for l in self.listeners}) != len(self.listeners):
            raise ValueError("duplicate listener names")
        for listener in self.listeners:
            for vhost in listener.virtual_hosts:
                for route in vhost.routes:
                    for wc in route.clusters:
                        if wc.cluster not in clusters:
                            raise ValueError(f"route {route.name!r} names unknown cluster {wc.cluster!r}")
                        if wc.weight < 0:
                            raise ValueError(f"route {route.name!r}: weight {wc.weight} of {wc.cluster!r} is < 0")
                    for m in route.mirrors:
                        if m.cluster not in clusters:
                            raise ValueError(f"route {route.name!r} mirrors to unknown cluster {m.cluster!r}")
                    if not route.clusters and route.direct_response is None:
                        raise ValueError(f"route {route.name!r} has neither clusters nor a direct response")
            if listener.jwt:
                for p in listener.jwt.providers:
                    if p.jwks_cluster not in clusters:
                        raise ValueError(f"JWT provider {p.name!r} names unknown cluster {p.jwks_cluster!r}")
            if listener.jwt and listener.jwt.defer_failed and not listener.ext_authz:
                raise ValueError(f"listener {listener.name!r}: a JWT check that defers failed tokens needs ext_authz")
            if listener.ext_authz and listener.ext_authz.cluster not in clusters:
                raise ValueError(f"ext_authz of {listener.name!r} names unknown cluster {listener.ext_authz.cluster!r}")
            if listener.tls:
                for s in (listener.tls.cert_secret, listener.tls.ca_secret):
                    if s not in secrets:
                        raise ValueError(f"listener {listener.name!r} names unknown secret {s!r}")
        for c in self.clusters:
            if c.tls:
                for s in (c.tls.cert_secret, c.tls.ca_secret):
                    if s not in secrets:
                        raise ValueError(f"cluster {c.name!r} names unknown secret {s!r}")
