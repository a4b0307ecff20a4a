"""Shared test data for the grading tests: correct answers, a synthetic solution notebook."""

from __future__ import annotations

import copy
import itertools
import math
import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from grading import day1

REPO = Path(__file__).resolve().parents[2]


def brute_force_compensation_rate(failure_probability: list[float],
                                  compensation_failure_probability: float = 0.0,
                                  compensation_attempts: int = 1) -> float:
    """Enumerate every outcome of the steps (each fails or not, independently) and of every
    try of every compensation, and add up the probability of the sagas whose first failure is
    not the first step and whose undos all succeed within their tries (independent of the
    grader's closed form)."""
    q, attempts = compensation_failure_probability, compensation_attempts
    total = 0.0
    for outcome in itertools.product((True, False), repeat=len(failure_probability)):
        prob = math.prod(p if failed else 1 - p
                         for failed, p in zip(outcome, failure_probability))
        if not any(outcome) or outcome.index(True) == 0:
            continue
        undos = outcome.index(True)
        # every try of every undo: an undo succeeds when one of its tries does
        for tries in itertools.product((True, False), repeat=undos * attempts):
            p_tries = math.prod(q if failed else 1 - q for failed in tries)
            if all(not all(tries[u * attempts:(u + 1) * attempts]) for u in range(undos)):
                total += prob * p_tries
    return total


def tradeoffs_p99_ms(hops: int, rate_per_s: float) -> float:
    """Variant 0's checkout: `hops` M/M/1 stations of mean 8 ms in series; by Reich's theorem
    each time in system is exponential with rate 125 - rate_per_s per second, independent, so
    the sum is Erlang: its 0.99 quantile plus 2 x 2.5 ms of network per hop."""
    from scipy import stats

    return float(1000 * stats.gamma.ppf(0.99, hops, scale=1 / (125 - rate_per_s))
                 + hops * 2 * 2.5)


def _erlang_c_p99_ms(rate_per_s: float, service_ms: float, c: int) -> float:
    """p99 response time (wait + service) of an M/M/c queue, by bisection on its tail."""
    mu, a = 1000 / service_ms, rate_per_s * service_ms / 1000
    if a >= c:
        return math.inf
    terms = sum(a ** k / math.factorial(k) for k in range(c))
    top = a ** c / math.factorial(c) * c / (c - a)
    wait_prob = top / (terms + top)
    theta = c * mu - rate_per_s

    def tail(t):  # P(T > t) for T = W + S
        if abs(theta - mu) < 1e-9:
            return math.exp(-mu * t) * (1 + wait_prob * mu * t)
        return (math.exp(-mu * t)
                + wait_prob * mu / (theta - mu) * (math.exp(-mu * t) - math.exp(-theta * t)))
    lo, hi = 0.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tail(mid) > 0.01 else (lo, mid)
    return hi * 1000


def lab1_plan(s) -> dict:
    """The cheapest plan by brute force over replicas and instance types, per service."""
    plan = {}
    for service, load in s["services"].items():
        best = None
        for inst, it in s["instance_types"].items():
            for n in range(s["min_replicas"], 65):
                if _erlang_c_p99_ms(load["arrival_rate_per_s"] / n,
                                    load["service_time_ms"] / it["speed"],
                                    int(it["vcpu"])) <= s["slo_p99_ms"]:
                    if best is None or n * it["usd_per_h"] < best[0] - 1e-12:
                        best = (n * it["usd_per_h"], {"replicas": n, "instance": inst})
                    break
        plan[service] = best[1]
    return plan


def lab1_nodes_choice(s) -> dict:
    """The cheapest node type and count whose cluster survives losing any one node, pods placed
    as scenario["placement"] says (an implementation of its words, not the grader's)."""
    import sim

    pods = sorted(((spec["cpu_request_cores"], spec["memory_request_gib"])
                   for spec in s["pods"].values() for _ in range(spec["replicas"])),
                  reverse=True)

    def place(items, free):
        where = []
        for cpu, mem in items:
            room = [i for i, (c, m) in enumerate(free) if cpu <= c + 1e-9 and mem <= m + 1e-9]
            if not room:
                return None
            i = max(room, key=lambda k: (free[k][0], -k))
            free[i][0] -= cpu
            free[i][1] -= mem
            where.append(i)
        return where

    best = None
    for node_type in s["node_types"]:
        inst = sim.PRICE_SHEET[node_type]
        res_cpu, res_mem = sim.gke_reserved(inst.vcpu, inst.memory_gib)
        cap = (inst.vcpu - res_cpu, inst.memory_gib - res_mem)
        for n in range(1, 201):
            where = place(pods, [list(cap) for _ in range(n)])
            if where is None:
                continue
            survives = True
            for lost in range(n):
                free = [[cap[0] - sum(p[0] for p, w in zip(pods, where) if w == k),
                         cap[1] - sum(p[1] for p, w in zip(pods, where) if w == k)]
                        for k in range(n) if k != lost]
                if place([p for p, w in zip(pods, where) if w == lost], free) is None:
                    survives = False
                    break
            if survives:
                cost = n * inst.on_demand_usd_per_h
                if best is None or cost < best[1] - 1e-12:
                    best = ({"node_type": node_type, "nodes": n}, cost)
                break
    return best[0]


