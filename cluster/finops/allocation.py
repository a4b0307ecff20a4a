"""OpenCost's allocation over the usage recorder's measured samples.

What OpenCost's specification and `/allocation` API do, on one declared virtual node:

* each container is charged, per usage sample interval, ``max(request, usage)`` of CPU (cores)
  and of memory (bytes; PSS here) — a container bursting above its request pays for the burst;
  core-hours × the node's CPU price + GiB-hours × its RAM price is its cost;
* where the charges of a resource exceed the node's capacity of it they are scaled down to it
  (as `sim.cost.allocate`), so idle is never negative;
* ``__idle__`` = node cost − allocated cost, per resource; ``shareIdle`` spreads each resource's
  idle over the allocations in proportion to their cost of that resource (OpenCost's default
  weighted split); ``includeIdle`` adds ``__idle__`` as a line of its own;
* ``window`` (``30m``, ``2h``, ``1d``, ``today``, or ``start,end`` as RFC 3339 or Unix seconds),
  ``step`` (one allocation set per step), ``accumulate`` (one set for the whole window),
  ``aggregate`` (``cluster``, ``node``, ``namespace``, ``controllerKind``, ``controller``,
  ``service``, ``pod``, ``container``, ``label:<name>``, comma-separated for several).

The node is billed from the first sample the recorder holds (CloudMart's start, or an hour ago)
to the end of the window; every set's lines add up to its bill (``bills`` in the answer), and
:func:`to_cents` rounds lines to cents so that they add up to the bill's cents exactly.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

from cluster.finops.pricing import VirtualNode

AGGREGATES = ("cluster", "node", "namespace", "controllerKind", "controller", "service", "pod", "container")
IDLE = "__idle__"
UNALLOCATED = "__unallocated__"
MAX_SETS = 1000
FUTURE_SLACK_S = 5.0
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class AllocationError(ValueError):
    """A bad query parameter: the message names it and the valid values."""


def parse_duration(text: str, name: str) -> float:
    match = _DURATION.match(str(text).strip())
    if not match or float(match.group(1)) <= 0:
        raise AllocationError(f"{name}: got {text!r}; valid: a duration such as 30m, 12h, 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _instant(text: str, name: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise AllocationError(f"{name}: got {text!r}; valid: RFC 3339 (2026-01-02T15:04:05Z) or Unix seconds") from None


def parse_window(window: str, now: float) -> tuple[float, float]:
    """(start, end) in Unix seconds; refuses a window that ends in the future or is empty."""
    if not isinstance(window, str) or not window.strip():
        raise AllocationError("window: missing; valid: a duration (30m, 12h, 7d), 'today', or 'start,end'")
    w = window.strip()
    if w == "today":
        day = dt.datetime.fromtimestamp(now, dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        start, end = day.timestamp(), now
    elif "," in w:
        a, b = w.split(",", 1)
        start, end = _instant(a, "window start"), _instant(b, "window end")
    else:
        end = now
        start = now - parse_duration(w, "window")
    if end > now + FUTURE_SLACK_S:
        raise AllocationError(f"window: got {window!r}, which ends {end - now:.0f} s in the future; "
                              f"valid: a window that ends now or earlier")
    if start >= end:
        raise AllocationError(f"window: got {window!r}; valid: a start before the end")
    return start, end


def parse_aggregate(aggregate: str | None) -> list[str]:
    if aggregate is None or aggregate == "":
        return []
    parts = [p.strip() for p in str(aggregate).split(",")]
    for p in parts:
        if p in AGGREGATES or (p.startswith("label:") and len(p) > len("label:")):
            continue
        raise AllocationError(f"aggregate: got {p!r}; valid: {', '.join(AGGREGATES)}, label:<name>, "
                              f"or several of them comma-separated")
    return parts


def parse_bool(value, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise AllocationError(f"{name}: got {value!r}; valid: true or false")


def _sanitize(label: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


@dataclass(frozen=True)
class PodMeta:
    """What the allocation knows of a Deployment's pods: namespace and pod template labels."""

    namespace: str = "cloudmart"
    labels: dict = field(default_factory=dict)
    controller_kind: str = "deployment"


