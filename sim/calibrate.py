"""Calibrating the call-graph model from the live system's own measurements.

A lesson that fits a distribution to *end-to-end* response times and calls it a service time
counts the gateway, the network hops and every queue twice. This module reads what the services
measure **server-side** and what the machine measures per process:

* :func:`service_times` — per (service, route, method), the increase of the services'
  ``http_request_duration_seconds`` histograms between two ``cm.metrics()`` reads (summed over
  replicas; a replica that restarted counts from zero). The mean is the histogram's exact
  ``sum / count``; the spread is a log-normal fitted to the bucket counts by maximum likelihood
  for interval-censored data (each observation is only known to lie between two bucket bounds).
* :func:`cpu_seconds_per_request` — CPU-seconds per request of each service's processes between
  two ``cm.usage()`` reads, from the request counts of the same window: what share of a visit is
  CPU work in the replica (``cpu_fraction`` for :class:`sim.SharedCPU`) and what share waits
  elsewhere (the database, a downstream call already counted on its own).
* :func:`hop_delay_ms` — the extra latency of a hop (gateway, sidecar) from paired reads of the
  same request direct and through the hop: the difference of medians, with a bootstrap interval.

Light load is the right time to calibrate: queueing then adds little, so a server-side duration is
close to the work itself; the model adds the queues back.

    before = cm.metrics(); cm.load(...light...); after = cm.metrics()
    fits = sim.calibrate.service_times(before, after)
    fits[("product", "/api/products/{product_id}", "GET")].distribution    # LogNormal(mean, cv)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .distributions import LogNormal
from .results import Estimate

__all__ = ["ServiceTimeFit", "service_times", "fit_lognormal_binned", "cpu_seconds_per_request", "hop_delay_ms",
           "histogram_increase"]

DURATION = "http_request_duration_seconds"


@dataclass(frozen=True)
class ServiceTimeFit:
    """One endpoint's server-side duration in the calibration window."""

    service: str
    route: str
    method: str
    count: int
    mean_s: float
    cv: float
    upper_bounds_s: tuple[float, ...]        # the histogram's finite bucket bounds
    bucket_counts: tuple[int, ...]           # observations per bucket (the last: above the last bound)

    @property
    def distribution(self) -> LogNormal:
        """The log-normal with the measured mean and the fitted coefficient of variation."""
        return LogNormal(self.mean_s, self.cv)


def histogram_increase(before: pd.DataFrame, after: pd.DataFrame, metric: str = DURATION) -> pd.DataFrame:
    """Per source (replica), endpoint and series (`_bucket` per `le`, `_count`, `_sum`): the increase
    between two ``cm.metrics()`` frames. A series that went down (its process restarted) counts its
    new value from zero; a series absent before counts from zero. As with Prometheus's
    ``increase()``, a restart is only seen when the counter went down: read often enough that a
    restarted replica cannot overtake its old count."""
    for name, frame in (("before", before), ("after", after)):
        missing = {"source", "service", "metric", "labels", "value"} - set(frame.columns)
        if missing:
            raise ValueError(f"{name}: got a frame without {sorted(missing)}; valid: the frame cm.metrics() returns")

    def keyed(frame: pd.DataFrame) -> dict:
        out = {}
        wanted = (f"{metric}_bucket", f"{metric}_count", f"{metric}_sum")
        for row in frame[frame["metric"].isin(wanted)].itertuples(index=False):
            labels = row.labels if isinstance(row.labels, dict) else {}
            key = (row.source, labels.get("service", row.service), labels.get("route", ""), labels.get("method", ""),
                   row.metric, labels.get("le"))
            out[key] = out.get(key, 0.0) + float(row.value)
        return out

    b, a = keyed(before), keyed(after)
    rows = []
    for key, value in a.items():
        old = b.get(key, 0.0)
        rows.append((*key, value - old if value >= old else value))
    return pd.DataFrame(rows, columns=["source", "service", "route", "method", "series", "le", "increase"])


def fit_lognormal_binned(upper_bounds_s, counts) -> tuple[float, float]:
    """(mu, sigma) of the log-normal that best explains `counts` observations per bucket, by
    maximum likelihood for interval-censored data. `upper_bounds_s` are the finite bucket bounds
    (ascending); `counts` has one more entry, the observations above the last bound."""
    bounds = np.asarray(upper_bounds_s, dtype=float)
    n = np.asarray(counts, dtype=float)
    if bounds.ndim != 1 or n.shape != (bounds.size + 1,):
        raise ValueError(f"counts: got {n.size} for {bounds.size} bounds; valid: one count per bucket plus the overflow")
    if np.any(bounds <= 0) or np.any(np.diff(bounds) <= 0):
        raise ValueError(f"upper_bounds_s: got {bounds.tolist()}; valid: ascending and > 0")
    if np.any(n < 0) or n.sum() < 2:
        raise ValueError(f"counts: got {n.tolist()}; valid: non-negative with at least 2 observations")
    logs = np.log(bounds)
    used = np.flatnonzero(n)
    if used.size == 1:
        raise ValueError("counts: every observation is in one bucket; the spread cannot be fitted "
                         "(valid: observations in at least two buckets — finer buckets or more load)")

    def nll(params):
        mu, log_sigma = params
        cdf = stats.norm.cdf((logs - mu) / math.exp(log_sigma))
        p = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
        return -float(np.sum(n[used] * np.log(np.maximum(p[used], 1e-300))))

    # Start from the bucket midpoints' log-moments.
    mids = np.concatenate([[logs[0] - 0.5], (logs[:-1] + logs[1:]) / 2, [logs[-1] + 0.5]])
    mu0 = float(np.average(mids, weights=n))
    sd0 = float(np.sqrt(np.average((mids - mu0) ** 2, weights=n))) or 0.5
    best = optimize.minimize(nll, x0=[mu0, math.log(sd0)], method="Nelder-Mead",
                             options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 4000})
    return float(best.x[0]), float(math.exp(best.x[1]))


