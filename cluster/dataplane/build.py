"""Whole data planes from resources: the gateway's, and one sidecar's.

Cluster names follow Istio's, so Envoy's stats read as they do in a mesh:
`outbound|80||<service>` towards a Service, `inbound|<port>||<service>` from a sidecar to its
own replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cluster.dataplane import gateway_api, istio, kong
from cluster.dataplane import model as m

# Identity headers the gateway sets from a verified token; a client's own copies are dropped.
IDENTITY_HEADERS = ("x-user-id", "x-user-roles", kong.CONSUMER_HEADER)
# Roles come from the `scope` claim (the roles, space-separated): Envoy copies a list claim such as
# `roles` as base64-encoded JSON, which no reader wants.
CLAIM_HEADERS = (("x-user-id", "sub"), ("x-user-roles", "cm_roles"))  # roles as one string
NOT_FOUND = m.DirectResponse(404, '{"detail": "no route for this path"}')
MESH_CA_SECRET = "mesh-ca"
MESH_CERT_SECRET = "mesh-identity"


def outbound(service: str) -> str:
    return f"outbound|80||{service}"


def inbound(service: str, port: int = 8080) -> str:
    return f"inbound|{port}||{service}"


def spiffe(trust_domain: str, service_account: str, namespace: str = "cloudmart") -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True)
class MeshIdentity:
    """Files of one workload's mesh identity (served to Envoy by file-based SDS)."""

    ca_file: str
    cert_file: str
    key_file: str

    def secrets(self) -> list[m.Secret]:
        return [m.Secret(MESH_CA_SECRET, ca_file=self.ca_file),
                m.Secret(MESH_CERT_SECRET, cert_file=self.cert_file, key_file=self.key_file)]


@dataclass
class Built:
    plane: m.DataPlane
    report: kong.TranslationReport = field(default_factory=kong.TranslationReport)


def _policies(objects: list[dict]) -> dict[str, istio.ClusterPolicy]:
    out: dict[str, istio.ClusterPolicy] = {}
    for obj in objects:
        istio.check_supported(obj)
        if obj.get("kind") == "DestinationRule":
            host, policy = istio.destination_rule(obj)
            out[host] = policy
    return out


def _renamed(route: m.Route) -> m.Route:
    return replace(route, clusters=tuple(replace(wc, cluster=outbound(wc.cluster)) for wc in route.clusters),
                   mirrors=tuple(replace(mi, cluster=outbound(mi.cluster)) for mi in route.mirrors))


