"""sim.finops against hand calculations: Kubecost's right-sizing example, purchase-plan bills,
the newsvendor rule for reserved capacity, unit cost, the diurnal profile and HPA node-hours."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim import cost
from sim.finops import diurnal_load, hpa_node_hours, optimal_reserved, purchase_plan, rightsize, unit_cost

MI = 2**20


def usage_frame(**containers) -> pd.DataFrame:
    rows = []
    for name, samples in containers.items():
        for cpu, mem in samples:
            rows.append({"container": name, "cpu_cores": cpu, "memory_bytes": mem})
    return pd.DataFrame(rows)


def test_kubecost_documented_max_example():
    """Kubecost's docs: replicas A (peaks 120 m, 300 MiB) and B (800 m, 120 MiB) of one container
    spec: the max algorithm's base is 800 m and 300 MiB; at 0.8 target utilisation / 0.8."""
    df = usage_frame(web=[(0.05, 200 * MI), (0.12, 300 * MI), (0.8, 120 * MI), (0.3, 100 * MI)])
    rec = cost.rightsize(df, target_cpu_utilization=0.8, target_ram_utilization=0.8).loc["web"]
    assert rec.cpu_base_cores == pytest.approx(0.8) and rec.memory_base_bytes == 300 * MI
    assert rec.cpu_recommended_cores == pytest.approx(1.0)
    assert rec.memory_recommended_bytes == pytest.approx(375 * MI)


def test_target_utilisation_headroom_and_floors():
    """100 m at 0.8 recommends 125 m (the docs' example); tiny usage is floored at 10 m and 20 MiB."""
    df = usage_frame(a=[(0.1, 100 * MI)], tiny=[(0.001, 1 * MI)])
    rec = rightsize(df, target_cpu_utilization=0.8)
    assert rec.loc["a", "cpu_recommended_cores"] == pytest.approx(0.125)
    assert rec.loc["tiny", "cpu_recommended_cores"] == pytest.approx(0.010)
    assert rec.loc["tiny", "memory_recommended_bytes"] == 20 * MI


def test_quantile_algorithm_and_savings():
    cpu = np.arange(1, 101) / 1000.0          # 1 m .. 100 m
    df = pd.DataFrame({"container": "api", "cpu_cores": cpu, "memory_bytes": 64 * MI})
    rec = rightsize(df, {"api": (0.5, 256 * MI)}, algorithm_cpu="quantile", q_cpu=0.95,
                    target_cpu_utilization=0.8, target_ram_utilization=0.8).loc["api"]
    base = 0.001 + 0.95 * 0.099               # linear interpolation at rank 0.95 x 99
    assert rec.cpu_base_cores == pytest.approx(base)
    assert rec.cpu_recommended_cores == pytest.approx(base / 0.8)
    assert rec.cpu_savings_usd == pytest.approx((0.5 - base / 0.8) * cost.OPENCOST_CPU_USD_PER_CORE_H * 730)
    assert rec.memory_savings_usd == pytest.approx((256 - 80) / 1024 * cost.OPENCOST_RAM_USD_PER_GIB_H * 730)
    assert rec.cpu_efficiency == pytest.approx(cpu.mean() / 0.5)


def test_rightsize_reads_a_usage_recorder_frame():
    df = pd.DataFrame({"deployment": ["product"] * 3, "cpu_cores": [0.01, 0.02, None], "pss_mb": [40.0, 50.0, 45.0]})
    rec = rightsize(df).loc["product"]
    assert rec.cpu_base_cores == pytest.approx(0.02) and rec.memory_base_bytes == 50 * MI


def test_rightsize_bad_input():
    df = usage_frame(a=[(0.1, MI)])
    with pytest.raises(ValueError, match="algorithm_cpu"):
        rightsize(df, algorithm_cpu="p99")
    with pytest.raises(ValueError, match="q_cpu"):
        rightsize(df, algorithm_cpu="quantile")
    with pytest.raises(ValueError, match="target_cpu_utilization"):
        rightsize(df, target_cpu_utilization=1.5)
    with pytest.raises(ValueError, match="cpu_usd_per_core_h"):
        rightsize(df, cpu_usd_per_core_h=-0.01)
    with pytest.raises(ValueError, match="missing columns"):
        rightsize(pd.DataFrame({"container": ["a"]}))
    with pytest.raises(ValueError, match="negative"):
        rightsize(usage_frame(a=[(-0.1, MI)]))


