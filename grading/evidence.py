"""Evidence for live measurements: tamper-evident, not tamper-proof.

A check that scores a live figure (a p50, a throughput) should accept it only if it agrees with
a measurement made in the same execution. :func:`capture` brackets the measurement::

    with grading.evidence.capture(cm) as ev:
        result = cm.load(rps=20, seconds=10, scenario="browse")
    ev.attach(result)
    answer = {"p50_ms": ..., "evidence": ev}

It reads the gateway's own counters (requests served, latency histogram) before and after, and
``attach`` keeps the per-request latencies of the load result. :func:`verify` then says what is
wrong with a claimed figure: the evidence was not made by :func:`capture` in this kernel (it is
signed with a key made fresh in each process) or was edited, the claim differs from what the
samples give, the samples are more requests than the gateway served in that window, or the
gateway's histogram cannot produce the claim (a client cannot see a request complete faster
than the gateway served it).

Batch grading re-executes every notebook, so the evidence it sees comes from the same run. The
key lives in the same process as the learner's code: a determined learner can forge evidence.
This catches copied numbers, edited outputs and stale results, not a deliberate forgery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Evidence", "capture", "gateway_snapshot", "verify"]

_KEY = secrets.token_bytes(32)  # fresh in every kernel
# The gateway is Envoy: the request-time histogram (milliseconds) of its edge listener.
_DURATION = "envoy_http_downstream_rq_time"
_PREFIX = ("envoy_http_conn_manager_prefix", "gateway")


def gateway_snapshot(cm: Any) -> dict[str, Any]:
    """The gateway's request count and latency histogram (cumulative buckets, seconds) now."""
    df = cm.metrics()
    gw = df[df["kind"] == "gateway"]
    gw = gw[gw["labels"].map(lambda labels: labels.get(_PREFIX[0]) == _PREFIX[1])]
    count = float(gw[gw["metric"] == f"{_DURATION}_count"]["value"].sum())
    buckets: dict[float, float] = {}
    for _, row in gw[gw["metric"] == f"{_DURATION}_bucket"].iterrows():
        le = float(row["labels"].get("le", "inf").replace("+Inf", "inf")) / 1000.0
        buckets[le] = buckets.get(le, 0.0) + float(row["value"])
    return {"count": count, "buckets": dict(sorted(buckets.items())), "t": time.time()}


@dataclass
class Evidence:
    """What :func:`capture` recorded; ``signature`` covers every other field."""

    label: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    signature: str = ""

    def _payload(self) -> bytes:
        return json.dumps([self.label, self.before, self.after, self.latencies_ms],
                          sort_keys=True, default=str).encode()

    def _sign(self) -> None:
        self.signature = hmac.new(_KEY, self._payload(), hashlib.sha256).hexdigest()

    def signed(self) -> bool:
        expected = hmac.new(_KEY, self._payload(), hashlib.sha256).hexdigest()
        return bool(self.signature) and hmac.compare_digest(expected, self.signature)

    def attach(self, result: Any) -> "Evidence":
        """Keep the latencies (ms) of the successful requests of a load result."""
        if not self.signed():
            raise ValueError("this evidence was not made by grading.evidence.capture or was "
                             "edited; measure again inside capture(...)")
        if self.latencies_ms:
            raise ValueError("a load result is already attached; capture each measurement "
                             "on its own")
        req = result.requests
        self.latencies_ms = [float(x) for x in req["latency_ms"][req["ok"]]]
        self._sign()
        return self

    @property
    def served(self) -> float:
        """Requests the gateway served between the two snapshots."""
        return self.after.get("count", 0.0) - self.before.get("count", 0.0)

    def summary(self) -> dict[str, float]:
        """``n``, ``p50_ms``, ``p99_ms`` and ``throughput_rps`` of the attached samples."""
        x = np.asarray(self.latencies_ms)
        window = max(self.after.get("t", 0) - self.before.get("t", 0), 1e-9)
        if not len(x):
            return {"n": 0}
        return {"n": int(len(x)), "p50_ms": float(np.percentile(x, 50)),
                "p99_ms": float(np.percentile(x, 99)), "throughput_rps": len(x) / window}


class capture:  # noqa: N801 - used as a context manager, named like one
    """``with capture(cm, label) as ev: ...`` snapshots the gateway around the body."""

    def __init__(self, cm: Any, label: str = "measurement") -> None:
        self.cm = cm
        self.evidence = Evidence(label=str(label))

    def __enter__(self) -> Evidence:
        self.evidence.before = gateway_snapshot(self.cm)
        self.evidence._sign()
        return self.evidence

    def __exit__(self, *exc: object) -> None:
        if not self.evidence.signed():
            return  # edited inside the block: leave it unsigned, verify() will say so
        self.evidence.after = gateway_snapshot(self.cm)
        self.evidence._sign()


def _served_within(ev: Evidence, seconds: float) -> float:
    """Requests the gateway served within ``seconds`` in the window (bucket edge at or above)."""
    edges = [le for le in ev.after.get("buckets", {}) if le >= seconds]
    if not edges:
        return ev.served
    le = min(edges)
    return ev.after["buckets"][le] - ev.before.get("buckets", {}).get(le, 0.0)


def verify(ev: Any, claims: dict[str, float], rel: float = 1e-6) -> list[str]:
    """What is wrong with ``claims`` (keys of :meth:`Evidence.summary`) given ``ev``; an empty
    list when they agree with the measurement."""
    if not isinstance(ev, Evidence):
        return ["no evidence: measure inside grading.evidence.capture(cm) and pass what it "
                "returns"]
    if not ev.signed():
        return ["the evidence was not made by grading.evidence.capture in this run, or was "
                "edited"]
    if not ev.after:
        return ["the evidence is incomplete: the capture block has not finished"]
    got = ev.summary()
    problems = []
    if got["n"] == 0:
        return ["no successful request is attached (ev.attach(result) after the block)"]
    if got["n"] > ev.served + 0.5:
        problems.append(f"{got['n']} requests attached, but the gateway served only "
                        f"{ev.served:.0f} in that window")
    for key, value in claims.items():
        if key not in got:
            problems.append(f"{key!r} is not something the evidence measures")
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not math.isclose(
                value, got[key], rel_tol=rel, abs_tol=1e-3):
            problems.append(f"{key} = {value!r} is not what the measurement gives")
    # A client cannot see a request faster than the gateway served it: half of the attached
    # requests took at most p50 at the client, so the gateway served at least as many within
    # p50 (other traffic in the window only adds to that count).
    if _served_within(ev, got["p50_ms"] / 1000) < 0.5 * got["n"] - 0.5:
        problems.append("the gateway's own latency histogram cannot produce this p50: the "
                        "samples are not from requests it served")
    return problems