def gateway(objects: list[dict], endpoints: dict[str, list[m.Endpoint]], *, port: int = 0,
            issuer: kong.JwtIssuer | None = None, identity: MeshIdentity | None = None,
            trust_domain: str = "cloudmart.local", weights: dict[str, int] | None = None,
            cluster_ports: dict[str, int] | None = None) -> Built:
    """The gateway: HTTPRoutes (with Kong plugins by annotation), DestinationRules on its clusters.

    `endpoints` maps every Service name to its ready endpoints (possibly none: Envoy answers 503).
    With `identity`, the gateway calls the services over mTLS (ISTIO_MUTUAL) as a mesh workload.
    The JWT check comes from a Kong `jwt` plugin or, without one, from `issuer` (tokens optional,
    checked when present; the services decide what needs a user). `weights` overrides backend
    weights by Service name (a canary's share); `cluster_ports` adds, per Service, a plain listener
    that balances over its endpoints with no edge policy (what kube-proxy does for a ClusterIP).
    """
    services = set(endpoints)
    policies = _policies(objects)
    kong_config = kong.translate(objects, issuer)
    routes = []
    rule_routes = gateway_api.routes(objects, services)
    kong_routes = set(kong_config.route_jwt)
    weights = weights or {}
    for name, w in weights.items():
        if name not in services:
            raise ValueError(f"weights: Service {name!r} does not exist")
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= gateway_api.MAX_WEIGHT:
            raise ValueError(f"weights.{name}: {w!r} is not an integer in 0..{gateway_api.MAX_WEIGHT}")
    for r in rule_routes:
        http_route = r.name.split(".")[0]
        changes: dict = {}
        if any(wc.cluster in weights for wc in r.clusters) and len(r.clusters) > 1:
            changes["clusters"] = tuple(replace(wc, weight=weights.get(wc.cluster, wc.weight)) for wc in r.clusters)
        if http_route in kong_routes:
            changes["rate_limits"] = kong_config.route_limits.get(http_route, ())
            changes["cors"] = kong_config.route_cors.get(http_route)
            extra = kong_config.route_headers.get(http_route)
            if extra is not None:
                mine = changes.get("request_headers", r.request_headers)
                changes["request_headers"] = m.HeaderChanges(
                    set=mine.set, add=mine.add + extra.add, remove=mine.remove + extra.remove,
                    add_if_absent=mine.add_if_absent + extra.add_if_absent, replace=mine.replace + extra.replace)
            if kong_config.jwt is not None:
                # Kong checks tokens only on the routes its jwt plugin is attached to.
                changes["jwt_disabled"] = not kong_config.route_jwt.get(http_route, False)
        routes.append(_renamed(replace(r, **changes)))
    routes.append(m.Route("not-found", m.RouteMatch("/"), direct_response=NOT_FOUND))
    jwt = kong_config.jwt
    if jwt is None and issuer is not None:
        jwt = m.JwtAuth((m.JwtProvider("auth", issuer.issuer, (), issuer.jwks_cluster, issuer.jwks_uri),), True)
    if jwt is not None:
        jwt = replace(jwt, providers=tuple(replace(p, claim_headers=CLAIM_HEADERS + p.claim_headers,
                                                   jwks_cluster=outbound(p.jwks_cluster))
                                           for p in jwt.providers))
    secrets = identity.secrets() if identity else []
    clusters = []
    for service in sorted(services):
        c = m.Cluster(outbound(service), tuple(endpoints[service]), idle_timeout_s=4.0)
        tls = m.UpstreamTLS(MESH_CERT_SECRET, MESH_CA_SECRET, sni=service,
                            peer_sans=(spiffe(trust_domain, service.removesuffix("-canary")),)) if identity else None
        policy = policies.get(service)
        if policy:
            c = policy.apply(c, tls)
        elif tls:
            c = replace(c, tls=tls)
        clusters.append(c)
    # The services see the caller's address in X-Forwarded-For, as the edge sets it. (Envoy itself
    # would append its host's own address for a loopback caller.)
    forwarded = m.HeaderChanges(set=(("x-forwarded-for", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),))
    listener = m.Listener("gateway", (m.VirtualHost("cloudmart", routes=tuple(routes), request_headers=forwarded),),
                          port=port,
                          strip_headers=IDENTITY_HEADERS, jwt=jwt, stat_prefix="gateway")
    listeners = [listener]
    for service, cluster_port in sorted((cluster_ports or {}).items()):
        if service not in services:
            raise ValueError(f"cluster_ports: Service {service!r} does not exist")
        balance = m.Route(f"cluster-{service}", m.RouteMatch("/"), clusters=(m.WeightedCluster(outbound(service), 1),))
        listeners.append(m.Listener(f"cluster-{service}", (m.VirtualHost(service, routes=(balance,)),),
                                    port=cluster_port, stat_prefix=f"cluster_{service}", inline_routes=True))
    return Built(m.DataPlane(listeners, clusters, secrets), kong_config.report)


@dataclass(frozen=True)
class Workload:
    """One replica in the mesh: who it is and where its own process listens."""

    service: str                      # Kubernetes Service name (also its ServiceAccount)
    labels: dict[str, str]
    app: m.Endpoint                   # the replica itself (TCP or Unix socket)
    inbound_port: int = 0
    app_port: int = 8080              # the container port, for `inbound|<port>||...` and `ports` rules


