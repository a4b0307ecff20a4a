"""The usage recorder: CPU-seconds and memory (PSS) of every replica, sampled in the background.

The supervisor samples each replica's process (and, in mesh mode, its sidecar) about once a
second into a ring buffer per replica — what the kubelet's cAdvisor does for metrics-server and
Prometheus on Kubernetes. Three readers use it:

* ``cm.usage(window_s=60)`` — the time series of the last minute, one row a sample (the control
  channel's ``GET /usage?window_s=60``);
* the HorizontalPodAutoscaler controller — :meth:`UsageRecorder.cpu_utilization`, the CPU usage
  of a Deployment's replicas against their ``requests.cpu``, the quantity the Kubernetes HPA
  computes from metrics-server;
* the cost lessons (``cluster.finops``) — measured CPU and memory per replica for allocation.

Each sample holds the process's cumulative CPU time (user + system, from ``/proc/<pid>/stat``),
its PSS (proportional set size: shared pages divided among the processes sharing them — the
replicas are forked from one warm fork server and share most of their pages, so PSS and not RSS
adds up to the machine's memory) and RSS. CPU *usage* in cores is the increase of CPU time
between two samples of the same process divided by the wall time between them. A replica that
restarts gets a new pid: its first sample after the restart counts from the new process's start.

    from cluster.usage import parse_cpu, parse_memory
    parse_cpu("250m") == 0.25; parse_memory("96Mi") == 96 * 2**20
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import psutil

log = logging.getLogger("cloudmart.usage")

SAMPLE_INTERVAL_S = 1.0
RING_SECONDS = 3600.0          # one hour of samples per replica at 1 s
MAX_WINDOW_S = RING_SECONDS

_QUANTITY = re.compile(r"^([+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|n|u))?$")
_SUFFIX = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
           "E": 1e18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def parse_quantity(value, field_name: str = "quantity") -> float:
    """A Kubernetes resource quantity ("250m", "1.5", "96Mi", "1G", "2e3") as a float."""
    if isinstance(value, bool):
        raise ValueError(f"{field_name}: got {value!r}; valid: a Kubernetes quantity such as '250m' or '96Mi'")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _QUANTITY.match(str(value).strip())
        if not match:
            raise ValueError(f"{field_name}: got {value!r}; valid: a Kubernetes quantity such as '250m' or '96Mi'")
        number = float(match.group(1))
        if match.group(2):
            number *= 10 ** int(match.group(2)[1:])
        else:
            number *= _SUFFIX[match.group(3) or ""]
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{field_name}: got {value!r}; valid: a quantity >= 0")
    return number


def parse_cpu(value, field_name: str = "cpu") -> float:
    """CPU quantity in cores: "50m" -> 0.05, "2" -> 2.0."""
    return parse_quantity(value, field_name)


def parse_memory(value, field_name: str = "memory") -> float:
    """Memory quantity in bytes: "96Mi" -> 100663296."""
    return parse_quantity(value, field_name)


def check_window(window_s) -> float:
    """A window length in seconds within the ring buffer's hour, else a ValueError."""
    if isinstance(window_s, bool) or not isinstance(window_s, (int, float)) or not 0 < window_s <= MAX_WINDOW_S:
        raise ValueError(f"window_s: got {window_s!r}; valid: a number of seconds in (0, {MAX_WINDOW_S:g}]")
    return float(window_s)


@dataclass(frozen=True)
class Resources:
    """requests/limits of one container: CPU in cores, memory in bytes (None when not set)."""

    cpu_request: float | None = None
    memory_request: float | None = None
    cpu_limit: float | None = None
    memory_limit: float | None = None

    @classmethod
    def from_spec(cls, spec: dict | None, where: str = "resources") -> "Resources":
        spec = spec or {}
        req, lim = spec.get("requests") or {}, spec.get("limits") or {}

        def get(d, key, parse, path):
            return parse(d[key], f"{where}.{path}.{key}") if key in d else None

        return cls(get(req, "cpu", parse_cpu, "requests"), get(req, "memory", parse_memory, "requests"),
                   get(lim, "cpu", parse_cpu, "limits"), get(lim, "memory", parse_memory, "limits"))


