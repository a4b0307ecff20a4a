"""Istio resources → the intermediate model, the way istiod turns them into Envoy config.

- DestinationRule: `connectionPool` → circuit breakers, `outlierDetection`, `loadBalancer.simple`,
  `tls.mode` ISTIO_MUTUAL/DISABLE.
- VirtualService: `http[]` matches, weighted `route`, `timeout`, `retries`, `fault` delay/abort,
  `mirror`/`mirrorPercentage`, `rewrite.uri`, `headers.request`; with no `retries` Istio's
  default retry policy applies.
- PeerAuthentication: STRICT / PERMISSIVE / DISABLE, workload selector over namespace-wide.
- AuthorizationPolicy: ALLOW / DENY, principals, notPrincipals, requestPrincipals, ipBlocks,
  methods, paths (Istio's `*` rules), ports; DENY is evaluated before ALLOW; an ALLOW policy that
  selects a workload makes everything else denied; `spec: {}` allows nothing.
- RequestAuthentication: JWT rules → `jwt_authn` (a missing token passes, a bad one gets 401).

Everything else Istio has (Sidecar, ServiceEntry, EnvoyFilter, CUSTOM authorization, subsets…)
is refused with a message naming it, so nothing is silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cluster.dataplane import model as m
from cluster.dataplane.errors import ResourceError, check_fields, duration_s, positive_int

SUPPORTED_KINDS = {"DestinationRule", "VirtualService", "PeerAuthentication", "AuthorizationPolicy",
                   "RequestAuthentication"}
UNSUPPORTED_KINDS = {"Sidecar", "ServiceEntry", "EnvoyFilter", "WorkloadEntry", "WorkloadGroup", "Gateway",
                     "ProxyConfig", "Telemetry", "WasmPlugin"}
ISTIO_GROUPS = ("networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io")

# Istio's default HTTP retry policy (used when a VirtualService route sets no `retries`).
DEFAULT_RETRY = m.RetryPolicy(attempts=2, retry_on="connect-failure,refused-stream,unavailable,cancelled,"
                              "retriable-status-codes", retriable_status_codes=(503,))
# Policies may name the mesh's own trust domain as `cluster.local` (Istio's default trust domain).
ISTIO_DEFAULT_TRUST_DOMAIN = "cluster.local"


def is_istio(obj: dict) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0] in ISTIO_GROUPS


def check_supported(obj: dict) -> None:
    """Refuse an Istio kind the local data plane does not honour, with a clear message."""
    kind = obj.get("kind")
    if is_istio(obj) and kind not in SUPPORTED_KINDS:
        raise ResourceError(obj, "kind", f"{kind} is not honoured by the local data plane "
                            f"(supported: {', '.join(sorted(SUPPORTED_KINDS))}); use the kind target")


def short_host(host: str) -> str:
    """`product.cloudmart.svc.cluster.local` → `product` (the Service name)."""
    return host.split(".")[0]


def _selects(obj: dict, labels: dict[str, str]) -> bool | None:
    """True/False for a workload selector, None when the policy has none (namespace-wide)."""
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if selector is None:
        return None
    wanted = selector.get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


def _applies(obj: dict, labels: dict[str, str]) -> bool:
    return _selects(obj, labels) is not False


# -- DestinationRule -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterPolicy:
    """What a DestinationRule says about the clusters of one host."""

    circuit_breaker: m.CircuitBreaker | None = None
    outlier_detection: m.OutlierDetection | None = None
    lb_policy: str = "ROUND_ROBIN"
    connect_timeout_s: float | None = None
    max_requests_per_connection: int | None = None
    idle_timeout_s: float | None = None
    mtls: bool | None = None          # ISTIO_MUTUAL → True, DISABLE → False, unset → None

    def apply(self, cluster: m.Cluster, tls: m.UpstreamTLS | None = None) -> m.Cluster:
        """The cluster with this policy's pools, ejection and balancing (and mTLS if asked for)."""
        changes: dict = {"circuit_breaker": self.circuit_breaker, "outlier_detection": self.outlier_detection,
                         "lb_policy": self.lb_policy}
        if self.connect_timeout_s is not None:
            changes["connect_timeout_s"] = self.connect_timeout_s
        if self.max_requests_per_connection is not None:
            changes["max_requests_per_connection"] = self.max_requests_per_connection
        if self.idle_timeout_s is not None:
            changes["idle_timeout_s"] = self.idle_timeout_s
        if self.mtls is False:
            changes["tls"] = None
        elif self.mtls and tls is not None:
            changes["tls"] = tls
        return replace(cluster, **changes)


