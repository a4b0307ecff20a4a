"""Render the intermediate model (`model.DataPlane`) into Envoy v3 JSON.

Two shapes of the same content:
- `static_bootstrap(plane)`: everything inline (listeners, inline route configs, clusters,
  secrets). This is what `envoy --mode validate` checks before anything goes live.
- `dynamic_bootstrap(...)` plus `xds_files(plane)`: the bootstrap names file-based xDS sources
  (LDS, one shared RDS, CDS with endpoints inline, SDS) in one watched folder; Envoy reloads a resource when its file is replaced
  by a rename into that folder (never when edited in place), so a swap is atomic.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Callable

from cluster.dataplane import model as m

T = "type.googleapis.com/"
HCM = T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = T + "envoy.extensions.filters.http.router.v3.Router"
FAULT = T + "envoy.extensions.filters.http.fault.v3.HTTPFault"
RBAC = T + "envoy.extensions.filters.http.rbac.v3.RBAC"
JWT = T + "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
JWT_PER_ROUTE = T + "envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig"
LOCAL_RL = T + "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
HEADER_MUTATION = T + "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
UPSTREAM_TLS = T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWNSTREAM_TLS = T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
SECRET = T + "envoy.extensions.transport_sockets.tls.v3.Secret"
LISTENER = T + "envoy.config.listener.v3.Listener"
CLUSTER = T + "envoy.config.cluster.v3.Cluster"
ROUTE_CONFIG = T + "envoy.config.route.v3.RouteConfiguration"
HTTP_OPTIONS = T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
TLS_INSPECTOR = T + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
PREVIOUS_HOSTS = T + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
BUFFER = T + "envoy.extensions.filters.http.buffer.v3.Buffer"
BUFFER_PER_ROUTE = T + "envoy.extensions.filters.http.buffer.v3.BufferPerRoute"
BUFFER_FILTER = "envoy.filters.http.buffer"

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
CORS = T + "envoy.extensions.filters.http.cors.v3.Cors"
CORS_POLICY = T + "envoy.extensions.filters.http.cors.v3.CorsPolicy"
JWT_FILTER = "envoy.filters.http.jwt_authn"
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
EXT_AUTHZ = T + "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
EXT_AUTHZ_PER_ROUTE = T + "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
JWT_PAYLOAD_KEY = "jwt_payload"
INT64_MAX = 2**63 - 1
JWT_MISSING = "Jwt is missing"          # jwt_authn's status message for a request without a token
# Distinct client addresses / header values with a bucket of their own (least recently used evicted).
MAX_KEYS = 4096

# How a listener or cluster names an SDS secret: {"name": n} refers to a static secret, or adds an
# sds_config pointing at the secret's file.
SdsRef = Callable[[str], dict]


def duration(seconds: float) -> str:
    """Envoy's JSON duration: '2s', '0.250s'."""
    if seconds < 0:
        raise ValueError(f"duration {seconds} is negative")
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def percent(value: float) -> dict:
    """A FractionalPercent for 0–100 %, in millionths so that 0.1 % survives."""
    if not 0 <= value <= 100:
        raise ValueError(f"percentage {value} is outside 0–100")
    return {"numerator": int(round(value * 10_000)), "denominator": "MILLION"}


def string_match(sm: m.StringMatch) -> dict:
    if sm.kind == "regex":
        return {"safe_regex": {"regex": sm.value}}
    if sm.kind == "present":
        return {"safe_regex": {"regex": ".*"}}
    return {sm.kind: sm.value}


def address(host: str, port: int, pipe: str | None, mode: int | None = None) -> dict:
    if pipe:
        out: dict = {"pipe": {"path": pipe}}
        if mode is not None:
            out["pipe"]["mode"] = mode
        return out
    return {"socket_address": {"address": host, "port_value": port}}


# -- clusters ------------------------------------------------------------------------------------

