"""Evidence of live measurements: genuine evidence verifies; hand-made, edited, inflated or
impossible evidence is caught (tamper-evident, not tamper-proof)."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pandas as pd
import psutil
import pytest

from grading import evidence
from grading.evidence import Evidence, capture, verify

# Envoy's default histogram buckets (milliseconds), as the gateway's Envoy reports them.
BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
GATEWAY = {"envoy_http_conn_manager_prefix": "gateway"}


class FakeGateway:
    """A stand-in for a CloudMart handle whose gateway served ``latencies_s`` between two
    metric reads (Prometheus text as the gateway gives it, parsed like cm.metrics())."""

    def __init__(self, latencies_s: list[float]):
        self.reads = 0
        self.latencies_s = latencies_s

    def metrics(self) -> pd.DataFrame:
        served = self.latencies_s if self.reads else []
        self.reads += 1
        rows = [{"kind": "gateway", "metric": f"{evidence._DURATION}_count", "labels": dict(GATEWAY),
                 "value": float(len(served))},
                # The per-Service balancers' listeners are not the edge: never counted.
                {"kind": "gateway", "metric": f"{evidence._DURATION}_count",
                 "labels": {"envoy_http_conn_manager_prefix": "cluster_product"}, "value": 1e6}]
        for le in (*BUCKETS, float("inf")):
            rows.append({"kind": "gateway", "metric": f"{evidence._DURATION}_bucket",
                         "labels": {**GATEWAY, "le": "+Inf" if le == float("inf") else str(le)},
                         "value": float(sum(1 for x in served if x * 1000 <= le))})
        return pd.DataFrame(rows)


class FakeResult:
    def __init__(self, latencies_ms):
        self.requests = pd.DataFrame({"latency_ms": latencies_ms, "ok": [True] * len(latencies_ms)})


def _genuine(client_ms=(30.0, 40.0, 50.0, 60.0, 200.0), gateway_share=0.8):
    cm = FakeGateway([x * gateway_share / 1000 for x in client_ms])
    with capture(cm, "checkout") as ev:
        result = FakeResult(list(client_ms))
    return ev.attach(result)


def test_genuine_evidence_verifies():
    ev = _genuine()
    s = ev.summary()
    assert s["n"] == 5 and s["p50_ms"] == 50.0
    assert verify(ev, {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "n": 5}) == []


def test_a_claim_the_samples_do_not_give_is_caught():
    ev = _genuine()
    problems = verify(ev, {"p50_ms": 40.0})
    assert len(problems) == 1 and "p50_ms" in problems[0]
    assert "not something" in verify(ev, {"p95_ms": 1.0})[0]


def test_hand_made_and_edited_evidence_is_caught():
    assert "no evidence" in verify({"p50_ms": 50.0}, {"p50_ms": 50.0})[0]
    forged = Evidence("checkout", {"count": 0}, {"count": 10}, [50.0] * 5, signature="0" * 64)
    assert "not made by" in verify(forged, {"p50_ms": 50.0})[0]
    ev = _genuine()
    ev.latencies_ms[2] = 1.0  # an edited sample
    assert "not made by" in verify(ev, {"p50_ms": ev.summary()["p50_ms"]})[0]
    with pytest.raises(ValueError, match="already attached"):
        _genuine().attach(FakeResult([1.0]))


def test_more_samples_than_the_gateway_served_are_caught():
    """Re-signed (as a learner with the process's key could), inflated evidence still fails."""
    ev = _genuine()
    ev.latencies_ms = ev.latencies_ms * 3
    ev._sign()
    problems = verify(ev, {})
    assert any("served only 5" in p for p in problems), problems


def test_samples_faster_than_the_gateway_served_are_caught():
    cm = FakeGateway([0.2] * 20)  # the gateway took 200 ms for every request
    with capture(cm) as ev:
        pass
    ev.attach(FakeResult([20.0] * 20))  # the client claims 20 ms
    problems = verify(ev, {"p50_ms": 20.0})
    assert any("histogram" in p for p in problems), problems
    # the same samples against a gateway that served them in 15 ms: consistent
    cm = FakeGateway([0.015] * 20)
    with capture(cm) as ev:
        pass
    ev.attach(FakeResult([20.0] * 20))
    assert verify(ev, {"p50_ms": 20.0}) == []


def test_evidence_from_an_unfinished_capture_is_incomplete():
    cm = FakeGateway([0.01])
    block = capture(cm)
    ev = block.__enter__()
    assert "incomplete" in verify(ev, {})[0]


# ---- against a real CloudMart -----------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from cluster.handle import CloudMart
    from cluster.local import LocalTarget

    target = LocalTarget(tmp_path_factory.mktemp("evidence") / "state")
    try:
        target.up(port=_free_port())
        yield CloudMart(target, user="alice")
    finally:
        target.down(timeout_s=30)
        left = [p for p in psutil.process_iter(["cmdline"])
                if str(target.state_dir) in " ".join(p.info["cmdline"] or [])]
        for p in left:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        assert not left, f"processes left behind: {[p.pid for p in left]}"


@pytest.mark.slow
def test_live_measurement_verifies_and_its_inflation_does_not(live):
    with capture(live, "browse") as ev:
        result = live.load(rps=20, seconds=3, scenario="browse", seed=1)
    ev.attach(result)
    s = ev.summary()
    assert s["n"] >= 40 and ev.served >= s["n"]
    assert verify(ev, {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"]}) == []
    assert verify(ev, {"p50_ms": s["p50_ms"] * 0.5})  # a made-up figure
    with capture(live, "nothing") as idle:
        pass
    idle.attach(result)  # yesterday's samples, no traffic in this window
    assert any("gateway served only" in p for p in verify(idle, {}))
