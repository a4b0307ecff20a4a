"""Day 4 models against theory: pipeline DAG makespans, matrix max-parallel, runner pools as M/M/c,
cache hit ratios, the release train's lead time and batch failure rate, rolling updates, reconcile."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sim
from sim import theory
from sim.delivery import CacheModel, Job, PipelineScenario, RunnerPool, TeamScenario, cache_hit_ratio, matrix_makespan_s
from sim.gitops import ReconcileScenario, RollingUpdate, simulate_rolling_update


def dag(runners: int) -> PipelineScenario:
    return PipelineScenario({
        "lint": Job(30),
        "build": Job(50),
        "test": Job(120, needs=("lint", "build"), shards=6, max_parallel=3),
        "deploy": Job(45, needs=("test",)),
    }, runners=RunnerPool(count=runners))


def test_one_pipeline_makespan_is_the_critical_path():
    r = sim.run(dag(runners=10), seed=1)
    assert r.makespan_s == pytest.approx(50 + 2 * 120 + 45)
    assert r.critical_path_s == pytest.approx(r.makespan_s)
    # the Gantt table respects needs: no test shard starts before lint and build end
    ends = r.gantt.groupby("job")["end_s"].max()
    assert r.gantt[r.gantt.job == "test"]["start_s"].min() >= max(ends["lint"], ends["build"])


def test_fewer_runners_than_max_parallel_stretch_the_matrix():
    r = sim.run(dag(runners=2), seed=1)
    assert r.makespan_s == pytest.approx(50 + 3 * 120 + 45)        # 6 shards, 2 at a time
    assert r.makespan_s > r.critical_path_s


def test_act_stages_wait_for_the_whole_previous_level():
    jobs = {"slow": Job(100), "fast": Job(10), "after_fast": Job(10, needs=("fast",))}
    github = sim.run(PipelineScenario(jobs, RunnerPool(count=5)), seed=0)
    act = sim.run(PipelineScenario(jobs, RunnerPool(count=5), stages=True), seed=0)
    assert github.makespan_s == pytest.approx(100)                  # after_fast runs beside slow
    assert act.makespan_s == pytest.approx(110) == act.critical_path_s
    assert PipelineScenario(jobs, stages=True).levels() == {"slow": 0, "fast": 0, "after_fast": 1}


@pytest.mark.parametrize("n, p", [(6, 1), (6, 2), (6, 3), (6, 4), (6, 6), (7, 3), (1, 1)])
def test_matrix_makespan_is_ceil_n_over_p(n, p):
    r = sim.run(PipelineScenario({"m": Job(10, shards=n, max_parallel=p)}, RunnerPool(count=50)), seed=0)
    assert r.makespan_s == pytest.approx(matrix_makespan_s(n, p, 10)) == math.ceil(n / p) * 10


def test_runner_pool_waits_as_mmc():
    rate_per_h, mean_s, c = 24.0, 300.0, 3                           # rho = 0.67
    sc = PipelineScenario({"only": Job(sim.Exponential(mean_s))}, RunnerPool(count=c))
    runs = [sim.run(sc, seed=s, pipelines_per_h=rate_per_h, n_pipelines=20_000) for s in range(4)]
    expected = theory.mmc_mean_wait_s(rate_per_h / 3600, 1 / mean_s, c)
    assert np.mean([r.mean_wait_s for r in runs]) == pytest.approx(expected, rel=0.06)
    assert np.mean([r.utilisation for r in runs]) == pytest.approx(rate_per_h / 3600 * mean_s / c, rel=0.03)


def test_hosted_billing_rounds_each_job_up_to_a_minute_and_self_hosted_bills_the_hours():
    hosted = sim.run(PipelineScenario({"a": Job(61), "b": Job(30, needs=("a",))}, RunnerPool(count=2, usd_per_min=0.008)), seed=0)
    assert hosted.cost_usd == pytest.approx((2 + 1) * 0.008)
    own = sim.run(PipelineScenario({"a": Job(61)}, RunnerPool(count=4, kind="self-hosted", usd_per_h=0.36)), seed=0,
                  pipelines_per_h=10, n_pipelines=200)
    assert own.cost_usd == pytest.approx(4 * 0.36 * own.horizon_s / 3600)


@pytest.mark.parametrize("key", ["static", "lockfile_hash", "commit_sha"])
def test_cache_hit_ratio_per_key_design(key):
    cache = CacheModel(lockfile_change_p=0.2, key=key)
    r = sim.run(PipelineScenario({"build": Job(5, cache=cache)}, RunnerPool(count=1)), seed=2, pipelines_per_h=6, n_pipelines=3000)
    assert r.cache_lookups == 3000
    assert r.cache_hit_ratio == pytest.approx(cache_hit_ratio(key, 0.2), abs=0.02)


def test_cache_hit_saves_the_build():
    cache = CacheModel(build_s=60, restore_s=5, save_s=8, partial_build_fraction=0.5)
    assert cache.step_s(hit=True, first=False) == 5
    assert cache.step_s(hit=False, first=True) == 5 + 60 + 8
    assert cache.step_s(hit=False, first=False) == 5 + 30 + 8          # restore-keys: partial restore


def test_release_train_adds_half_a_cadence_and_batches_fail_more():
    common = dict(devs=10, changes_per_dev_day=2.0, p_fail_per_change=0.03, days=400.0, p_conflict_per_overlap_h=0.0)
    flow = sim.run(TeamScenario(strategy="github_flow", **common), seed=5)
    train = sim.run(TeamScenario(strategy="gitflow", release_cadence_days=7.0, **common), seed=5)
    gap_h = train.changes["lead_time_h"].mean() - flow.changes["lead_time_h"].mean()
    assert gap_h == pytest.approx(7 * 24 / 2, rel=0.05)
    assert flow.deploys_per_day == pytest.approx(10 * 2.0, rel=0.05)
    assert train.deploys_per_day == pytest.approx(1 / 7, rel=0.05)
    expected_cfr = float(np.mean(1 - (1 - 0.03) ** train.deploys["batch"]))
    n = len(train.deploys)
    assert abs(train.change_failure_rate - expected_cfr) <= 3 * math.sqrt(expected_cfr * (1 - expected_cfr) / n)
    assert flow.change_failure_rate == pytest.approx(0.03, abs=3 * math.sqrt(0.03 * 0.97 / len(flow.deploys)))
    assert train.mttr_h > flow.mttr_h


def test_longer_branches_conflict_more():
    rates = [sim.run(TeamScenario(strategy="github_flow", work_h=w, days=60.0, p_conflict_per_overlap_h=0.001), seed=1).conflict_rate
             for w in (1.0, 8.0, 32.0)]
    assert rates[0] < rates[1] < rates[2]


def test_team_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="strategy"):
        TeamScenario(strategy="yolo")
    with pytest.raises(ValueError, match="reviewers"):
        TeamScenario(strategy="github_flow", reviewers=0)
    with pytest.raises(ValueError, match="needs"):
        PipelineScenario({"a": Job(1, needs=("b",))})


@pytest.mark.parametrize("n, surge, unavailable", [(3, 1, 0), (3, 1, 1), (4, 2, 0), (5, 0, 1), (10, 3, 2)])
def test_rolling_update_waves(n, surge, unavailable):
    ru = RollingUpdate(replicas=n, max_surge=surge, max_unavailable=unavailable, pod_start_s=4.0)
    duration, min_available = simulate_rolling_update(ru, np.random.default_rng(0))
    assert duration == pytest.approx(ru.theory_s()) == math.ceil(n / (surge + unavailable)) * 4.0
    assert min_available >= n - unavailable


def test_reconcile_converges_in_half_a_poll_plus_sync_plus_rollout():
    sc = ReconcileScenario(poll_s=180, sync_s=2, rollout=RollingUpdate(replicas=3, max_surge=1, max_unavailable=0, pod_start_s=4), n_commits=4000)
    r = sim.run(sc, seed=4)
    assert r.mean_converge_s == pytest.approx(90 + 2 + 12, rel=0.03)
    assert r.p_converge_s(0.9).covers(0.9 * 180 + 2 + 12)              # uniform poll wait
    webhook = sim.run(ReconcileScenario(webhook=True, webhook_s=1, sync_s=2, rollout=sc.rollout, n_commits=200), seed=4)
    assert webhook.converge_s.max() == pytest.approx(1 + 2 + 12)
    assert r.drift_lifetime_s == 5 + 2
    assert sim.run(ReconcileScenario(self_heal=False, n_commits=10), seed=0).drift_lifetime_s == math.inf


def test_approval_of_every_deploy_queues_as_m_d_1():
    """Per-change approvals by one approver: merges arrive about Poisson, each approval takes a fixed
    time, so the wait before a deploy is Pollaczek-Khinchine's M/D/1 queue, rho·a / (2 (1 - rho))."""
    approval_h, devs, rate = 1.0, 8, 1.5            # 0.5 merges an hour: rho = 0.5
    team = TeamScenario(devs=devs, changes_per_dev_day=rate, strategy="github_flow", approval_h=approval_h,
                        p_conflict_per_overlap_h=0.0, days=400.0)
    r = sim.run(team, seed=3)
    rho = devs * rate / 24.0 * approval_h
    expected_wait = rho * approval_h / (2 * (1 - rho))
    waited = (r.changes["deployed_h"] - r.changes["merged_h"] - team.deploy_h - approval_h).mean()
    assert waited == pytest.approx(expected_wait, rel=0.15)
    overloaded = sim.run(TeamScenario(devs=devs, changes_per_dev_day=rate, strategy="github_flow", approval_h=2.2,
                                      p_conflict_per_overlap_h=0.0, days=60.0), seed=3)
    assert overloaded.lead_time_percentile_h(0.85).value > 5 * r.lead_time_percentile_h(0.85).value   # rho > 1: no steady state


def test_a_trunk_release_train_batches_like_gitflow():
    common = dict(devs=8, p_conflict_per_overlap_h=0.0, release_cadence_days=1.0, days=60.0)
    flow = sim.run(TeamScenario(strategy="trunk", **common), seed=5)
    train = sim.run(TeamScenario(strategy="trunk", release_train=True, **common), seed=5)
    assert flow.mean_batch == 1.0 and train.mean_batch == pytest.approx(8.0, rel=0.2)      # a day's changes per release
    assert train.lead_time_h.value - flow.lead_time_h.value == pytest.approx(12.0, rel=0.25)  # half a cadence
    with pytest.raises(ValueError, match="release_train"):
        TeamScenario(strategy="github_flow", release_train=True)
