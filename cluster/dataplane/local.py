"""The local target's Envoy: the gateway (and per-Service balancers) from the manifests.

One function renders the whole data plane of the gateway from what the supervisor knows — the
topology read from the kustomize base, objects applied on top of it, the ready endpoints — and
one class runs it:

    plane = render(topology, extra_objects, endpoints=…, port=8080, cluster_ports=…)
    gateway = Gateway(state_dir / "run" / "gateway")
    await gateway.start(plane)          # validate, write the xDS files, start Envoy
    await gateway.update(render(...))   # validate, then swap live (endpoints: EDS files only)

`render` is what a control plane calls to re-render after `apply`: the manifests' HTTPRoutes plus
`extra_objects` (HTTPRoutes, DestinationRules, Kong plugins, …) become one gateway config; a bad
object raises `ResourceError` (one line naming the object and the field) and nothing changes.

The edge policy, on top of the HTTPRoutes:
- JWTs are checked by Envoy's `jwt_authn` against the auth service's JWKS (fetched by Envoy from
  the auth Service, cached, refetched on failure): a bad token is 401, a missing one passes (the
  services decide what needs a user), a valid one reaches the service as `x-user-id` /
  `x-user-roles` (client-sent copies are dropped first).
- Revocation and auth's own key ring: every request with a token is also checked at auth's
  `/verify` (Envoy's `ext_authz`; see `edge_check`), which refuses a revoked `jti`.
- A token bucket per user (Envoy's `local_ratelimit`, one bucket per `x-user-id`, i.e. per token
  subject; requests without a token share one bucket), at the rate of the auth Deployment's
  `RATE_LIMIT_RPS` / `RATE_LIMIT_BURST`; over it: 429 with `Retry-After`.
- Bodies over 1 MiB are refused with 413 before any service reads them.
- Envoy's own errors are JSON (`{"detail": …}`); a request that no ready replica could take is
  a 503 with `Retry-After`, never an empty 502.
- Routes without a `retry` of their own retry like Istio's default, on another host: connect
  failures, resets and 503, twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

from cluster.dataplane import build, kong
from cluster.dataplane import model as m
from cluster.dataplane.proxy import EnvoyProxy

log = logging.getLogger("cloudmart.dataplane")

MAX_BODY_BYTES = 1 << 20        # 1 MiB: CloudMart's largest legitimate request is a few kB
JWKS_PATH = "/api/auth/.well-known/jwks.json"
VERIFY_PATH = "/api/auth/verify"
TOO_LARGE = m.DirectResponse(413, f'{{"detail": "request body larger than {MAX_BODY_BYTES} bytes"}}')
DEFAULT_ISSUER = "cloudmart-auth"
DEFAULT_RATE = (1000.0, 2000.0)  # requests/s and burst per user: the auth service's defaults
# Istio's default retry policy (2 retries, on another host), plus resets: a replica killed with a
# request in flight resets it, and the retry goes to another replica.
GATEWAY_RETRY = m.RetryPolicy(attempts=2, retry_on="connect-failure,refused-stream,reset,retriable-status-codes",
                              retriable_status_codes=(503,))
RATE_LIMIT_NAME = "gateway_per_user"


def _auth_service(topology) -> str:
    """The Kubernetes Service of the auth Deployment (the JWKS comes from it)."""
    return next((s for s, d in topology.services.items() if topology.deployments[d].service == "auth"), "auth")


def rate_limit(rps: float, burst: float) -> m.RateLimit:
    """One token bucket per user (`x-user-id`, set from the verified token) at `rps` with `burst`."""
    if rps <= 0 or burst < 1:
        raise ValueError(f"gateway rate limit: rps={rps} must be > 0 and burst={burst} >= 1")
    # Refill in tenths of a second when the rate allows it, so the bucket fills smoothly.
    interval = 0.1 if rps >= 10 else 1.0
    return m.RateLimit(RATE_LIMIT_NAME, max_tokens=max(1, int(burst)), tokens_per_fill=max(1, round(rps * interval)),
                       fill_interval_s=interval, key="header:x-user-id", response_headers=False)


def _manifest_rate(topology) -> tuple[float, float]:
    dep = topology.deployments.get(topology.services.get(_auth_service(topology), ""))
    env = dep.env if dep else {}
    try:
        return float(env.get("RATE_LIMIT_RPS", DEFAULT_RATE[0])), float(env.get("RATE_LIMIT_BURST", DEFAULT_RATE[1]))
    except ValueError as exc:
        raise ValueError(f"auth Deployment: RATE_LIMIT_RPS/RATE_LIMIT_BURST: {exc}") from None


def edge_check(listener: m.Listener, auth_service: str) -> m.Listener:
    """Every request that presents a token is also asked about at auth's `/verify` (Envoy's
    ext_authz), which refuses a revoked token (its `jti` on the deny list) and knows auth's own key
    ring at once. jwt_authn still checks signature and claims and sets the identity headers; a
    token it cannot verify (right after an emergency key rotation its cached JWKS lacks the new
    key until the next refresh) is left to `/verify` instead of being refused here, so the edge
    follows auth's ring, as the rotation lesson's model assumes. A request without a token is not
    asked about. auth unreachable: 503 with Retry-After (fail closed)."""
    if listener.jwt is None or not listener.jwt.allow_missing:
        return listener
    authz = m.ExtAuthz(build.outbound(auth_service), VERIFY_PATH, upstream_headers=("x-user-id", "x-user-roles"))
    return replace(listener, jwt=replace(listener.jwt, defer_failed=True), ext_authz=authz)


def endpoint(text: str) -> m.Endpoint:
    """`127.0.0.1:8080` or `unix:/path/to.sock` as a model endpoint."""
    if text.startswith("unix:"):
        return m.Endpoint(pipe=text[5:])
    host, _, port = text.rpartition(":")
    return m.Endpoint(host or "127.0.0.1", int(port))


def render(topology, extra_objects: list[dict] | tuple = (), *, endpoints: dict[str, list[str]],
           port: int = 0, cluster_ports: dict[str, int] | None = None, weights: dict[str, int] | None = None,
           identity: build.MeshIdentity | None = None, trust_domain: str = "cloudmart.local",
           rate: tuple[float, float] | None = None) -> m.DataPlane:
    """The gateway's whole data plane.

    `endpoints` maps every Kubernetes Service to its ready endpoints (`host:port` or
    `unix:<path>`); `cluster_ports` adds a plain per-Service balancer (a ClusterIP) for
    service-to-service calls; `weights` overrides backend weights (canary); with `identity` the
    gateway calls the replicas' sidecars over mTLS. `rate` is (requests/s, burst) per user,
    by default the auth Deployment's RATE_LIMIT_RPS / RATE_LIMIT_BURST.
    """
    objects = list(getattr(topology, "objects", None) or []) + list(extra_objects)
    auth = _auth_service(topology)
    issuer_name = topology.deployments[topology.services[auth]].env.get("JWT_ISSUER", DEFAULT_ISSUER) \
        if auth in topology.services else DEFAULT_ISSUER
    issuer = kong.JwtIssuer(issuer_name, auth, f"http://{auth}{JWKS_PATH}")
    eps = {svc: [endpoint(e) for e in endpoints.get(svc, [])] for svc in topology.services}
    built = build.gateway(objects, eps, port=port, issuer=issuer, identity=identity, trust_domain=trust_domain,
                          weights=weights, cluster_ports=cluster_ports)
    plane = built.plane
    limit = rate_limit(*(rate or _manifest_rate(topology)))

    def with_retry(r: m.Route) -> m.Route:
        if r.direct_response is not None or not r.clusters or (r.retry and r.retry.attempts > 0):
            return r
        per_try = r.retry.per_try_timeout_s if r.retry else None
        return replace(r, retry=replace(GATEWAY_RETRY, per_try_timeout_s=per_try))

    listeners = []
    for l in plane.listeners:
        hosts = tuple(replace(vh, routes=tuple(with_retry(r) for r in vh.routes)) for vh in l.virtual_hosts)
        l = replace(l, virtual_hosts=hosts, json_errors=True)
        if l.name == "gateway":
            # A declared body over the limit is refused at once, before anything is read or proxied
            # (the buffer filter would wait for the whole body first); a body without a length
            # (chunked) is counted by the buffer filter.
            too_large = m.Route("body-too-large", m.RouteMatch("/", headers=(m.HeaderMatch(
                "content-length", m.StringMatch("present"), above=MAX_BODY_BYTES),)), direct_response=TOO_LARGE,
                                unbuffered=True)
            hosts = tuple(replace(vh, routes=(too_large, *vh.routes)) for vh in l.virtual_hosts)
            l = replace(l, virtual_hosts=hosts)
            # Revocation: jwt_authn checks a token's signature and claims only; auth's /verify also
            # refuses a token whose jti is on the deny list, so every request with a verified token
            # is checked there (ext_authz; a request without a token is not).
            if auth in topology.services:
                l = edge_check(l, auth)
            l = replace(l, rate_limits=l.rate_limits + (limit,), max_request_bytes=MAX_BODY_BYTES)
        listeners.append(l)
    plane.listeners = listeners
    return plane


# The mesh's default policy: mTLS only (Istio's mesh-wide STRICT). Objects applied later (another
# PeerAuthentication, AuthorizationPolicies, DestinationRules, VirtualServices) come after it.
MESH_DEFAULT = ({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                 "metadata": {"name": "default", "namespace": "cloudmart"}, "spec": {"mtls": {"mode": "STRICT"}}},)


def render_sidecar(topology, extra_objects: list[dict] | tuple = (), *, service: str, labels: dict[str, str],
                   app: str, inbound_port: int, identity: build.MeshIdentity,
                   peers: dict[str, tuple[int, list[str]]], app_port: int = 8080,
                   trust_domain: str = "cloudmart.local") -> m.DataPlane:
    """One replica's sidecar: inbound mTLS listener on `inbound_port` in front of `app`
    (`host:port` or `unix:<path>`), and one plaintext outbound listener on 127.0.0.1 per peer
    Service (`peers`: Service -> (local port, the peer sidecars' inbound endpoints)), calling them
    over mTLS with this workload's identity (`identity`, SPIFFE id of `service`'s account).

    Policies: `MESH_DEFAULT` (STRICT), then `extra_objects` (Istio resources applied on top).
    """
    objects = [o for o in list(MESH_DEFAULT) + list(extra_objects) if o.get("apiVersion", "").split("/")[0]
               in ("security.istio.io", "networking.istio.io")]
    workload = build.Workload(service, labels, endpoint(app), inbound_port=inbound_port, app_port=app_port)
    eps = {svc: (port, [endpoint(e) for e in found]) for svc, (port, found) in peers.items()}
    return build.sidecar(objects, workload, identity, eps, set(topology.services), trust_domain=trust_domain)


class LocalEnvoy:
    """One Envoy run by the supervisor (the gateway, or a replica's sidecar): started, swapped
    live, started again if it dies.

    Its admin interface is a Unix socket in its own 0700 folder (`admin_socket`), never TCP.
    """

    def __init__(self, folder: str | Path, node_id: str = "gateway"):
        self.proxy = EnvoyProxy(folder, node_id)
        self.plane: m.DataPlane | None = None
        self._lock = asyncio.Lock()

    @property
    def admin_socket(self) -> str:
        return self.proxy.admin_socket

    @property
    def pid(self) -> int | None:
        return self.proxy.process.pid if self.proxy.process else None

    @property
    def alive(self) -> bool:
        return self.proxy.process is not None and self.proxy.process.poll() is None

    async def start(self, plane: m.DataPlane | None = None) -> None:
        """Start Envoy with `plane` (or the last one given); raises if it does not come up."""
        async with self._lock:
            if plane is not None:
                self.plane = plane
            if self.alive:
                self.proxy.stop()
            await asyncio.to_thread(self.proxy.start, self.plane)

    async def update(self, plane: m.DataPlane) -> None:
        """Validate `plane` with Envoy, then swap it in without dropping a request. A config Envoy
        refuses raises `EnvoyConfigError` and the running one stays; a dead Envoy gets it at its
        next start."""
        async with self._lock:
            if plane == self.plane:
                return          # nothing changed: no validation, no files rewritten
            if not self.alive:
                from cluster.dataplane.proxy import validate_plane

                await asyncio.to_thread(validate_plane, plane)
                self.plane = plane
                return
            await asyncio.to_thread(self.proxy.apply, plane)
            self.plane = plane

    async def wait(self) -> int | None:
        """Wait until the Envoy process exits; its exit code."""
        process = self.proxy.process
        if process is None:
            return None
        # Polled, not waited for in a thread: one blocked thread per Envoy (a gateway and a sidecar
        # per replica) would use up the default executor that validation and swaps run in.
        while process.poll() is None:
            await asyncio.sleep(0.25)
        return process.returncode

    def kill(self) -> None:
        if self.alive:
            self.proxy.process.kill()

    async def stop(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self.proxy.stop)

    def log_tail(self, lines: int = 5) -> str:
        return self.proxy.log_tail(lines)


Gateway = LocalEnvoy
Sidecar = LocalEnvoy