def destination_rule(obj: dict) -> tuple[str, ClusterPolicy]:
    """(Service name, policy) of a DestinationRule."""
    spec = obj.get("spec") or {}
    check_fields(obj, "spec", spec, {"host", "trafficPolicy", "subsets", "exportTo", "workloadSelector"})
    if spec.get("subsets"):
        raise ResourceError(obj, "spec.subsets", "subsets are not honoured by the local data plane "
                            "(route to a Service per version instead)")
    for key in ("exportTo", "workloadSelector"):
        if key in spec:
            raise ResourceError(obj, f"spec.{key}", "is not honoured by the local data plane (one namespace)")
    if "host" not in spec:
        raise ResourceError(obj, "spec.host", "is required")
    tp = spec.get("trafficPolicy") or {}
    check_fields(obj, "spec.trafficPolicy", tp, {"connectionPool", "outlierDetection", "loadBalancer", "tls",
                                                 "portLevelSettings"})
    if tp.get("portLevelSettings"):
        raise ResourceError(obj, "spec.trafficPolicy.portLevelSettings", "is not honoured (one port per Service)")
    kwargs: dict = {}
    pool = tp.get("connectionPool") or {}
    check_fields(obj, "spec.trafficPolicy.connectionPool", pool, {"tcp", "http"})
    tcp = pool.get("tcp") or {}
    check_fields(obj, "spec.trafficPolicy.connectionPool.tcp", tcp,
                 {"maxConnections", "connectTimeout", "tcpKeepalive", "maxConnectionDuration", "idleTimeout"})
    http = pool.get("http") or {}
    check_fields(obj, "spec.trafficPolicy.connectionPool.http", http,
                 {"http1MaxPendingRequests", "http2MaxRequests", "maxRequestsPerConnection", "maxRetries",
                  "idleTimeout", "h2UpgradePolicy", "useClientProtocol", "maxConcurrentStreams"})
    where = "spec.trafficPolicy.connectionPool"
    for key in ("tcpKeepalive", "maxConnectionDuration", "idleTimeout"):
        if key in tcp:
            raise ResourceError(obj, f"{where}.tcp.{key}", "is not honoured by the local data plane")
    for key in ("h2UpgradePolicy", "useClientProtocol", "maxConcurrentStreams"):
        if key in http:
            raise ResourceError(obj, f"{where}.http.{key}", "is not honoured (the local data plane speaks HTTP/1.1)")
    if tcp or http:
        kwargs["circuit_breaker"] = m.CircuitBreaker(
            max_connections=positive_int(obj, f"{where}.tcp.maxConnections", tcp["maxConnections"])
            if "maxConnections" in tcp else None,
            max_pending_requests=positive_int(obj, f"{where}.http.http1MaxPendingRequests",
                                              http["http1MaxPendingRequests"])
            if "http1MaxPendingRequests" in http else None,
            max_requests=positive_int(obj, f"{where}.http.http2MaxRequests", http["http2MaxRequests"])
            if "http2MaxRequests" in http else None,
            max_retries=positive_int(obj, f"{where}.http.maxRetries", http["maxRetries"], minimum=0)
            if "maxRetries" in http else None)
    if "connectTimeout" in tcp:
        kwargs["connect_timeout_s"] = duration_s(obj, f"{where}.tcp.connectTimeout", tcp["connectTimeout"],
                                                 allow_zero=False)
    if "maxRequestsPerConnection" in http:
        kwargs["max_requests_per_connection"] = positive_int(obj, f"{where}.http.maxRequestsPerConnection",
                                                             http["maxRequestsPerConnection"], minimum=0)
    if "idleTimeout" in http:
        kwargs["idle_timeout_s"] = duration_s(obj, f"{where}.http.idleTimeout", http["idleTimeout"])
    od = tp.get("outlierDetection")
    if od is not None:
        at = "spec.trafficPolicy.outlierDetection"
        check_fields(obj, at, od, {"consecutive5xxErrors", "consecutiveGatewayErrors", "interval",
                                   "baseEjectionTime", "maxEjectionPercent", "minHealthPercent",
                                   "consecutiveErrors", "splitExternalLocalOriginErrors",
                                   "consecutiveLocalOriginFailures"})
        for key in ("consecutiveErrors", "splitExternalLocalOriginErrors", "consecutiveLocalOriginFailures"):
            if key in od:
                raise ResourceError(obj, f"{at}.{key}", "is not honoured (use consecutive5xxErrors or "
                                    "consecutiveGatewayErrors)")
        kwargs["outlier_detection"] = m.OutlierDetection(
            # Istio's default is 5 consecutive 5xx when outlierDetection is present.
            consecutive_5xx=positive_int(obj, f"{at}.consecutive5xxErrors", od.get("consecutive5xxErrors", 5),
                                         minimum=0) or None,
            consecutive_gateway_errors=positive_int(obj, f"{at}.consecutiveGatewayErrors",
                                                    od["consecutiveGatewayErrors"], minimum=0) or None
            if "consecutiveGatewayErrors" in od else None,
            interval_s=duration_s(obj, f"{at}.interval", od.get("interval", "10s"), allow_zero=False),
            base_ejection_time_s=duration_s(obj, f"{at}.baseEjectionTime", od.get("baseEjectionTime", "30s"),
                                            allow_zero=False),
            max_ejection_percent=positive_int(obj, f"{at}.maxEjectionPercent", od.get("maxEjectionPercent", 10),
                                              minimum=0, maximum=100),
            min_health_percent=positive_int(obj, f"{at}.minHealthPercent", od["minHealthPercent"], minimum=0,
                                            maximum=100) if "minHealthPercent" in od else None)
    lb = tp.get("loadBalancer") or {}
    if lb:
        check_fields(obj, "spec.trafficPolicy.loadBalancer", lb, {"simple"})
        simple = lb.get("simple")
        mapping = {"ROUND_ROBIN": "ROUND_ROBIN", "LEAST_REQUEST": "LEAST_REQUEST", "LEAST_CONN": "LEAST_REQUEST",
                   "RANDOM": "RANDOM", "UNSPECIFIED": "ROUND_ROBIN"}
        if simple not in mapping:
            raise ResourceError(obj, "spec.trafficPolicy.loadBalancer.simple",
                                f"{simple!r} is not one of {', '.join(mapping)}")
        kwargs["lb_policy"] = mapping[simple]
    tls = tp.get("tls") or {}
    if tls:
        mode = tls.get("mode")
        if mode not in ("ISTIO_MUTUAL", "DISABLE"):
            raise ResourceError(obj, "spec.trafficPolicy.tls.mode",
                                f"{mode!r} is not honoured locally (ISTIO_MUTUAL or DISABLE)")
        kwargs["mtls"] = mode == "ISTIO_MUTUAL"
    return short_host(spec["host"]), ClusterPolicy(**kwargs)


