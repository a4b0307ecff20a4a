"""`cloudmart proxy-config listeners|routes|clusters|secrets NAME`: the live config of one Envoy.

The analogue of `istioctl proxy-config`: read from the proxy's admin interface (a Unix socket in
the state folder) and printed as a table, or as JSON with `--json`. NAME is `gateway`, or in mesh
mode a replica id (`order-0`) for its sidecar.
"""

from __future__ import annotations

import json
from pathlib import Path

KINDS = ("listeners", "routes", "clusters", "secrets")
COLUMNS = {
    "listeners": ("name", "address", "port", "tls", "http_filters"),
    "routes": ("route_config", "name", "match", "to", "timeout", "retries"),
    "clusters": ("name", "endpoints", "lb_policy", "outlier_detection", "mtls"),
    "secrets": ("name", "type", "serial", "not_after", "spiffe"),
}


def add_parser(sub) -> None:
    """Register the subcommand on `cloudmart`'s subparsers."""
    p = sub.add_parser("proxy-config", help="the live config of the gateway's (or a sidecar's) Envoy")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("name", help="'gateway', or a replica id such as order-0 (its sidecar, with --mesh)")
    p.add_argument("--json", action="store_true")


def admin_socket(status: dict, name: str) -> str:
    """The admin socket of the proxy called `name` in a local CloudMart's status."""
    if name == "gateway":
        return status["gateway_admin_socket"]
    replicas = {r["id"]: r for dep in status["deployments"].values() for r in dep["replicas"]}
    if name not in replicas:
        raise ValueError(f"proxy-config: no proxy {name!r}; valid: gateway, {', '.join(sorted(replicas))}")
    socket = replicas[name].get("sidecar_admin_socket")
    if not socket:
        raise ValueError(f"proxy-config: replica {name} has no Envoy sidecar (start CloudMart with --mesh)")
    return socket


def rows(socket: str, kind: str) -> list[dict]:
    from cluster.dataplane.proxy import EnvoyProxy

    if not Path(socket).exists():
        raise RuntimeError(f"proxy-config: the admin socket {socket} does not exist (is the proxy running?)")
    proxy = EnvoyProxy.__new__(EnvoyProxy)     # reader only: no folder set-up, no process
    proxy.admin_socket, proxy._client, proxy.node_id = socket, None, Path(socket).parent.name
    return proxy.proxy_config(kind)


def _cell(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return "-" if value is None else str(value)


def run(args) -> int:
    from cluster.local import LocalTarget

    target = LocalTarget(args.state_dir)
    if not target.is_up():
        raise RuntimeError(f"CloudMart is not up (state folder {target.state_dir}); run 'cloudmart up'")
    found = rows(admin_socket(target.status(), args.name), args.kind)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    cols = COLUMNS[args.kind]
    table = [[_cell(r.get(c)) for c in cols] for r in found]
    widths = [max([len(c)] + [len(row[i]) for row in table]) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)).rstrip())
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0