def sidecar(objects: list[dict], workload: Workload, identity: MeshIdentity,
            peers: dict[str, tuple[int, list[m.Endpoint]]], services: set[str], *,
            trust_domain: str = "cloudmart.local",
            jwks: dict[str, tuple[str, str]] | None = None) -> m.DataPlane:
    """One replica's sidecar: an inbound listener (mTLS per PeerAuthentication, RBAC, JWT) and one
    outbound listener per peer Service (VirtualService routes, DestinationRule pools, mTLS).

    `peers` maps a peer Service to (local outbound port, the peer sidecars' inbound endpoints).
    """
    for obj in objects:
        istio.check_supported(obj)
    policies = _policies(objects)
    mode = istio.peer_authentication_mode(objects, workload.labels)
    rbac = istio.authorization(objects, workload.labels, trust_domain)
    jwt = istio.request_authentication(objects, workload.labels, jwks or {})
    if jwt is not None:
        jwt = replace(jwt, providers=tuple(replace(p, jwks_cluster=outbound(p.jwks_cluster)) for p in jwt.providers))
    own = inbound(workload.service, workload.app_port)
    clusters = [m.Cluster(own, (workload.app,), idle_timeout_s=4.0)]
    in_routes = (m.Route("inbound", m.RouteMatch("/"), clusters=(m.WeightedCluster(own, 1),)),)
    tls = None if mode == "DISABLE" else m.DownstreamTLS(mode, MESH_CERT_SECRET, MESH_CA_SECRET)
    # RBAC `ports` rules name the container port, as in Kubernetes; the listener's real port differs.
    rbac = tuple(replace(r, policies=tuple(replace(p, ports=tuple(workload.inbound_port if x == workload.app_port else x
                                                                  for x in p.ports),
                                                   not_ports=tuple(workload.inbound_port if x == workload.app_port else x
                                                                   for x in p.not_ports))
                                           for p in r.policies)) for r in rbac)
    listeners = [m.Listener("inbound", (m.VirtualHost("inbound", routes=in_routes),), port=workload.inbound_port,
                            tls=tls, rbac=rbac, jwt=jwt, stat_prefix="inbound",
                            inline_routes=True)]
    vs_routes: dict[str, list[m.Route]] = {}
    for obj in objects:
        if obj.get("kind") == "VirtualService":
            hosts, routes = istio.virtual_service(obj, services)
            for h in hosts:
                vs_routes.setdefault(h, []).extend(routes)
    needed = set()
    for peer, (port, endpoints) in sorted(peers.items()):
        if peer not in services:
            raise ValueError(f"peers: Service {peer!r} does not exist")
        routes = vs_routes.get(peer) or [m.Route(f"{peer}.default", m.RouteMatch("/"),
                                                 clusters=(m.WeightedCluster(peer, 100),), retry=istio.DEFAULT_RETRY)]
        routes = [_renamed(r) for r in routes]
        for r in routes:
            needed |= {wc.cluster for wc in r.clusters} | {mi.cluster for mi in r.mirrors}
        listeners.append(m.Listener(f"outbound-{peer}", (m.VirtualHost(peer, routes=tuple(routes)),), port=port,
                                    faults=any(r.fault for r in routes), stat_prefix=f"outbound_{peer}"))
    if jwt is not None:
        needed |= {p.jwks_cluster for p in jwt.providers}
    for name in sorted(needed):
        service = name.rsplit("||", 1)[1]
        if service not in peers:
            raise ValueError(f"peers: routes reach Service {service!r}, which has no endpoints here")
        c = m.Cluster(name, tuple(peers[service][1]), idle_timeout_s=4.0)
        up_tls = m.UpstreamTLS(MESH_CERT_SECRET, MESH_CA_SECRET, sni=service,
                               peer_sans=(spiffe(trust_domain, service.removesuffix("-canary")),))
        policy = policies.get(service)
        # Istio's auto mTLS: mesh peers get ISTIO_MUTUAL unless a DestinationRule says DISABLE.
        c = policy.apply(replace(c, tls=up_tls), up_tls) if policy else replace(c, tls=up_tls)
        clusters.append(c)
    return m.DataPlane(listeners, clusters, identity.secrets())