# Full-marks answers of variant 0, written as literals from closed forms (not taken from the
# grader's own reference functions):
# - tradeoffs: 4 M/M/1 stations in series at 50/s with 8 ms mean service: the sojourn is
#   Erlang(4, 125 - 50 = 75/s); p99 = 1000 * gamma.ppf(0.99, 4, scale=1/75) + 4 * 2 * 2.5 ms.
#   5 hops fit the 200 ms SLO (test_tradeoffs_reference_is_the_closed_form checks both).
# - lab1_cost: the plan an independent Erlang C brute force finds (test_cheapest_plan_...).
TRADEOFFS_P99_MS = 153.9349001977549
# - lab1_nodes, by hand: the plan's pods are 4 x (2 cores, 1.75 GiB) and 7 x (1 core, 1 GiB). A
#   compute.xlarge (4 vCPU, 8 GiB) keeps 0.08 cores for the system (6 % + 1 % + 2 x 0.5 %), so
#   3.92 allocatable cores: first fit decreasing puts one 2-core and one 1-core pod on each of
#   four nodes and the last three 1-core pods on a fifth; one spare makes 6 x $0.17 = $1.02/h.
#   A general.2xlarge holds them on 3 (+1 = $1.536/h); the 2-vCPU nodes cannot hold a 2-core
#   pod once the system reservation is taken.
#   Losing a node, though: spread over 6 compute.xlarge, every node keeps less than 2 free
#   cores (four hold a 2-core pod, 1.92 left, and the 1-core pods fill the others), so a lost
#   2-core pod finds no room. It takes 8 nodes: then one node keeps 2.92 cores free for it,
#   8 x $0.17 = $1.36/h, still below 4 general.2xlarge ($1.536/h).
LAB1_NODES = {"node_type": "compute.xlarge", "nodes": 8}
LAB1_CHEAPEST_PLAN = {
    "product": {"replicas": 5, "instance": "small"},
    "order": {"replicas": 2, "instance": "fast"},
    "payment": {"replicas": 2, "instance": "fast"},
    "inventory": {"replicas": 2, "instance": "small"},
}
LAB1_CHEAPEST_COST = 5 * 0.025 + 2 * 0.07 + 2 * 0.07 + 2 * 0.025


def correct_answers() -> dict[str, object]:
    """A full-marks answer per Day 1 exercise (variant 0)."""
    return {
        "day1.tradeoffs": {
            "architecture": "microservices",
            "p99_ms": tradeoffs_p99_ms,
            "max_hops_within_slo": 5,
        },
        "day1.decomposition": [
            {"Credential", "OAuthClient", "SigningKey"}, {"Customer", "Address"},
            {"Product", "Category"}, {"Review"}, {"StockItem", "Reservation"},
            {"Order", "OrderLine"}, {"Payment", "Refund"},
            {"Notification", "NotificationPreference"},
            {"Shipment", "TrackingEvent"}, {"Coupon", "CouponRedemption"},
        ],
        "day1.patterns": {
            "patterns": {"problem_a": "saga", "problem_b": "outbox",
                         "problem_c": "idempotency_key", "problem_d": "event_sourcing",
                         "problem_e": "cqrs", "problem_f": "api_composition",
                         "problem_g": "database_per_service"},
            "compensation_rate": brute_force_compensation_rate,
        },
        "day1.lab1_cost": lab1_plan,
        "day1.lab1_nodes": lab1_nodes_choice,
        "day1.communication": {
            ("order", "product"): "sync",
            ("order", "inventory"): "sync_retry",
            # needed, and a repeated charge charges again: wait, never retry
            ("order", "payment"): "sync",
            ("order", "notification"): "async",
        },
        "day1.challenge": {
            "services": {
                "order": {"replicas": 2, "service_time_ms": 8.0},
                "product": {"replicas": 1, "service_time_ms": 4.0},
                "inventory": {"replicas": 1, "service_time_ms": 6.0},
                "payment": {"replicas": 5, "service_time_ms": 40.0},
                "notification": {"replicas": 4, "service_time_ms": 30.0},
            },
            "edges": [
                ("order", "product", "sync"),
                ("order", "inventory", "sync"),
                ("order", "payment", "async"),
                ("payment", "notification", "async"),
            ],
        },
    }