def load_assignment(c: m.Cluster) -> dict:
    return {"cluster_name": c.name, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": address(e.host, e.port, e.pipe)}} for e in c.endpoints]}]}


def cluster(c: m.Cluster, sds: SdsRef) -> dict:
    """A cluster with its endpoints inline (STATIC): CDS replaces it when they change."""
    out: dict = {"name": c.name, "connect_timeout": duration(c.connect_timeout_s), "lb_policy": c.lb_policy,
                 "type": "STATIC", "load_assignment": load_assignment(c)}
    # Counters of every ejection, pending overflow… are kept per cluster (Envoy's default).
    common: dict = {}
    if c.idle_timeout_s is not None:
        common["idle_timeout"] = duration(c.idle_timeout_s)
    if c.max_requests_per_connection is not None:
        common["max_requests_per_connection"] = c.max_requests_per_connection
    options: dict = {"@type": HTTP_OPTIONS, "explicit_http_config": {"http_protocol_options": {}}}
    if common:
        options["common_http_protocol_options"] = common
    out["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": options}
    if c.circuit_breaker:
        cb = c.circuit_breaker
        threshold: dict = {"priority": "DEFAULT"}
        for key in ("max_connections", "max_pending_requests", "max_requests", "max_retries"):
            value = getattr(cb, key)
            if value is not None:
                threshold[key] = value
        out["circuit_breakers"] = {"thresholds": [threshold]}
    if c.outlier_detection:
        od = c.outlier_detection
        detection: dict = {
            "interval": duration(od.interval_s),
            "base_ejection_time": duration(od.base_ejection_time_s),
            "max_ejection_percent": od.max_ejection_percent,
            # Istio turns off success-rate ejection and gateway errors unless asked for.
            "enforcing_success_rate": 0,
        }
        if od.consecutive_5xx is not None:
            detection["consecutive_5xx"] = od.consecutive_5xx
            detection["enforcing_consecutive_5xx"] = 100
        else:
            detection["enforcing_consecutive_5xx"] = 0
        if od.consecutive_gateway_errors is not None:
            detection["consecutive_gateway_failure"] = od.consecutive_gateway_errors
            detection["enforcing_consecutive_gateway_failure"] = 100
        else:
            detection["enforcing_consecutive_gateway_failure"] = 0
        out["outlier_detection"] = detection
        if od.min_health_percent is not None:
            out["common_lb_config"] = {"healthy_panic_threshold": {"value": float(od.min_health_percent)}}
    if c.tls:
        validation: dict = {}
        if c.tls.peer_sans:
            validation["match_typed_subject_alt_names"] = [
                {"san_type": "URI", "matcher": {"exact": san}} for san in c.tls.peer_sans]
        tls: dict = {"@type": UPSTREAM_TLS, "common_tls_context": {
            "tls_certificate_sds_secret_configs": [sds(c.tls.cert_secret)],
            "combined_validation_context": {"default_validation_context": validation,
                                            "validation_context_sds_secret_config": sds(c.tls.ca_secret)},
        }}
        if c.tls.sni:
            tls["sni"] = c.tls.sni
        out["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": tls}
    return out


# -- routes --------------------------------------------------------------------------------------

def route_match(rm: m.RouteMatch) -> dict:
    out: dict = {}
    if rm.path_kind == "segment_prefix":
        path = rm.path.rstrip("/")
        if path:
            out["path_separated_prefix"] = path
        else:
            out["prefix"] = "/"
    elif rm.path_kind == "prefix":
        out["prefix"] = rm.path
    elif rm.path_kind == "exact":
        out["path"] = rm.path
    else:
        out["safe_regex"] = {"regex": rm.path}
    headers = []
    for h in rm.headers:
        entry: dict = {"name": h.name}
        if h.above is not None:
            entry["range_match"] = {"start": h.above + 1, "end": INT64_MAX}     # [start, end)
        elif h.match.kind == "present":
            entry["present_match"] = True
        else:
            entry["string_match"] = string_match(h.match)
        if h.invert:
            entry["invert_match"] = True
        headers.append(entry)
    if rm.methods:
        methods = sorted(set(rm.methods))
        headers.append({"name": ":method", "string_match": (
            {"exact": methods[0]} if len(methods) == 1 else {"safe_regex": {"regex": "^(" + "|".join(methods) + ")$"}})})
    if headers:
        out["headers"] = headers
    if rm.query:
        out["query_parameters"] = [
            ({"name": q.name, "present_match": True} if q.match.kind == "present"
             else {"name": q.name, "string_match": string_match(q.match)}) for q in rm.query]
    return out


def retry_policy(rp: m.RetryPolicy) -> dict:
    out: dict = {"retry_on": rp.retry_on, "num_retries": rp.attempts}
    if rp.per_try_timeout_s:
        out["per_try_timeout"] = duration(rp.per_try_timeout_s)
    if rp.retriable_status_codes:
        out["retriable_status_codes"] = list(rp.retriable_status_codes)
    if rp.retry_other_hosts:
        out["retry_host_predicate"] = [{"name": "envoy.retry_host_predicates.previous_hosts",
                                        "typed_config": {"@type": PREVIOUS_HOSTS}}]
        out["host_selection_retry_max_attempts"] = 5
    return out


def fault_config(f: m.Fault) -> dict:
    out: dict = {"@type": FAULT}
    if f.delay_s is not None:
        out["delay"] = {"fixed_delay": duration(f.delay_s), "percentage": percent(f.delay_percent)}
    if f.abort_status is not None:
        out["abort"] = {"http_status": f.abort_status, "percentage": percent(f.abort_percent)}
    return out


def header_changes(changes: m.HeaderChanges) -> dict:
    """request_headers_to_add / _to_remove of a route or a virtual host."""
    out: dict = {}
    # Envoy removes first, then adds in list order: Kong's request-transformer order (remove,
    # replace, add, append).
    to_add = [{"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for k, v in changes.set]
    to_add += [{"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS"} for k, v in changes.replace]
    to_add += [{"header": {"key": k, "value": v}, "append_action": "ADD_IF_ABSENT"} for k, v in changes.add_if_absent]
    to_add += [{"header": {"key": k, "value": v}, "append_action": "APPEND_IF_EXISTS_OR_ADD"} for k, v in changes.add]
    if to_add:
        out["request_headers_to_add"] = to_add
    if changes.remove:
        out["request_headers_to_remove"] = list(changes.remove)
    return out


def cors_policy(c: m.CorsPolicy) -> dict:
    out: dict = {"@type": CORS_POLICY, "allow_origin_string_match": [string_match(o) for o in c.origins],
                 "allow_credentials": c.credentials}
    if c.methods:
        out["allow_methods"] = ",".join(c.methods)
    if c.headers:
        out["allow_headers"] = ",".join(c.headers)
    if c.expose_headers:
        out["expose_headers"] = ",".join(c.expose_headers)
    if c.max_age_s is not None:
        out["max_age"] = str(c.max_age_s)
    return out


def route(r: m.Route) -> dict:
    out: dict = {"name": r.name, "match": route_match(r.match)}
    if r.direct_response is not None:
        out["direct_response"] = {"status": r.direct_response.status,
                                  "body": {"inline_string": r.direct_response.body}}
    else:
        action: dict = {}
        live = [wc for wc in r.clusters if wc.weight > 0]
        if not live:
            # Every backend at weight 0: Gateway API says answer 500.
            out["direct_response"] = {"status": 500, "body": {"inline_string": '{"detail": "no backend has weight"}'}}
        elif len(live) == 1:
            action["cluster"] = live[0].cluster
        else:
            action["weighted_clusters"] = {"clusters": [{"name": wc.cluster, "weight": wc.weight} for wc in live]}
        if action:
            # 0 turns Envoy's 15 s default off: Gateway API has no timeout unless one is set.
            action["timeout"] = duration(r.timeout_s or 0)
            if r.retry:
                action["retry_policy"] = retry_policy(r.retry)
            if r.mirrors:
                action["request_mirror_policies"] = [
                    {"cluster": mi.cluster, "runtime_fraction": {"default_value": percent(mi.percent)}}
                    for mi in r.mirrors]
            if r.prefix_rewrite is not None:
                action["prefix_rewrite"] = r.prefix_rewrite
            if r.full_path_rewrite is not None:
                action["regex_rewrite"] = {"pattern": {"regex": "^/.*$"}, "substitution": r.full_path_rewrite}
            if r.host_rewrite:
                action["host_rewrite_literal"] = r.host_rewrite
            out["route"] = action
    out.update(header_changes(r.request_headers))
    per_filter: dict = {}
    if r.cors:
        per_filter[CORS_FILTER] = cors_policy(r.cors)
    if r.fault:
        per_filter[FAULT_FILTER] = fault_config(r.fault)
    for rl in r.rate_limits:
        per_filter[rate_limit_filter_name(rl)] = rate_limit_config(rl)
    if r.jwt_disabled:
        per_filter[JWT_FILTER] = {"@type": JWT_PER_ROUTE, "disabled": True}
        # No token check here, so no edge check either (a filter absent from the chain ignores it).
        per_filter[EXT_AUTHZ_FILTER] = {"@type": EXT_AUTHZ_PER_ROUTE, "disabled": True}
    if r.unbuffered:
        per_filter[BUFFER_FILTER] = {"@type": BUFFER_PER_ROUTE, "disabled": True}
    if per_filter:
        out["typed_per_filter_config"] = per_filter
    return out


def route_configuration(listener: m.Listener) -> dict:
    return {
        "name": listener.name,
        "virtual_hosts": [{"name": vh.name, "domains": list(vh.domains), "routes": [route(r) for r in vh.routes],
                           **header_changes(vh.request_headers)}
                          for vh in listener.virtual_hosts],
    }


# -- HTTP filters --------------------------------------------------------------------------------

def _principal(p: m.RbacPolicy) -> dict:
    ids: list[dict] = []
    if p.principals:
        ids.append({"or_ids": {"ids": [{"authenticated": {"principal_name": string_match(sm)}} for sm in p.principals]}})
    if p.not_principals:
        ids.append({"not_id": {"or_ids": {"ids": [{"authenticated": {"principal_name": string_match(sm)}}
                                                  for sm in p.not_principals]}}})
    if p.request_principals:
        ids.append({"or_ids": {"ids": [_request_principal(sm) for sm in p.request_principals]}})
    if p.source_ips:
        ids.append({"or_ids": {"ids": [{"direct_remote_ip": _cidr(c)} for c in p.source_ips]}})
    if not ids:
        return {"any": True}
    return ids[0] if len(ids) == 1 else {"and_ids": {"ids": ids}}


def _request_principal(sm: m.StringMatch) -> dict:
    """`iss/sub` of the verified JWT, from the payload jwt_authn writes into dynamic metadata."""
    def claim(name: str, value: dict) -> dict:
        return {"metadata": {"filter": JWT_FILTER, "path": [{"key": JWT_PAYLOAD_KEY}, {"key": name}],
                             "value": value}}
    if sm.kind == "present":
        return claim("sub", {"present_match": True})
    if sm.kind != "exact" or "/" not in sm.value:
        raise ValueError(f"request principal {sm.value!r}: only '*' and exact 'issuer/subject' are supported")
    iss, _, sub = sm.value.rpartition("/")
    return {"and_ids": {"ids": [claim("iss", {"string_match": {"exact": iss}}),
                                claim("sub", {"string_match": {"exact": sub}})]}}


def _cidr(text: str) -> dict:
    ip, _, bits = text.partition("/")
    return {"address_prefix": ip, "prefix_len": int(bits or (128 if ":" in ip else 32))}


def _permission(p: m.RbacPolicy) -> dict:
    rules: list[dict] = []
    def header_method(method: str) -> dict:
        return {"header": {"name": ":method", "string_match": {"exact": method}}}
    def path(sm: m.StringMatch) -> dict:
        if sm.kind == "present":
            return {"any": True}
        return {"url_path": {"path": string_match(sm)}}
    if p.methods:
        rules.append({"or_rules": {"rules": [header_method(x) for x in p.methods]}})
    if p.not_methods:
        rules.append({"not_rule": {"or_rules": {"rules": [header_method(x) for x in p.not_methods]}}})
    if p.paths:
        rules.append({"or_rules": {"rules": [path(sm) for sm in p.paths]}})
    if p.not_paths:
        rules.append({"not_rule": {"or_rules": {"rules": [path(sm) for sm in p.not_paths]}}})
    if p.ports:
        rules.append({"or_rules": {"rules": [{"destination_port": port} for port in p.ports]}})
    if p.not_ports:
        rules.append({"not_rule": {"or_rules": {"rules": [{"destination_port": port} for port in p.not_ports]}}})
    if not rules:
        return {"any": True}
    return rules[0] if len(rules) == 1 else {"and_rules": {"rules": rules}}


def rbac_filter(r: m.Rbac, index: int) -> dict:
    policies = {p.name: {"permissions": [_permission(p)], "principals": [_principal(p)]} for p in r.policies}
    return {"name": f"envoy.filters.http.rbac.{r.action.lower()}.{index}", "typed_config": {
        "@type": RBAC, "rules": {"action": r.action, "policies": policies},
        "rules_stat_prefix": r.action.lower()}}


def jwt_filter(j: m.JwtAuth) -> dict:
    providers = {}
    for p in j.providers:
        providers[p.name] = {
            "issuer": p.issuer,
            "audiences": list(p.audiences),
            "remote_jwks": {"http_uri": {"uri": p.jwks_uri, "cluster": p.jwks_cluster, "timeout": "2s"},
                            "cache_duration": duration(p.cache_s),
                            # Keys are fetched at start-up without holding the listener back (the
                            # gateway may start before the auth service), again every second while
                            # fetching fails, and at the latest every cache_duration.
                            "async_fetch": {"fast_listener": True, "failed_refetch_duration": "1s"},
                            "retry_policy": {"num_retries": 3}},
            "forward": p.forward,
            "payload_in_metadata": JWT_PAYLOAD_KEY,
            "claim_to_headers": [{"header_name": h, "claim_name": c} for h, c in p.claim_headers],
        }
        if j.defer_failed:
            # Under the payload's key, so that one metadata match ("a token was presented")
            # enables the ext_authz check for verified and failed tokens alike.
            providers[p.name]["failed_status_in_metadata"] = JWT_PAYLOAD_KEY
    requirements: list[dict] = [{"provider_name": p.name} for p in j.providers]
    if j.defer_failed:
        requirements.append({"allow_missing_or_failed": {}})
    elif j.allow_missing:
        requirements.append({"allow_missing": {}})
    requires = requirements[0] if len(requirements) == 1 else {"requires_any": {"requirements": requirements}}
    return {"name": JWT_FILTER, "typed_config": {
        "@type": JWT, "providers": providers, "rules": [{"match": {"prefix": "/"}, "requires": requires}]}}


def ext_authz_filter(a: m.ExtAuthz, jwt_checked: bool) -> dict:
    """Envoy's HTTP ext_authz: the request's method and headers (Authorization included) go to
    `a.path` on `a.cluster`; a 2xx passes, any other answer is the client's answer. Fail closed:
    an unreachable service (or one slower than `a.timeout_s`) is a 503. With a JWT check before
    it, only requests whose token jwt_authn verified are asked about (an anonymous request has
    nothing to revoke)."""
    config: dict = {
        "@type": EXT_AUTHZ,
        "transport_api_version": "V3",
        "http_service": {
            "server_uri": {"uri": f"http://{a.cluster.rsplit('|', 1)[-1]}{a.path}", "cluster": a.cluster,
                           "timeout": duration(a.timeout_s)},
            "path_override": a.path,
        },
        "failure_mode_allow": False,
        "status_on_error": {"code": 503},
    }
    if a.upstream_headers:
        # What the check answers about the caller (X-User-Id, X-User-Roles) replaces what the
        # request carried: the service sees the identity auth vouched for.
        config["http_service"]["authorization_response"] = {
            "allowed_upstream_headers": {"patterns": [{"exact": h, "ignore_case": True} for h in a.upstream_headers]}}
    if jwt_checked:
        # jwt_authn writes the payload of a verified token, or the failure status of any other
        # outcome, under JWT_PAYLOAD_KEY; "Jwt is missing" is the one outcome not worth a check.
        config["filter_enabled_metadata"] = {"filter": JWT_FILTER, "path": [{"key": JWT_PAYLOAD_KEY},
                                                                            {"key": "message"}],
                                             "value": {"string_match": {"exact": JWT_MISSING}}, "invert": True}
    return {"name": EXT_AUTHZ_FILTER, "typed_config": config}


def rate_limit_filter_name(rl: m.RateLimit) -> str:
    return f"envoy.filters.http.local_ratelimit.{rl.name}"


def rate_limit_filter(rl: m.RateLimit) -> dict:
    return {"name": rate_limit_filter_name(rl), "typed_config": rate_limit_config(rl)}


def _rate_limit_slot(name: str) -> dict:
    """A rate-limit filter that does nothing by itself: routes bring their bucket (per-route config)."""
    return {"name": f"envoy.filters.http.local_ratelimit.{name}",
            "typed_config": {"@type": LOCAL_RL, "stat_prefix": name}}


def rate_limit_config(rl: m.RateLimit) -> dict:
    bucket = {"max_tokens": rl.max_tokens, "tokens_per_fill": rl.tokens_per_fill,
              "fill_interval": duration(rl.fill_interval_s)}
    always = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    config: dict = {"@type": LOCAL_RL, "stat_prefix": rl.name,
                    "filter_enabled": {"runtime_key": f"{rl.name}_enabled", **always},
                    "filter_enforced": {"runtime_key": f"{rl.name}_enforced", **always}}
    if rl.response_headers:
        config["enable_x_ratelimit_headers"] = "DRAFT_VERSION_03"
    # When to come back: the next refill (RFC 9110 Retry-After, whole seconds).
    config["response_headers_to_add"] = [{"header": {"key": "retry-after",
                                                     "value": str(max(1, math.ceil(rl.fill_interval_s)))},
                                          "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    if rl.key is None:
        config["token_bucket"] = bucket
    else:
        # One bucket per client address / header value: a wildcard descriptor (empty value) with
        # the request's own descriptor built by the filter's rate_limits actions.
        if rl.key == "ip":
            action, key = {"remote_address": {}}, "remote_address"
        elif rl.key.startswith("header:"):
            header = rl.key.split(":", 1)[1]
            action, key = {"request_headers": {"header_name": header, "descriptor_key": "header"}}, "header"
        else:
            raise ValueError(f"rate limit {rl.name!r}: key {rl.key!r} is not 'ip' or 'header:<name>'")
        # Requests that carry no such value share the default bucket of the same size.
        config["token_bucket"] = bucket
        config["descriptors"] = [{"entries": [{"key": key}], "token_bucket": bucket}]
        config["rate_limits"] = [{"actions": [action]}]
        # A matched descriptor uses its own bucket only (by default Envoy also drains the default one).
        config["always_consume_default_token_bucket"] = False
        config["max_dynamic_descriptors"] = MAX_KEYS
    return config


def http_filters(listener: m.Listener) -> list[dict]:
    filters: list[dict] = []
    if listener.strip_headers:
        filters.append({"name": "envoy.filters.http.header_mutation", "typed_config": {
            "@type": HEADER_MUTATION, "mutations": {"request_mutations": [
                {"remove": h} for h in listener.strip_headers]}}})
    if any(r.cors for vh in listener.virtual_hosts for r in vh.routes):
        # Before the JWT check: a CORS preflight carries no token (Kong runs cors first too).
        filters.append({"name": CORS_FILTER, "typed_config": {"@type": CORS}})
    if listener.jwt:
        filters.append(jwt_filter(listener.jwt))
    # Istio's order: DENY policies first, then ALLOW (CUSTOM is not supported).
    ordered = sorted(listener.rbac, key=lambda r: r.action != "DENY")
    filters += [rbac_filter(r, i) for i, r in enumerate(ordered)]
    filters += [rate_limit_filter(rl) for rl in listener.rate_limits]
    listener_limits = {rl.name for rl in listener.rate_limits}
    route_limits = sorted({rl.name for vh in listener.virtual_hosts for r in vh.routes for rl in r.rate_limits})
    filters += [_rate_limit_slot(name) for name in route_limits if name not in listener_limits]
    if listener.ext_authz:
        # After the rate limits: a request over its user's limit costs the authorization service nothing.
        filters.append(ext_authz_filter(listener.ext_authz, listener.jwt is not None))
    if listener.faults:
        # Empty here; each route carries its own fault (typed_per_filter_config).
        filters.append({"name": FAULT_FILTER, "typed_config": {"@type": FAULT}})
    if listener.max_request_bytes is not None:
        # After the checks (a refused request is never buffered); a larger body is 413.
        filters.append({"name": BUFFER_FILTER,
                        "typed_config": {"@type": BUFFER, "max_request_bytes": listener.max_request_bytes}})
    filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}})
    return filters


def _hcm(listener: m.Listener, stat_prefix: str, routes: dict) -> dict:
    config: dict = {
        "@type": HCM,
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "http_filters": http_filters(listener),
        "use_remote_address": True,
        "xff_num_trusted_hops": listener.xff_num_trusted_hops,
        **routes,
    }
    if listener.request_timeout_s is not None:
        config["request_timeout"] = duration(listener.request_timeout_s)
    if listener.json_errors:
        config["local_reply_config"] = local_reply_config()
    if listener.tls:
        # The caller's SPIFFE id travels to the workload in x-forwarded-client-cert, as in Istio.
        config["forward_client_cert_details"] = "SANITIZE_SET"
        config["set_current_client_cert_details"] = {"uri": True}
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def _json_reply(status: int | None, detail: str, *, flags: tuple[str, ...] = (), code: int | None = None,
                retry_after: bool = False) -> dict:
    if flags:
        match: dict = {"response_flag_filter": {"flags": list(flags)}}
    else:
        match = {"status_code_filter": {"comparison": {"op": "EQ", "value": {
            "default_value": code, "runtime_key": f"cloudmart.local_reply.{code}"}}}}
    mapper: dict = {"filter": match, "body_format_override": {
        "json_format": {"detail": detail}, "content_type": "application/json"}}
    if status is not None:
        mapper["status_code"] = status
    if retry_after:
        mapper["headers_to_add"] = [{"header": {"key": "retry-after", "value": "1"},
                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    return mapper


# Envoy's response flags: UH no healthy upstream, UF connection failure, URX retries exhausted,
# UC/UR connection or stream reset by the upstream, NR/NC no route or cluster, UO circuit open.
NO_REPLICA_FLAGS = ("UH", "UF", "URX", "UC", "UR", "NC")


def local_reply_config() -> dict:
    """Envoy's own answers as CloudMart's JSON errors ({"detail": …}), never an empty body:
    a request no ready replica could take is a 503 with Retry-After (never a 502)."""
    return {"mappers": [
        # ext_authz could not ask the authorization service (UAEX with Envoy's own 503): fail closed.
        {"filter": {"and_filter": {"filters": [
            {"response_flag_filter": {"flags": ["UAEX"]}},
            {"status_code_filter": {"comparison": {"op": "EQ", "value": {
                "default_value": 503, "runtime_key": "cloudmart.local_reply.authz503"}}}}]}},
         "body_format_override": {"json_format": {"detail": "the token check (auth) is unavailable; try again"},
                                  "content_type": "application/json"},
         "headers_to_add": [{"header": {"key": "retry-after", "value": "1"},
                             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]},
        # Any other ext_authz denial is auth's own JSON answer (401, 429 …): passed on as it is.
        {"filter": {"response_flag_filter": {"flags": ["UAEX"]}},
         "body_format_override": {"text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
                                  "content_type": "application/json"}},
        _json_reply(None, "rate limit exceeded, slow down", code=429),
        _json_reply(503, "circuit open: too many requests to %UPSTREAM_CLUSTER%", flags=("UO",), retry_after=True),
        _json_reply(504, "upstream request timeout", flags=("UT",)),
        _json_reply(503, "no ready replica of %UPSTREAM_CLUSTER% could take the request",
                    flags=NO_REPLICA_FLAGS, retry_after=True),
        _json_reply(None, "request body larger than the limit", code=413),
        _json_reply(None, "%LOCAL_REPLY_BODY%", code=401),
        _json_reply(None, "%LOCAL_REPLY_BODY%", code=403),
        # Direct responses (no route: 404; every backend at weight 0: 500) carry JSON already.
        _json_body(404), _json_body(500),
    ]}


def _json_body(code: int) -> dict:
    return {"filter": {"status_code_filter": {"comparison": {"op": "EQ", "value": {
        "default_value": code, "runtime_key": f"cloudmart.local_reply.{code}"}}}},
        "body_format_override": {"text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
                                 "content_type": "application/json"}}


def _downstream_tls(t: m.DownstreamTLS, sds: SdsRef) -> dict:
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": DOWNSTREAM_TLS,
        "require_client_certificate": True,
        "common_tls_context": {
            "tls_certificate_sds_secret_configs": [sds(t.cert_secret)],
            "validation_context_sds_secret_config": sds(t.ca_secret),
        }}}


def listener(l: m.Listener, sds: SdsRef, routes: dict) -> dict:
    prefix = l.stat_prefix or l.name
    out: dict = {"name": l.name, "address": address(l.host, l.port, l.pipe, 0o600 if l.pipe else None)}
    mode = l.tls.mode if l.tls else "DISABLE"
    if mode == "DISABLE":
        out["filter_chains"] = [{"filters": [_hcm(l, prefix, routes)]}]
    elif mode == "STRICT":
        out["filter_chains"] = [{"filters": [_hcm(l, prefix, routes)], "transport_socket": _downstream_tls(l.tls, sds)}]
    else:
        # PERMISSIVE, the way Istio does it: tls_inspector tells TLS from plaintext, and each gets
        # its own filter chain (and stat prefix, so plaintext callers can be counted).
        out["listener_filters"] = [{"name": "envoy.filters.listener.tls_inspector",
                                    "typed_config": {"@type": TLS_INSPECTOR}}]
        out["filter_chains"] = [
            {"name": "tls", "filter_chain_match": {"transport_protocol": "tls"},
             "filters": [_hcm(l, prefix, routes)], "transport_socket": _downstream_tls(l.tls, sds)},
            {"name": "plaintext", "filter_chain_match": {"transport_protocol": "raw_buffer"},
             "filters": [_hcm(l, f"{prefix}_plain", routes)]},
        ]
    return out


def secret(s: m.Secret) -> dict:
    out: dict = {"name": s.name}
    if s.ca_file:
        out["validation_context"] = {"trusted_ca": {"filename": s.ca_file}}
    else:
        out["tls_certificate"] = {"certificate_chain": {"filename": s.cert_file},
                                  "private_key": {"filename": s.key_file}}
    return out


# -- whole configs -------------------------------------------------------------------------------

def _static_sds(name: str) -> dict:
    return {"name": name}


def static_bootstrap(plane: m.DataPlane, node_id: str = "validate") -> dict:
    """Everything inline: what `envoy --mode validate` checks before a swap."""
    plane.check()
    return {
        "node": {"id": node_id, "cluster": "cloudmart"},
        "static_resources": {
            "listeners": [listener(l, _static_sds, {"route_config": route_configuration(l)}) for l in plane.listeners],
            "clusters": [cluster(c, _static_sds) for c in plane.clusters],
            "secrets": [secret(s) for s in plane.secrets],
        },
    }


def _source(folder: str, name: str) -> dict:
    return {"path_config_source": {"path": f"{folder}/{name}", "watched_directory": {"path": folder}},
            "resource_api_version": "V3"}


def dynamic_bootstrap(node_id: str, xds_folder: str, admin_socket: str) -> dict:
    """The bootstrap of a running Envoy: admin on a Unix socket, LDS and CDS from watched files."""
    return {
        "node": {"id": node_id, "cluster": "cloudmart"},
        "admin": {"address": {"pipe": {"path": admin_socket, "mode": 0o600}}},
        # Histograms are merged when the admin interface is read (not every 5 s): a latency
        # histogram read right after a run includes the run's last requests.
        "stats_flush_on_admin": True,
        "dynamic_resources": {"lds_config": _source(xds_folder, "lds.json"),
                              "cds_config": _source(xds_folder, "cds.json")},
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {
            # No global connection limit warning: this Envoy serves one local CloudMart.
            "overload.global_downstream_max_connections": 50000}}]},
    }


