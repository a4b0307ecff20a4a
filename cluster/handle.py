"""`connect()`: one handle on a running CloudMart, for notebooks, tests and the CLI.

    from cluster import connect
    cm = connect()                      # starts the local target if it is not up
    cm.get("/api/products").json()
    cm.scale("order", 2); cm.kill("payment"); cm.inject("inventory", latency_ms=200)
    cm.load(rps=20, seconds=10, scenario="checkout").summary
    cm.metrics(); cm.usage(); cm.events("orders")
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import httpx
import pandas as pd
import psutil
from prometheus_client.parser import text_string_to_metric_families

from cluster.load import LoadResult, run_load, run_sync
from cluster.local import LocalTarget, TargetError
from services.common.bus import STREAMS as BUS_STREAMS

# The JetStream streams the services create (services.common.bus), by their lower-case names.
STREAMS = tuple(name.lower() for name in BUS_STREAMS)
MAX_LOAD_USERS = 200


# The status contract of both targets (`LocalTarget.status()`, `KindTarget.status()`): the keys the
# handle's methods read. `ready`: every wanted replica is ready; `routed`: traffic reaches exactly
# the ready replicas. Each handle class names the keys its own methods read on top (the local
# handle pids and ports, the kind handle pod and container names).
STATUS_KEYS = ("target", "mode", "mesh", "gateway_url", "ready", "routed", "deployments")
DEPLOYMENT_KEYS = ("service", "wanted", "ready", "replicas")
REPLICA_KEYS = ("id", "ready", "version", "restarts")


def status_problems(status: dict, extra_keys: tuple[str, ...] = (), extra_replica_keys: tuple[str, ...] = ()) -> list[str]:
    """What a target's status lacks of the contract, one line per missing key ([] when it complies)."""
    if not isinstance(status, dict):
        return [f"status is a {type(status).__name__}, not a dict"]
    problems = [f"status has no {k!r}" for k in (*STATUS_KEYS, *extra_keys) if k not in status]
    deployments = status.get("deployments")
    if not isinstance(deployments, dict):
        return problems + (["status 'deployments' is not a dict"] if deployments is not None else [])
    for name, dep in deployments.items():
        problems += [f"deployment {name!r} has no {k!r}" for k in DEPLOYMENT_KEYS if k not in dep]
        for i, rep in enumerate(dep.get("replicas") or []):
            problems += [f"deployment {name!r} replica {i} has no {k!r}"
                         for k in (*REPLICA_KEYS, *extra_replica_keys) if k not in rep]
    return problems


def _demo_password() -> str:
    return os.environ.get("CLOUDMART_DEMO_PASSWORD", "cloudmart")