# -- VirtualService --------------------------------------------------------------------------------

def _istio_string(obj: dict, where: str, spec: dict) -> m.StringMatch:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ResourceError(obj, where, "needs exactly one of exact, prefix, regex")
    (kind, value), = spec.items()
    if kind not in ("exact", "prefix", "regex"):
        raise ResourceError(obj, where, f"{kind!r} is not exact, prefix or regex")
    return m.StringMatch(kind, str(value))


def _vs_match(obj: dict, where: str, match: dict) -> m.RouteMatch:
    check_fields(obj, where, match, {"name", "uri", "headers", "method", "queryParams", "ignoreUriCase",
                                     "withoutHeaders"})
    path, kind = "/", "prefix"
    if "uri" in match:
        sm = _istio_string(obj, f"{where}.uri", match["uri"])
        path, kind = sm.value, sm.kind
    headers = tuple(m.HeaderMatch(name.lower(), _istio_string(obj, f"{where}.headers.{name}", spec))
                    for name, spec in (match.get("headers") or {}).items())
    headers += tuple(m.HeaderMatch(name.lower(), m.StringMatch("present"), invert=True)
                     for name in (match.get("withoutHeaders") or {}))
    query = tuple(m.QueryMatch(name, _istio_string(obj, f"{where}.queryParams.{name}", spec))
                  for name, spec in (match.get("queryParams") or {}).items())
    methods: tuple[str, ...] = ()
    if "method" in match:
        sm = _istio_string(obj, f"{where}.method", match["method"])
        if sm.kind != "exact":
            raise ResourceError(obj, f"{where}.method", "only exact methods are honoured")
        methods = (sm.value,)
    return m.RouteMatch(path, kind, headers, query, methods)


