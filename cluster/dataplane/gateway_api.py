"""Gateway API HTTPRoutes → routes of the intermediate model.

Honoured: path matches (PathPrefix, Exact, RegularExpression), header and query matches (Exact,
RegularExpression), method; weighted backendRefs; `timeouts.request` (whole request) and
`timeouts.backendRequest` (each try); filters RequestHeaderModifier, RequestMirror, URLRewrite;
`retry` (attempts, codes, as in Gateway API's HTTPRouteRetry). Rules are ordered by Gateway API's
precedence (exact path, longest prefix, method, most headers, most query parameters), because
Envoy takes the first route that matches.
"""

from __future__ import annotations

from cluster.dataplane import model as m
from cluster.dataplane.errors import ResourceError, check_fields, duration_s, positive_int

MAX_WEIGHT = 1_000_000   # Gateway API's bound on backendRef weights

RULE_FIELDS = {"name", "matches", "filters", "backendRefs", "timeouts", "retry", "sessionPersistence"}
MATCH_FIELDS = {"path", "headers", "queryParams", "method"}
BACKEND_FIELDS = {"group", "kind", "name", "namespace", "port", "weight", "filters"}
FILTER_TYPES = {"RequestHeaderModifier", "RequestMirror", "URLRewrite"}


def _string_match(obj: dict, where: str, entry: dict) -> m.StringMatch:
    kind = entry.get("type", "Exact")
    if kind == "Exact":
        return m.StringMatch("exact", str(entry["value"]))
    if kind == "RegularExpression":
        return m.StringMatch("regex", str(entry["value"]))
    raise ResourceError(obj, f"{where}.type", f"{kind!r} is not Exact or RegularExpression")


def _match(obj: dict, where: str, match: dict) -> m.RouteMatch:
    check_fields(obj, where, match, MATCH_FIELDS)
    path = match.get("path", {"type": "PathPrefix", "value": "/"})
    kind = path.get("type", "PathPrefix")
    value = path.get("value", "/")
    if not isinstance(value, str) or not value.startswith("/"):
        raise ResourceError(obj, f"{where}.path.value", f"{value!r} does not start with '/'")
    kinds = {"PathPrefix": "segment_prefix", "Exact": "exact", "RegularExpression": "regex"}
    if kind not in kinds:
        raise ResourceError(obj, f"{where}.path.type", f"{kind!r} is not one of {', '.join(kinds)}")
    headers = tuple(m.HeaderMatch(h["name"].lower(), _string_match(obj, f"{where}.headers[{i}]", h))
                    for i, h in enumerate(match.get("headers", [])))
    query = tuple(m.QueryMatch(q["name"], _string_match(obj, f"{where}.queryParams[{i}]", q))
                  for i, q in enumerate(match.get("queryParams", [])))
    methods = (match["method"],) if match.get("method") else ()
    return m.RouteMatch(value, kinds[kind], headers, query, methods)


def _filters(obj: dict, where: str, filters: list[dict], services: set[str]) -> dict:
    out: dict = {"request_headers": m.HeaderChanges(), "mirrors": ()}
    for i, f in enumerate(filters):
        at = f"{where}.filters[{i}]"
        kind = f.get("type")
        if kind not in FILTER_TYPES:
            raise ResourceError(obj, f"{at}.type", f"{kind!r} is not supported here "
                                f"(supported: {', '.join(sorted(FILTER_TYPES))})")
        if kind == "RequestHeaderModifier":
            spec = f.get("requestHeaderModifier", {})
            check_fields(obj, f"{at}.requestHeaderModifier", spec, {"set", "add", "remove"})
            out["request_headers"] = m.HeaderChanges(
                set=tuple((h["name"], str(h["value"])) for h in spec.get("set", [])),
                add=tuple((h["name"], str(h["value"])) for h in spec.get("add", [])),
                remove=tuple(spec.get("remove", [])))
        elif kind == "RequestMirror":
            spec = f.get("requestMirror", {})
            name = spec.get("backendRef", {}).get("name")
            if name not in services:
                raise ResourceError(obj, f"{at}.requestMirror.backendRef.name", f"Service {name!r} does not exist")
            share = 100.0
            if "percent" in spec:
                share = float(positive_int(obj, f"{at}.requestMirror.percent", spec["percent"], minimum=0, maximum=100))
            elif "fraction" in spec:
                frac = spec["fraction"]
                share = 100.0 * frac["numerator"] / frac.get("denominator", 100)
            out["mirrors"] = out["mirrors"] + (m.Mirror(name, share),)
        else:
            spec = f.get("urlRewrite", {})
            check_fields(obj, f"{at}.urlRewrite", spec, {"hostname", "path"})
            if spec.get("hostname"):
                out["host_rewrite"] = spec["hostname"]
            path = spec.get("path")
            if path:
                if path.get("type") == "ReplacePrefixMatch":
                    out["prefix_rewrite"] = path.get("replacePrefixMatch", "/")
                elif path.get("type") == "ReplaceFullPath":
                    out["full_path_rewrite"] = path.get("replaceFullPath", "/")
                else:
                    raise ResourceError(obj, f"{at}.urlRewrite.path.type",
                                        f"{path.get('type')!r} is not ReplacePrefixMatch or ReplaceFullPath")
    return out