# The solution of the synthetic notebook: distinctive lines a leak test can look for.
SOLUTION_CODE = """import math
failure = [0.02, 0.05, 0.03]
all_ok = math.prod(1 - p for p in failure)
answer = {"patterns": {"problem_a": "saga"},
          "compensation_rate": (1 - failure[0]) - all_ok}
helper_total, helper_count = 41 + 1, 7 * 6
"""
SOLUTION_PLOT = "print('the secret figure is', 6 * 7 * 1000)"
SOLUTION_PROSE = "The outbox pattern removes the dual write because the event commits with the row."


def synthetic_solution_notebook() -> nbformat.NotebookNode:
    """A small solution notebook with every kind of tagged cell."""
    check_cell = new_code_cell('import grading\ngrading.check("day1.patterns", answer)')
    check_cell.outputs = [new_output("execute_result", data={
        "text/plain": "day1.patterns: 3/10\n  [ok] problem_a: saga fits"})]
    check_cell.execution_count = 3
    solution = new_code_cell(SOLUTION_CODE, metadata={"tags": ["solution"]})
    solution.outputs = [new_output("stream", name="stdout", text="0.07693 computed here\n")]
    cells = [
        new_markdown_cell("# Patterns\nMatch each problem with a pattern."),
        new_code_cell("import math\nprint(math.pi)"),
        solution,
        new_code_cell(SOLUTION_PLOT, metadata={"tags": ["solution"]}),
        new_markdown_cell(SOLUTION_PROSE, metadata={"tags": ["solution"]}),
        new_code_cell("print('instructor only: grading key loaded from the answers file')",
                      metadata={"tags": ["hidden"]}),
        new_code_cell("print('expected output of the solution: 7.7 percent')",
                      metadata={"tags": ["solution-output"]}),
        check_cell,
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {"x": {"value": "the secret figure is 42000"}}}}
    return nb


def write_notebook(path: Path, *sources: str) -> None:
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources]), path)


# A full-marks day1.patterns answer as source text (the rate as a function), for submissions.
GOOD_PATTERNS_SOURCE = (json.dumps(correct_answers()["day1.patterns"]["patterns"]).join(
    ['{"patterns": ', ', "compensation_rate": lambda p, q, a: sum('
     '__import__("math").prod(1 - x for x in p[:j]) * p[j] * (1 - q ** a) ** j '
     'for j in range(1, len(p)))}']))

WRONG_PATTERNS = {"patterns": {p: "saga" for p in day1.PATTERN_PROBLEMS},
                  "compensation_rate": 0.5}


def write_submissions(folder: Path) -> Path:
    """Fill ``folder`` with one submission of each kind batch grading must survive."""
    folder.mkdir(parents=True, exist_ok=True)
    answers = correct_answers()
    good_patterns = GOOD_PATTERNS_SOURCE
    good_plan = json.dumps(LAB1_CHEAPEST_PLAN)
    write_notebook(folder / "good.ipynb", "import grading",
                   f"grading.check('day1.patterns', {good_patterns})",
                   f"grading.check('day1.lab1_cost', {good_plan})")
    write_notebook(folder / "partial.ipynb", "import grading",
                   f"grading.check('day1.patterns', {json.dumps(WRONG_PATTERNS)})",
                   f"grading.check('day1.lab1_cost', {good_plan})",
                   "raise NotImplementedError('exercise left open')")
    (folder / "corrupt.ipynb").write_text('{"cells": [', encoding="utf-8")
    (folder / "notes.txt").write_text("my answers are in my head", encoding="utf-8")
    write_notebook(folder / "spins.ipynb", "import grading",
                   f"grading.check('day1.patterns', {good_patterns})", "while True:\n    pass")
    write_notebook(folder / "exits.ipynb", "import grading",
                   f"grading.check('day1.lab1_cost', {good_plan})", "import os\nos._exit(3)")
    return folder
