"""HPA convergence and stabilisation, cluster autoscaler, OpenCost allocation, spot, canary."""

import math

import numpy as np
import pytest

import sim
from sim import theory
from sim_checks import SEEDS


def test_hpa_formula_and_tolerance():
    assert theory.hpa_desired_replicas(4, 0.9, 0.6) == 6  # ceil(4 * 1.5)
    assert theory.hpa_desired_replicas(4, 0.65, 0.6) == 4  # ratio 1.083 within 10 %
    assert theory.hpa_desired_replicas(4, 0.3, 0.6) == 2
    assert theory.hpa_desired_replicas(4, 0.0, 0.6, min_replicas=1) == 1
    assert theory.hpa_desired_replicas(4, 5.0, 0.6, max_replicas=10) == 10


@pytest.mark.parametrize("rate", [120.0, 300.0, 777.0])
def test_hpa_converges_to_the_analytic_replica_count_on_constant_load(rate):
    sc = sim.HPAScenario(load_rate_per_s=rate, cpu_s_per_request=0.01, pod_cpu_request_cores=0.5,
                         hpa=sim.HPA(target_utilisation=0.6, max_replicas=50),
                         measurement_noise=False, duration_s=1200)
    r = sim.run(sc, seed=0)
    expected = math.ceil(rate * 0.01 / (0.5 * 0.6))
    assert r.final_replicas == expected == r.analytic_replicas
    tail = r.timeline[r.timeline.t_s > 600]
    assert (tail.replicas == expected).all() and (tail.ready == expected).all()


def test_hpa_with_measurement_noise_settles_inside_the_tolerance_band():
    rate, cpu, req, target = 300.0, 0.01, 0.5, 0.6
    sc = sim.HPAScenario(load_rate_per_s=rate, cpu_s_per_request=cpu, pod_cpu_request_cores=req,
                         hpa=sim.HPA(target_utilisation=target), duration_s=1800)
    for s in SEEDS:
        final = sim.run(sc, seed=s).final_replicas
        ratio = rate * cpu / (final * req) / target
        # a count the HPA would keep: within tolerance, or the formula's own answer
        assert abs(ratio - 1) <= 0.1 or final == sc.analytic_replicas(), (s, final)


def test_hpa_scale_down_waits_for_the_stabilisation_window():
    hpa = sim.HPA(target_utilisation=0.5, scale_down_window_s=300)
    sc = sim.HPAScenario(load_rate_per_s=((0, 400), (900, 40)), cpu_s_per_request=0.01,
                         pod_cpu_request_cores=0.5, hpa=hpa, measurement_noise=False, duration_s=1800)
    tl = sim.run(sc, seed=0).timeline
    high = math.ceil(400 * 0.01 / (0.5 * 0.5))
    low = math.ceil(40 * 0.01 / (0.5 * 0.5))
    assert tl[(tl.t_s >= 600) & (tl.t_s < 900)].replicas.eq(high).all()
    # the load drops at 900 s; nothing may shrink before 900 + 300 s
    assert tl[(tl.t_s >= 900) & (tl.t_s < 1200)].replicas.eq(high).all()
    assert tl[tl.t_s >= 1250].replicas.eq(low).all()


def test_hpa_scale_up_is_rate_limited_by_the_default_policy():
    sc = sim.HPAScenario(load_rate_per_s=2000, cpu_s_per_request=0.01, pod_cpu_request_cores=0.5,
                         hpa=sim.HPA(max_replicas=100), measurement_noise=False, pod_start_s=5, duration_s=600)
    tl = sim.run(sc, seed=0).timeline
    steps = tl.replicas.drop_duplicates().tolist()
    for before, after in zip(steps, steps[1:]):
        assert after <= max(2 * before, before + 4)
    # it stops where the ratio is within the 10 % tolerance (or at the formula's count)
    final = steps[-1]
    assert abs(2000 * 0.01 / (final * 0.5) / 0.6 - 1) <= 0.1 or final == math.ceil(2000 * 0.01 / 0.3)


