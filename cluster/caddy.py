"""Caddy JSON configuration for the local target, generated from the HTTPRoutes.

The gateway is one Caddy server: every request first goes to the auth service's
`/api/auth/verify` (the JSON form of Caddy's `forward_auth` directive, as `caddy adapt` prints it),
which checks the JWT and the Redis token bucket; a 2xx answer lets the request through with
`X-User-Id`/`X-User-Roles` copied from it, anything else (401, 429 + Retry-After) goes back to
the client as is. Then the HTTPRoute rules pick weighted upstreams (`weighted_round_robin`),
with header matches for A/B, passive and active health checks and retries.

In mesh mode each replica gets a sidecar Caddy: an inbound mTLS listener (client certificate
required) in front of the replica, and one plaintext outbound listener on 127.0.0.1 per peer
service that proxies to the peer's sidecars over mTLS.
"""

from __future__ import annotations

import json

import math
from dataclasses import dataclass
from functools import reduce

from cluster.topology import RouteRule

NS = 1_000_000_000  # Caddy durations in JSON are nanoseconds
TRY_DURATION_S = 3.0
TRY_INTERVAL_S = 0.1
FAIL_DURATION_S = 5.0
HEALTH_INTERVAL_S = 2.0
# Idle keep-alive connections to a replica are dropped before uvicorn's own 5 s keep-alive timeout,
# so Caddy never sends a request on a connection the replica is closing at that very moment.
UPSTREAM_IDLE_TIMEOUT_S = 4.0
FORWARDED_AUTH_HEADERS = ("X-User-Id", "X-User-Roles")


@dataclass(frozen=True)
class MeshTLS:
    """Files of one mesh identity: the CA that signs every sidecar, and this party's cert/key."""

    ca_file: str
    cert_file: str
    key_file: str


def _base(admin_port: int) -> dict:
    return {
        "admin": {"listen": f"127.0.0.1:{admin_port}", "config": {"persist": False}},
        "logging": {"logs": {"default": {"level": "ERROR"}}},
    }


def _upstream_weights(rule: RouteRule, endpoints: dict[str, list[str]],
                      weights: dict[str, int]) -> tuple[list[str], list[int]]:
    """Spread each backend's weight over its endpoints; backends of weight 0 get no traffic."""
    dials: list[str] = []
    raw: list[float] = []
    for backend in rule.backends:
        weight = weights.get(backend.service, backend.weight)
        eps = endpoints.get(backend.service, [])
        if weight <= 0 or not eps:
            continue
        for dial in eps:
            dials.append(dial)
            raw.append(weight / len(eps))
    if not dials:
        return [], []
    # Integer weights, in small numbers so that the round robin interleaves finely.
    scale = math.lcm(*[max(1, len(endpoints.get(b.service, []))) for b in rule.backends])
    ints = [max(1, round(w * scale)) for w in raw]
    g = reduce(math.gcd, ints)
    return dials, [w // g for w in ints]


def _proxy_handler(dials: list[str], weights: list[int], timeout_s: float | None,
                   tls: MeshTLS | None, server_name: str | None = None) -> dict:
    handler: dict = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": d} for d in dials],
        "load_balancing": {
            "selection_policy": {"policy": "weighted_round_robin", "weights": weights}
            if len(set(weights)) > 1 else {"policy": "round_robin"},
            "try_duration": int(TRY_DURATION_S * NS),
            "try_interval": int(TRY_INTERVAL_S * NS),
        },
        "headers": {"request": {"set": {"X-Forwarded-For": ["{http.request.remote.host}"]}}},
    }
    if len(dials) > 1:
        # Health checks route around a bad replica, so they need another one to route to. With a
        # single upstream they can only turn one failed request or one slow /healthz into seconds
        # of 503 "no upstreams available" for every route to it (Caddy shares a host's passive
        # health state across all handlers that dial it: in monolith mode, every route). The
        # supervisor's readiness probe decides whether a lone replica is in the endpoints at all.
        handler["health_checks"] = {
            "passive": {"fail_duration": int(FAIL_DURATION_S * NS), "max_fails": 1},
            "active": {"uri": "/healthz", "interval": int(HEALTH_INTERVAL_S * NS), "timeout": NS},
        }
    transport: dict = {"protocol": "http", "keep_alive": {"idle_timeout": int(UPSTREAM_IDLE_TIMEOUT_S * NS)}}
    if timeout_s:
        transport["response_header_timeout"] = int(timeout_s * NS)
    if tls:
        transport["tls"] = {
            "ca": {"provider": "file", "pem_files": [tls.ca_file]},
            "client_certificate_file": tls.cert_file,
            "client_certificate_key_file": tls.key_file,
        }
        if server_name:
            transport["tls"]["server_name"] = server_name
    handler["transport"] = transport
    return handler