class CloudMart:
    """A local CloudMart: HTTP through the gateway as one user, plus operations on the replicas."""

    # Status keys this handle's methods read beyond the contract (metrics, usage, events, _fault).
    STATUS_EXTRA_KEYS: tuple[str, ...] = ("gateway_admin_socket", "gateway_pid", "supervisor_pid", "infra")
    REPLICA_EXTRA_KEYS: tuple[str, ...] = ("pid", "port")

    def __init__(self, target: LocalTarget, user: str | None = "alice", password: str | None = None):
        self.target = target
        self.user = user
        self._password = password
        self._token: str | None = None
        self._admin_token: str | None = None
        self._status = self._checked(target.status())
        self.gateway_url = self._status["gateway_url"]
        self._client = httpx.Client(base_url=self.gateway_url, timeout=30.0)

    def __repr__(self) -> str:
        return f"CloudMart(target=local, gateway_url={self.gateway_url!r}, user={self.user!r})"

    # ----- HTTP through the gateway ------------------------------------------------------------
    def token_for(self, user: str, password: str | None = None) -> str:
        """An access token for a demo user (password grant), or for the `loadgen` client."""
        if user == "loadgen":
            data = {"grant_type": "client_credentials", "client_id": "loadgen",
                    "client_secret": password or _demo_password()}
        else:
            data = {"grant_type": "password", "username": user, "password": password or _demo_password()}
        resp = self._send("POST", "/api/auth/token", {}, {"data": data})
        if resp.status_code != 200:
            raise TargetError(f"cannot log in as {user!r}: HTTP {resp.status_code} {resp.text[:200]}")
        return resp.json()["access_token"]

    @property
    def token(self) -> str | None:
        """The bearer token of this handle's user (None for an anonymous handle)."""
        if self.user and self._token is None:
            self._token = self.token_for(self.user, self._password)
        return self._token

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        """Send a request through the gateway, authenticated as this handle's user."""
        headers = dict(kw.pop("headers", None) or {})
        if self.user and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        resp = self._send(method, path, headers, kw)
        if resp.status_code == 401 and self.user and self._token:
            self._token = None   # expired: log in again once
            headers["Authorization"] = f"Bearer {self.token}"
            resp = self._send(method, path, headers, kw)
        return resp

    def _send(self, method: str, path: str, headers: dict, kw: dict) -> httpx.Response:
        try:
            return self._client.request(method, path, headers=headers, **kw)
        except httpx.RemoteProtocolError:
            # A kept-alive connection the gateway closed as we reused it (a proxy closes idle
            # connections on a config reload): the request never got in; send it once more.
            return self._client.request(method, path, headers=headers, **kw)

    def get(self, path: str, **kw) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw) -> httpx.Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw) -> httpx.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    # ----- operations --------------------------------------------------------------------------
    def _checked(self, status: dict) -> dict:
        problems = status_problems(status, self.STATUS_EXTRA_KEYS, self.REPLICA_EXTRA_KEYS)
        if problems:
            raise TargetError(f"the {status.get('target', '?') if isinstance(status, dict) else '?'} target's "
                              f"status breaks the handle's contract: {'; '.join(problems[:5])}")
        return status

    def status(self) -> dict:
        """Target, gateway URL, mode, and per Deployment the replicas wanted and ready."""
        self._status = self._checked(self.target.status())
        return self._status

    def _deployments_of(self, service: str) -> list[str]:
        deps = self.status()["deployments"]
        names = [n for n, d in deps.items() if n == service or d["service"] == service]
        if not names:
            raise TargetError(f"unknown service {service!r}; valid: {', '.join(deps)}")
        return names

    def scale(self, service: str, replicas: int, wait: bool = True, timeout_s: float = 60.0) -> dict:
        """Run `replicas` replicas of a Deployment; waits until they are ready."""
        if not isinstance(replicas, int) or replicas < 0:
            raise ValueError(f"replicas={replicas!r}: must be an integer >= 0")
        result = self.target.scale(service, replicas)
        if wait:
            deadline = time.monotonic() + timeout_s
            while self.status()["deployments"][service]["ready"] < replicas or not self._status["routed"]:
                if time.monotonic() > deadline:
                    raise TargetError(f"{service}: {replicas} replicas not ready after {timeout_s:.0f} s")
                time.sleep(0.1)
            result = self._status["deployments"][service]
        return result

    def kill(self, service: str, replica: str | None = None) -> dict:
        """SIGKILL one replica of a service (a random one unless named); the supervisor restarts it."""
        return self.target.kill(service, replica)

    def _admin_headers(self) -> dict[str, str]:
        if self._admin_token is None:
            self._admin_token = self.token_for("admin")
        return {"Authorization": f"Bearer {self._admin_token}"}

    def _fault(self, service: str, method: str, body: dict | None = None, replica: str | None = None) -> list[dict]:
        names = self._deployments_of(service)
        if replica is not None:
            ids = [r["id"] for n in names for r in self._status["deployments"][n]["replicas"]]
            if replica not in ids:
                raise ValueError(f"replica={replica!r} is not a replica of {service}; valid: {', '.join(ids)}")
        return [{"replica": rep["id"], **self._replica_fault(rep, method, body)}
                for name in names for rep in self._status["deployments"][name]["replicas"]
                if rep["ready"] and (replica is None or rep["id"] == replica)]

    def _replica_fault(self, rep: dict, method: str, body: dict | None) -> dict:
        """One replica's `/admin/fault` call; its JSON answer."""
        resp = httpx.request(method, f"http://127.0.0.1:{rep['port']}/admin/fault", json=body,
                             headers=self._admin_headers(), timeout=10)
        if resp.status_code >= 400:
            raise TargetError(f"{rep['id']}: /admin/fault answered {resp.status_code}: {resp.text[:200]}")
        return resp.json() if resp.content else {}

    def inject(self, service: str, latency_ms: float = 0, error_rate: float = 0.0,
               replica: str | None = None) -> list[dict]:
        """Add latency and/or an error rate to every ready replica of a service (or to the one
        named `replica`, e.g. "product-1")."""
        if latency_ms < 0:
            raise ValueError(f"latency_ms={latency_ms!r}: must be >= 0")
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate={error_rate!r}: must be within 0..1")
        return self._fault(service, "PUT", {"latency_ms": latency_ms, "error_rate": error_rate}, replica)

    def reset(self, service: str, replica: str | None = None) -> list[dict]:
        """Remove injected faults from every replica of a service (or from `replica` only)."""
        return self._fault(service, "DELETE", None, replica)

    def canary(self, service: str, weight: int) -> dict:
        """Send `weight` percent (0..100) of a service's traffic to its canary (version v2)."""
        return self.target.canary(service, weight)

    # ----- the control plane: Kubernetes objects applied live (cluster/control) ------------------
    def _control_target(self):
        if not hasattr(self.target, "apply"):
            raise TargetError(f"{type(self.target).__name__} has no control plane of CloudMart's: "
                              f"use kubectl apply / diff / rollout against its API server")
        return self.target

    def apply(self, objs, dry_run: bool = False):
        """Apply Kubernetes objects — a dict, a list of dicts, YAML text or a path (file or folder) —
        validated, admitted by the Gatekeeper Constraints and stored, all or nothing; a Deployment
        change rolls out. Returns an `ApplyResult`; a refusal raises `ApplyError` (a ValueError)
        naming the object and field, with nothing applied."""
        from cluster.control import ApplyResult, load_objects

        if not isinstance(dry_run, bool):
            raise ValueError(f"dry_run={dry_run!r}: must be True or False")
        return ApplyResult.from_dict(self._control_target().apply(load_objects(objs), dry_run=dry_run))

    def delete_objects(self, objs, dry_run: bool = False):
        """Remove objects from the desired state (`kubectl delete -f`); an `ApplyResult`."""
        from cluster.control import ApplyResult, load_objects

        return ApplyResult.from_dict(self._control_target().delete_objects(load_objects(objs), dry_run=dry_run))

    def diff(self, objs) -> str:
        """`kubectl diff -f`: what applying `objs` would change, as a unified diff ("" if nothing)."""
        from cluster.control import load_objects

        return self._control_target().diff(load_objects(objs))

    def get_objects(self, kind: str, name: str | None = None) -> list[dict]:
        """Objects of the desired state (`kubectl get KIND [NAME] -o yaml`)."""
        return self._control_target().get_objects(kind, name)

    def rollout_status(self, deployment: str) -> dict:
        """A Deployment's rollout: phase (Progressing / Complete / Failed), replicas, history."""
        return self._control_target().rollout(deployment)

    def wait_rollout(self, deployment: str, timeout_s: float = 120.0) -> dict:
        """Wait until a Deployment's rollout is Complete (raises TargetError if it fails or times out)."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self._control_target().rollout(deployment)
            if status["phase"] == "Complete" and status["updated"] == status["wanted"] == status["available"]:
                return status
            if status["phase"] == "Failed":
                raise TargetError(f"rollout of {deployment} failed: {status['message']}")
            if time.monotonic() > deadline:
                raise TargetError(f"rollout of {deployment} not complete after {timeout_s:.0f} s: {status['phase']}, "
                                  f"{status['available']}/{status['wanted']} updated replicas available")
            time.sleep(0.2)

    def rollout_undo(self, deployment: str, to_revision: int | None = None):
        """`kubectl rollout undo`: back to the previous pod template (or `to_revision`)."""
        from cluster.control import ApplyResult

        return ApplyResult.from_dict(self._control_target().rollout_undo(deployment, to_revision))

    def rotate_signing_key(self, overlap: bool = True) -> dict:
        """Rotate auth's JWT signing key (services/auth/keyring.py): ``overlap=True`` lets the
        published next key sign; ``overlap=False`` signs with a never-published key at once."""
        if not isinstance(overlap, bool):
            raise ValueError(f"overlap={overlap!r}: must be True or False")
        self._admin_token = None                         # a rotation without overlap voids the old one
        resp = self._send("POST", "/api/auth/keys/rotate", self._admin_headers(), {"json": {"overlap": overlap}})
        self._admin_token = None
        if resp.status_code != 200:
            raise TargetError(f"key rotation refused: HTTP {resp.status_code} {resp.text[:200]}")
        return resp.json()

    def load(self, rps: float | None, seconds: float, scenario: str = "browse", *, seed: int | None = None,
             user: str = "loadgen", users: int | None = None, **kw) -> LoadResult:
        """Load through the gateway; per-request latency, status and response headers as data.

        Open-loop Poisson at `rps`, or with `concurrency=N` (and rps=None) a closed loop. With
        `users=N`, N registered load-test users each with a token of their own (sticky
        `cohorts=` optional); else every request is sent as `user`. See `cluster/load.py`."""
        if users is not None:
            if isinstance(users, bool) or not isinstance(users, int) or not 1 <= users <= MAX_LOAD_USERS:
                raise ValueError(f"users={users!r} is out of range: must be an integer 1..{MAX_LOAD_USERS}")
            kw["tokens"] = self.user_tokens(users)
        token = self.token if user == self.user else self.token_for(user)
        return run_load(self.gateway_url, rps, seconds, scenario, token=token, seed=seed, **kw)

    def user_tokens(self, n: int) -> list[str]:
        """Tokens of the load-test users `loaduser-0` … `loaduser-{n-1}` (registered on first use)."""
        cache = self.__dict__.setdefault("_user_tokens", {})
        password = f"{_demo_password()}-load-user"
        for i in range(n):
            name = f"loaduser-{i}"
            if name in cache:
                continue
            reg = self._send("POST", "/api/users", {}, {"json": {"username": name, "password": password}})
            if reg.status_code not in (201, 409):
                raise TargetError(f"cannot register {name}: HTTP {reg.status_code} {reg.text[:200]}")
            cache[name] = self.token_for(name, password)
        return [cache[f"loaduser-{i}"] for i in range(n)]

    # ----- observation -----------------------------------------------------------------------
    def _scrape_targets(self) -> list[tuple[str, str, str, str]]:
        """(source, kind, service, url) of every /metrics endpoint: replicas, sidecars, gateway."""
        status = self.status()
        # The gateway is Envoy: its own stats, from its admin interface (a Unix socket).
        targets = [("gateway", "gateway", "gateway", f"unix:{status['gateway_admin_socket']}")]
        for dep in status["deployments"].values():
            for rep in dep["replicas"]:
                if rep["pid"]:
                    targets.append((rep["id"], "replica", dep["service"], f"http://127.0.0.1:{rep['port']}/metrics"))
                if rep.get("sidecar_admin_socket"):
                    targets.append((f"{rep['id']}-sidecar", "sidecar", dep["service"],
                                    f"unix:{rep['sidecar_admin_socket']}"))
        return targets

    def metrics(self) -> pd.DataFrame:
        """Parsed Prometheus samples of every replica, sidecar and the gateway (one row a sample).

        The gateway's rows are Envoy's own stats (`/stats/prometheus`), names unchanged.

        The gateway's and the sidecars' rows are Envoy's own stats (`/stats/prometheus`), names
        and labels unchanged: `envoy_cluster_upstream_rq_total{envoy_cluster_name="outbound|80||product"}`,
        `envoy_cluster_upstream_rq_pending_overflow`, `envoy_http_inbound_rbac_denied`, …
        """
        rows = []
        # Replicas serve /metrics to the scraper only: the token in the state folder.
        scrape_headers = {}
        state_dir = getattr(self.target, "state_dir", None)
        if state_dir is not None:
            from services.common.metrics import scrape_token_path

            token_file = scrape_token_path(state_dir)
            if token_file.exists():
                scrape_headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        with httpx.Client(timeout=5) as client:
            for source, kind, service, url in self._scrape_targets():
                try:
                    if url.startswith("unix:"):
                        with httpx.Client(transport=httpx.HTTPTransport(uds=url[5:]), timeout=5) as admin:
                            # Envoy merges its histograms when its admin is read (stats_flush_on_admin):
                            # the first read has it merge what its workers recorded, the second one
                            # reports it, so a latency histogram includes the last requests.
                            admin.get("http://envoy-admin/stats/prometheus")
                            time.sleep(0.1)
                            text = admin.get("http://envoy-admin/stats/prometheus").text
                    else:
                        text = client.get(url, headers=scrape_headers if kind == "replica" else None).text
                except (httpx.HTTPError, OSError):
                    continue
                for family in text_string_to_metric_families(text):
                    for s in family.samples:
                        rows.append({"source": source, "kind": kind, "service": service, "metric": s.name,
                                     "labels": dict(s.labels), "value": float(s.value)})
        df = pd.DataFrame(rows, columns=["source", "kind", "service", "metric", "labels", "value"])
        return df

    def usage(self, window_s: float | None = None) -> pd.DataFrame:
        """CPU seconds and memory per process: replicas, sidecars, gateway, infra servers, supervisor.

        `rss_mb` is each process tree's resident set; `pss_mb` shares shared pages fairly among
        processes, so its column sum is the honest total.

        With `window_s`, the supervisor's recorded time series of the last `window_s` seconds
        instead (about one sample a second per replica; see `cluster/usage.py`): columns t, t_s,
        replica, deployment, service, container, pid, cpu_s, cpu_cores, pss_mb, rss_mb and the
        container's requests and limits.
        """
        if window_s is not None:
            return self.usage_series(window_s)
        status = self.status()
        procs = [("supervisor", "supervisor", status["supervisor_pid"]), ("gateway", "gateway", status["gateway_pid"])]
        for dep in status["deployments"].values():
            for rep in dep["replicas"]:
                procs.append((rep["id"], "replica", rep["pid"]))
                if rep.get("sidecar_pid"):
                    procs.append((f"{rep['id']}-sidecar", "sidecar", rep["sidecar_pid"]))
        for name, info in status.get("infra", {}).items():
            procs.append((name, "infra", info.get("pid")))
        rows = []
        known = {pid for _, _, pid in procs if pid}
        for name, kind, pid in procs:
            if not pid:
                continue
            try:
                root = psutil.Process(pid)
                if kind == "supervisor":
                    # Its helpers (the fork server, …) but not the processes listed on their own rows.
                    tree = [root, *(c for c in root.children() if c.pid not in known)]
                else:
                    tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            cpu_s = rss = pss = 0.0
            for p in tree:
                try:
                    t = p.cpu_times()
                    cpu_s += t.user + t.system
                    mem = p.memory_full_info()
                    rss += mem.rss
                    pss += getattr(mem, "pss", mem.rss)
                except psutil.Error:
                    continue
            rows.append({"name": name, "kind": kind, "pid": pid, "processes": len(tree),
                         "cpu_s": round(cpu_s, 3), "rss_mb": round(rss / 2**20, 1), "pss_mb": round(pss / 2**20, 1)})
        return pd.DataFrame(rows, columns=["name", "kind", "pid", "processes", "cpu_s", "rss_mb", "pss_mb"])

    def usage_series(self, window_s: float = 60.0) -> pd.DataFrame:
        """The usage recorder's samples of the last `window_s` seconds (see :meth:`usage`)."""
        from cluster import usage

        usage.check_window(window_s)
        return usage.to_frame(self.target._request("GET", f"/usage?window_s={float(window_s)}", timeout_s=30))

    @property
    def opencost(self):
        """Client of this CloudMart's OpenCost-compatible API (allocation, metrics, budgets)."""
        from cluster.finops.client import OpenCostClient
        from cluster.finops.server import PORT_FILE

        state_dir = getattr(self.target, "state_dir", None)
        try:
            port = json.loads((state_dir / "run" / PORT_FILE).read_text())["port"]
        except (OSError, ValueError, KeyError, TypeError):
            raise TargetError("this CloudMart serves no OpenCost-compatible API (started before it existed?); "
                              "run 'cloudmart down' and 'cloudmart up'") from None
        if getattr(self, "_opencost", None) is None or not self._opencost.base_url.endswith(f":{port}"):
            self._opencost = OpenCostClient(f"http://127.0.0.1:{port}")
        return self._opencost

    @property
    def prometheus(self):
        """Client of the local Prometheus started with `cloudmart up --with observability`."""
        from cluster.observability import INFO_FILE, missing_reason
        from cluster.observability.client import PrometheusClient

        state_dir = getattr(self.target, "state_dir", None)
        try:
            info = json.loads((state_dir / "run" / INFO_FILE).read_text())
        except (OSError, ValueError, TypeError):
            from cluster.observability import binaries

            why = missing_reason() if binaries() is None else "it was not started with --with observability"
            raise TargetError(f"no Prometheus runs for this CloudMart: {why}") from None
        return PrometheusClient(info, state_dir)

    def events(self, stream: str, order_id: str | None = None, limit: int = 10_000) -> list[dict]:
        """Events of a JetStream stream, oldest first (of one order if `order_id`).

        `stream` is one of the streams the services create: "orders", "inventory", "payments",
        "notifications", "users" (any case). A stream with no event yet gives an empty list.
        """
        if not isinstance(stream, str) or stream.lower() not in STREAMS:
            raise ValueError(f"stream={stream!r} is unknown: valid are {', '.join(STREAMS)}")
        return run_sync(_read_stream(self.nats_url, stream.upper(), order_id, limit))

    @property
    def nats_url(self) -> str:
        """URL of CloudMart's NATS for the course's own cells: the `course` user may publish and
        subscribe on `course.>` and read the event streams (each service has its own user)."""
        state_dir = getattr(self.target, "state_dir", None)
        if state_dir is not None:
            from services.infra import load_infra

            infra = load_infra(state_dir)
            if "nats" in infra.servers and "nats" in infra.secrets:
                return infra.nats_url_for("course")
        if os.environ.get("NATS_URL"):
            return os.environ["NATS_URL"]
        raise TargetError("no NATS server is known to this CloudMart")

    def close(self) -> None:
        """Close the HTTP client (CloudMart keeps running)."""
        self._client.close()