def _percentage(obj: dict, where: str, spec: dict | None, default: float = 100.0) -> float:
    if spec is None:
        return default
    value = spec.get("value") if isinstance(spec, dict) else None
    if not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise ResourceError(obj, f"{where}.value", f"{value!r} is not a percentage in 0..100")
    return float(value)


def virtual_service(obj: dict, services: set[str]) -> tuple[list[str], list[m.Route]]:
    """(Service names it applies to, routes in order) of a VirtualService."""
    spec = obj.get("spec") or {}
    check_fields(obj, "spec", spec, {"hosts", "http", "gateways", "exportTo", "tcp", "tls"})
    if spec.get("tcp") or spec.get("tls"):
        raise ResourceError(obj, "spec.tcp" if spec.get("tcp") else "spec.tls", "only http routes are honoured")
    if any(g != "mesh" for g in spec.get("gateways", ["mesh"])):
        raise ResourceError(obj, "spec.gateways", "only 'mesh' is honoured (the edge is routed by HTTPRoutes)")
    if "exportTo" in spec:
        raise ResourceError(obj, "spec.exportTo", "is not honoured by the local data plane (one namespace)")
    hosts = [short_host(h) for h in spec.get("hosts", [])]
    for i, h in enumerate(hosts):
        if h not in services:
            raise ResourceError(obj, f"spec.hosts[{i}]", f"Service {h!r} does not exist")
    routes: list[m.Route] = []
    name = obj.get("metadata", {}).get("name", "?")
    for hi, http in enumerate(spec.get("http", [])):
        where = f"spec.http[{hi}]"
        check_fields(obj, where, http, {"name", "match", "route", "timeout", "retries", "fault", "mirror",
                                        "mirrorPercentage", "mirrors", "rewrite", "headers", "redirect",
                                        "directResponse", "corsPolicy"})
        for unsupported in ("redirect", "corsPolicy", "mirrors"):
            if unsupported in http:
                raise ResourceError(obj, f"{where}.{unsupported}", "is not honoured by the local data plane")
        clusters = []
        for ri, dest in enumerate(http.get("route", [])):
            d = dest.get("destination", {})
            if d.get("subset"):
                raise ResourceError(obj, f"{where}.route[{ri}].destination.subset", "subsets are not honoured")
            host = short_host(d.get("host", ""))
            if host not in services:
                raise ResourceError(obj, f"{where}.route[{ri}].destination.host", f"Service {host!r} does not exist")
            weight = positive_int(obj, f"{where}.route[{ri}].weight", dest.get("weight", 100 if len(http["route"]) == 1 else 0),
                                  minimum=0, maximum=100)
            clusters.append(m.WeightedCluster(host, weight))
        direct = None
        if "directResponse" in http:
            dr = http["directResponse"]
            direct = m.DirectResponse(positive_int(obj, f"{where}.directResponse.status", dr.get("status"),
                                                   minimum=200, maximum=599), str((dr.get("body") or {}).get("string", "")))
        if not clusters and direct is None:
            raise ResourceError(obj, f"{where}.route", "is required")
        retry = DEFAULT_RETRY
        if "retries" in http:
            r = http["retries"]
            check_fields(obj, f"{where}.retries", r, {"attempts", "perTryTimeout", "retryOn", "retryRemoteLocalities"})
            attempts = positive_int(obj, f"{where}.retries.attempts", r.get("attempts", 2), minimum=0, maximum=100)
            retry_on = r.get("retryOn", "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes")
            codes = tuple(int(x) for x in retry_on.split(",") if x.strip().isdigit())
            conditions = [x for x in retry_on.split(",") if x and not x.strip().isdigit()]
            if codes and "retriable-status-codes" not in conditions:
                conditions.append("retriable-status-codes")
            retry = None if attempts == 0 else m.RetryPolicy(
                attempts, ",".join(conditions), duration_s(obj, f"{where}.retries.perTryTimeout", r["perTryTimeout"])
                if "perTryTimeout" in r else None, codes or ((503,) if "retriable-status-codes" in conditions else ()))
        fault = None
        if "fault" in http:
            f = http["fault"]
            check_fields(obj, f"{where}.fault", f, {"delay", "abort"})
            delay = f.get("delay") or {}
            abort = f.get("abort") or {}
            check_fields(obj, f"{where}.fault.delay", delay, {"fixedDelay", "percentage", "percent"})
            check_fields(obj, f"{where}.fault.abort", abort, {"httpStatus", "percentage", "grpcStatus"})
            if "grpcStatus" in abort:
                raise ResourceError(obj, f"{where}.fault.abort.grpcStatus", "is not honoured (HTTP services only)")
            fault = m.Fault(
                delay_s=duration_s(obj, f"{where}.fault.delay.fixedDelay", delay["fixedDelay"]) if delay else None,
                delay_percent=_percentage(obj, f"{where}.fault.delay.percentage", delay.get("percentage")) if delay else 0,
                abort_status=positive_int(obj, f"{where}.fault.abort.httpStatus", abort.get("httpStatus"),
                                          minimum=200, maximum=599) if abort else None,
                abort_percent=_percentage(obj, f"{where}.fault.abort.percentage", abort.get("percentage")) if abort else 0)
        mirrors: tuple[m.Mirror, ...] = ()
        if "mirror" in http:
            host = short_host(http["mirror"].get("host", ""))
            if host not in services:
                raise ResourceError(obj, f"{where}.mirror.host", f"Service {host!r} does not exist")
            mirrors = (m.Mirror(host, _percentage(obj, f"{where}.mirrorPercentage", http.get("mirrorPercentage"))),)
        headers = m.HeaderChanges()
        if "headers" in http:
            req = (http["headers"] or {}).get("request") or {}
            check_fields(obj, f"{where}.headers.request", req, {"set", "add", "remove"})
            headers = m.HeaderChanges(set=tuple((req.get("set") or {}).items()),
                                      add=tuple((req.get("add") or {}).items()),
                                      remove=tuple(req.get("remove") or ()))
        rewrite = http.get("rewrite") or {}
        check_fields(obj, f"{where}.rewrite", rewrite, {"uri", "authority"})
        timeout = duration_s(obj, f"{where}.timeout", http["timeout"]) if "timeout" in http else None
        for mi, match in enumerate(http.get("match") or [{}]):
            routes.append(m.Route(
                name=f"{name}.{hi}.{mi}", match=_vs_match(obj, f"{where}.match[{mi}]", match),
                clusters=tuple(clusters), direct_response=direct, timeout_s=timeout, retry=retry,
                request_headers=headers, mirrors=mirrors, fault=fault,
                prefix_rewrite=rewrite.get("uri"), host_rewrite=rewrite.get("authority")))
    return hosts, routes


