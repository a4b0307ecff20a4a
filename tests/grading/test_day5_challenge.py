"""Challenge 5 (`day5.challenge`): a plan designed here (never in the notebook) on days drawn from
the scenario's own generator scores full marks on the hidden days; oversized, starved and copied
plans score at most 30 %; each criterion fails when its own condition is broken."""

from __future__ import annotations

import math

import numpy as np
import pytest

import grading
from grading import day5, testing

pytestmark = pytest.mark.usefixtures("no_stamp")

GRID_CPU = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)


def design_days(s):
    """Days from the public generator with seeds of our own, and a Black Friday at the top of the range."""
    days = []
    for seed in range(6):
        days += day5.challenge_days(s, [1000 + 3 * seed, 1001 + 3 * seed, 1002 + 3 * seed])
    top = day5._diurnal(s["peak_rps"] * s["black_friday_range"][1]) * 1.04
    days.append({"factor": s["black_friday_range"][1], "rps": top, "interruption_hour": int(np.argmax(top))})
    return days


def design(v, target=0.5):
    """The cheapest plan per Deployment on the design days, on a grid (what a learner would search)."""
    s = day5.scenario("day5.challenge", v)
    days = design_days(s)
    deps = {}
    for dep in day5.CHALLENGE_DEPLOYMENTS:
        spot = dep in s["spot_tolerant"]
        best = None
        for c in GRID_CPU:
            for lo in (1, 2, 3):
                if dep == "payment" and lo < 2:
                    continue
                for hi in range(lo, 11):
                    cfg = {"min_replicas": lo, "max_replicas": hi, "cpu_cores": c, "memory_mb": s["memory_floor_mb"][dep]}
                    one = {"deployments": {dep: cfg}, "hpa_target_utilization": target, "spot": [dep] if spot else [],
                           "mtls": True}
                    plans = [day5.challenge_plan(one, s, d) for d in days]
                    if all(np.all(p["ok"][dep]) for p in plans):
                        cost = float(np.mean([p["cost_usd"] for p in plans]))
                        if best is None or cost < best[0]:
                            best = (cost, cfg)
                        break
        deps[dep] = best[1]
    return {"deployments": deps, "hpa_target_utilization": target, "spot": list(s["spot_tolerant"]), "mtls": True,
            "dev_weekend_off": True}


def with_live(answer, v, **kw):
    replicas = {d: min(int(c["min_replicas"]), day5.LIVE_MAX_REPLICAS) for d, c in answer["deployments"].items()}
    return {**answer, "evidence": day5._example_challenge(v, replicas), **kw}


@pytest.mark.parametrize("v", [0, 3, 11, 977])
def test_a_designed_plan_scores_full_marks(v):
    answer = with_live(design(v), v)
    with testing.as_variant("day5.challenge", v):
        fb = grading.check("day5.challenge", answer)
    assert fb.score == pytest.approx(fb.max_score), str(fb)


def test_trivial_answers_score_at_most_30_percent():
    testing.assert_trivial_answers_score_low(0.30, ["day5.challenge"], (0, 5, 4242))


def test_the_budget_binds_and_the_slo_binds():
    s = day5.scenario("day5.challenge", 0)
    answer = design(0)
    days = design_days(s)
    month = day5.challenge_month_usd(answer, s, days)
    assert month < s["budget_usd_per_month"] < 2.5 * month      # feasible, yet not loose
    fat = {**answer, "deployments": {d: {**c, "min_replicas": max(c["min_replicas"], 3), "max_replicas": 10}
                                     for d, c in answer["deployments"].items()}}
    fb = grading.check("day5.challenge", with_live(fat, 0))
    assert fb.score <= 5, str(fb)                              # the SLO holds, the budget does not
    lean = {**answer, "hpa_target_utilization": 0.95}
    fb = grading.check("day5.challenge", with_live(lean, 0))
    assert fb.score <= 5, str(fb)                              # cheaper, and the peak misses the SLO


def test_mtls_off_and_a_single_payment_replica_break_constraints():
    answer = design(0)
    answer["deployments"]["payment"] = {**answer["deployments"]["payment"], "min_replicas": 1}
    fb = grading.check("day5.challenge", with_live({**answer, "mtls": False}, 0))
    assert fb.score < 9 and "mTLS stays on" in str(fb) and "payment keeps" in str(fb), str(fb)


def test_spot_without_a_spare_replica_fails_at_the_interruption():
    s = day5.scenario("day5.challenge", 0)
    answer = design(0)
    dep = s["spot_tolerant"][0]
    answer["deployments"][dep] = {**answer["deployments"][dep], "min_replicas": 1, "max_replicas": 1}
    day = {"factor": 1.0, "rps": day5._diurnal(s["peak_rps"]), "interruption_hour": 16}
    plan = day5.challenge_plan(answer, s, day)
    assert math.isinf(plan["p99_ms"][dep][16])                 # no replica left during the interruption
    assert grading.check("day5.challenge", with_live(answer, 0)).score < 9.5


def test_live_evidence_of_other_replicas_loses_the_consistency_point():
    answer = design(0)
    other = day5._example_challenge(0, {d: 3 for d in day5.CHALLENGE_DEPLOYMENTS})
    fb = grading.check("day5.challenge", {**answer, "evidence": other})
    assert fb.score == pytest.approx(9), str(fb)
    edited = with_live(answer, 0)
    edited["evidence"].data["load"]["error_rate"] = 0.0001
    assert grading.check("day5.challenge", edited).score == 0


@pytest.mark.parametrize("bad", [
    {"deployments": {}},
    {"deployments": {d: {"min_replicas": 3, "max_replicas": 2, "cpu_cores": 0.5, "memory_mb": 128}
                     for d in day5.CHALLENGE_DEPLOYMENTS}, "hpa_target_utilization": 0.5, "mtls": True},
    {"deployments": {d: {"min_replicas": 1, "max_replicas": 2, "cpu_cores": 0.5, "memory_mb": 128}
                     for d in day5.CHALLENGE_DEPLOYMENTS}, "hpa_target_utilization": 1.5, "mtls": True},
])
def test_wrong_shapes_are_refused_with_a_message(bad):
    fb = grading.check("day5.challenge", bad)
    assert fb.score == 0 and "answer[" in str(fb), str(fb)


def test_capture_challenge_refuses_a_bad_window():
    with pytest.raises(ValueError, match="start < end"):
        day5.capture_challenge(None, 10.0, 5.0, None)