def test_purchase_plan_bills_by_hand():
    """general.xlarge at 0.192 USD/h on demand, reserved 40 % off, spot 70 % off; demand 2, 4, 6, 4."""
    demand = [2, 4, 6, 4]
    od = 0.192
    assert purchase_plan(demand).total_usd == pytest.approx(16 * od)
    # 3 reserved nodes every hour, plus 0 + 1 + 3 + 1 node-hours on demand
    r = purchase_plan(demand, reserved_nodes=3)
    assert r.total_usd == pytest.approx(3 * 4 * od * 0.6 + 5 * od)
    # a 0.5 USD/h savings plan at 28 % off: the plan rate of d nodes is d x 0.192 x 0.72
    sp = purchase_plan(demand, savings_plan_usd_per_h=0.5, savings_plan_discount=0.28)
    by_hand = sum(0.5 + max(0.0, d * od * 0.72 - 0.5) / 0.72 for d in demand)
    assert sp.total_usd == pytest.approx(by_hand)
    assert sp.hourly.savings_plan_unused_usd.iloc[0] == pytest.approx(0.5 - 2 * od * 0.72)
    # half on spot
    spot = purchase_plan(demand, spot_fraction=0.5)
    assert spot.total_usd == pytest.approx(8 * od * 0.3 + 8 * od)
    assert spot.expected_spot_interruptions == pytest.approx(8 * cost.PRICE_SHEET["general.xlarge"].spot_interruptions_per_h)
    with pytest.raises(ValueError, match="node_demand"):
        purchase_plan([1, -1])
    with pytest.raises(ValueError, match="spot_fraction"):
        purchase_plan([1], spot_fraction=2)
    with pytest.raises(ValueError, match="instance_type"):
        purchase_plan([1], "nope.large")
    with pytest.raises(ValueError, match="on_demand_usd_per_h"):
        cost.InstanceType("neg", 2, 8, -0.1)


def test_optimal_reserved_follows_the_newsvendor_rule():
    """Reserve node n iff it is busy in at least 1 - 0.4 = 60 % of the hours."""
    rng = np.random.default_rng(3)
    demand = rng.integers(1, 12, size=24 * 30)
    best = optimal_reserved(demand)
    busy = [(demand >= n).mean() for n in range(0, 13)]
    rule = max(n for n in range(13) if busy[n] >= 0.6)
    assert best == rule


def test_unit_cost_amortises_fixed_cost():
    assert unit_cost(10.0, 0.01, 100) == pytest.approx(0.11)
    curve = unit_cost(10.0, 0.01, [10, 100, 1000])
    assert curve == pytest.approx([1.01, 0.11, 0.02])
    with pytest.raises(ValueError, match="units_per_h"):
        unit_cost(1, 0, 0)


def test_diurnal_load_averages_to_the_mean_and_peaks_on_time():
    steps = diurnal_load(100.0, amplitude=0.5, peak_hour=14)
    rates = np.array([r for _, r in steps])
    assert len(steps) == 24 and rates.mean() == pytest.approx(100.0)
    assert int(np.argmax(rates)) in (13, 14)       # hours 13:30 and 14:30 are symmetric around 14:00
    assert rates.max() == pytest.approx(100 * (1 + 0.5 * np.cos(np.pi / 24)))


def test_hpa_node_hours_by_hand():
    """2 hours at 10/s and 2 at 70/s; 20/s per replica at 70 % target → 14/s each: 1 and 5
    replicas; 4 per node: 1 and 2 nodes; node-hours 2 x 1 + 2 x 2 = 6 against 8 for the peak."""
    steps = ((0, 10.0), (3600, 10.0), (7200, 70.0), (10800, 70.0))
    frame = hpa_node_hours(steps, rps_per_replica=20, target_utilization=0.7, replicas_per_node=4)
    assert list(frame.replicas) == [1, 1, 5, 5] and list(frame.nodes) == [1, 1, 2, 2]
    assert frame.attrs["node_hours"] == 6 and frame.attrs["peak_provisioned_node_hours"] == 8