def _no_upstream(service: str) -> dict:
    return {"handler": "static_response", "status_code": 503,
            "headers": {"Content-Type": ["application/json"], "Retry-After": ["1"]},
            "body": f'{{"detail": "no ready replica of {service}"}}'}


def _forward_auth(auth_dials: list[str], tls: MeshTLS | None) -> dict:
    """The JSON that Caddy's `forward_auth` directive adapts to, pointed at /api/auth/verify."""
    copy_routes: list[dict] = [{"handle": [{"handler": "vars"}]}]
    for header in FORWARDED_AUTH_HEADERS:
        placeholder = "{http.reverse_proxy.header.%s}" % header
        copy_routes.append({"handle": [{"handler": "headers", "request": {"delete": [header]}}]})
        copy_routes.append({
            "handle": [{"handler": "headers", "request": {"set": {header: [placeholder]}}}],
            "match": [{"not": [{"vars": {placeholder: [""]}}]}],
        })
    handler = _proxy_handler(auth_dials, [1] * len(auth_dials), 5.0, tls, "auth" if tls else None)
    handler.update({
        "rewrite": {"method": "GET", "uri": "/api/auth/verify"},
        "headers": {"request": {"set": {
            "X-Forwarded-Method": ["{http.request.method}"],
            "X-Forwarded-Uri": ["{http.request.uri}"],
            "X-Forwarded-For": ["{http.request.remote.host}"],
        }}},
        "handle_response": [{"match": {"status_code": [2]}, "routes": copy_routes}],
    })
    return handler


def _path_matchers(prefixes: tuple[str, ...]) -> list[str]:
    paths: list[str] = []
    for prefix in prefixes:
        prefix = prefix.rstrip("/")
        paths += [prefix or "/", f"{prefix}/*"]
    return paths


MAX_BODY_BYTES = 1 << 20   # 1 MiB: CloudMart's largest legitimate request is a few kB


def _over_limit_pattern(limit: int) -> str:
    """A regular expression matching the decimal integers greater than `limit` (no leading zeros)."""
    digits = str(limit)
    n = len(digits)
    alternatives = [f"[1-9][0-9]{{{n},}}"]           # more digits than the limit
    for i, d in enumerate(digits):                    # same length: greater at position i
        if d != "9":
            rest = n - i - 1
            low = str(int(d) + 1)
            alternatives.append(digits[:i] + f"[{low}-9]" + (f"[0-9]{{{rest}}}" if rest else ""))
    return "^(?:" + "|".join(alternatives) + ")$"