ROUTES_NAME = "routes"
RDS_FILE = "rds.json"


def shared_routes(plane: m.DataPlane) -> tuple[list[m.Listener], dict | None]:
    """The listeners whose routes come from the one shared route configuration (RDS) of an
    Envoy, and that configuration (None if no listener uses it).

    Listeners whose routes change on `apply` (the gateway's; a sidecar's outbound listeners) share
    one RDS resource: each file-based xDS subscription costs Envoy an inotify instance, and Linux
    gives a user 128 by default (fs.inotify.max_user_instances). With several listeners, each one's
    virtual hosts answer for `<domain>:<port>` of its own port (`*:<port>`), which is the Host a
    local client sends; a listener on a kernel-chosen port or a Unix socket keeps its routes inline.
    Routes that never change (a sidecar's inbound listener, the per-Service balancers) stay inline.
    """
    candidates = [l for l in plane.listeners if not l.inline_routes]
    if len(candidates) > 1:
        candidates = [l for l in candidates if l.port and not l.pipe]
    if not candidates:
        return [], None
    if len(candidates) == 1:
        return candidates, {**route_configuration(candidates[0]), "name": ROUTES_NAME}
    hosts = []
    for l in candidates:
        for vh in route_configuration(l)["virtual_hosts"]:
            hosts.append({**vh, "name": f"{l.name}:{vh['name']}",
                          "domains": [f"{d}:{l.port}" for d in vh["domains"]]})
    return candidates, {"name": ROUTES_NAME, "virtual_hosts": hosts}