# -- PeerAuthentication ----------------------------------------------------------------------------

def peer_authentication_mode(objects: list[dict], labels: dict[str, str]) -> str:
    """The mTLS mode of a workload: a selecting policy wins over a namespace-wide one (Istio's order)."""
    chosen, chosen_specific = "PERMISSIVE", False   # Istio's default with no policy
    for obj in objects:
        if obj.get("kind") != "PeerAuthentication":
            continue
        spec = obj.get("spec") or {}
        check_fields(obj, "spec", spec, {"selector", "mtls", "portLevelMtls"})
        if spec.get("portLevelMtls"):
            raise ResourceError(obj, "spec.portLevelMtls", "is not honoured (one port per workload)")
        selected = _selects(obj, labels)
        if selected is False:
            continue
        mode = (spec.get("mtls") or {}).get("mode", "UNSET")
        if mode not in ("STRICT", "PERMISSIVE", "DISABLE", "UNSET"):
            raise ResourceError(obj, "spec.mtls.mode", f"{mode!r} is not STRICT, PERMISSIVE, DISABLE or UNSET")
        if mode == "UNSET":
            continue
        if selected or not chosen_specific:
            chosen, chosen_specific = mode, bool(selected)
    return chosen


# -- AuthorizationPolicy ---------------------------------------------------------------------------