def test_cluster_autoscaler_adds_nodes_after_the_start_delay():
    cl = sim.ClusterAutoscaler(node_cpu_cores=4, node_memory_gib=16, node_start_s=120, min_nodes=1)
    sc = sim.HPAScenario(load_rate_per_s=((0, 50), (300, 500)), cpu_s_per_request=0.01,
                         pod_cpu_request_cores=0.5, hpa=sim.HPA(max_replicas=50), cluster=cl,
                         measurement_noise=False, pod_start_s=10, duration_s=1500)
    r = sim.run(sc, seed=0)
    tl = r.timeline
    replicas = r.final_replicas  # 17 by the formula, or a count within the 10 % tolerance of it
    assert replicas == math.ceil(500 * 0.01 / 0.3) or abs(5.0 / (replicas * 0.5) / 0.6 - 1) <= 0.1
    assert tl.nodes.iloc[-1] == math.ceil(replicas / 8)  # pods of 0.5 cores: 8 per node
    # pods wait for nodes: no ready count above what one node holds until a node has started
    first_extra_node = tl[tl.nodes > 1].t_s.min()
    assert tl[(tl.t_s < first_extra_node + 120)].ready.max() <= 8
    assert r.cost_usd == pytest.approx(r.node_hours * cl.node_cost_usd_per_h)


def test_bin_packing_respects_capacity_and_the_lower_bound():
    rng = np.random.default_rng(3)
    pods = [sim.Pod(f"p{i}", float(rng.choice([0.25, 0.5, 1.0, 2.0])), float(rng.choice([0.5, 1, 2, 4])))
            for i in range(60)]
    nodes = sim.bin_pack(pods, "general.xlarge")
    assert sorted(p.name for n in nodes for p in n.pods) == sorted(p.name for p in pods)
    for n in nodes:
        assert n.cpu_requested <= 4 + 1e-9 and n.memory_requested <= 16 + 1e-9
    lower = max(math.ceil(sum(p.cpu_request_cores for p in pods) / 4),
                math.ceil(sum(p.memory_request_gib for p in pods) / 16))
    assert lower <= len(nodes) <= lower + 2


@pytest.mark.parametrize("purchase", ["on_demand", "reserved", "spot"])
def test_opencost_allocation_plus_idle_is_the_bill_to_the_cent(purchase):
    rng = np.random.default_rng(11)
    pods = []
    for i in range(25):
        req_cpu = float(rng.choice([0.1, 0.25, 0.5, 1.0]))
        req_mem = float(rng.choice([0.25, 0.5, 1.0, 2.0]))
        # some pods use more than they request, most less
        pods.append(sim.Pod(f"c{i}", req_cpu, req_mem, req_cpu * float(rng.uniform(0.2, 1.3)),
                            req_mem * float(rng.uniform(0.3, 1.1)), service=f"svc{i % 5}"))
    hours = 730.0
    sc = sim.ClusterCostScenario(tuple(pods), "general.xlarge", purchase, hours)
    alloc = sim.run(sc, seed=0)
    nodes = sim.bin_pack(pods, "general.xlarge", purchase)
    inst = sim.PRICE_SHEET["general.xlarge"]
    bill = round(len(nodes) * inst.price_usd_per_h(purchase) * hours, 2)
    assert alloc.total_usd == pytest.approx(bill, abs=0.005 * len(nodes))
    assert round(alloc.allocated_usd + alloc.idle_usd, 2) == round(alloc.total_usd, 2)
    assert round(alloc.to_frame().total_usd.sum(), 2) == round(alloc.total_usd, 2)
    # idle from first principles: unallocated cores and GiB at the node's CPU and RAM prices
    w_cpu, w_ram = 4 * 0.031611, 16 * 0.004237
    price_h = inst.price_usd_per_h(purchase)
    cpu_price, ram_price = price_h * w_cpu / (w_cpu + w_ram) / 4, price_h * w_ram / (w_cpu + w_ram) / 16
    for node in nodes:
        cpu_alloc = sum(max(p.cpu_request_cores, p.cpu_usage_cores) for p in node.pods)
        mem_alloc = sum(max(p.memory_request_gib, p.memory_usage_gib) for p in node.pods)
        idle = ((4 - cpu_alloc) * cpu_price + (16 - mem_alloc) * ram_price) * hours
        assert alloc.nodes.loc[node.name, "idle_usd"] == pytest.approx(idle, abs=0.01 * (len(node.pods) + 1))
    assert alloc.by_service().total_usd.sum() == pytest.approx(alloc.allocated_usd, abs=0.01)