def xds_files(plane: m.DataPlane, xds_folder: str) -> dict[str, dict]:
    """The files of the dynamic config: lds.json, cds.json (endpoints inline), rds.json (the one
    route configuration the changing listeners share) and one sds-<secret>.json per secret.

    Seven inotify instances per Envoy at most (LDS, CDS, RDS, two SDS secrets and the two
    certificate files they watch), however many listeners and clusters: an endpoint change
    replaces only the clusters whose endpoints changed (requests in flight on the old cluster
    finish; its outlier-detection state and connection pool start again)."""
    plane.check()

    def sds(name: str) -> dict:
        return {"name": name, "sds_config": _source(xds_folder, f"sds-{name}.json")}

    files: dict[str, dict] = {}
    shared, routes = shared_routes(plane)
    shared_names = {l.name for l in shared}
    if routes is not None:
        files[RDS_FILE] = {"resources": [{"@type": ROUTE_CONFIG, **routes}]}
    listeners = []
    for l in plane.listeners:
        if l.name in shared_names:
            ref = {"rds": {"route_config_name": ROUTES_NAME, "config_source": _source(xds_folder, RDS_FILE)}}
        else:
            ref = {"route_config": route_configuration(l)}
        listeners.append({"@type": LISTENER, **listener(l, sds, ref)})
    files["lds.json"] = {"resources": listeners}
    files["cds.json"] = {"resources": [{"@type": CLUSTER, **cluster(c, sds)} for c in plane.clusters]}
    for s in plane.secrets:
        files[f"sds-{s.name}.json"] = {"resources": [{"@type": SECRET, **secret(s)}]}
    # A version per file, from its content: the admin API reports it once Envoy applied the file.
    for name, content in files.items():
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
        files[name] = {"version_info": digest, **content}
    return files