def _retry(obj: dict, where: str, retry: dict, per_try_s: float | None) -> m.RetryPolicy | None:
    if not retry and per_try_s is None:
        return None
    check_fields(obj, where, retry or {}, {"codes", "attempts", "backoff"})
    attempts = positive_int(obj, f"{where}.attempts", retry.get("attempts", 0) if retry else 0, minimum=0, maximum=100)
    codes = tuple(positive_int(obj, f"{where}.codes[{i}]", c, minimum=400, maximum=599)
                  for i, c in enumerate((retry or {}).get("codes", [])))
    # Gateway API retries on connection errors, and on the listed status codes.
    retry_on = "connect-failure,refused-stream,reset" + (",retriable-status-codes" if codes else "")
    return m.RetryPolicy(attempts, retry_on, per_try_s, codes)


def _precedence(route: m.Route) -> tuple:
    mt = route.match
    exact = mt.path_kind == "exact"
    return (not exact, -len(mt.path) if mt.path_kind != "regex" else 0, not mt.methods,
            -len(mt.headers), -len(mt.query))


def routes(objects: list[dict], services: set[str]) -> list[m.Route]:
    """Routes of every HTTPRoute in `objects`, in match precedence order; clusters are Service names."""
    out: list[tuple[int, m.Route]] = []
    order = 0
    for obj in objects:
        if obj.get("kind") != "HTTPRoute":
            continue
        name = obj.get("metadata", {}).get("name", "?")
        for ri, rule in enumerate(obj.get("spec", {}).get("rules", [])):
            where = f"spec.rules[{ri}]"
            check_fields(obj, where, rule, RULE_FIELDS)
            if "sessionPersistence" in rule:
                raise ResourceError(obj, f"{where}.sessionPersistence", "is not honoured by the local data plane")
            backends: list[m.WeightedCluster] = []
            for bi, b in enumerate(rule.get("backendRefs", [])):
                at = f"{where}.backendRefs[{bi}]"
                check_fields(obj, at, b, BACKEND_FIELDS)
                if b.get("filters"):
                    raise ResourceError(obj, f"{at}.filters", "per-backend filters are not honoured (use the rule's)")
                if b.get("namespace", obj.get("metadata", {}).get("namespace")) != obj.get("metadata", {}).get("namespace"):
                    raise ResourceError(obj, f"{at}.namespace", "backends in another namespace are not honoured")
                if b.get("kind", "Service") != "Service":
                    raise ResourceError(obj, f"{at}.kind", f"{b.get('kind')!r} is not Service")
                if b.get("name") not in services:
                    raise ResourceError(obj, f"{at}.name", f"Service {b.get('name')!r} does not exist")
                weight = positive_int(obj, f"{at}.weight", b.get("weight", 1), minimum=0, maximum=MAX_WEIGHT)
                backends.append(m.WeightedCluster(b["name"], weight))
            timeouts = rule.get("timeouts", {})
            check_fields(obj, f"{where}.timeouts", timeouts, {"request", "backendRequest"})
            request_s = duration_s(obj, f"{where}.timeouts.request", timeouts["request"]) if "request" in timeouts else None
            backend_s = (duration_s(obj, f"{where}.timeouts.backendRequest", timeouts["backendRequest"])
                         if "backendRequest" in timeouts else None)
            if request_s and backend_s and backend_s > request_s:
                raise ResourceError(obj, f"{where}.timeouts.backendRequest",
                                    f"{timeouts['backendRequest']} is longer than timeouts.request {timeouts['request']}")
            extras = _filters(obj, where, rule.get("filters", []), services)
            retry = _retry(obj, f"{where}.retry", rule.get("retry", {}), backend_s)
            for mi, match in enumerate(rule.get("matches", [{}])):
                route = m.Route(
                    name=f"{name}.{ri}.{mi}", match=_match(obj, f"{where}.matches[{mi}]", match),
                    clusters=tuple(backends),
                    direct_response=None if backends else m.DirectResponse(500, '{"detail": "rule has no backend"}'),
                    timeout_s=request_s, retry=retry, **extras)
                out.append((order, route))
                order += 1
    out.sort(key=lambda item: (_precedence(item[1]), item[0]))
    return [r for _, r in out]