def service_times(before: pd.DataFrame, after: pd.DataFrame, min_count: int = 50,
                  metric: str = DURATION) -> dict[tuple[str, str, str], ServiceTimeFit]:
    """Per (service, route, method) with at least `min_count` requests in the window, the
    server-side duration's mean (exact, sum / count) and coefficient of variation (fitted)."""
    if not isinstance(min_count, int) or min_count < 2:
        raise ValueError(f"min_count: got {min_count!r}; valid: an integer >= 2")
    inc = histogram_increase(before, after, metric)
    fits = {}
    for (service, route, method), part in inc.groupby(["service", "route", "method"]):
        count = part.loc[part["series"] == f"{metric}_count", "increase"].sum()
        if count < min_count:
            continue
        total_s = part.loc[part["series"] == f"{metric}_sum", "increase"].sum()
        buckets = part[part["series"] == f"{metric}_bucket"].groupby("le")["increase"].sum()
        finite = sorted((float(le), c) for le, c in buckets.items() if le not in ("+Inf", "inf", None))
        bounds = [le for le, _ in finite]
        cumulative = np.array([c for _, c in finite] + [count])
        per_bucket = np.diff(np.concatenate([[0.0], cumulative])).clip(min=0)
        _, sigma = fit_lognormal_binned(bounds, per_bucket)
        fits[(service, route, method)] = ServiceTimeFit(
            service, route, method, int(round(count)), float(total_s / count), float(math.sqrt(math.expm1(sigma**2))),
            tuple(bounds), tuple(int(round(c)) for c in per_bucket))
    if not fits:
        raise ValueError(f"before/after: no endpoint had >= {min_count} requests between the two reads; "
                         "valid: run some load between them")
    return fits


def cpu_seconds_per_request(usage_before: pd.DataFrame, usage_after: pd.DataFrame,
                            requests: dict[str, float], service_of=None) -> dict[str, float]:
    """CPU-seconds per request of each service's replica processes between two ``cm.usage()``
    reads. `requests` maps a service to its request count in the same window (e.g. from
    :func:`service_times`' counts); `service_of(name)` maps a usage row's name to its service
    (default: the replica name without its ``-N`` index, e.g. ``product-1`` -> ``product``)."""
    service_of = service_of or (lambda name: name.rsplit("-", 1)[0])
    for name, frame in (("usage_before", usage_before), ("usage_after", usage_after)):
        if not {"name", "kind", "cpu_s"} <= set(frame.columns):
            raise ValueError(f"{name}: got columns {list(frame.columns)}; valid: the frame cm.usage() returns")
    before = dict(zip(usage_before["name"], usage_before["cpu_s"]))
    used: dict[str, float] = {}
    for row in usage_after[usage_after["kind"] == "replica"].itertuples(index=False):
        old = before.get(row.name, 0.0)
        delta = row.cpu_s - old if row.cpu_s >= old else row.cpu_s
        used[service_of(row.name)] = used.get(service_of(row.name), 0.0) + delta
    out = {}
    for service, n in requests.items():
        if n <= 0:
            raise ValueError(f"requests[{service!r}]: got {n!r}; valid: a count > 0")
        if service not in used:
            raise ValueError(f"requests[{service!r}]: no replica of that service in the usage frames; "
                             f"valid: one of {sorted(used)}")
        out[service] = used[service] / n
    return out


def hop_delay_ms(direct_ms, via_ms, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> Estimate:
    """The latency a hop adds: median(via) − median(direct) in ms, with a bootstrap interval.
    Pair the reads (alternate direct and via in one loop) so that both see the same machine."""
    d, v = np.asarray(direct_ms, dtype=float), np.asarray(via_ms, dtype=float)
    if d.size < 20 or v.size < 20:
        raise ValueError(f"direct_ms/via_ms: got {d.size} and {v.size} samples; valid: at least 20 each")
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(v, (resamples, v.size)), axis=1) - np.median(rng.choice(d, (resamples, d.size)), axis=1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(float(np.median(v) - np.median(d)), float(lo), float(hi), level)