def resources_from_objects(objects: Iterable[dict]) -> dict[str, Resources]:
    """Deployment name -> the first container's resources, from rendered manifests."""
    out = {}
    for obj in objects:
        if obj.get("kind") != "Deployment":
            continue
        name = obj["metadata"]["name"]
        containers = obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}]
        out[name] = Resources.from_spec(containers[0].get("resources"), f"Deployment {name}: resources")
    return out


def resources_of(deployment, manifest_resources: dict[str, Resources]) -> Resources:
    """A Deployment's resources: its own `resources` attribute where the topology carries one
    (applied objects), else what the rendered manifests say, else none."""
    own = getattr(deployment, "resources", None)
    if isinstance(own, Resources):
        return own
    if isinstance(own, dict):
        return Resources.from_spec(own, f"Deployment {deployment.name}: resources")
    return manifest_resources.get(deployment.name, Resources())


@dataclass(frozen=True)
class Target:
    """One process to sample: a replica's app or its sidecar."""

    replica: str        # replica id, e.g. "product-0" (the pod)
    deployment: str
    service: str
    container: str      # "app" or "sidecar"
    pid: int
    resources: Resources = field(default_factory=Resources)


@dataclass(frozen=True)
class Sample:
    t: float            # wall-clock time (Unix seconds)
    pid: int
    cpu_s: float        # cumulative CPU seconds of the process
    pss: float          # bytes
    rss: float          # bytes


@dataclass
class CpuUtilization:
    """CPU usage of a Deployment's replicas against their requests over a window.

    ``ratio`` is what the Kubernetes HPA calls the current utilisation (as a fraction, 1.0 =
    100 %): the sum of the replicas' CPU usage over the sum of their ``requests.cpu``
    (``replica_calculator.go``'s ``GetResourceUtilizationRatio``). ``per_replica`` is each
    replica's usage / request; ``usage_cores`` the mean usage of each in cores; ``missing`` the
    replicas without two samples in the window (the HPA leaves them out of the ratio)."""

    deployment: str
    window_s: float
    request_cores: float
    ratio: float | None
    per_replica: dict[str, float]
    usage_cores: dict[str, float]
    missing: list[str]