@dataclass
class _Acc:
    props: dict
    seconds: float = 0.0
    cpu_alloc_s: float = 0.0      # core-seconds of max(request, usage)
    cpu_req_s: float = 0.0
    cpu_use_s: float = 0.0
    ram_alloc_s: float = 0.0      # byte-seconds
    ram_req_s: float = 0.0
    ram_use_s: float = 0.0


def _intervals(rows: list[dict]) -> dict[tuple[str, str], list[tuple[float, float, dict]]]:
    """Per (pod, container): (t_prev, t, row) — each row's usage covers (t_prev, t]."""
    by = defaultdict(list)
    for r in rows:
        by[(r["replica"], r["container"])].append(r)
    out = {}
    for key, rs in by.items():
        rs.sort(key=lambda r: r["t"])
        out[key] = [(a["t"], b["t"], b) for a, b in zip(rs, rs[1:]) if b["t"] > a["t"]]
    return out


def _set_of(intervals, metas: dict[str, PodMeta], node: VirtualNode, s: float, e: float,
            data_start: float) -> tuple[dict[tuple[str, str], _Acc], float]:
    bill_start = max(s, data_start)
    seconds = max(0.0, e - bill_start)
    accs = {}
    for (pod, container), ivs in intervals.items():
        acc = None
        for a, b, row in ivs:
            overlap = min(b, e) - max(a, s)
            if overlap <= 0:
                continue
            if acc is None:
                meta = metas.get(row["deployment"], PodMeta())
                acc = accs[(pod, container)] = _Acc({
                    "cluster": node.cluster, "node": node.name, "namespace": meta.namespace,
                    "controllerKind": meta.controller_kind, "controller": row["deployment"],
                    "service": row.get("service") or row["deployment"], "pod": pod, "container": container,
                    "labels": dict(meta.labels)})
            use_cpu = float(row.get("cpu_cores") or 0.0)
            use_ram = float(row.get("pss_bytes") or 0.0)
            req_cpu = float(row.get("cpu_request_cores") or 0.0)
            req_ram = float(row.get("memory_request_bytes") or 0.0)
            acc.seconds += overlap
            acc.cpu_alloc_s += overlap * max(req_cpu, use_cpu)
            acc.cpu_req_s += overlap * req_cpu
            acc.cpu_use_s += overlap * use_cpu
            acc.ram_alloc_s += overlap * max(req_ram, use_ram)
            acc.ram_req_s += overlap * req_ram
            acc.ram_use_s += overlap * use_ram
    return accs, seconds