def gateway_config(rules: list[RouteRule], endpoints: dict[str, list[str]], *, listen_port: int,
                   admin_port: int, auth_service: str, weights: dict[str, int] | None = None,
                   tls: MeshTLS | None = None, server_names: dict[str, str] | None = None,
                   cluster_ports: dict[str, int] | None = None) -> dict:
    """Caddy config of the gateway.

    `endpoints` maps each Kubernetes Service name to the `host:port` of its ready replicas (or of
    their sidecars' mTLS ports in mesh mode, with `tls` the gateway's own mesh identity);
    `cluster_ports` gives, without the mesh, a plain in-cluster listener per Service (what
    kube-proxy does for a ClusterIP) for service-to-service calls, which skip `forward_auth`;
    `weights` overrides backend weights by Service name (canary); `auth_service` is the Service
    whose `/api/auth/verify` guards every route.
    """
    weights = weights or {}
    server_names = server_names or {}
    # Header matches first (more specific), then longest prefix first.
    ordered = sorted(rules, key=lambda r: (not r.headers, -max(len(p) for p in r.path_prefixes)))
    routes: list[dict] = []
    auth_dials = endpoints.get(auth_service, [])
    # Then no body larger than MAX_BODY_BYTES reaches a service (a 100 MB JSON body used to be
    # read and parsed before its 422): a declared Content-Length over it is answered 413 before
    # anything is proxied (streamed on, the body would meet the service's own earlier 413 and
    # closed connection, and Caddy would answer 502 while still writing it); a body without one
    # gets 413 once the limit is passed.
    too_large = {"handler": "subroute", "routes": [{
        "match": [{"header_regexp": {"Content-Length": {"pattern": _over_limit_pattern(MAX_BODY_BYTES)}}}],
        "handle": [{"handler": "static_response", "status_code": 413, "close": True,
                    "headers": {"Content-Type": ["application/json"]},
                    "body": json.dumps({"detail": f"request body larger than {MAX_BODY_BYTES} bytes"})}]}]}
    routes.append({"handle": [_forward_auth(auth_dials, tls) if auth_dials else _no_upstream("auth"), too_large,
                              {"handler": "request_body", "max_size": MAX_BODY_BYTES}]})
    for rule in ordered:
        match: dict = {"path": _path_matchers(rule.path_prefixes)}
        if rule.headers:
            match["header"] = {name: [value] for name, value in rule.headers}
        dials, ints = _upstream_weights(rule, endpoints, weights)
        name = rule.backends[0].service if rule.backends else rule.route
        if dials:
            server_name = server_names.get(rule.backends[0].service) if tls else None
            handle = _proxy_handler(dials, ints, rule.timeout_s, tls, server_name)
        else:
            handle = _no_upstream(name)
        routes.append({"match": [match], "handle": [handle], "terminal": True})
    routes.append({"handle": [{"handler": "static_response", "status_code": 404,
                               "headers": {"Content-Type": ["application/json"]},
                               "body": '{"detail": "no route for this path"}'}]})
    config = _base(admin_port)
    servers = {"gateway": {
        "listen": [f"127.0.0.1:{listen_port}"],
        "routes": routes,
        "automatic_https": {"disable": True},
    }}
    for service, port in sorted((cluster_ports or {}).items()):
        dials = endpoints.get(service, [])
        handle = _proxy_handler(dials, [1] * len(dials), None, None) if dials else _no_upstream(service)
        servers[f"cluster-{service}"] = {"listen": [f"127.0.0.1:{port}"], "routes": [{"handle": [handle]}],
                                         "automatic_https": {"disable": True}}
    config["apps"] = {"http": {"metrics": {}, "servers": servers}}
    return config


def sidecar_config(*, admin_port: int, inbound_port: int, app_port: int, identity: MeshTLS,
                   outbound: dict[int, tuple[str, list[str]]]) -> dict:
    """Caddy config of one replica's sidecar.

    Inbound: `127.0.0.1:inbound_port` speaks TLS only and requires a client certificate signed by
    the mesh CA, then proxies to the replica on `app_port`. Outbound: for each local port in
    `outbound`, a plaintext listener that proxies to `(peer service name, peer sidecar dials)` over
    mTLS, verifying the peer's certificate against the mesh CA.
    """
    servers: dict = {
        "inbound": {
            "listen": [f"127.0.0.1:{inbound_port}"],
            "routes": [{"handle": [{
                "handler": "reverse_proxy",
                "upstreams": [{"dial": f"127.0.0.1:{app_port}"}],
                "load_balancing": {"try_duration": int(1.0 * NS), "try_interval": int(TRY_INTERVAL_S * NS)},
            }]}],
            "tls_connection_policies": [{
                "certificate_selection": {"any_tag": ["mesh"]},
                "client_authentication": {"ca": {"provider": "file", "pem_files": [identity.ca_file]},
                                          "mode": "require_and_verify"},
            }],
            # Callers verify the peer by service name (SNI) while Host stays the original one.
            "strict_sni_host": False,
            "automatic_https": {"disable": True},
        }
    }
    for port, (peer, dials) in sorted(outbound.items()):
        handle = (_proxy_handler(dials, [1] * len(dials), None, identity, peer) if dials
                  else _no_upstream(peer))
        servers[f"outbound-{peer}"] = {
            "listen": [f"127.0.0.1:{port}"],
            "routes": [{"handle": [handle]}],
            "automatic_https": {"disable": True},
        }
    config = _base(admin_port)
    config["apps"] = {
        "http": {"metrics": {}, "servers": servers},
        "tls": {"certificates": {"load_files": [
            {"certificate": identity.cert_file, "key": identity.key_file, "tags": ["mesh"]}]}},
    }
    return config