async def _read_stream(url: str, stream: str, order_id: str | None, limit: int) -> list[dict]:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            return []
        first, last = info.state.first_seq, info.state.last_seq
        if info.state.messages == 0 or first < 1 or last < first:
            # Empty (never written: first = last = 0, and asking for sequence 0 is a JetStream
            # 400; or purged/expired: first = last + 1).
            return []
        out = []
        for seq in range(max(first, last - limit + 1), last + 1):
            try:
                msg = await js.get_msg(stream, seq)
            except NotFoundError:
                continue
            try:
                event = json.loads(msg.data)
            except ValueError:
                continue
            if order_id is not None and str(event.get("order_id")) != str(order_id):
                continue
            event.setdefault("subject", msg.subject)
            event.setdefault("seq", seq)
            out.append(event)
        return out
    finally:
        await nc.close()


def connect(target: str | None = None, *, user: str | None = "alice", password: str | None = None,
            state_dir: str | None = None, start: bool = True, mesh: bool = False, monolith: bool = False,
            replicas: dict[str, int] | None = None):
    """Connect to CloudMart (`CLOUDMART_TARGET=local|kind`, default local), starting it if needed."""
    target = (target or os.environ.get("CLOUDMART_TARGET") or "local").lower()
    if target == "kind":
        try:
            from cluster import kind
        except ImportError:
            raise TargetError("the kind target is not available in this installation") from None
        return kind.connect(user=user, password=password)
    if target != "local":
        raise ValueError(f"target={target!r} is unknown: valid are local, kind")
    local = LocalTarget(state_dir)
    if not local.is_up():
        if not start:
            raise TargetError(f"CloudMart is not up (state folder {local.state_dir}); run 'cloudmart up'")
        local.up(mesh=mesh, monolith=monolith, replicas=replicas)
    else:
        local.wait_ready()
    return CloudMart(local, user=user, password=password)