def _istio_value(value: str) -> m.StringMatch:
    """Istio's string rules: exact, `prefix*`, `*suffix`, or `*` (any non-empty value)."""
    if value == "*":
        return m.StringMatch("present")
    if value.endswith("*"):
        return m.StringMatch("prefix", value[:-1])
    if value.startswith("*"):
        return m.StringMatch("suffix", value[1:])
    return m.StringMatch("exact", value)


def _principal(value: str, trust_domain: str) -> m.StringMatch:
    if value.startswith(ISTIO_DEFAULT_TRUST_DOMAIN + "/"):
        value = trust_domain + value[len(ISTIO_DEFAULT_TRUST_DOMAIN):]
    sm = _istio_value(value)
    if sm.kind in ("exact", "prefix"):
        return m.StringMatch(sm.kind, "spiffe://" + sm.value)
    return sm


SOURCE_FIELDS = {"principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals", "namespaces",
                 "notNamespaces", "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"}
OPERATION_FIELDS = {"methods", "notMethods", "paths", "notPaths", "ports", "notPorts", "hosts", "notHosts"}


def _rule_policies(obj: dict, where: str, rule: dict, trust_domain: str, name: str) -> list[m.RbacPolicy]:
    check_fields(obj, where, rule, {"from", "to", "when"})
    if rule.get("when"):
        raise ResourceError(obj, f"{where}.when", "conditions are not honoured by the local data plane")
    sources = rule.get("from") or [{"source": {}}]
    operations = rule.get("to") or [{"operation": {}}]
    out = []
    for si, s in enumerate(sources):
        src = s.get("source") or {}
        check_fields(obj, f"{where}.from[{si}].source", src, SOURCE_FIELDS)
        for unsupported in ("namespaces", "notNamespaces", "notRequestPrincipals", "notIpBlocks",
                            "remoteIpBlocks", "notRemoteIpBlocks"):
            if unsupported in src:
                raise ResourceError(obj, f"{where}.from[{si}].source.{unsupported}", "is not honoured locally")
        for oi, o in enumerate(operations):
            op = o.get("operation") or {}
            check_fields(obj, f"{where}.to[{oi}].operation", op, OPERATION_FIELDS)
            for unsupported in ("hosts", "notHosts"):
                if unsupported in op:
                    raise ResourceError(obj, f"{where}.to[{oi}].operation.{unsupported}", "is not honoured locally")
            ports = []
            for pi, p in enumerate(op.get("ports", [])):
                if not str(p).isdigit() or not 1 <= int(p) <= 65535:
                    raise ResourceError(obj, f"{where}.to[{oi}].operation.ports[{pi}]", f"{p!r} is not a port 1..65535")
                ports.append(int(p))
            out.append(m.RbacPolicy(
                name=f"{name}[{len(out)}]",
                principals=tuple(_principal(p, trust_domain) for p in src.get("principals", [])),
                not_principals=tuple(_principal(p, trust_domain) for p in src.get("notPrincipals", [])),
                request_principals=tuple(_istio_value(p) for p in src.get("requestPrincipals", [])),
                source_ips=tuple(src.get("ipBlocks", [])),
                methods=tuple(op.get("methods", [])), not_methods=tuple(op.get("notMethods", [])),
                paths=tuple(_istio_value(p) for p in op.get("paths", [])),
                not_paths=tuple(_istio_value(p) for p in op.get("notPaths", [])),
                ports=tuple(ports), not_ports=tuple(int(p) for p in op.get("notPorts", []))))
    return out


