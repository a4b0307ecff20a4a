"""The shared-CPU model (sim.cpu) against queueing theory: one event-loop process is M/G/1-PS
(insensitive to the service-time distribution), one job per process on c cores is M/M/c, a
work-conserving single core shared by two processes keeps M/M/1's mean, and off-CPU time adds."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import simpy

import sim
from sim import theory
from sim.cpu import Machine


def one_service(service, replicas=1, lb="round_robin", cpu_fraction=1.0):
    g = nx.DiGraph()
    g.add_node("svc", service_time=service, servers=10_000, replicas=replicas, load_balancer=lb,
               cpu_fraction=cpu_fraction)
    return g


@pytest.mark.parametrize("service", [sim.Exponential(0.005), sim.LogNormal(0.005, 2.0)], ids=["exp", "lognormal-cv2"])
def test_one_process_is_mg1_processor_sharing_whatever_the_distribution(service):
    """An asyncio replica interleaves its requests and uses at most one core (of two): E[T] = E[S]/(1-ρ)."""
    rate = 120.0                                                    # ρ = 0.6
    res = sim.run(sim.CallGraph(one_service(service), cpu=sim.SharedCPU(cores=2)), seed=3,
                  rate_per_s=rate, n_requests=40_000)
    expected_ms = theory.mg1_ps_mean_sojourn_s(rate, 0.005) * 1000
    assert res.mean_latency_ms.value == pytest.approx(expected_ms, rel=0.06), (res.mean_latency_ms, expected_ms)
    assert res.cpu_utilisation == pytest.approx(0.6 / 2, rel=0.05)  # one core of two busy 60 % of the time
    # Without the shared CPU the same graph has no queue at all: every request takes its own work.
    free = sim.run(sim.CallGraph(one_service(service)), seed=3, rate_per_s=rate, n_requests=40_000)
    assert free.mean_latency_ms.value == pytest.approx(5.0, rel=0.06)
    assert res.mean_latency_ms.value > 2 * free.mean_latency_ms.value


def test_one_job_per_process_on_two_cores_is_mm2():
    """Each job its own process, exponential work, two cores: the birth-death chain of M/M/2."""
    rate, mean_s, n = 300.0, 0.005, 40_000                            # ρ = 0.75 per core
    env = simpy.Environment()
    machine = Machine(env, cores=2)
    rng = np.random.default_rng(11)
    gaps, works = rng.exponential(1 / rate, n), rng.exponential(mean_s, n)
    sojourn = np.zeros(n)

    def job(i):
        t0 = env.now
        yield machine.run(i, works[i])
        sojourn[i] = env.now - t0

    def source():
        for i in range(n):
            yield env.timeout(gaps[i])
            env.process(job(i))
    env.process(source())
    env.run()
    expected = theory.mmc_mean_sojourn_s(rate, 1 / mean_s, 2)
    assert sojourn[n // 20:].mean() == pytest.approx(expected, rel=0.06)
    assert machine.utilisation(env.now) == pytest.approx(0.75, rel=0.04)


def test_two_replicas_on_one_core_share_it_as_one_mm1():
    """Two processes on one core: work-conserving, so with exponential work the total behaves as
    M/M/1 at the summed load — the second replica adds no capacity."""
    rate = 140.0                                                      # ρ = 0.7 on the one core
    one_core = sim.run(sim.CallGraph(one_service(sim.Exponential(0.005), replicas=2, lb="random"),
                                     cpu=sim.SharedCPU(cores=1)), seed=5, rate_per_s=rate, n_requests=40_000)
    expected_ms = theory.mm1_mean_sojourn_s(rate, 200.0) * 1000
    assert one_core.mean_latency_ms.value == pytest.approx(expected_ms, rel=0.07)
    # On two cores the same two replicas are two independent M/M/1-PS at half the rate each.
    two_cores = sim.run(sim.CallGraph(one_service(sim.Exponential(0.005), replicas=2, lb="random"),
                                      cpu=sim.SharedCPU(cores=2)), seed=5, rate_per_s=rate, n_requests=40_000)
    assert two_cores.mean_latency_ms.value == pytest.approx(theory.mg1_ps_mean_sojourn_s(rate / 2, 0.005) * 1000,
                                                             rel=0.07)


def test_off_cpu_time_is_a_plain_delay():
    """Half of the work on the CPU (PS), half waiting elsewhere: E[T] = f·E[S]/(1-λfE[S]) + (1-f)·E[S]."""
    rate, mean_s, f = 150.0, 0.005, 0.5
    res = sim.run(sim.CallGraph(one_service(sim.LogNormal(mean_s, 1.0), cpu_fraction=f), cpu=sim.SharedCPU(cores=2)),
                  seed=9, rate_per_s=rate, n_requests=40_000)
    expected_ms = (theory.mg1_ps_mean_sojourn_s(rate, f * mean_s) + (1 - f) * mean_s) * 1000
    assert res.mean_latency_ms.value == pytest.approx(expected_ms, rel=0.06)


def test_bad_cpu_input_names_the_valid_range():
    with pytest.raises(ValueError, match="SharedCPU.cores"):
        sim.SharedCPU(cores=0)
    with pytest.raises(ValueError, match="cpu: got '2'"):
        sim.CallGraph(one_service(0.005), cpu="2")
    with pytest.raises(ValueError, match=r"cpu_fraction\['svc'\]"):
        sim.CallGraph(one_service(0.005, cpu_fraction=1.5))


def test_a_multithreaded_process_may_use_every_core_one_request_at_most_one():
    """process_cores=2 on two cores, exponential work: each request runs on at most one core, so
    the one process is M/M/2; capped at one core (the default) it is M/M/1-PS and saturates first."""
    rate = 300.0                                                      # ρ = 0.75 of two cores
    g = one_service(sim.Exponential(0.005))
    g.nodes["svc"]["process_cores"] = 2
    wide = sim.run(sim.CallGraph(g, cpu=sim.SharedCPU(cores=2)), seed=8, rate_per_s=rate, n_requests=40_000)
    assert wide.mean_latency_ms.value == pytest.approx(theory.mmc_mean_sojourn_s(rate, 200.0, 2) * 1000, rel=0.07)
    assert wide.cpu_utilisation == pytest.approx(0.75, rel=0.05)
    narrow = sim.run(sim.CallGraph(one_service(sim.Exponential(0.005)), cpu=sim.SharedCPU(cores=2)), seed=8,
                     rate_per_s=rate * 0.6, n_requests=20_000)       # ρ = 0.9 of its one core
    assert narrow.mean_latency_ms.value == pytest.approx(theory.mg1_ps_mean_sojourn_s(rate * 0.6, 0.005) * 1000,
                                                         rel=0.15)