def _key(props: dict, aggregate: list[str]) -> str:
    if not aggregate:
        return f"{props['cluster']}/{props['node']}/{props['namespace']}/{props['pod']}/{props['container']}"
    parts = []
    for a in aggregate:
        if a.startswith("label:"):
            name = a[len("label:"):]
            labels = props["labels"]
            value = labels.get(name)
            if value is None:
                value = next((v for k, v in labels.items() if _sanitize(k) == _sanitize(name)), None)
            parts.append(UNALLOCATED if value is None else str(value))
        elif a == "controller":
            parts.append(f"{props['controllerKind']}:{props['controller']}")
        else:
            parts.append(str(props[a]))
    return "/".join(parts)


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _line(name: str, props: dict, s: float, e: float, seconds: float, span_s: float, cpu_cost: float,
          ram_cost: float, acc: _Acc | None) -> dict:
    def avg(x):
        return x / span_s if span_s > 0 else 0.0

    def eff(use, req):
        return use / req if req > 0 else (1.0 if use > 0 else 0.0)

    cpu_alloc = acc.cpu_alloc_s if acc else 0.0
    ram_alloc = acc.ram_alloc_s if acc else 0.0
    out = {
        "name": name, "properties": props, "window": {"start": _iso(s), "end": _iso(e)},
        "start": _iso(s), "end": _iso(e), "minutes": seconds / 60.0,
        "cpuCores": avg(cpu_alloc), "cpuCoreRequestAverage": avg(acc.cpu_req_s) if acc else 0.0,
        "cpuCoreUsageAverage": avg(acc.cpu_use_s) if acc else 0.0, "cpuCoreHours": cpu_alloc / 3600.0,
        "cpuCost": cpu_cost, "cpuEfficiency": eff(acc.cpu_use_s, acc.cpu_req_s) if acc else 0.0,
        "gpuCount": 0.0, "gpuHours": 0.0, "gpuCost": 0.0, "networkCost": 0.0, "loadBalancerCost": 0.0,
        "pvCost": 0.0,
        "ramBytes": avg(ram_alloc), "ramByteRequestAverage": avg(acc.ram_req_s) if acc else 0.0,
        "ramByteUsageAverage": avg(acc.ram_use_s) if acc else 0.0, "ramByteHours": ram_alloc / 3600.0,
        "ramCost": ram_cost, "ramEfficiency": eff(acc.ram_use_s, acc.ram_req_s) if acc else 0.0,
        "sharedCost": 0.0, "externalCost": 0.0, "totalCost": cpu_cost + ram_cost,
    }
    total = cpu_cost + ram_cost
    out["totalEfficiency"] = ((out["cpuEfficiency"] * cpu_cost + out["ramEfficiency"] * ram_cost) / total
                              if total > 0 else 0.0)
    return out


