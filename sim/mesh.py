"""The mesh's costs and blind spots: sidecar resources per hop, and what retries do to outlier
detection.

**Sidecar cost.** :data:`ISTIO_SIDECAR` holds Istio's published load-test figures (Istio 1.16.2,
"Performance and Scalability", https://istio.io/v1.16/docs/ops/deployment/performance-and-scalability/:
1000 services, 2000 sidecars, 70 000 mesh-wide req/s): an Envoy proxy uses 0.35 vCPU and 40 MB of
memory per 1000 requests per second going through it and adds 2.65 ms to the 90th percentile
latency. A meshed hop passes two proxies (the caller's and the callee's sidecar), so
:func:`sidecar_cost` charges ``2 × hops`` proxies, each in proportion to the requests through it,
and prices the cores and memory with :mod:`sim.cost`'s OpenCost rates (or an instance type's).

**Retries and outlier detection.** :func:`ejection_probability` runs one calling proxy in front of
replicas with their own error rates, with or without retries to another host, and an
:class:`sim.OutlierDetection` that sees either **every attempt** (Envoy's outlier detector: the
router reports each upstream attempt's status to it) or only the **final response** of each
request (a detector placed behind the retries: the proxy one hop further out, a gateway's passive
health check, an error-rate alert). Without retries both see the same; with retries the second is
blind — the bad replica's failures are retried to a good replica and the final answers succeed, so
it is never ejected and keeps taking (and failing) a share of the attempts. Without retries the
per-attempt detector fires when a run of ``consecutive_5xx_errors`` failures occurs among the bad
replica's requests: :func:`sim.theory.run_of_failures_probability`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import check_fraction, check_int, check_nonnegative, check_positive
from .resilience import OutlierDetection

__all__ = ["ISTIO_SIDECAR", "sidecar_cost", "EjectionResult", "simulate_ejection", "ejection_probability",
           "wilson_interval"]

ISTIO_SIDECAR = {
    "vcpu_per_1000_rps": 0.35,
    "memory_mb_per_1000_rps": 40.0,
    "p90_added_ms": 2.65,
    "istio_version": "1.16.2",
    "source": "https://istio.io/v1.16/docs/ops/deployment/performance-and-scalability/",
}


def sidecar_cost(rate_per_s: float, hops: int = 1, *, vcpu_per_1000_rps: float | None = None,
                 memory_mb_per_1000_rps: float | None = None, instance_type=None, hours: float = 730.0) -> dict:
    """Resources and money of the sidecars on ``hops`` meshed hops each carrying ``rate_per_s``.

    Every hop passes 2 proxies. Defaults are :data:`ISTIO_SIDECAR`'s; pass a calibrated
    ``vcpu_per_1000_rps`` (e.g. from the live Envoy's CPU per request) to price a measurement.
    Prices: ``instance_type`` (a name of :data:`sim.PRICE_SHEET` or an :class:`sim.InstanceType`)
    split into CPU and RAM the way OpenCost splits a node, else OpenCost's default rates."""
    from . import cost

    check_positive("rate_per_s", rate_per_s)
    check_int("hops", hops)
    check_positive("hours", hours)
    vcpu_k = ISTIO_SIDECAR["vcpu_per_1000_rps"] if vcpu_per_1000_rps is None else check_nonnegative(
        "vcpu_per_1000_rps", vcpu_per_1000_rps)
    mem_k = ISTIO_SIDECAR["memory_mb_per_1000_rps"] if memory_mb_per_1000_rps is None else check_nonnegative(
        "memory_mb_per_1000_rps", memory_mb_per_1000_rps)
    proxies = 2 * hops
    vcpu = proxies * vcpu_k * rate_per_s / 1000.0
    memory_gib = proxies * mem_k * rate_per_s / 1000.0 / 1024.0
    cpu_rate, ram_rate = cost.OPENCOST_CPU_USD_PER_CORE_H, cost.OPENCOST_RAM_USD_PER_GIB_H
    if instance_type is not None:
        it = cost._instance(instance_type)
        # OpenCost's split: the node's price shared in proportion to the default CPU:RAM rates
        weight = it.vcpu * cpu_rate + it.memory_gib * ram_rate
        cpu_rate = it.on_demand_usd_per_h * cpu_rate / weight
        ram_rate = it.on_demand_usd_per_h * ram_rate / weight
    usd_per_h = vcpu * cpu_rate + memory_gib * ram_rate
    return {"proxies": proxies, "vcpu": vcpu, "memory_gib": memory_gib, "usd_per_h": usd_per_h,
            "usd": usd_per_h * hours, "hours": hours,
            "usd_per_hop_per_1000_rps": usd_per_h * hours / hops / (rate_per_s / 1000.0),
            "p90_added_ms": hops * ISTIO_SIDECAR["p90_added_ms"]}


@dataclass(frozen=True)
class EjectionResult:
    """One run: was the bad replica ejected, when, and what the callers saw."""

    ejected: bool
    first_ejection_s: float | None
    requests: int
    attempts: int
    failed_requests: int
    bad_replica_attempts: int

    @property
    def error_rate(self) -> float:
        return self.failed_requests / self.requests if self.requests else 0.0

    @property
    def amplification(self) -> float:
        """Attempts per request (1 without retries)."""
        return self.attempts / self.requests if self.requests else 0.0


def simulate_ejection(replica_error_rates, *, retry_attempts: int = 1, detector_sees: str = "attempt",
                      outlier: OutlierDetection | None = None, rate_per_s: float = 50.0, duration_s: float = 60.0,
                      seed: int = 0) -> EjectionResult:
    """Poisson requests at ``rate_per_s`` for ``duration_s`` from one proxy to replicas that fail
    with ``replica_error_rates``; the proxy picks uniformly among the hosts not ejected, retries a
    failure up to ``retry_attempts`` tries in total on hosts not tried yet (Envoy's
    ``previous_hosts``), and feeds ``outlier`` (Istio's defaults if None) either every attempt
    (``detector_sees="attempt"``) or each request's final response, credited to the host that gave
    it (``"response"``). Replica 0 is the one watched (``first_ejection_s``)."""
    rates = [check_fraction(f"replica_error_rates[{i}]", r) for i, r in enumerate(replica_error_rates)]
    if len(rates) < 2:
        raise ValueError(f"replica_error_rates: got {len(rates)} replica(s); valid: at least 2")
    check_int("retry_attempts", retry_attempts)
    if detector_sees not in ("attempt", "response"):
        raise ValueError(f"detector_sees: got {detector_sees!r}; valid: 'attempt' or 'response'")
    check_positive("rate_per_s", rate_per_s)
    check_positive("duration_s", duration_s)
    od = OutlierDetection() if outlier is None else outlier
    if not isinstance(od, OutlierDetection):
        raise ValueError(f"outlier: got {outlier!r}; valid: None or a sim.OutlierDetection")
    n = len(rates)
    rng = np.random.default_rng(seed)
    state = od.new_state(n, "proxy")
    t, requests, attempts, failed, bad_attempts, first = 0.0, 0, 0, 0, 0, None
    while True:
        t += rng.exponential(1.0 / rate_per_s)
        if t >= duration_s:
            break
        requests += 1
        allowed = state.allowed(t)
        hosts = list(range(n)) if allowed is None else list(allowed)
        tried: list[int] = []
        ok, host = False, None
        for _ in range(retry_attempts):
            fresh = [h for h in hosts if h not in tried] or hosts
            if not fresh:
                break
            host = fresh[int(rng.integers(len(fresh)))]
            tried.append(host)
            attempts += 1
            bad_attempts += host == 0
            ok = rng.random() >= rates[host]
            if detector_sees == "attempt":
                state.record(host, ok, t)
            if ok:
                break
        if detector_sees == "response" and host is not None:
            state.record(host, ok, t)
        failed += not ok
        if first is None and any(h == 0 for _, h, _ in state.ejections):
            first = next(when for when, h, _ in state.ejections if h == 0)
    return EjectionResult(first is not None, first, requests, attempts, failed, bad_attempts)


def ejection_probability(replica_error_rates, *, retry_attempts: int = 1, detector_sees: str = "attempt",
                         outlier: OutlierDetection | None = None, rate_per_s: float = 50.0,
                         duration_s: float = 60.0, seeds=range(200)) -> dict:
    """:func:`simulate_ejection` over ``seeds``: the share of runs in which replica 0 was ejected
    (with a Wilson 95 % interval), the callers' mean error rate and the mean attempts per request."""
    runs = [simulate_ejection(replica_error_rates, retry_attempts=retry_attempts, detector_sees=detector_sees,
                              outlier=outlier, rate_per_s=rate_per_s, duration_s=duration_s, seed=int(s))
            for s in seeds]
    if not runs:
        raise ValueError("seeds: got none; valid: at least one seed")
    k, m = sum(r.ejected for r in runs), len(runs)
    low, high = wilson_interval(k, m)
    return {"probability": k / m, "low": low, "high": high, "runs": m,
            "error_rate": float(np.mean([r.error_rate for r in runs])),
            "amplification": float(np.mean([r.amplification for r in runs])),
            "bad_replica_attempts": float(np.mean([r.bad_replica_attempts for r in runs]))}


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))