def authorization(objects: list[dict], labels: dict[str, str], trust_domain: str) -> tuple[m.Rbac, ...]:
    """RBAC filters for one workload: DENY first, then ALLOW (absent when no ALLOW policy applies)."""
    allow: list[m.RbacPolicy] = []
    deny: list[m.RbacPolicy] = []
    any_allow = False
    for obj in objects:
        if obj.get("kind") != "AuthorizationPolicy":
            continue
        spec = obj.get("spec") or {}
        check_fields(obj, "spec", spec, {"selector", "action", "rules", "provider", "targetRef", "targetRefs"})
        action = spec.get("action", "ALLOW")
        if action not in ("ALLOW", "DENY", "AUDIT", "CUSTOM"):
            raise ResourceError(obj, "spec.action", f"{action!r} is not ALLOW, DENY, AUDIT or CUSTOM")
        if action in ("CUSTOM", "AUDIT"):
            raise ResourceError(obj, "spec.action", f"{action} is not honoured by the local data plane")
        for key in ("targetRef", "targetRefs"):
            if key in spec:
                raise ResourceError(obj, f"spec.{key}", "is not honoured (use selector)")
        if not _applies(obj, labels):
            continue
        name = obj.get("metadata", {}).get("name", "?")
        policies = []
        for ri, rule in enumerate(spec.get("rules") or []):
            policies += _rule_policies(obj, f"spec.rules[{ri}]", rule, trust_domain, f"{name}.{ri}")
        if action == "ALLOW":
            any_allow = True      # even with no rules: `spec: {}` allows nothing
            allow += policies
        else:
            deny += policies
    out: list[m.Rbac] = []
    if deny:
        out.append(m.Rbac("DENY", tuple(deny)))
    if any_allow:
        out.append(m.Rbac("ALLOW", tuple(allow)))
    return tuple(out)


# -- RequestAuthentication -------------------------------------------------------------------------

def request_authentication(objects: list[dict], labels: dict[str, str], jwks_cluster: dict[str, tuple[str, str]],
                           claim_headers: tuple[tuple[str, str], ...] = ()) -> m.JwtAuth | None:
    """jwt_authn config for one workload. `jwks_cluster` maps a jwksUri to (cluster, uri as Envoy fetches it)."""
    providers: list[m.JwtProvider] = []
    for obj in objects:
        if obj.get("kind") != "RequestAuthentication" or not _applies(obj, labels):
            continue
        spec = obj.get("spec") or {}
        check_fields(obj, "spec", spec, {"selector", "jwtRules", "targetRef", "targetRefs"})
        for key in ("targetRef", "targetRefs"):
            if key in spec:
                raise ResourceError(obj, f"spec.{key}", "is not honoured (use selector)")
        for i, rule in enumerate(spec.get("jwtRules", [])):
            at = f"spec.jwtRules[{i}]"
            check_fields(obj, at, rule, {"issuer", "audiences", "jwksUri", "jwks", "fromHeaders", "fromParams",
                                         "outputPayloadToHeader", "forwardOriginalToken", "outputClaimToHeaders",
                                         "fromCookies", "timeout"})
            for unsupported in ("jwks", "fromHeaders", "fromParams", "fromCookies", "outputPayloadToHeader", "timeout"):
                if unsupported in rule:
                    raise ResourceError(obj, f"{at}.{unsupported}", "is not honoured locally (use jwksUri and "
                                        "the Authorization header)")
            if not rule.get("issuer"):
                raise ResourceError(obj, f"{at}.issuer", "is required")
            uri = rule.get("jwksUri")
            if uri not in jwks_cluster:
                raise ResourceError(obj, f"{at}.jwksUri", f"{uri!r} is not served by a known Service "
                                    f"(known: {', '.join(sorted(jwks_cluster)) or 'none'})")
            cluster, fetch_uri = jwks_cluster[uri]
            headers = tuple((h["header"], h["claim"]) for h in rule.get("outputClaimToHeaders", [])) + claim_headers
            providers.append(m.JwtProvider(
                name=f"{obj['metadata']['name']}.{i}", issuer=rule["issuer"], audiences=tuple(rule.get("audiences", [])),
                jwks_cluster=cluster, jwks_uri=fetch_uri, claim_headers=headers,
                forward=bool(rule.get("forwardOriginalToken", False))))  # Istio drops the token by default
    return m.JwtAuth(tuple(providers), allow_missing=True) if providers else None