def compute(rows: list[dict], node: VirtualNode, metas: dict[str, PodMeta], *, now: float, window: str,
            aggregate: str | None = None, step: str | None = None, accumulate=False, include_idle=False,
            share_idle=False, data_start: float | None = None) -> dict:
    """The `/allocation` answer: {"code": 200, "data": [one set per step], "bills": [...], "node": ...}.

    `rows` are the usage recorder's series rows (reaching back at least one sample before the
    window); `metas` the namespace and labels per Deployment."""
    start, end = parse_window(window, now)
    agg = parse_aggregate(aggregate)
    accumulate = parse_bool(accumulate, "accumulate", False)
    include_idle = parse_bool(include_idle, "includeIdle", False)
    share_idle = parse_bool(share_idle, "shareIdle", False)
    step_s = parse_duration(step, "step") if step else end - start
    if step_s > end - start + 1e-6:
        step_s = end - start
    n_sets = math.ceil((end - start) / step_s - 1e-9)
    if n_sets > MAX_SETS:
        raise AllocationError(f"step: got {step!r}, which makes {n_sets} sets of the window; valid: at most {MAX_SETS}")
    if data_start is None:
        data_start = min((r["t"] for r in rows), default=end)
    ivs = _intervals(rows)
    bounds = [(start + i * step_s, min(end, start + (i + 1) * step_s)) for i in range(n_sets)]
    if accumulate:
        bounds = [(start, end)]
    data, bills = [], []
    for s, e in bounds:
        accs, seconds = _set_of(ivs, metas, node, s, e, data_start)
        hours = seconds / 3600.0
        node_cpu_cost = node.vcpu * node.cpu_usd_per_core_h * hours
        node_ram_cost = node.memory_gib * node.ram_usd_per_gib_h * hours
        cpu_total = sum(a.cpu_alloc_s for a in accs.values())
        ram_total = sum(a.ram_alloc_s for a in accs.values())
        cpu_scale = min(1.0, node.vcpu * seconds / cpu_total) if cpu_total > 0 else 1.0
        ram_scale = min(1.0, node.memory_gib * 2**30 * seconds / ram_total) if ram_total > 0 else 1.0
        costs = {k: (a.cpu_alloc_s * cpu_scale / 3600 * node.cpu_usd_per_core_h,
                     a.ram_alloc_s * ram_scale / 2**30 / 3600 * node.ram_usd_per_gib_h) for k, a in accs.items()}
        idle_cpu = node_cpu_cost - sum(c for c, _ in costs.values())
        idle_ram = node_ram_cost - sum(r for _, r in costs.values())
        if share_idle:
            cpu_sum = sum(c for c, _ in costs.values())
            ram_sum = sum(r for _, r in costs.values())
            n = len(costs) or 1
            costs = {k: (c + idle_cpu * (c / cpu_sum if cpu_sum > 0 else 1 / n),
                         r + idle_ram * (r / ram_sum if ram_sum > 0 else 1 / n)) for k, (c, r) in costs.items()}
            idle_cpu = idle_ram = 0.0 if costs else idle_cpu
        groups: dict[str, list] = defaultdict(list)
        for k, acc in accs.items():
            groups[_key(acc.props, agg)].append((acc, costs[k]))
        out = {}
        for name, members in sorted(groups.items()):
            merged = _Acc(_merge_props([m[0].props for m in members]))
            for acc, _ in members:
                for f in ("seconds", "cpu_alloc_s", "cpu_req_s", "cpu_use_s", "ram_alloc_s", "ram_req_s", "ram_use_s"):
                    setattr(merged, f, getattr(merged, f) + getattr(acc, f))
            cpu_c = sum(c for _, (c, _) in members)
            ram_c = sum(r for _, (_, r) in members)
            minutes_s = max(acc.seconds for acc, _ in members)
            out[name] = _line(name, merged.props, s, e, minutes_s, seconds, cpu_c, ram_c, merged)
        if include_idle and (not share_idle or not accs):
            out[IDLE] = _line(IDLE, {"cluster": node.cluster, "node": node.name}, s, e, seconds, seconds,
                              idle_cpu, idle_ram, None)
        data.append(out)
        bills.append({"window": {"start": _iso(s), "end": _iso(e)}, "minutes": seconds / 60.0,
                      "totalCost": node_cpu_cost + node_ram_cost,
                      "allocatedCost": sum(c + r for c, r in costs.values()), "idleCost": idle_cpu + idle_ram})
    return {"code": 200, "data": data, "bills": bills, "node": node.to_dict(),
            "window": {"start": _iso(start), "end": _iso(end)}}


def _merge_props(props: list[dict]) -> dict:
    """Properties every member shares (labels: those with one value across the members)."""
    first = dict(props[0])
    merged = {k: v for k, v in first.items() if k != "labels" and all(p.get(k) == v for p in props)}
    merged["labels"] = {k: v for k, v in first.get("labels", {}).items()
                        if all(p.get("labels", {}).get(k) == v for p in props)}
    return merged


def to_cents(allocation_set: dict, bill_usd: float) -> dict[str, int]:
    """Each line's totalCost in whole cents, rounded so that the lines add up to the bill's cents
    (largest remainder); the set must hold every line of the bill (``includeIdle=true`` or
    ``shareIdle=true``), else a ValueError."""
    total = sum(v["totalCost"] for v in allocation_set.values())
    if abs(total - bill_usd) > 1e-6 * max(1.0, bill_usd):
        raise ValueError(f"the set's lines add up to {total:.6f} USD, not the bill's {bill_usd:.6f}: "
                         f"query with includeIdle=true (or shareIdle=true) to reconcile")
    target = round(bill_usd * 100)
    raw = {k: v["totalCost"] * 100 for k, v in allocation_set.items()}
    cents = {k: math.floor(x) for k, x in raw.items()}
    short = target - sum(cents.values())
    for k in sorted(raw, key=lambda k: (raw[k] - cents[k], k), reverse=True)[:max(0, short)]:
        cents[k] += 1
    return cents
