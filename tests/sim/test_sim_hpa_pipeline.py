"""The HPA reads CPU through Kubernetes' metric pipeline (item 3): a rate over the metrics
window, pods ignored while initialising, usage capped by the CPU limit."""

import math

import pytest

import sim
from sim.autoscaling import replica_count

STEP = dict(load_rate_per_s=500.0, cpu_s_per_request=0.01, pod_cpu_request_cores=0.5, initial_replicas=2,
            pod_start_s=10.0, measurement_noise=False, duration_s=600.0, record_every_s=15.0)


def test_step_response_follows_the_hand_computed_kubernetes_sequence():
    """5 cores of demand on 2 pods (0.5-core requests, 60 % target), pods ready 10 s after they
    are scheduled, metrics over the last 15 s. By hand (replica calculator, scale-up policy):
    t=15: 2 pods at 500 % → ceil(8.33 × 2) = 17, capped at 2 + 4 = 6;
    t=30: the 4 new pods' samples began before they were ready → ignored (0 %): the 2 old ones
          read 389 %, (2 × 3.889) / 6 / 0.6 = 2.16 → ceil(12.96) = 13, capped at 12;
    t=45: 6 counted at 139 %, 6 ignored → 1.157 → ceil(13.89) = 14;
    t=60: 12 counted at 79 %, 2 ignored → 1.134 → 16;
    t=75: 14 counted at 68 %, 2 ignored → 0.998, within tolerance: stays 16 (the formula's 17 is
          never reached: 5 / (16 × 0.5) / 0.6 = 1.04 is within the 10 % tolerance).
    The instantaneous model reached 17 at t=45."""
    tl = sim.run(sim.HPAScenario(hpa=sim.HPA(target_utilisation=0.6, max_replicas=50), **STEP), seed=0).timeline
    desired = dict(zip(tl.t_s, tl.replicas))
    assert [desired[t] for t in (15, 30, 45, 60, 75, 90, 300, 585)] == [6, 12, 14, 16, 16, 16, 16, 16]
    assert tl.measured_utilisation[tl.t_s == 30].iloc[0] == pytest.approx(2 * 3.8889 / 2, rel=1e-3)


def test_replica_calculator_rules():
    hpa = sim.HPA(target_utilisation=0.6)
    assert replica_count(hpa, 4, [0.9] * 4, 0, 0) == 6  # ceil(1.5 × 4)
    assert replica_count(hpa, 4, [0.63] * 4, 0, 0) == 4  # within tolerance
    # scale-up with 2 initialising pods at 0 %: (4 × 0.9) / 6 / 0.6 = 1.0 → no change
    assert replica_count(hpa, 6, [0.9] * 4, 2, 0) == 6
    # scale-down with a missing pod counted at 100 %: (3 × 0.3 + 1) / 4 / 0.6 = 0.79 → 4 × 0.79 → 4
    assert replica_count(hpa, 4, [0.3] * 3, 0, 1) == 4
    assert replica_count(hpa, 4, [], 4, 0) is None


def test_cpu_limit_caps_usage_and_the_backlog_makes_the_hpa_overshoot():
    """limit = request: a pod never reads more than 100 %, the demand above capacity queues, and
    the pods stay at 100 % while that backlog drains after capacity arrived — so the HPA keeps
    adding pods past the 17 the load needs, and the stabilisation window holds the peak 300 s."""
    sc = sim.HPAScenario(hpa=sim.HPA(target_utilisation=0.6, max_replicas=60), pod_cpu_limit_cores=0.5,
                         **{**STEP, "duration_s": 1500.0})
    r = sim.run(sc, seed=0)
    tl = r.timeline
    assert tl.measured_utilisation.max() <= 1.0 + 1e-9
    assert tl.backlog_core_s.max() > 0
    peak = int(tl.replicas.max())
    assert peak > sc.analytic_replicas() == 17
    reached = tl[tl.replicas == peak].t_s.min()
    drained = tl[(tl.t_s > reached) & (tl.backlog_core_s == 0)].t_s.min()
    assert (tl[(tl.t_s >= reached) & (tl.t_s < drained + 300)].replicas == peak).all()
    assert r.final_replicas < peak
    uncapped = sim.run(sim.HPAScenario(hpa=sc.hpa, **{**STEP, "duration_s": 1500.0}), seed=0).timeline
    assert uncapped.replicas.max() <= 17  # without a limit there is no backlog and no overshoot
    # capacity arrives later when usage is capped: 16 ready pods take longer
    assert tl[tl.ready >= 16].t_s.min() > uncapped[uncapped.ready >= 16].t_s.min()


def test_bad_limit_is_rejected():
    with pytest.raises(ValueError, match="pod_cpu_limit_cores"):
        sim.HPAScenario(pod_cpu_limit_cores=0.1, pod_cpu_request_cores=0.5)
