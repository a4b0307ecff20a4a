"""Day 5 exercises: a correct answer (written here, never in the notebooks) scores full marks,
trivial answers score at most 30 %, and the numbers are recomputed from the run's evidence."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import grading
from grading import day5, testing, variants
from sim.finops import rightsize

IDS = ["day5.showback", "day5.rightsizing", "day5.alerts", "day5.lab_cost"]


pytestmark = pytest.mark.usefixtures("no_stamp")   # each test sets the variant it needs


def largest_remainder(lines, bill):
    target = round(bill * 100)
    raw = {k: x * 100 for k, x in lines.items()}
    cents = {k: math.floor(x) for k, x in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - cents[k], reverse=True)[:target - sum(cents.values())]:
        cents[k] += 1
    return cents


def showback_answer(ev, variant=None):
    s = day5.scenario("day5.showback", variant)
    lines, _, factor = day5.monthly_lines(ev)
    own = {t: lines[t] for t in day5.TEAMS}
    weights = {t: own[t] / sum(own.values()) for t in day5.TEAMS}
    share = weights if s["rule"]["shared"] == "weighted" else {t: 1 / 3 for t in day5.TEAMS}
    out = {t: own[t] + lines[day5.SHARED_TEAM] * share[t] for t in day5.TEAMS}
    if s["rule"]["idle"] == "line":
        out[day5.IDLE] = lines[day5.IDLE]
    else:
        out = {t: out[t] + lines[day5.IDLE] * weights[t] for t in day5.TEAMS}
    bill = sum(lines.values())
    return {"evidence": ev, "rule": dict(s["rule"]), "table": largest_remainder(out, bill),
            "unit_metric": {"unit": "confirmed order",
                            "usd_per_unit": out["checkout"] / factor / ev.data["confirmed_orders"]}}


def rightsizing_answer(ev, variant=None):
    s = day5.scenario("day5.rightsizing", variant)
    reqs = {}
    for dep, d in ev.data["deployments"].items():
        demand = pd.Series(d["cpu_cores"]).quantile(0.99) * s["peak_range"][1]
        headroom = math.log(100) * s["cpu_ms_per_request"][dep] / s["slo_p99_ms"]
        reqs[dep] = {"cpu_cores": 1.01 * (demand + headroom),
                     "memory_mb": 1.01 * pd.Series(d["pss_mb"]).quantile(0.99) * 1.1}
    return {"evidence": ev, "requests": reqs, "spot": list(s["spot_tolerant"])}


ALERTS_ANSWER = {"slo": [{"long_s": 3600, "short_s": 300, "factor": 14.4, "severity": "page"},
                         {"long_s": 21600, "short_s": 1800, "factor": 6, "severity": "page"},
                         {"long_s": 259200, "short_s": 21600, "factor": 1, "severity": "ticket"}]}


def alerts_answer(variant=None):
    s = day5.scenario("day5.alerts", variant)
    return {"budget": {"kind": "threshold", "threshold_usd_per_h": 1.5 * s["base_usd_per_h"], "for_s": 3600},
            **ALERTS_ANSWER}


def lab_answer(cost, usage, variant=None):
    s = day5.scenario("day5.lab_cost", variant)
    lines, _, _ = day5.monthly_lines(cost)
    rows = [{"container": dep, "cpu_cores": c, "memory_bytes": m * 2**20}
            for dep, d in usage.data["deployments"].items() for c, m in zip(d["cpu_cores"], d["pss_mb"])]
    rs = s["rightsize"]
    rec = rightsize(pd.DataFrame(rows), algorithm_cpu=rs["algorithm"], algorithm_ram=rs["algorithm"], q_cpu=rs["q"],
                    q_ram=rs["q"], target_cpu_utilization=rs["target_utilization"],
                    target_ram_utilization=rs["target_utilization"])
    node = usage.data["node"]
    recs = []
    for dep in ("order", "product", "notification"):
        d = usage.data["deployments"][dep]
        cpu = float(rec.loc[dep, "cpu_recommended_cores"])
        mem = float(rec.loc[dep, "memory_recommended_bytes"]) / 2**20
        saving = ((d["cpu_request_cores"] - cpu) * node["cpuHourlyCost"]
                  + (d["memory_request_mb"] - mem) / 1024 * node["ramHourlyCostPerGiB"]) * 730
        recs.append({"deployment": dep, "cpu_cores": cpu, "memory_mb": mem, "monthly_saving_usd": saving})
    return {"evidence": cost, "usage_evidence": usage,
            "allocation_usd": {t: lines[t] for t in day5.TEAMS},
            "efficiency": {t: cost.data["allocation"][t]["cpuEfficiency"] for t in day5.TEAMS},
            "recommendations": recs,
            "budgets": [{"team": t, "spend_limit_usd": lines[t] * (1 + s["budget_headroom"]), "actions": [80, 100]}
                        for t in day5.TEAMS]}


def test_correct_answers_score_full_marks():
    cost, usage = day5._example_cost(3), day5._example_usage(3)
    for eid, answer in (("day5.showback", showback_answer(cost)), ("day5.rightsizing", rightsizing_answer(usage)),
                        ("day5.alerts", alerts_answer()), ("day5.lab_cost", lab_answer(cost, usage))):
        fb = grading.check(eid, answer)
        assert fb.score == fb.max_score, (eid, str(fb))


@pytest.mark.parametrize("v", [11, 977])
def test_correct_answers_of_other_variants_score_full_marks(v):
    cost, usage = day5._example_cost(v), day5._example_usage(v)
    for eid, answer in (("day5.showback", showback_answer(cost, v)), ("day5.rightsizing", rightsizing_answer(usage, v)),
                        ("day5.alerts", alerts_answer(v)), ("day5.lab_cost", lab_answer(cost, usage, v))):
        with testing.as_variant(eid, v):
            fb = grading.check(eid, answer)
        assert fb.score == fb.max_score, (eid, v, str(fb))


def test_trivial_answers_score_at_most_30_percent():
    scores = testing.assert_trivial_answers_score_low(0.30, IDS, (0, 5, 4242))
    assert {s.label.split(":")[0] for s in scores} == set(grading.TRIVIAL_KINDS)


def test_edited_evidence_is_refused():
    cost = day5._example_cost(1)
    answer = showback_answer(cost)
    cost.data["confirmed_orders"] += 1
    fb = grading.check("day5.showback", answer)
    assert fb.score == 0 and "edited" in str(fb)


def test_the_showback_is_recomputed_from_the_evidence_not_trusted():
    answer = showback_answer(day5._example_cost(1))
    answer["evidence"] = day5._example_cost(2)       # someone else's run
    fb = grading.check("day5.showback", answer)
    assert fb.score <= 3, str(fb)


def test_a_showback_one_cent_off_the_bill_loses_the_reconciliation():
    answer = showback_answer(day5._example_cost(1))
    answer["table"]["catalog"] += 1
    fb = grading.check("day5.showback", answer)
    assert fb.max_score - 3 - 1e-9 <= fb.score < fb.max_score, str(fb)
    assert "not the bill's" in str(fb)


def test_a_request_without_the_slo_headroom_fails_the_hidden_traffic_days():
    usage = day5._example_usage(1)
    answer = rightsizing_answer(usage)
    s = day5.scenario("day5.rightsizing", 0)
    low = s["peak_range"][0]
    for dep, d in usage.data["deployments"].items():      # sized for the bottom of the range only
        answer["requests"][dep]["cpu_cores"] = (pd.Series(d["cpu_cores"]).quantile(0.99) * low
                                                + math.log(100) * s["cpu_ms_per_request"][dep] / s["slo_p99_ms"])
    fb = grading.check("day5.rightsizing", answer)
    assert fb.score <= 4.5, str(fb)


def test_spot_for_a_stateful_service_costs_its_saving_and_the_spot_point():
    answer = rightsizing_answer(day5._example_usage(1))
    answer["spot"] = answer["spot"] + ["payment"]
    fb = grading.check("day5.rightsizing", answer)
    assert fb.score < fb.max_score - 1, str(fb)


def test_a_page_on_a_slow_burn_window_loses_the_paging_point():
    answer = alerts_answer()
    answer["slo"][2] = dict(answer["slo"][2], severity="page")
    fb = grading.check("day5.alerts", answer)
    assert fb.score == fb.max_score - 1, str(fb)


def test_a_threshold_under_the_daily_peak_loses_precision():
    answer = alerts_answer()
    answer["budget"] = {"kind": "threshold", "threshold_usd_per_h": 1.1 * day5.scenario("day5.alerts", 0)["base_usd_per_h"],
                        "for_s": 0}
    fb = grading.check("day5.alerts", answer)
    assert fb.score <= 6, str(fb)


def test_budgets_without_the_policys_headroom_fire_wrongly_on_hidden_months():
    cost, usage = day5._example_cost(1), day5._example_usage(1)
    answer = lab_answer(cost, usage)
    for b in answer["budgets"]:
        b["spend_limit_usd"] /= 1 + day5.scenario("day5.lab_cost", 0)["budget_headroom"]
    fb = grading.check("day5.lab_cost", answer)
    assert fb.score < fb.max_score - 1, str(fb)


def test_an_inflated_saving_claim_is_not_accepted():
    cost, usage = day5._example_cost(1), day5._example_usage(1)
    answer = lab_answer(cost, usage)
    answer["recommendations"][0]["monthly_saving_usd"] = abs(answer["recommendations"][0]["monthly_saving_usd"]) * 3 + 1
    fb = grading.check("day5.lab_cost", answer)
    assert fb.score == fb.max_score - 1, str(fb)


def test_wrong_shapes_are_answer_shape_errors():
    for eid in IDS:
        fb = grading.check(eid, {"nothing": 1})
        assert fb.score == 0 and fb.wrong, (eid, str(fb))
    with pytest.raises(ValueError, match="valid: day5"):
        day5.scenario("day5.nope")