class UsageRecorder:
    """Samples the processes that ``targets()`` names every ``interval_s`` into ring buffers."""

    def __init__(self, targets: Callable[[], list[Target]], interval_s: float = SAMPLE_INTERVAL_S,
                 ring_seconds: float = RING_SECONDS, clock: Callable[[], float] = time.time):
        if not interval_s > 0:
            raise ValueError(f"interval_s: got {interval_s!r}; valid: > 0")
        self.targets = targets
        self.interval_s = float(interval_s)
        self.maxlen = max(2, int(ring_seconds / interval_s) + 1)
        self.clock = clock
        self.buffers: dict[tuple[str, str], collections.deque[Sample]] = {}
        self.meta: dict[tuple[str, str], Target] = {}
        self._procs: dict[int, psutil.Process] = {}
        self.samples_taken = 0

    # ----- sampling --------------------------------------------------------------------------------
    def _proc(self, pid: int) -> psutil.Process:
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = psutil.Process(pid)
        return proc

    def sample_once(self) -> int:
        """Take one sample of every target; returns how many processes answered."""
        targets = self.targets()
        now = self.clock()
        live_pids = set()
        taken = 0
        for tgt in targets:
            if not tgt.pid:
                continue
            live_pids.add(tgt.pid)
            try:
                proc = self._proc(tgt.pid)
                with proc.oneshot():
                    times = proc.cpu_times()
                    mem = proc.memory_full_info()
            except psutil.Error:
                self._procs.pop(tgt.pid, None)
                continue
            key = (tgt.replica, tgt.container)
            buf = self.buffers.get(key)
            if buf is None:
                buf = self.buffers[key] = collections.deque(maxlen=self.maxlen)
            buf.append(Sample(now, tgt.pid, times.user + times.system, float(getattr(mem, "pss", mem.rss)),
                              float(mem.rss)))
            self.meta[key] = tgt
            taken += 1
        for pid in list(self._procs):
            if pid not in live_pids:
                del self._procs[pid]
        self.samples_taken += 1
        return taken

    async def run(self, stopping: asyncio.Event) -> None:
        """Sample until `stopping` is set (the supervisor's background task)."""
        while not stopping.is_set():
            started = time.monotonic()
            try:
                await asyncio.to_thread(self.sample_once)
            except Exception:   # never let one bad sample stop the recorder
                log.exception("usage sample failed")
            delay = self.interval_s - (time.monotonic() - started)
            try:
                await asyncio.wait_for(stopping.wait(), max(0.05, delay))
            except asyncio.TimeoutError:
                pass

    # ----- reading ---------------------------------------------------------------------------------
    def series(self, window_s: float = 60.0, now: float | None = None) -> list[dict]:
        """Rows of the last `window_s` seconds, oldest first per replica and container.

        Each row: t, replica, deployment, service, container, pid, cpu_s (cumulative), cpu_cores
        (usage since the previous sample of the same process; None on a replica's first sample),
        pss_bytes, rss_bytes, cpu_request_cores, memory_request_bytes, cpu_limit_cores,
        memory_limit_bytes."""
        window_s = check_window(window_s)
        now = self.clock() if now is None else now
        rows = []
        for key, buf in list(self.buffers.items()):
            meta = self.meta[key]
            prev = None
            for s in list(buf):
                cores = _rate(prev, s)
                if s.t >= now - window_s:
                    rows.append({
                        "t": s.t, "replica": meta.replica, "deployment": meta.deployment, "service": meta.service,
                        "container": meta.container, "pid": s.pid, "cpu_s": s.cpu_s, "cpu_cores": cores,
                        "pss_bytes": s.pss, "rss_bytes": s.rss,
                        "cpu_request_cores": meta.resources.cpu_request,
                        "memory_request_bytes": meta.resources.memory_request,
                        "cpu_limit_cores": meta.resources.cpu_limit,
                        "memory_limit_bytes": meta.resources.memory_limit,
                    })
                prev = s
        rows.sort(key=lambda r: (r["t"], r["replica"], r["container"]))
        return rows

    def cpu_usage_cores(self, replica: str, window_s: float, container: str = "app",
                        now: float | None = None) -> float | None:
        """Mean CPU usage (cores) of one replica's container over the window: CPU seconds used
        between the first and last sample in the window over the wall time between them (None
        with fewer than two samples of one process)."""
        window_s = check_window(window_s)
        now = self.clock() if now is None else now
        buf = [s for s in self.buffers.get((replica, container), ()) if s.t >= now - window_s]
        if len(buf) < 2:
            return None
        used = 0.0
        for a, b in zip(buf, buf[1:]):
            used += b.cpu_s - a.cpu_s if b.pid == a.pid else b.cpu_s
        span = buf[-1].t - buf[0].t
        return used / span if span > 0 else None

    def cpu_utilization(self, deployment: str, window_s: float = 30.0, replicas: Iterable[str] | None = None,
                        now: float | None = None) -> CpuUtilization:
        """CPU usage of a Deployment's replicas against their ``requests.cpu`` over `window_s`.

        The HPA controller's input: ``ratio`` is sum(usage) / sum(requests) over the replicas
        that have samples in the window (Kubernetes' resource utilisation ratio, a fraction);
        ``replicas`` limits it to those ids (e.g. the ready ones), default every replica
        recorded for the Deployment that is still sampled. Raises ValueError when the
        Deployment is unknown or has no ``requests.cpu`` (the HPA's "missing request for cpu")."""
        window_s = check_window(window_s)
        now = self.clock() if now is None else now
        known = {k: m for k, m in self.meta.items() if m.deployment == deployment and k[1] == "app"}
        if not known:
            raise ValueError(f"deployment: got {deployment!r}; valid: one of "
                             f"{sorted({m.deployment for m in self.meta.values()})}")
        if replicas is None:
            current = {t.replica for t in self.targets() if t.deployment == deployment and t.container == "app"}
            ids = sorted(r for r, _ in known if r in current) or sorted(r for r, _ in known)
        else:
            ids = sorted(replicas)
        request = next(iter(known.values())).resources.cpu_request
        if not request:
            raise ValueError(f"Deployment {deployment}: spec.template.spec.containers[0].resources.requests.cpu "
                             f"is not set; CPU utilisation needs a request")
        per, usage, missing = {}, {}, []
        for rid in ids:
            cores = self.cpu_usage_cores(rid, window_s, now=now)
            if cores is None:
                missing.append(rid)
                continue
            usage[rid] = cores
            per[rid] = cores / request
        ratio = sum(usage.values()) / (request * len(usage)) if usage else None
        return CpuUtilization(deployment, window_s, request, ratio, per, usage, missing)


