"""The usage recorder: against processes whose CPU time and memory are known, the HPA's
utilisation arithmetic by hand, bad input, and the live recorder of a running CloudMart."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from cluster import usage
from cluster.local import TargetError
from cluster.usage import Resources, Sample, Target, UsageRecorder, parse_cpu, parse_memory

BURN = """
import sys, time
target = float(sys.argv[1]); mb = int(sys.argv[2])
block = bytearray(mb * 2**20)
for i in range(0, len(block), 4096):
    block[i] = 1
print("ready", flush=True)
sys.stdin.readline()
t0 = time.process_time()
while time.process_time() - t0 < target:
    pass
print("done", flush=True)
sys.stdin.readline()
"""


def test_quantities_parse_as_kubernetes_does():
    assert parse_cpu("50m") == pytest.approx(0.05)
    assert parse_cpu("2") == 2.0 and parse_cpu(1.5) == 1.5
    assert parse_memory("96Mi") == 96 * 2**20
    assert parse_memory("1G") == 1e9 and parse_memory("1Gi") == 2**30
    assert parse_memory("2e3") == 2000
    for bad in ("fast", "-1", "1.5Xi", True, ""):
        with pytest.raises(ValueError, match="valid"):
            parse_cpu(bad)


def test_resources_from_the_base_manifests():
    from cluster import topology

    res = usage.resources_from_objects(topology.render(topology.BASE_DIR))
    assert res["product"].cpu_request == pytest.approx(0.05)
    assert res["product"].memory_request == 96 * 2**20
    assert res["product"].cpu_limit == pytest.approx(0.5)


def test_recorder_measures_known_cpu_seconds_and_memory():
    """A child that allocates 120 MiB and then burns exactly 0.6 s of CPU (by its own clock):
    the recorder's CPU over the window is 0.6 s and its PSS grew by about 120 MiB."""
    child = subprocess.Popen([sys.executable, "-c", BURN, "0.6", "120"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        rec = UsageRecorder(lambda: [Target("burn-0", "burn", "burn", "app", child.pid, Resources(cpu_request=0.5))],
                            interval_s=0.2)
        rec.sample_once()
        before = rec.buffers[("burn-0", "app")][-1]
        child.stdin.write("\n"); child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        time.sleep(0.05)
        rec.sample_once()
        after = rec.buffers[("burn-0", "app")][-1]
        assert after.cpu_s - before.cpu_s == pytest.approx(0.6, abs=0.08)
        assert before.pss >= 120 * 2**20 * 0.9
        rows = rec.series(60)
        assert len(rows) == 2 and rows[0]["cpu_cores"] is None
        span = rows[1]["t"] - rows[0]["t"]
        assert rows[1]["cpu_cores"] == pytest.approx((after.cpu_s - before.cpu_s) / span)
        util = rec.cpu_utilization("burn", 60)
        assert util.ratio == pytest.approx(rows[1]["cpu_cores"] / 0.5)
    finally:
        child.kill()
        child.wait()


def fake_recorder(samples: dict[str, list[tuple[float, int, float]]], request: float | None = 0.1,
                  now: float = 100.0) -> UsageRecorder:
    targets = [Target(r, "product", "product", "app", s[-1][1], Resources(cpu_request=request))
               for r, s in samples.items()]
    rec = UsageRecorder(lambda: targets, interval_s=1.0, clock=lambda: now)
    for tgt in targets:
        rec.meta[(tgt.replica, "app")] = tgt
        rec.buffers[(tgt.replica, "app")] = __import__("collections").deque(
            Sample(t, pid, cpu, 1e6, 2e6) for t, pid, cpu in samples[tgt.replica])
    return rec


def test_hpa_utilisation_by_hand():
    """product-0 used 0.5 CPU-s in 10 s (0.05 cores), product-1 1.5 CPU-s (0.15 cores); with a
    request of 0.1 cores: 50 % and 150 %, and the HPA's ratio sum(usage)/sum(request) = 100 %."""
    rec = fake_recorder({
        "product-0": [(90.0, 10, 3.0), (95.0, 10, 3.2), (100.0, 10, 3.5)],
        "product-1": [(90.0, 11, 7.0), (100.0, 11, 8.5)],
        "product-2": [(100.0, 12, 0.2)],               # only one sample: missing
    })
    util = rec.cpu_utilization("product", window_s=10)
    assert util.per_replica == pytest.approx({"product-0": 0.5, "product-1": 1.5})
    assert util.ratio == pytest.approx(1.0)
    assert util.missing == ["product-2"]
    # a window that sees only the last two samples of product-0: 0.3 CPU-s over 5 s
    assert rec.cpu_usage_cores("product-0", 5) == pytest.approx(0.06)


def test_a_restart_counts_from_the_new_process():
    """pid 10 used 1 s, then the replica restarted as pid 20 which has used 0.4 s: 1.4 s in 10 s."""
    rec = fake_recorder({"product-0": [(90.0, 10, 5.0), (95.0, 10, 6.0), (100.0, 20, 0.4)]})
    assert rec.cpu_usage_cores("product-0", 10) == pytest.approx(0.14)
    rows = rec.series(10)
    assert rows[-1]["cpu_cores"] == pytest.approx(0.4 / 5)


def test_bad_input_is_a_clear_error():
    rec = fake_recorder({"product-0": [(90.0, 10, 5.0), (100.0, 10, 6.0)]})
    with pytest.raises(ValueError, match="deployment: got 'nope'; valid: one of \\['product'\\]"):
        rec.cpu_utilization("nope")
    for bad in (0, -5, 1e9, "60", True):
        with pytest.raises(ValueError, match="window_s"):
            rec.series(bad)
    no_request = fake_recorder({"product-0": [(90.0, 10, 5.0), (100.0, 10, 6.0)]}, request=None)
    with pytest.raises(ValueError, match="requests.cpu is not set"):
        no_request.cpu_utilization("product")
    with pytest.raises(ValueError, match="interval_s"):
        UsageRecorder(lambda: [], interval_s=0)


def test_ring_buffer_keeps_the_last_hour():
    rec = UsageRecorder(lambda: [], interval_s=1.0, ring_seconds=10)
    assert rec.maxlen == 11


def test_live_recorder_sees_every_replica_and_the_load(cloudmart, wait_for):
    """The supervisor samples every replica about once a second; load on product shows up as
    product's CPU usage, and the HPA's view of it is the same samples' arithmetic."""
    cm = cloudmart.cm
    status = cm.status()
    wait_for(lambda: len(cm.usage(window_s=5)) >= 2 * sum(d["wanted"] for d in status["deployments"].values()),
             timeout_s=20)
    df = cm.usage(window_s=5)
    replicas = {r["id"] for d in status["deployments"].values() for r in d["replicas"] if r["pid"]}
    assert replicas <= set(df.replica)
    assert (df.pss_mb > 1).all() and (df.rss_mb >= df.pss_mb).all()
    gaps = df.sort_values("t").groupby("replica").t.diff().dropna()
    assert gaps.median() == pytest.approx(1.0, abs=0.3)
    product = df[df.deployment == "product"]
    assert product.cpu_request_cores.iloc[0] == pytest.approx(0.05)
    before = cm.usage(window_s=60)
    t_before = before.t.max()
    cm.load(rps=40, seconds=4, scenario="read", seed=3)
    time.sleep(1.5)
    after = cm.usage(window_s=60)
    p = after[(after.deployment == "product") & (after.container == "app")].sort_values("t")
    used = p[p.t > t_before].cpu_s.max() - p[p.t <= t_before].cpu_s.max()
    assert used > 0.05, p.tail()   # 160 reads cost CPU time


def test_live_bad_window_is_a_400(cloudmart):
    with pytest.raises(ValueError, match="window_s"):
        cloudmart.cm.usage(window_s=-1)
    with pytest.raises(TargetError, match="window_s"):
        cloudmart.target._request("GET", "/usage?window_s=soon")