def test_spot_interruptions_match_the_poisson_rate():
    # a stress rate far above the published bands, to count many interruptions
    stressed = sim.InstanceType("stress.xlarge", 4, 8, 0.170, spot_interruptions_per_h=0.02)
    results = [sim.simulate_spot(20, 8, stressed, hours=720, reschedule_s=300, seed=s) for s in SEEDS]
    expected = results[0].expected_interruptions  # 20 nodes x 0.02/h x 720 h = 288
    assert expected == pytest.approx(288)
    mean = np.mean([r.interruptions for r in results])
    # the count is Poisson: the mean of 10 runs has sd sqrt(288/10)
    assert abs(mean - expected) < 4 * math.sqrt(expected / 10)
    assert results[0].saving_fraction == pytest.approx(0.70)
    assert all(0.99 < r.availability < 1 for r in results)


def test_canary_good_version_is_promoted_and_bad_one_rolled_back():
    good = sim.run(sim.CanaryScenario(canary=sim.Version(error_rate=0.001)), seed=1)
    assert good.decision == "promoted"
    assert good.steps.weight_percent.tolist() == [5, 10, 25, 50, 100]
    bad = sim.run(sim.CanaryScenario(canary=sim.Version(error_rate=0.05)), seed=1)
    assert bad.decision == "rolled_back"
    # caught by the first analysis (120 s) at 5 %; Flagger rolls back on its next pass
    assert bad.decided_at_s == 240.0 and bad.steps.weight_percent.max() == 5
    slow = sim.run(sim.CanaryScenario(canary=sim.Version(latency=sim.LogNormal(0.3, 1.0))), seed=1)
    assert slow.decision == "rolled_back"


def test_canary_promotion_probability_matches_the_binomial():
    # Without latency checks, a step passes when the canary's errors are <= 1 % of its requests.
    from scipy import stats

    sc = sim.CanaryScenario(canary=sim.Version(error_rate=0.01), steps_percent=(50,), rate_per_s=10,
                            step_s=60, max_p99_ms=1e9, min_requests=1)
    promoted = np.mean([sim.run(sc, seed=s).decision == "promoted" for s in range(400)])
    n = stats.poisson(300)
    ks = np.arange(200, 420)
    # P(pass) = sum_N P(N) sum_M P(M | N) P(errors <= 0.01 M)
    p_pass = sum(n.pmf(k) * np.sum(stats.binom(k, 0.5).pmf(np.arange(k + 1))
                                   * stats.binom(np.arange(k + 1), 0.01).cdf(np.floor(0.01 * np.arange(k + 1))))
                 for k in ks)
    assert promoted == pytest.approx(p_pass, abs=4 * math.sqrt(p_pass * (1 - p_pass) / 400))


def test_bad_cost_and_scaling_inputs():
    with pytest.raises(ValueError, match="instance_type: got 'quantum.huge'"):
        sim.bin_pack([sim.Pod("a", 1, 1)], "quantum.huge")
    with pytest.raises(ValueError, match="purchase: got 'bartered'"):
        sim.ClusterCostScenario((sim.Pod("a", 1, 1),), purchase="bartered")
    with pytest.raises(ValueError, match=r"pods\['big'\]"):
        sim.bin_pack([sim.Pod("big", 64, 1)], "general.large")
    with pytest.raises(ValueError, match=r"target_utilisation: got -0.5"):
        sim.HPA(target_utilisation=-0.5)
    with pytest.raises(ValueError, match=r"steps_percent\[1\]"):
        sim.CanaryScenario(steps_percent=(10, 5))