def _rate(prev: Sample | None, cur: Sample) -> float | None:
    if prev is None or cur.t <= prev.t:
        return None
    used = cur.cpu_s - prev.cpu_s if cur.pid == prev.pid else cur.cpu_s
    return max(0.0, used) / (cur.t - prev.t)


# ----- the supervisor's side ---------------------------------------------------------------------
def supervisor_targets(sup, manifest_resources: dict[str, Resources]) -> Callable[[], list[Target]]:
    """A `targets()` for the recorder over a running Supervisor's replicas (app and sidecar)."""

    def targets() -> list[Target]:
        out = []
        for name, reps in list(sup.replicas.items()):
            for rep in list(reps):
                res = resources_of(rep.deployment, manifest_resources)
                app = getattr(rep, "app", None)
                if app is not None and app.alive:
                    out.append(Target(rep.id, name, rep.deployment.service, "app", app.pid, res))
                sidecar = getattr(rep, "sidecar", None)
                if sidecar is not None and sidecar.alive:
                    out.append(Target(rep.id, name, rep.deployment.service, "sidecar", sidecar.pid))
        return out

    return targets


def attach(sup, app) -> UsageRecorder:
    """Give a Supervisor a recorder (`sup.usage`) and its control-channel route `GET /usage`.

    Call before the aiohttp app starts; start sampling with ``sup.usage.run(sup._stopping)``."""
    from aiohttp import web

    manifest_resources: dict[str, Resources] = {}
    objects: list[dict] = []
    try:
        from cluster import topology

        objects = topology.render(Path(sup.manifests))
        manifest_resources = resources_from_objects(objects)
    except Exception as exc:   # the supervisor still runs; utilisation reports no request
        log.warning("resources not read from the manifests: %s", exc)
    recorder = UsageRecorder(supervisor_targets(sup, manifest_resources))
    recorder.manifest_objects = objects   # for the cost allocation's namespaces and labels
    sup.usage = recorder

    async def usage_route(request):
        raw = request.query.get("window_s", "60")
        try:
            window = float(raw)
            rows = recorder.series(window)
        except ValueError as exc:
            msg = str(exc) if "window_s" in str(exc) else f"window_s: got {raw!r}; valid: a number of seconds"
            return web.json_response({"detail": msg}, status=400)
        return web.json_response({"interval_s": recorder.interval_s, "now": recorder.clock(), "window_s": window,
                                  "rows": rows})

    async def utilization_route(request):
        try:
            window = float(request.query.get("window_s", "30"))
            util = recorder.cpu_utilization(request.query.get("deployment", ""), window)
        except ValueError as exc:
            return web.json_response({"detail": str(exc)}, status=400)
        return web.json_response(util.__dict__)

    app.router.add_get("/usage", usage_route)
    app.router.add_get("/usage/cpu-utilization", utilization_route)
    return recorder


COLUMNS = ["t", "t_s", "replica", "deployment", "service", "container", "pid", "cpu_s", "cpu_cores",
           "pss_mb", "rss_mb", "cpu_request_cores", "memory_request_mb", "cpu_limit_cores", "memory_limit_mb"]


def to_frame(payload: dict):
    """The control channel's `/usage` answer as a DataFrame (MB = 2**20 bytes; t_s from the
    window's start)."""
    import pandas as pd

    df = pd.DataFrame(payload.get("rows") or [])
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    start = payload["now"] - payload["window_s"]
    df["t_s"] = df["t"] - start
    for src, dst in (("pss_bytes", "pss_mb"), ("rss_bytes", "rss_mb"), ("memory_request_bytes", "memory_request_mb"),
                     ("memory_limit_bytes", "memory_limit_mb")):
        df[dst] = pd.to_numeric(df.pop(src), errors="coerce") / 2**20
    for col in ("cpu_cores", "cpu_request_cores", "cpu_limit_cores"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df[COLUMNS]
