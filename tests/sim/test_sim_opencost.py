"""Cost follows OpenCost's allocation and the real node/spot mechanics (item 8); every figure is
computed by hand from the price split, GKE's reservation tiers and the interruption bands."""

import math

import numpy as np
import pytest

import sim
from sim.cost import OPENCOST_CPU_USD_PER_CORE_H, OPENCOST_RAM_USD_PER_GIB_H

XL = sim.PRICE_SHEET["general.xlarge"]  # 4 vCPU, 16 GiB, $0.192/h


def cpu_price_per_core_h(inst=XL):
    w_cpu, w_ram = inst.vcpu * OPENCOST_CPU_USD_PER_CORE_H, inst.memory_gib * OPENCOST_RAM_USD_PER_GIB_H
    return inst.on_demand_usd_per_h * w_cpu / (w_cpu + w_ram) / inst.vcpu


def test_allocation_takes_max_of_request_and_usage_per_sample():
    """Request 0.25 cores; usage 0.05 for 80 % of the samples and 1.0 for 20 %: mean usage 0.24
    (< request, so max(request, mean) charges 0.25) but OpenCost charges
    0.8 × 0.25 + 0.2 × 1.0 = 0.40 cores (+60 %)."""
    samples = (0.05,) * 8 + (1.0,) * 2
    pod = sim.Pod("bursty", 0.25, 0.5, cpu_usage_samples=samples, service="api")
    assert pod.cpu_usage_cores == pytest.approx(0.24)
    assert pod.cpu_allocation_cores() == pytest.approx(0.40)
    alloc = sim.allocate(sim.bin_pack([pod], reserved=None), hours=730)
    row = alloc.containers.loc["bursty"]
    assert row.cpu_alloc_cores == pytest.approx(0.40)
    assert row.cpu_usd == pytest.approx(round(0.40 * cpu_price_per_core_h() * 730, 2), abs=0.005)


def test_gke_reservation_and_daemonsets_shrink_what_pods_can_use():
    """general.xlarge: reserved 0.06 + 0.01 + 2 × 0.005 = 0.08 cores and 0.25·4 + 0.20·4 + 0.10·8
    = 2.6 GiB + 100 MiB. 24 pods of 1 core fit 4 per node on capacity (6 nodes) but 3 per node on
    the 3.92 allocatable cores (8 nodes); a 0.5-core daemonset leaves 3.42 (still 3 per node)."""
    cpu, mem = sim.gke_reserved(4, 16)
    assert cpu == pytest.approx(0.08) and mem == pytest.approx(2.6 + 100 / 1024)
    pods = [sim.Pod(f"p{i}", 1.0, 1.0) for i in range(24)]
    assert len(sim.bin_pack(pods, reserved=None)) == 6
    assert len(sim.bin_pack(pods)) == 8
    ds = sim.Pod("node-exporter", 0.5, 0.25, service="monitoring")
    nodes = sim.bin_pack(pods, daemonsets=[ds])
    assert len(nodes) == 8 and all(n.pods[0].service == "monitoring" for n in nodes)
    with pytest.raises(ValueError, match="daemonsets"):
        sim.bin_pack(pods, daemonsets=[sim.Pod("huge", 4, 1)])


def test_idle_is_never_negative():
    """A requests 3 cores and uses 0.5; B requests 1 and uses 3: max(request, usage) sums to 6
    cores on a 4-core node (the old model charged 150 % of the node's CPU and showed negative
    idle). Charges are scaled to the node's 4 cores: A and B 2 cores each, CPU idle 0."""
    pods = [sim.Pod("a", 3.0, 1.0, 0.5, 1.0), sim.Pod("b", 1.0, 1.0, 3.0, 1.0)]
    alloc = sim.allocate([sim.Node("n", XL, pods=pods)], hours=730)
    assert alloc.containers.cpu_alloc_cores.tolist() == pytest.approx([2.0, 2.0])
    assert alloc.idle_usd >= 0 and (alloc.nodes.idle_usd >= 0).all()
    assert round(alloc.allocated_usd + alloc.idle_usd, 2) == alloc.total_usd


def test_shared_and_overhead_costs_are_split_like_opencost():
    """Services api ($a) and web ($w) plus a shared 'monitoring' ($m) and $100 overhead:
    weighted split gives api a + (m + 100)·a/(a + w); even split gives half each."""
    pods = [sim.Pod("api", 1.0, 2.0, service="api"), sim.Pod("web", 0.5, 1.0, service="web"),
            sim.Pod("mon", 0.25, 0.5, service="monitoring")]
    alloc = sim.allocate(sim.bin_pack(pods), hours=730)
    own = alloc.by_service().total_usd
    a, w, m = own["api"], own["web"], own["monitoring"]
    weighted = alloc.share(["monitoring"], overhead_usd=100.0)
    assert weighted.loc["api", "total_usd"] == pytest.approx(a + (m + 100) * a / (a + w))
    assert weighted.total_usd.sum() == pytest.approx(a + w + m + 100)
    even = alloc.share(["monitoring"], overhead_usd=100.0, share_idle=True, split="even")
    assert even.loc["web", "shared_usd"] == pytest.approx((m + 100 + alloc.idle_usd) / 2)
    with pytest.raises(ValueError, match="split"):
        alloc.share(split="random")


def test_spot_interruptions_follow_the_published_bands_and_the_two_minute_notice():
    """Default spot rates are the upper edges of the Spot Instance Advisor's bands: < 5 % of
    instances interrupted per month (general) and 5–10 % (compute), i.e. 0.05 and 0.10 per
    node-month (the old 0.01/h was 7.3 per node-month). With the 2-minute notice, pods that
    reschedule within 120 s lose nothing; at 300 s they lose 180 s each."""
    assert XL.spot_interruptions_per_h * 730 == pytest.approx(0.05)
    assert sim.PRICE_SHEET["compute.xlarge"].spot_interruptions_per_h * 730 == pytest.approx(0.10)
    stressed = sim.InstanceType("stress.xlarge", 4, 16, 0.192, spot_interruptions_per_h=0.01)
    quick = sim.simulate_spot(10, 8, stressed, hours=720, reschedule_s=120, seed=1)
    assert quick.interruptions > 0 and quick.lost_pod_hours == 0 and quick.availability == 1
    slow = sim.simulate_spot(10, 8, stressed, hours=720, reschedule_s=300, seed=1)
    assert slow.interruptions == quick.interruptions
    assert slow.lost_pod_hours == pytest.approx(slow.interruptions * 8 * 180 / 3600, rel=1e-6)
    no_notice = sim.simulate_spot(10, 8, stressed, hours=720, reschedule_s=300, notice_s=0, seed=1)
    assert no_notice.lost_pod_hours == pytest.approx(slow.interruptions * 8 * 300 / 3600, rel=1e-6)
