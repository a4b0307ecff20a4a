"""Day 5 exercises: FinOps — showback, right-sizing, cost and SLO alerts, a cost report.

==========================  ========  ============================================================
exercise id                 notebook  answer shape
==========================  ========  ============================================================
``day5.showback``           01        ``{"evidence", "rule": {"shared", "idle"}, "table", "unit_metric"}``
``day5.rightsizing``        02        ``{"evidence", "requests": {dep: {"cpu_cores", "memory_mb"}}, "spot"}``
``day5.alerts``             03        ``{"budget": {...}, "slo": [{...}, ...]}``
``day5.lab_cost``           04        ``{"evidence", "allocation_usd", "efficiency", "recommendations", "budgets"}``
``day5.challenge``          05        ``{"deployments", "hpa_target_utilization", "spot", "mtls", "dev_weekend_off", "evidence"}``
==========================  ========  ============================================================

Costs are those of the **declared virtual node** of the run (the evidence carries it: by default
``general.large`` of ``sim.cost.PRICE_SHEET``, 2 vCPU / 8 GiB at 0.096 USD/h on demand); a month is
730 hours. Live figures are graded against **evidence**: :func:`capture_cost` and
:func:`capture_usage` read CloudMart's OpenCost-compatible allocation, the ``orders`` stream and the
usage recorder and sign what they read with the kernel's evidence key (:mod:`grading.evidence`:
tamper-evident, not tamper-proof). The grader recomputes every number from that evidence.

**``day5.showback``** (10). The variant states how the ``platform`` team's cost (auth, user: shared
by everyone) and the node's idle cost are shared among the product teams (``catalog``,
``checkout``, ``messaging``): ``shared`` ``"even"`` or ``"weighted"`` (in proportion to each
team's own cost), ``idle`` ``"line"`` (its own ``__idle__`` line) or ``"weighted"``. ``table`` is
the month's showback at the run's rate in whole cents per line (team, and ``__idle__`` when it is
a line); ``unit_metric`` is ``{"unit": ..., "usd_per_unit": ...}``: the checkout team's cost per
business unit (a confirmed order) in the run's window, after the sharing rule. Points: the table
adds up to the bill's cents (3) × the share of its lines within 2 % (or a cent) of the grader's
recomputation; the rule stated matches the variant's principle (3) × that share; the numbers (2) ×
that share; the unit is a confirmed order and its cost within 2 % (2).

**``day5.rightsizing``** (10). The variant gives the peak range (traffic at the peak over the
traffic of the learner's run), the p99 SLO, each service's CPU seconds per request, which services
tolerate spot interruptions, and the current requests (the baseline). A replica is an M/M/1 queue
of rate ``μ = c / s`` (``c`` the CPU request in cores, ``s`` CPU seconds per request) fed
``λ = d / s`` with ``d`` = p99 of the measured CPU × the peak factor: its p99 response time is
``ln(100) · s / (c − d)`` exactly. Checks per service: memory ≥ p99 of the measured PSS × 1.1 (OOM
risk); the p99 ≤ SLO at the top of the peak range and on hidden traffic days drawn inside it;
spot only where tolerated. Per service, the saving is the monthly cost of the requests (the node's
prices; spot at its discount) under the baseline's, as a share of what the smallest safe requests
save; it is 0 for a service that fails a check, and where even the smallest safe requests cost
more than the baseline, full only at (within 10 % of) them. The saving share is the mean. Points: saving (3) × share; memory (3) and CPU (3) ×
their pass share × the saving share (oversizing everything is safe and saves nothing); spot
exactly the tolerant services (1) if anything is saved.

**``day5.alerts``** (10). ``budget``: ``{"kind": "threshold", "threshold_usd_per_h", "for_s"}`` or
``{"kind": "forecast", "budget_usd", "horizon_s", "lookback_s", "for_s"}``; ``slo``: a list of
``{"long_s", "short_s", "factor", "severity": "page"|"ticket"}`` burn-rate windows (any of them
firing is the alert). Graded with :mod:`sim.alerts` on 50 hidden traces of the variant (spend
traces of a week with runaways, forgotten canaries or nothing; error traces of three days with
fast bursts, slow burns or nothing). Points: recall ≥ 0.9 (4) and precision ≥ 0.8 (3), each in
proportion below its target and multiplied by the other's proportion ("alert on everything" has
precision 0, "never" recall 0); mean detection within the variant's targets (2, one per family);
pages only on windows of factor ≥ 6 (1), counted with the recall and precision.

**``day5.lab_cost``** (10). From the three-team run's evidence: ``allocation_usd`` (team → cost
of a month at the run's rate, idle not shared) and ``efficiency`` (team → CPU usage / request);
three ``recommendations`` ``{"deployment", "cpu_cores", "memory_mb", "monthly_saving_usd"}``; and
``budgets`` ``[{"team", "spend_limit_usd", "actions": [percentages]}]`` set by the variant's
policy (each team's limit = its run-rate month × (1 + headroom)). Points: numbers within 2 % of
the recomputation (3); claimed savings within 5 % of the recomputed saving of the recommended
requests, which must not be below Kubecost-style right-sizing of the evidence (``sim.finops.rightsize``
with the variant's algorithm and target utilisation) (3); budgets fire correctly on hidden
"next months" (2: the share right among those that must fire × among those that must not); an
action before 100 % as well as at 100 % (2), counted with the firing share.

**``day5.challenge``** (10). Cost optimisation scenarios on one compressed day (24 hourly rates of a
diurnal profile): Black Friday (one hidden day's peak is the variant's range times the ordinary
peak), an idle dev environment at weekends (``dev_weekend_off``), spot for the workers that
tolerate interruptions (an interruption takes one replica of every spot Deployment at the day's
peak hour), an over-provisioned canary (``product-canary`` takes a tenth of product's traffic), and
mesh cost vs security (a sidecar's CPU request per replica with mTLS on). ``deployments`` gives
per Deployment ``min_replicas``, ``max_replicas`` (1..10), ``cpu_cores`` and ``memory_mb``; the HPA
sizes each hour for the previous hour's demand at ``hpa_target_utilization``. Each replica is an
M/M/1 queue (p99 ``ln(100)·s/(c − d)``). Scored by the sim on three hidden traffic days (two
ordinary, one Black Friday): the p99 within the SLO every hour for every Deployment (4) and a month
of such days within the budget (3), each multiplied by the SLO factor (per day the share of
Deployments within the SLO every hour, multiplied over the three days) and by the budget factor (1 at or under the budget, falling to 0 at 1.25 × the budget), so neither
an oversized nor a starved plan scores; the constraints (2: mTLS on, payment ≥ 2 replicas, memory
≥ the floor, spot only where tolerated) × that product; and the live evidence (1): a run of the
configuration's ``min_replicas`` (at most 3 each) through :func:`capture_challenge`, whose
allocation is within 0.95–1.6 × its requests' floor with an error rate under 5 %.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import grading
from grading import AnswerShapeError, Grader, _is_number, exercise, variants

__all__ = ["CostEvidence", "capture_cost", "capture_usage", "scenario", "showback_expected", "monthly_lines",
           "rightsizing_minimum", "alert_traces", "lab_expected", "TEAMS", "SHARED_TEAM", "IDLE",
           "HOURS_PER_MONTH", "EXAMPLE_SHOWBACK_RULE", "EXAMPLE_BUDGET_RULE", "EXAMPLE_SLO_WINDOWS",
           "capture_challenge", "challenge_days", "challenge_plan", "challenge_month_usd", "challenge_live_floor",
           "CHALLENGE_DEPLOYMENTS", "EXAMPLE_CHALLENGE"]

HOURS_PER_MONTH = 730.0
TEAM_LABEL = "cloudmart.io/team"
TEAMS = ("catalog", "checkout", "messaging")
SHARED_TEAM = "platform"
IDLE = "__idle__"
UNALLOCATED = "__unallocated__"
MEMORY_MARGIN = 1.1
LN100 = math.log(100.0)
DEPLOYMENTS = ("auth", "inventory", "notification", "order", "payment", "product", "user")
BUSINESS_UNITS = ("order", "confirmed order", "confirmed orders", "orders", "checkout", "checkouts")

# the notebooks' worked examples: what a copied answer would use
EXAMPLE_SHOWBACK_RULE = {"shared": "even", "idle": "even"}
EXAMPLE_BUDGET_RULE = {"kind": "threshold", "threshold_usd_per_h": 2.2, "for_s": 0.0}
EXAMPLE_SLO_WINDOWS = [{"long_s": 3600.0, "short_s": 3600.0, "factor": 14.4, "severity": "page"}]


# ----- evidence ----------------------------------------------------------------------------------
@dataclass
class CostEvidence:
    """What :func:`capture_cost` / :func:`capture_usage` read; ``signature`` covers ``kind`` and ``data``."""

    kind: str
    data: dict
    signature: str = ""

    def _payload(self) -> bytes:
        return json.dumps([self.kind, self.data], sort_keys=True, default=str).encode()

    def signed(self) -> bool:
        from grading import evidence

        expected = hmac.new(evidence._KEY, self._payload(), hashlib.sha256).hexdigest()
        return bool(self.signature) and hmac.compare_digest(expected, self.signature)

    def __repr__(self) -> str:
        return f"CostEvidence({self.kind!r}, keys={sorted(self.data)}, signed={self.signed()})"


def _sign(kind: str, data: dict) -> CostEvidence:
    from grading import evidence

    ev = CostEvidence(kind, json.loads(json.dumps(data, default=str)))
    ev.signature = hmac.new(evidence._KEY, ev._payload(), hashlib.sha256).hexdigest()
    return ev


def _confirmed_orders(cm: Any, start: float, end: float) -> int:
    n = 0
    for e in cm.events("orders"):
        if e.get("type") != "orders.confirmed":
            continue
        at = dt.datetime.fromisoformat(str(e["occurred_at"]).replace("Z", "+00:00")).timestamp()
        n += start <= at <= end
    return n


def _wait_until_sampled_past(cm: Any, end: float, timeout_s: float = 15.0) -> None:
    """Wait until every running replica has a usage sample after ``end``.

    A replica's usage is known only up to its newest sample (OpenCost, too, sees a pod only as far
    as Prometheus has scraped it). The recorder samples about once a second, later on a busy
    machine, so a window ending now would bill the last second or two of each replica as not
    running and allocate less than the requests. A replica with no sample in the last few seconds
    before ``end`` has stopped and is not waited for; the wait is bounded."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        frame = cm.usage(window_s=max(5.0, time.time() - end + 5.0))
        if frame.empty:
            return
        newest = frame.groupby("replica")["t"].max()
        running = newest[newest >= end - 5.0]
        if (running > end).all() or time.monotonic() > deadline:
            return
        time.sleep(0.25)


def capture_cost(cm: Any, start: float, end: float, aggregate: str = f"label:{TEAM_LABEL}") -> CostEvidence:
    """Signed evidence of one run between Unix times ``start`` and ``end``: the accumulated
    allocation by ``aggregate`` with idle as a line (OpenCost's ``/allocation``), the declared
    node, and the orders confirmed in the window (the ``orders`` stream)."""
    if not (_is_number(start) and _is_number(end)) or end <= start:
        raise ValueError(f"start, end: got {start!r}, {end!r}; valid: Unix seconds with start < end")
    _wait_until_sampled_past(cm, end)
    answer = cm.opencost.allocation(f"{start:.3f},{end:.3f}", aggregate=aggregate, accumulate=True,
                                    includeIdle=True, shareIdle=False)
    return _sign("cost", {"allocation": answer["data"][0], "bill": answer["bills"][0], "node": answer["node"],
                          "confirmed_orders": _confirmed_orders(cm, start, end), "start": start, "end": end,
                          "aggregate": aggregate})


def capture_usage(cm: Any, window_s: float) -> CostEvidence:
    """Signed evidence of the usage recorder's samples of the last ``window_s`` seconds: per
    Deployment the app containers' CPU (cores) and PSS (MiB) samples and their requests."""
    frame = cm.usage(window_s=window_s)
    frame = frame[frame["container"] == "app"]
    data = {}
    for dep, g in frame.groupby("deployment"):
        data[dep] = {"cpu_cores": [float(x) for x in g["cpu_cores"].fillna(0.0)],
                     "pss_mb": [float(x) for x in g["pss_mb"].fillna(0.0)],
                     "cpu_request_cores": float(g["cpu_request_cores"].iloc[-1]),
                     "memory_request_mb": float(g["memory_request_mb"].iloc[-1]),
                     "replicas": int(g["replica"].nunique())}
    try:
        node = cm.opencost.allocation("1m", aggregate="cluster")["node"]
    except Exception:  # noqa: BLE001 - a target without the API: the default declared node
        from cluster.finops.pricing import VirtualNode

        node = VirtualNode().to_dict()
    return _sign("usage", {"deployments": data, "window_s": float(window_s), "node": node})


def _evidence(answer: dict, kind: str) -> CostEvidence:
    ev = answer.get("evidence")
    if not isinstance(ev, CostEvidence) or ev.kind != kind:
        maker = "capture_cost(cm, start, end)" if kind == "cost" else "capture_usage(cm, window_s)"
        raise AnswerShapeError(f"answer['evidence']: give the evidence of your own run, grading.day5.{maker}")
    if not ev.signed():
        raise AnswerShapeError("answer['evidence'] was not made by grading.day5 in this kernel or was edited; "
                               "capture it again from your run")
    return ev


# ----- scenarios ---------------------------------------------------------------------------------
_PRINCIPLES = (
    ({"shared": "weighted", "idle": "weighted"},
     "Teams pay for what they use: the platform's cost and the idle capacity are both shared in "
     "proportion to each team's own cost."),
    ({"shared": "even", "idle": "line"},
     "The platform is a common good every team needs equally: split it evenly. Idle capacity is "
     "the platform team's sizing decision: show it as its own line, charged to no team."),
    ({"shared": "weighted", "idle": "line"},
     "The platform's cost follows use: share it in proportion to each team's own cost. Idle "
     "capacity is shown as its own line, charged to no team."),
    ({"shared": "even", "idle": "weighted"},
     "Every team gets an equal share of the platform; idle capacity is spread in proportion to "
     "each team's own cost, so the bigger consumers carry the headroom."),
)
_TOLERANT = (("notification", "product"), ("notification",), ("notification", "product", "auth"))


def scenario(exercise_id: str, variant: int | None = None) -> dict[str, Any]:
    """The current learner's scenario of a Day 5 exercise (variant 0 without a stamp)."""
    if exercise_id not in ("day5.showback", "day5.rightsizing", "day5.alerts", "day5.lab_cost", "day5.challenge"):
        raise ValueError(f"exercise_id: got {exercise_id!r}; valid: day5.showback, day5.rightsizing, "
                         f"day5.alerts, day5.lab_cost, day5.challenge")
    v = variants.variant(exercise_id) if variant is None else variant
    rng = variants.rng(exercise_id, v)
    if exercise_id == "day5.challenge":
        return _challenge_scenario(v, rng)
    if exercise_id == "day5.showback":
        rule, text = _PRINCIPLES[0 if v == 0 else int(rng.integers(len(_PRINCIPLES)))]
        return {"principle": text, "rule": dict(rule), "shared_team": SHARED_TEAM, "teams": list(TEAMS),
                "unit_team": "checkout", "unit": "confirmed order"}
    if exercise_id == "day5.rightsizing":
        if v == 0:
            low, width, slo, base_cpu, base_mem, tolerant = 2.0, 1.0, 200.0, 0.5, 256.0, _TOLERANT[0]
            cpu_ms = {d: 2.0 for d in DEPLOYMENTS}
        else:
            low = float(np.round(rng.uniform(1.8, 2.4), 1))
            width = float(np.round(rng.uniform(0.5, 1.2), 1))
            slo = float(rng.choice([150.0, 200.0, 250.0, 300.0]))
            base_cpu = float(rng.choice([0.4, 0.5, 0.6]))
            base_mem = float(rng.choice([256.0, 384.0, 512.0]))
            tolerant = _TOLERANT[int(rng.integers(len(_TOLERANT)))]
            cpu_ms = {d: float(np.round(rng.uniform(1.0, 3.0), 1)) for d in DEPLOYMENTS}
        return {"peak_range": [low, round(low + width, 1)], "slo_p99_ms": slo, "cpu_ms_per_request": cpu_ms,
                "spot_tolerant": list(tolerant), "baseline": {"cpu_cores": base_cpu, "memory_mb": base_mem},
                "memory_margin": MEMORY_MARGIN, "spot_discount": 0.70, "hidden_days": 5}
    if exercise_id == "day5.alerts":
        if v == 0:
            base, slo = 2.0, 0.999
        else:
            base = float(rng.choice([2.0, 3.0, 4.0]))
            slo = float(rng.choice([0.999, 0.995, 0.99]))
        return {"base_usd_per_h": base, "slo": slo, "spend_days": 7, "error_days": 3,
                "detection_target_h": {"budget": 10.0, "slo": 3.0}, "traces": 50,
                "budget_note": "a runaway (3x for 16-40 h) or a forgotten canary (+20-40 % of the base "
                               "from day 1-3) breaks the week's budget of 1.15 x the expected spend"}
    # day5.lab_cost
    if v == 0:
        headroom, algorithm, q, target = 0.2, "max", None, 0.7
    else:
        headroom = float(rng.choice([0.1, 0.15, 0.2, 0.25, 0.3]))
        algorithm = str(rng.choice(["max", "quantile"]))
        q = 0.95 if algorithm == "quantile" else None
        target = float(rng.choice([0.6, 0.7, 0.8]))
    return {"teams": list(TEAMS), "budget_headroom": headroom, "rightsize": {"algorithm": algorithm, "q": q,
            "target_utilization": target}, "recommendations": 3, "actions": [80, 100]}


# ----- recomputation -----------------------------------------------------------------------------
def monthly_lines(ev: CostEvidence) -> tuple[dict[str, float], float, float]:
    """(line → USD of a month at the run's rate, the month's bill USD, the factor window → month)."""
    bill = ev.data["bill"]
    factor = HOURS_PER_MONTH * 60.0 / float(bill["minutes"])
    lines = {k: float(v["totalCost"]) * factor for k, v in ev.data["allocation"].items()}
    return lines, float(bill["totalCost"]) * factor, factor


def showback_expected(ev: CostEvidence, rule: dict) -> tuple[dict[str, float], float]:
    """The showback of a month at the run's rate under ``rule`` (USD per line) and the bill."""
    lines, bill, _ = monthly_lines(ev)
    own = {t: lines.get(t, 0.0) for t in TEAMS}
    pool = lines.get(SHARED_TEAM, 0.0) + lines.get(UNALLOCATED, 0.0)
    total_own = sum(own.values())
    weights = {t: (own[t] / total_own if total_own > 0 else 1 / len(TEAMS)) for t in TEAMS}
    even = {t: 1 / len(TEAMS) for t in TEAMS}
    out = {t: own[t] + pool * (weights if rule["shared"] == "weighted" else even)[t] for t in TEAMS}
    idle = lines.get(IDLE, 0.0)
    if rule["idle"] == "line":
        out[IDLE] = idle
    else:
        for t in TEAMS:
            out[t] += idle * (weights if rule["idle"] == "weighted" else even)[t]
    return out, bill


def _within(got: float, want: float, rel: float, abs_: float) -> bool:
    return abs(got - want) <= max(rel * abs(want), abs_)


@exercise("day5.showback", max_score=10)
def check_showback(answer: Any, g: Grader) -> None:
    """Answer: ``{"evidence", "rule", "table", "unit_metric"}`` (see the module docstring)."""
    if not isinstance(answer, dict) or not answer:
        raise AnswerShapeError("answer: a dict with evidence, rule, table and unit_metric")
    ev = _evidence(answer, "cost")
    rule, table, unit = answer.get("rule"), answer.get("table"), answer.get("unit_metric")
    if not isinstance(rule, dict) or rule.get("shared") not in ("even", "weighted") \
            or rule.get("idle") not in ("line", "weighted", "even"):
        raise AnswerShapeError("answer['rule']: {'shared': 'even'|'weighted', 'idle': 'line'|'weighted'|'even'}")
    if not isinstance(table, dict) or not table or not all(isinstance(k, str) and grading._is_int(c)
                                                            for k, c in table.items()):
        raise AnswerShapeError("answer['table']: {line: whole cents} (int), one line per team (and __idle__)")
    s = scenario("day5.showback")
    expected, bill = showback_expected(ev, s["rule"])
    bill_cents = round(bill * 100)
    keys = set(expected) | set(table)
    right = [k for k in expected if k in table and _within(table[k] / 100, expected[k], 0.02, 0.01)]
    share = len(right) / len(keys)
    total = sum(int(c) for c in table.values())
    if total == bill_cents and share == 1:
        g.award(3, f"the table adds up to the bill of {bill_cents / 100:.2f} USD to the cent")
    elif total == bill_cents:
        g.partial(3 * share, f"the table adds up to the bill, but only {len(right)} of {len(keys)} lines are right")
    else:
        g.miss(f"the lines add up to {total} cents, not the bill's {bill_cents}")
        g.suggest("Round each line to cents so that the rounded lines still add up to the bill (largest remainder).")
    if rule == s["rule"] and share > 0:
        g.award(3 * share, "the sharing rule is the one the principle states") if share == 1 else \
            g.partial(3 * share, "the rule stated is right, but the table does not follow it everywhere")
    else:
        g.miss("the rule does not match the principle (or the table does not follow it)")
        g.suggest("Read the principle twice: who benefits from the platform, and who decided the idle capacity?")
    if share == 1:
        g.award(2, "every line is within 2 % of the recomputation from your run's evidence")
    else:
        g.partial(2 * share, f"{len(right)} of {len(keys)} lines are within 2 % of the recomputation from your run's "
                             f"evidence; wrong or missing: {sorted(keys - set(right))}")
    orders = int(ev.data.get("confirmed_orders", 0))
    if not isinstance(unit, dict) or not _is_number(unit.get("usd_per_unit", None)):
        g.miss("unit_metric: {'unit': ..., 'usd_per_unit': ...} is missing")
        return
    name = str(unit.get("unit", "")).strip().lower()
    if name not in BUSINESS_UNITS:
        g.miss(f"the unit {unit.get('unit')!r} is not a business unit a finance team would recognise")
        g.suggest("Unit economics divides cost by something the business sells, not by a technical quantity.")
        return
    if orders <= 0:
        g.miss("the run's evidence has no confirmed order: run checkout load inside the window")
        return
    _, _, factor = monthly_lines(ev)
    want = expected["checkout"] / factor / orders
    if _within(float(unit["usd_per_unit"]), want, 0.02, 1e-12):
        g.award(2, f"the checkout team's cost per confirmed order ({orders} orders in the window) is right")
    else:
        g.partial(1, "the unit is a confirmed order, but its cost is not the checkout team's cost in the window "
                     "(after the rule) over the orders confirmed in it")


# ----- right-sizing ------------------------------------------------------------------------------
def _p99(xs) -> float:
    return float(np.quantile(np.asarray(xs, dtype=float), 0.99)) if len(xs) else 0.0


def _p99_ms(cpu_cores: float, demand_cores: float, s_ms: float) -> float:
    """M/M/1 p99 response time (ms) of a replica with ``cpu_cores``, fed ``demand_cores`` of work."""
    if cpu_cores <= demand_cores:
        return math.inf
    return LN100 * s_ms / (cpu_cores - demand_cores)


def rightsizing_minimum(ev: CostEvidence, s: dict) -> dict[str, dict[str, float]]:
    """The smallest safe requests per Deployment of the evidence under scenario ``s`` (what the
    checks accept): memory p99 × margin, CPU for the p99 SLO at the top of the peak range."""
    out = {}
    for dep, d in ev.data["deployments"].items():
        demand = _p99(d["cpu_cores"]) * s["peak_range"][1]
        s_ms = s["cpu_ms_per_request"].get(dep, 2.0)
        out[dep] = {"cpu_cores": demand + LN100 * s_ms / s["slo_p99_ms"],
                    "memory_mb": _p99(d["pss_mb"]) * s["memory_margin"]}
    return out


def _monthly_request_cost(cpu: float, mem_mb: float, node: dict, spot: bool, discount: float) -> float:
    usd_h = cpu * node["cpuHourlyCost"] + mem_mb / 1024 * node["ramHourlyCostPerGiB"]
    return usd_h * HOURS_PER_MONTH * ((1 - discount) if spot else 1.0)


@exercise("day5.rightsizing", max_score=10)
def check_rightsizing(answer: Any, g: Grader) -> None:
    """Answer: ``{"evidence", "requests", "spot"}`` (see the module docstring)."""
    if not isinstance(answer, dict) or not answer:
        raise AnswerShapeError("answer: a dict with evidence, requests and spot")
    ev = _evidence(answer, "usage")
    reqs, spot = answer.get("requests"), answer.get("spot", [])
    deps = sorted(ev.data["deployments"])
    if not isinstance(reqs, dict) or set(reqs) != set(deps):
        raise AnswerShapeError(f"answer['requests']: one entry per Deployment of your evidence: {deps}")
    for dep, r in reqs.items():
        if not isinstance(r, dict) or not _is_number(r.get("cpu_cores")) or not _is_number(r.get("memory_mb")) \
                or r["cpu_cores"] <= 0 or r["memory_mb"] <= 0:
            raise AnswerShapeError(f"answer['requests'][{dep!r}]: {{'cpu_cores': > 0, 'memory_mb': > 0}}")
    if not isinstance(spot, (list, tuple, set)) or not set(spot) <= set(deps):
        raise AnswerShapeError(f"answer['spot']: a list of Deployments among {deps}")
    s = scenario("day5.rightsizing")
    node, disc = ev.data["node"], s["spot_discount"]
    rng = np.random.default_rng(variants.hidden_seeds("day5.rightsizing", 1)[0])
    days = [s["peak_range"][1], *rng.uniform(*s["peak_range"], size=s["hidden_days"])]
    tolerant = set(s["spot_tolerant"]) & set(deps)
    mem_ok, cpu_ok, shares, saving, best = [], [], [], 0.0, 0.0
    minimum = rightsizing_minimum(ev, s)
    for dep in deps:
        d, r = ev.data["deployments"][dep], reqs[dep]
        n = max(1, int(d.get("replicas", 1)))
        base = n * _monthly_request_cost(s["baseline"]["cpu_cores"], s["baseline"]["memory_mb"], node, False, disc)
        m_ok = r["memory_mb"] >= _p99(d["pss_mb"]) * s["memory_margin"] - 1e-9
        s_ms = s["cpu_ms_per_request"].get(dep, 2.0)
        c_ok = all(_p99_ms(r["cpu_cores"], _p99(d["cpu_cores"]) * f, s_ms) <= s["slo_p99_ms"] + 1e-9 for f in days)
        on_spot = dep in set(spot)
        safe = m_ok and c_ok and (not on_spot or dep in tolerant)
        mem_ok.append(m_ok)
        cpu_ok.append(c_ok)
        cost = n * _monthly_request_cost(r["cpu_cores"], r["memory_mb"], node, on_spot, disc)
        least = n * _monthly_request_cost(minimum[dep]["cpu_cores"], minimum[dep]["memory_mb"], node, dep in tolerant, disc)
        best += base - least
        if not safe:
            shares.append(0.0)
            continue
        saving += base - cost
        if base > least:            # the share of the possible saving this service makes
            shares.append(float(np.clip((base - cost) / (base - least), 0, 1)))
        else:                       # the baseline is below what is safe: the safe minimum is the best plan
            shares.append(1.0 if cost <= 1.1 * least else 0.0)
    frac = float(np.mean(shares))
    if frac >= 0.95:
        g.award(3, f"{saving:+.2f} USD a month against the baseline, within 5 % of the best safe plan per service")
    elif frac > 0:
        g.partial(3 * frac, f"{saving:+.2f} USD a month on the services it sizes safely; the best safe plan makes "
                            f"{best:+.2f}")
    else:
        g.miss("no saving on any service that is sized safely")
        g.suggest("Size each service from your own evidence: the p99 of what it used, scaled to the peak, "
                  "plus the headroom the queue needs; then compare with the baseline.")
    for label, oks, pts, hint in (
            ("memory ≥ p99 of the measured PSS × 1.1", mem_ok, 3,
             "A memory request below what the process holds at its p99 is an OOM kill waiting for a busy day."),
            ("CPU keeps the p99 within the SLO on every traffic day of the peak range", cpu_ok, 3,
             "A queue's p99 grows like 1/(capacity − load): at the top of the peak range, how much capacity "
             "above the load does ln(100)·s/(c − d) ≤ SLO leave?")):
        share = sum(oks) / len(oks)
        if share == 1 and frac >= 0.95:
            g.award(pts, f"{label} for every service")
        elif share > 0 and frac > 0:
            g.partial(pts * share * frac, f"{label}: {sum(oks)} of {len(oks)} services, counted with the saving")
        else:
            g.miss(f"{label}: {sum(oks)} of {len(oks)} services" + ("" if frac else ", and nothing is saved"))
            g.suggest(hint)
    if set(spot) == tolerant and frac > 0:
        g.award(1, "spot exactly for the services that tolerate interruptions")
    else:
        g.miss("spot must be used for exactly the services the scenario says tolerate interruptions")


# ----- alerts ------------------------------------------------------------------------------------
def alert_traces(s: dict, seeds: list[int]) -> list:
    """The hidden traces of the alert exercise: about half spend traces (week), half error traces."""
    from sim import alerts

    out = []
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        kind = i % 6
        if kind < 3:
            inc = []
            if kind == 0:
                inc = [alerts.Runaway(float(rng.uniform(12, 110)), float(rng.uniform(16, 40)), 3.0)]
            elif kind == 1:
                inc = [alerts.ForgottenCanary(float(rng.uniform(24, 72)),
                                              float(rng.uniform(0.2, 0.4)) * s["base_usd_per_h"])]
            out.append(alerts.spend_trace(days=s["spend_days"], base_usd_per_h=s["base_usd_per_h"], incidents=inc,
                                          seed=int(seed)))
        else:
            budget = 1 - s["slo"]
            inc = []
            if kind == 3:
                inc = [alerts.ErrorBurst(float(rng.uniform(6, 60)), float(rng.uniform(0.5, 1.5)),
                                         min(1.0, float(rng.uniform(20, 60)) * budget))]
            elif kind == 4:
                inc = [alerts.ErrorBurst(float(rng.uniform(6, 36)), float(rng.uniform(18, 30)),
                                         float(rng.uniform(3, 8)) * budget)]
            out.append(alerts.error_trace(days=s["error_days"], base_error_ratio=0.2 * budget, incidents=inc,
                                          seed=int(seed)))
    return out


def _budget_rule(b: dict):
    from sim import alerts

    if not isinstance(b, dict) or b.get("kind") not in ("threshold", "forecast"):
        raise AnswerShapeError("answer['budget']: {'kind': 'threshold', 'threshold_usd_per_h', 'for_s'} or "
                               "{'kind': 'forecast', 'budget_usd', 'horizon_s', 'lookback_s', 'for_s'}")
    try:
        if b["kind"] == "threshold":
            return alerts.ThresholdRule(float(b["threshold_usd_per_h"]), float(b.get("for_s", 0.0)))
        return alerts.ForecastRule(float(b["budget_usd"]), float(b["horizon_s"]), float(b.get("lookback_s", 21600)),
                                   float(b.get("for_s", 0.0)))
    except (KeyError, TypeError, ValueError) as err:
        raise AnswerShapeError(f"answer['budget']: {err}") from None


def _slo_rule(windows: Any, slo: float):
    from sim import alerts

    if not isinstance(windows, (list, tuple)) or not windows:
        raise AnswerShapeError("answer['slo']: a list of {'long_s', 'short_s', 'factor', 'severity'} windows")
    rules, pages = [], []
    for i, w in enumerate(windows):
        if not isinstance(w, dict) or w.get("severity") not in ("page", "ticket"):
            raise AnswerShapeError(f"answer['slo'][{i}]: {{'long_s', 'short_s', 'factor', 'severity': 'page'|'ticket'}}")
        try:
            rules.append(alerts.BurnRateRule(slo, float(w["long_s"]), float(w["short_s"]), float(w["factor"])))
        except (KeyError, TypeError, ValueError) as err:
            raise AnswerShapeError(f"answer['slo'][{i}]: {err}") from None
        if w["severity"] == "page":
            pages.append(float(w["factor"]))
    return alerts.MultiBurnRateRule(tuple(rules)), pages


@exercise("day5.alerts", max_score=10)
def check_alerts(answer: Any, g: Grader) -> None:
    """Answer: ``{"budget": {...}, "slo": [...]}`` (see the module docstring)."""
    from sim import alerts

    if not isinstance(answer, dict) or not answer:
        raise AnswerShapeError("answer: a dict with a budget rule and SLO burn-rate windows")
    s = scenario("day5.alerts")
    budget = _budget_rule(answer.get("budget"))
    slo, pages = _slo_rule(answer.get("slo"), s["slo"])
    tp = fp = found = total = 0
    detect = {"budget": [], "slo": []}
    for trace in alert_traces(s, variants.hidden_seeds("day5.alerts", s["traces"])):
        fam = "budget" if trace.kind == "spend" else "slo"
        ev = alerts.evaluate(budget if fam == "budget" else slo, trace, grace_s=3600.0)
        tp, fp = tp + ev.true_positives, fp + ev.false_positives
        found, total = found + sum(ev.detected), total + len(ev.detected)
        detect[fam] += [d / 3600.0 for d in ev.detection_s if d is not None]
    recall = found / total if total else 0.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    r_f, p_f = min(1.0, recall / 0.9), min(1.0, precision / 0.8)
    msg = f"recall {recall:.2f} ({found}/{total} incidents) and precision {precision:.2f} ({tp} of {tp + fp} alerts)"
    if r_f * p_f == 1:
        g.award(4, f"recall ≥ 0.9 on the hidden traces: {msg}")
        g.award(3, "precision ≥ 0.8 on the hidden traces")
    else:
        g.partial(4 * r_f * p_f, f"recall and precision count together: {msg}")
        g.partial(3 * r_f * p_f, "precision below 0.8 or recall below 0.9 costs both criteria")
        g.suggest("Alert on what threatens the budget or the error budget: a threshold above the daily peak "
                  "held for a while, burn rates over a long AND a short window.")
    for fam in ("budget", "slo"):
        target = s["detection_target_h"][fam]
        mean = float(np.mean(detect[fam])) if detect[fam] else math.inf
        if mean <= target and r_f * p_f > 0:
            g.award(1 * r_f * p_f, f"{fam}: mean detection {mean:.1f} h within the target {target:g} h")
        else:
            g.miss(f"{fam}: mean detection {mean:.1f} h; the target is {target:g} h")
    if pages and all(f >= 6 for f in pages) and r_f * p_f > 0:
        g.award(1 * r_f * p_f, "pages only for fast burns (factor ≥ 6)")
    else:
        g.miss("a page must be a fast burn (factor ≥ 6); slow burns are tickets")


# ----- the lab's cost report ---------------------------------------------------------------------
def lab_expected(cost: CostEvidence, usage: CostEvidence, s: dict) -> dict:
    """The grader's recomputation: allocation and efficiency per team, the right-sizing floor and
    the budget limits of the variant's policy."""
    from sim.finops import rightsize
    import pandas as pd

    lines, bill, _ = monthly_lines(cost)
    eff = {t: float(cost.data["allocation"][t].get("cpuEfficiency", 0.0)) for t in TEAMS if t in cost.data["allocation"]}
    rows = []
    for dep, d in usage.data["deployments"].items():
        rows += [{"container": dep, "cpu_cores": c, "memory_bytes": m * 2**20} for c, m in zip(d["cpu_cores"], d["pss_mb"])]
    rs = s["rightsize"]
    rec = rightsize(pd.DataFrame(rows), algorithm_cpu=rs["algorithm"], algorithm_ram=rs["algorithm"], q_cpu=rs["q"],
                    q_ram=rs["q"], target_cpu_utilization=rs["target_utilization"],
                    target_ram_utilization=rs["target_utilization"])
    floor = {dep: (float(rec.loc[dep, "cpu_recommended_cores"]), float(rec.loc[dep, "memory_recommended_bytes"]) / 2**20)
             for dep in rec.index}
    limits = {t: lines.get(t, 0.0) * (1 + s["budget_headroom"]) for t in TEAMS}
    return {"allocation_usd": {t: lines.get(t, 0.0) for t in TEAMS}, "efficiency": eff, "floor": floor,
            "limits": limits, "bill_usd": bill}


def _saving(dep: str, cpu: float, mem_mb: float, usage: CostEvidence) -> float:
    d, node = usage.data["deployments"][dep], usage.data["node"]
    n = max(1, int(d.get("replicas", 1)))
    return n * ((d["cpu_request_cores"] - cpu) * node["cpuHourlyCost"]
                + (d["memory_request_mb"] - mem_mb) / 1024 * node["ramHourlyCostPerGiB"]) * HOURS_PER_MONTH


@exercise("day5.lab_cost", max_score=10)
def check_lab_cost(answer: Any, g: Grader) -> None:
    """Answer: ``{"evidence", "usage_evidence", "allocation_usd", "efficiency", "recommendations",
    "budgets"}`` (see the module docstring)."""
    if not isinstance(answer, dict) or not answer:
        raise AnswerShapeError("answer: a dict with evidence, usage_evidence, allocation_usd, efficiency, "
                               "recommendations and budgets")
    cost = _evidence(answer, "cost")
    usage = _evidence({"evidence": answer.get("usage_evidence")}, "usage")
    s = scenario("day5.lab_cost")
    want = lab_expected(cost, usage, s)
    alloc, eff = answer.get("allocation_usd"), answer.get("efficiency")
    recs, budgets = answer.get("recommendations"), answer.get("budgets")
    if not isinstance(alloc, dict) or not isinstance(eff, dict):
        raise AnswerShapeError("answer['allocation_usd'] and answer['efficiency']: {team: number}")
    if not isinstance(recs, list) or not isinstance(budgets, list):
        raise AnswerShapeError("answer['recommendations'] and answer['budgets']: lists")
    # 1. the numbers
    checks = [(t in alloc and _is_number(alloc[t]) and _within(alloc[t], want["allocation_usd"][t], 0.02, 0.01))
              for t in TEAMS]
    checks += [(t in eff and _is_number(eff[t]) and _within(eff[t], want["efficiency"].get(t, -1), 0.02, 0.005))
               for t in TEAMS]
    share = sum(checks) / len(checks)
    if share == 1:
        g.award(3, "allocation and efficiency per team agree with the recomputation from your run's evidence")
    else:
        g.partial(3 * share, f"{sum(checks)} of {len(checks)} allocation/efficiency numbers agree with the "
                             f"recomputation from your run's evidence")
        g.suggest("Read the numbers from the allocation you captured (totalCost, cpuEfficiency) and scale the "
                  "window to a month with the bill's minutes.")
    # 2. recommendations
    good, seen = 0, set()
    for r in recs[:3]:
        if not isinstance(r, dict) or r.get("deployment") not in want["floor"] or r["deployment"] in seen:
            continue
        seen.add(r["deployment"])
        if not all(_is_number(r.get(k)) for k in ("cpu_cores", "memory_mb", "monthly_saving_usd")):
            continue
        floor_cpu, floor_mem = want["floor"][r["deployment"]]
        true = _saving(r["deployment"], r["cpu_cores"], r["memory_mb"], usage)
        if r["cpu_cores"] >= floor_cpu * 0.98 and r["memory_mb"] >= floor_mem * 0.98 \
                and _within(r["monthly_saving_usd"], true, 0.05, 0.01):
            good += 1
    if good == 3:
        g.award(3, "three recommendations, none below the right-sizing of your evidence, savings recomputed")
    else:
        g.partial(good, f"{good} of 3 recommendations are at or above the right-sizing of your evidence and "
                        f"claim the saving they make")
        g.suggest("sim.finops.rightsize on your usage evidence, with the scenario's algorithm and target "
                  "utilisation, gives the floor; the saving is (current − recommended) × the node's prices × 730 h.")
    # 3. budgets on hidden next months
    limits, acts = {}, {}
    for b in budgets:
        if isinstance(b, dict) and b.get("team") in TEAMS and _is_number(b.get("spend_limit_usd")) \
                and isinstance(b.get("actions"), (list, tuple)) and all(_is_number(a) for a in b["actions"]):
            limits[b["team"]], acts[b["team"]] = float(b["spend_limit_usd"]), sorted(float(a) for a in b["actions"])
    must_ok = must_n = mustnt_ok = mustnt_n = 0
    rng = np.random.default_rng(variants.hidden_seeds("day5.lab_cost", 1)[0])
    for _ in range(6):
        for t in TEAMS:
            spend = want["allocation_usd"][t] * float(rng.uniform(0.7, 1.6))
            for pct in (80.0, 100.0):
                should = spend >= want["limits"][t] * pct / 100 - 1e-12
                if pct == 100.0:
                    fired = t in limits and 100.0 in acts[t] and spend >= limits[t]
                else:
                    warn = [a for a in acts.get(t, []) if a < 100]
                    fired = bool(warn) and spend >= limits[t] * min(warn) / 100
                if should:
                    must_n, must_ok = must_n + 1, must_ok + fired
                else:
                    mustnt_n, mustnt_ok = mustnt_n + 1, mustnt_ok + (not fired)
    fire = (must_ok / must_n if must_n else 1.0) * (mustnt_ok / mustnt_n if mustnt_n else 1.0)
    if fire == 1:
        g.award(2, "every budget action fires exactly when it should on the hidden next months")
    else:
        g.partial(2 * fire, f"on the hidden next months {must_ok}/{must_n} actions that must fire did, "
                            f"{mustnt_ok}/{mustnt_n} that must not did not")
        g.suggest("A budget's limit follows the scenario's policy: the team's month at the run's rate plus "
                  "the headroom.")
    staged = [t for t in TEAMS if t in acts and 100.0 in acts[t] and any(a < 100 for a in acts[t])]
    if len(staged) == len(TEAMS) and fire > 0:
        g.award(2 * fire, "each team's budget warns before 100 % and acts at 100 %")
    else:
        g.miss(f"{len(staged)} of {len(TEAMS)} budgets have a warning before 100 % and an action at 100 %")


# ----- trivial answers ---------------------------------------------------------------------------
def _example_cost(v: int, orders: int = 40) -> CostEvidence:
    """Evidence of a made-up run (for the trivial answers and the tests), different per variant."""
    rng = np.random.default_rng([v, 5])
    minutes = 1.5
    node = {"name": "cloudmart-local", "instanceType": "general.large", "vcpu": 2, "memoryGiB": 8, "hourlyCost": 0.096,
            "purchase": "on_demand", "cpuHourlyCost": 0.031247, "ramHourlyCostPerGiB": 0.0041882}
    bill = 0.096 * minutes / 60
    own = {"catalog": rng.uniform(0.02, 0.05), "checkout": rng.uniform(0.08, 0.15), "messaging": rng.uniform(0.01, 0.03),
           "platform": rng.uniform(0.04, 0.07)}
    alloc = {k: {"totalCost": bill * x, "cpuEfficiency": float(rng.uniform(0.1, 0.8))} for k, x in own.items()}
    alloc[IDLE] = {"totalCost": bill - sum(a["totalCost"] for a in alloc.values()), "cpuEfficiency": 0.0}
    return _sign("cost", {"allocation": alloc, "bill": {"minutes": minutes, "totalCost": bill}, "node": node,
                          "confirmed_orders": orders, "start": 0.0, "end": minutes * 60, "aggregate": "label:team"})


def _example_usage(v: int) -> CostEvidence:
    rng = np.random.default_rng([v, 6])
    deps = {}
    for dep in DEPLOYMENTS:
        level = float(rng.uniform(0.01, 0.08))
        deps[dep] = {"cpu_cores": list(np.abs(rng.normal(level, level / 3, 60))),
                     "pss_mb": list(rng.uniform(55, 75, 60)), "cpu_request_cores": 0.05, "memory_request_mb": 96.0,
                     "replicas": 1}
    node = {"cpuHourlyCost": 0.031247, "ramHourlyCostPerGiB": 0.0041882, "instanceType": "general.large"}
    return _sign("usage", {"deployments": deps, "window_s": 60.0, "node": node})


def _cents(lines: dict[str, float], bill: float) -> dict[str, int]:
    target = round(bill * 100)
    raw = {k: x * 100 for k, x in lines.items()}
    cents = {k: math.floor(x) for k, x in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - cents[k], reverse=True)[:max(0, target - sum(cents.values()))]:
        cents[k] += 1
    return cents


@grading.trivial("day5.showback")
def _showback_trivial(v: int) -> dict[str, Any]:
    ev = _example_cost(v)
    _, bill, _ = monthly_lines(ev)
    cents = round(bill * 100)
    even = {t: cents // 3 for t in TEAMS}
    even["catalog"] += cents - sum(even.values())
    example, _ = showback_expected(ev, EXAMPLE_SHOWBACK_RULE)
    return {"empty": {},
            "uniform: the bill split evenly, an even rule": {"evidence": ev, "rule": {"shared": "even", "idle": "even"},
                                                             "table": even, "unit_metric": {"unit": "request", "usd_per_unit": 0.0}},
            "extreme: the whole bill on checkout": {"evidence": ev, "rule": {"shared": "weighted", "idle": "line"},
                                                    "table": {"checkout": cents, "catalog": 0, "messaging": 0},
                                                    "unit_metric": {"unit": "order", "usd_per_unit": 1.0}},
            "copied: the notebook's worked example rule": {
                "evidence": ev, "rule": dict(EXAMPLE_SHOWBACK_RULE), "table": _cents(example, bill),
                "unit_metric": {"unit": "confirmed order",
                                "usd_per_unit": example["checkout"] / monthly_lines(ev)[2] / ev.data["confirmed_orders"]}}}


@grading.trivial("day5.rightsizing")
def _rightsizing_trivial(v: int) -> dict[str, Any]:
    from sim.finops import rightsize
    import pandas as pd

    ev = _example_usage(v)
    rows = [{"container": d, "cpu_cores": c, "memory_bytes": m * 2**20}
            for d, x in ev.data["deployments"].items() for c, m in zip(x["cpu_cores"], x["pss_mb"])]
    rec = rightsize(pd.DataFrame(rows))   # Kubecost's defaults, as the notebook's example: no peak, no SLO
    copied = {d: {"cpu_cores": float(rec.loc[d, "cpu_recommended_cores"]),
                  "memory_mb": float(rec.loc[d, "memory_recommended_bytes"]) / 2**20} for d in rec.index}
    return {"empty": {},
            "uniform: one core and 1 GiB for everyone": {"evidence": ev, "spot": [],
                                                          "requests": {d: {"cpu_cores": 1.0, "memory_mb": 1024.0}
                                                                       for d in DEPLOYMENTS}},
            "extreme: 10 m and 20 MiB, everything on spot": {"evidence": ev, "spot": list(DEPLOYMENTS),
                                                             "requests": {d: {"cpu_cores": 0.01, "memory_mb": 20.0}
                                                                          for d in DEPLOYMENTS}},
            "copied: the notebook's Kubecost-default recommendation": {"evidence": ev, "spot": ["notification"],
                                                                        "requests": copied}}


@grading.trivial("day5.alerts")
def _alerts_trivial(v: int) -> dict[str, Any]:
    return {"empty": {},
            "uniform: alert on any spend and any error": {
                "budget": {"kind": "threshold", "threshold_usd_per_h": 0.0, "for_s": 0.0},
                "slo": [{"long_s": 300.0, "short_s": 300.0, "factor": 0.01, "severity": "page"}]},
            "extreme: never": {"budget": {"kind": "threshold", "threshold_usd_per_h": 1e9, "for_s": 0.0},
                               "slo": [{"long_s": 3600.0, "short_s": 300.0, "factor": 1e6, "severity": "ticket"}]},
            "copied: the notebook's demonstration rules": {"budget": dict(EXAMPLE_BUDGET_RULE),
                                                           "slo": [dict(w) for w in EXAMPLE_SLO_WINDOWS]}}


@grading.trivial("day5.lab_cost")
def _lab_trivial(v: int) -> dict[str, Any]:
    cost, usage = _example_cost(v), _example_usage(v)
    lines, bill, _ = monthly_lines(cost)
    flat = {t: bill / 3 for t in TEAMS}
    return {"empty": {},
            "uniform: a third of the bill each, the same budget for all": {
                "evidence": cost, "usage_evidence": usage, "allocation_usd": flat, "efficiency": {t: 0.5 for t in TEAMS},
                "recommendations": [{"deployment": d, "cpu_cores": 0.01, "memory_mb": 20.0, "monthly_saving_usd": 1.0}
                                    for d in ("auth", "order", "product")],
                "budgets": [{"team": t, "spend_limit_usd": bill / 3, "actions": [100]} for t in TEAMS]},
            "extreme: budgets that never fire": {
                "evidence": cost, "usage_evidence": usage, "allocation_usd": {t: 0.0 for t in TEAMS},
                "efficiency": {t: 1.0 for t in TEAMS}, "recommendations": [],
                "budgets": [{"team": t, "spend_limit_usd": 1e9, "actions": [80, 100]} for t in TEAMS]},
            "copied: the notebook's example report (the whole bill, no idle split, a single action)": {
                "evidence": cost, "usage_evidence": usage,
                "allocation_usd": {t: lines.get(t, 0.0) + lines.get(IDLE, 0.0) / 3 for t in TEAMS},
                "efficiency": {t: 1.0 for t in TEAMS},
                "recommendations": [{"deployment": "product", "cpu_cores": 0.01, "memory_mb": 20.0,
                                     "monthly_saving_usd": 0.5}],
                "budgets": [{"team": t, "spend_limit_usd": lines.get(t, 0.0), "actions": [100]} for t in TEAMS]}}


# ----- Challenge 5: cost optimisation scenarios ----------------------------------------------------
CHALLENGE_DEPLOYMENTS = ("auth", "inventory", "notification", "order", "payment", "product", "product-canary", "user")
CHALLENGE_VISITS = {"auth": 0.3, "inventory": 0.4, "notification": 0.2, "order": 0.2, "payment": 0.2,
                    "product": 0.9, "product-canary": 0.1, "user": 0.3}   # per request at the edge
SIDECAR_CORES = 0.05          # the mesh sidecar's CPU request per replica (mTLS on)
MAX_REPLICAS = 10
LIVE_MAX_REPLICAS = 3         # the live run applies min_replicas; more would not fit a laptop
DAYS_PER_MONTH = HOURS_PER_MONTH / 24.0
CHALLENGE_BAND = (0.95, 1.6)  # live allocation over the requests' floor: usage above requests, sampling


def _diurnal(peak_rps: float) -> np.ndarray:
    """24 hourly rates: a night trough at 35 % of the peak at 04:00, the peak at 16:00."""
    h = np.arange(24)
    return peak_rps * (0.35 + 0.65 * (0.5 - 0.5 * np.cos(2 * np.pi * (h - 4) / 24.0)))


def challenge_days(s: dict, seeds: list[int]) -> list[dict]:
    """The hidden traffic days: two ordinary days (peak ± 10 %) and a Black Friday (the peak times a
    factor drawn in the scenario's range); hourly edge rates, and the hour a spot interruption hits."""
    out = []
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        factor = float(rng.uniform(*s["black_friday_range"])) if i == len(seeds) - 1 else float(rng.uniform(0.9, 1.1))
        rates = _diurnal(s["peak_rps"] * factor) * rng.uniform(0.97, 1.03, 24)
        out.append({"factor": factor, "rps": rates, "interruption_hour": int(np.argmax(rates))})
    return out


def challenge_plan(answer: dict, s: dict, day: dict) -> dict:
    """One day of a configuration in the sim: per Deployment and hour the HPA's replicas (it sizes
    for the previous hour's demand at the target utilisation, within min and max; a spot
    interruption takes one replica at the interruption hour), the p99 of an M/M/1 replica
    (``ln(100)·s/(c − d)`` ms), and the day's cost in USD (spot at its discount, a sidecar per
    replica with mTLS)."""
    node, target = s["node"], float(answer["hpa_target_utilization"])
    spot = set(answer.get("spot", []))
    cost, p99, ok = 0.0, {}, {}
    for dep, cfg in answer["deployments"].items():
        c, lo, hi = float(cfg["cpu_cores"]), int(cfg["min_replicas"]), int(cfg["max_replicas"])
        s_ms = s["cpu_ms_per_request"][dep]
        demand = day["rps"] * CHALLENGE_VISITS[dep] * s_ms / 1000.0          # cores of work, hourly
        wanted = np.ceil(np.roll(demand, 1) / (target * c) - 1e-9)
        n = np.clip(wanted, lo, hi)
        if dep in spot:
            n = n.copy()
            n[day["interruption_hour"]] -= 1
        per = np.where(n > 0, demand / np.maximum(n, 1), np.inf)
        lat = np.where((n > 0) & (per < c), LN100 * s_ms / np.maximum(c - per, 1e-12), np.inf)
        p99[dep] = lat
        ok[dep] = lat <= s["slo_p99_ms"] + 1e-9
        per_h = c * node["cpuHourlyCost"] + float(cfg["memory_mb"]) / 1024 * node["ramHourlyCostPerGiB"]
        if answer.get("mtls", False):
            per_h += SIDECAR_CORES * node["cpuHourlyCost"]
        cost += float(np.maximum(n, 0).sum()) * per_h * ((1 - s["spot_discount"]) if dep in spot else 1.0)
    return {"cost_usd": cost, "p99_ms": p99, "ok": ok}


def challenge_month_usd(answer: dict, s: dict, days: list[dict]) -> float:
    """A month of days like ``days`` (their mean), plus the dev environment (off at weekends or not)."""
    per_day = float(np.mean([challenge_plan(answer, s, d)["cost_usd"] for d in days]))
    dev = s["dev_usd_per_month"] * ((5 / 7) if answer.get("dev_weekend_off") else 1.0)
    return per_day * DAYS_PER_MONTH + dev


def _challenge_scenario(v: int, rng) -> dict:
    from cluster.finops.pricing import VirtualNode

    node = VirtualNode().to_dict()
    if v == 0:
        peak, bf, slo, cpu_ms, tolerant, slack = 120.0, (2.0, 2.5), 150.0, {d: 4.0 for d in CHALLENGE_DEPLOYMENTS}, \
            ("notification", "product", "product-canary"), 1.8
        mem = {d: 110.0 for d in CHALLENGE_DEPLOYMENTS}
    else:
        peak = float(rng.choice([90.0, 120.0, 150.0]))
        low = float(np.round(rng.uniform(1.8, 2.4), 1))
        bf = (low, round(low + 0.5, 1))
        slo = float(rng.choice([120.0, 150.0, 200.0]))
        cpu_ms = {d: float(np.round(rng.uniform(2.5, 5.5), 1)) for d in CHALLENGE_DEPLOYMENTS}
        cpu_ms["product-canary"] = cpu_ms["product"]
        tolerant = (("notification", "product", "product-canary"), ("notification",),
                    ("notification", "product-canary"))[int(rng.integers(3))]
        slack = float(rng.choice([1.75, 1.8, 1.9]))
        mem = {d: float(np.round(rng.uniform(90, 140))) for d in CHALLENGE_DEPLOYMENTS}
    s = {"peak_rps": peak, "black_friday_range": list(bf), "slo_p99_ms": slo, "cpu_ms_per_request": cpu_ms,
         "visits": dict(CHALLENGE_VISITS), "spot_tolerant": list(tolerant), "spot_discount": 0.70,
         "memory_floor_mb": mem, "node": node, "sidecar_cores": SIDECAR_CORES, "dev_usd_per_month": 40.0,
         "max_replicas": MAX_REPLICAS, "live_max_replicas": LIVE_MAX_REPLICAS, "hidden_days": 3,
         "constraints": ["mtls stays on", "payment keeps >= 2 replicas", "memory >= the floor per Deployment",
                         "spot only for the tolerant Deployments"]}
    # the budget: the variant's slack times a floor no plan can beat on an ordinary day — every
    # hour, each Deployment's demand plus one replica's queueing headroom ln(100)·s/SLO in cores,
    # a sidecar and a memory floor per replica (two for payment), the dev environment off at weekends
    rps = _diurnal(peak)
    floor_h = 0.0
    for d in CHALLENGE_DEPLOYMENTS:
        n = 2 if d == "payment" else 1
        cores = rps * CHALLENGE_VISITS[d] * cpu_ms[d] / 1000.0 + LN100 * cpu_ms[d] / slo + n * SIDECAR_CORES
        floor_h += float(np.sum(cores)) * node["cpuHourlyCost"] + 24 * n * mem[d] / 1024 * node["ramHourlyCostPerGiB"]
    s["budget_usd_per_month"] = round(slack * (floor_h * DAYS_PER_MONTH + s["dev_usd_per_month"] * 5 / 7), 2)
    return s


def capture_challenge(cm: Any, start: float, end: float, load: Any) -> CostEvidence:
    """Signed evidence of the live run of a configuration between ``start`` and ``end``: the
    replicas per Deployment (status), the accumulated allocation by pod with the declared node,
    and the load's summary (p99, error rate)."""
    if not (_is_number(start) and _is_number(end)) or end <= start:
        raise ValueError(f"start, end: got {start!r}, {end!r}; valid: Unix seconds with start < end")
    summary = getattr(load, "summary", None)
    if not isinstance(summary, dict) or "p99_ms" not in summary:
        raise ValueError("load: the result of cm.load(...) of the run")
    alloc = cm.opencost.allocation(f"{start:.3f},{end:.3f}", aggregate="pod", accumulate=True)
    replicas = {d: int(x["ready"]) for d, x in cm.status()["deployments"].items()}
    pods = {k: {"totalCost": float(v["totalCost"]), "cpuCoreRequestAverage": float(v["cpuCoreRequestAverage"]),
                "ramByteRequestAverage": float(v["ramByteRequestAverage"])} for k, v in alloc["data"][0].items()}
    return _sign("challenge", {"replicas": replicas, "pods": pods, "node": alloc["node"], "start": start, "end": end,
                               "load": {k: summary[k] for k in ("sent", "error_rate", "p99_ms", "p50_ms")}})


def challenge_live_floor(ev: CostEvidence) -> tuple[float, float]:
    """(measured, floor): a month at the run's rate of the pods' allocation, and of their requests."""
    node, minutes = ev.data["node"], (ev.data["end"] - ev.data["start"]) / 60.0
    measured = sum(p["totalCost"] for p in ev.data["pods"].values()) * HOURS_PER_MONTH * 60.0 / minutes
    floor = HOURS_PER_MONTH * sum(p["cpuCoreRequestAverage"] * node["cpuHourlyCost"]
                                  + p["ramByteRequestAverage"] / 2**30 * node["ramHourlyCostPerGiB"]
                                  for p in ev.data["pods"].values())
    return measured, floor


def _challenge_shape(answer: Any) -> dict:
    if not isinstance(answer, dict) or not answer:
        raise AnswerShapeError("answer: a dict with deployments, hpa_target_utilization, spot, mtls, "
                               "dev_weekend_off and evidence")
    deps = answer.get("deployments")
    if not isinstance(deps, dict) or set(deps) != set(CHALLENGE_DEPLOYMENTS):
        raise AnswerShapeError(f"answer['deployments']: one entry per Deployment: {list(CHALLENGE_DEPLOYMENTS)}")
    for dep, cfg in deps.items():
        ok = isinstance(cfg, dict) and all(_is_number(cfg.get(k)) for k in ("min_replicas", "max_replicas",
                                                                            "cpu_cores", "memory_mb"))
        if not ok or not (1 <= cfg["min_replicas"] <= cfg["max_replicas"] <= MAX_REPLICAS) \
                or int(cfg["min_replicas"]) != cfg["min_replicas"] or int(cfg["max_replicas"]) != cfg["max_replicas"] \
                or not 0.01 <= cfg["cpu_cores"] <= 4 or not 16 <= cfg["memory_mb"] <= 8192:
            raise AnswerShapeError(f"answer['deployments'][{dep!r}]: whole min_replicas <= max_replicas in "
                                   f"1..{MAX_REPLICAS}, cpu_cores in 0.01..4, memory_mb in 16..8192")
    t = answer.get("hpa_target_utilization")
    if not _is_number(t) or not 0.1 <= t <= 0.95:
        raise AnswerShapeError("answer['hpa_target_utilization']: a number in 0.1..0.95")
    spot = answer.get("spot", [])
    if not isinstance(spot, (list, tuple, set)) or not set(spot) <= set(CHALLENGE_DEPLOYMENTS):
        raise AnswerShapeError(f"answer['spot']: a list of Deployments among {list(CHALLENGE_DEPLOYMENTS)}")
    if not isinstance(answer.get("mtls"), bool) or not isinstance(answer.get("dev_weekend_off", False), bool):
        raise AnswerShapeError("answer['mtls'] and answer['dev_weekend_off']: True or False")
    return deps


@exercise("day5.challenge", max_score=10)
def check_challenge(answer: Any, g: Grader) -> None:
    """Answer: ``{"deployments", "hpa_target_utilization", "spot", "mtls", "dev_weekend_off",
    "evidence"}`` (see the module docstring)."""
    deps = _challenge_shape(answer)
    ev = _evidence(answer, "challenge")
    s = scenario("day5.challenge")
    days = challenge_days(s, variants.hidden_seeds("day5.challenge", s["hidden_days"]))
    plans = [challenge_plan(answer, s, d) for d in days]
    hours = [bool(np.all(p["ok"][dep])) for p in plans for dep in CHALLENGE_DEPLOYMENTS]
    # per day the share of Deployments within the SLO every hour, multiplied over the days: a plan
    # that holds on ordinary days and breaks on Black Friday keeps little
    slo_share = float(np.prod([np.mean([bool(np.all(p["ok"][dep])) for dep in CHALLENGE_DEPLOYMENTS])
                               for p in plans]))
    month = challenge_month_usd(answer, s, days)
    budget = s["budget_usd_per_month"]
    bf = 1.0 if month <= budget else max(0.0, 1.0 - (month / budget - 1.0) / 0.25)
    both = slo_share * bf
    worst = max(float(np.max(p["p99_ms"][dep])) for p in plans for dep in CHALLENGE_DEPLOYMENTS)
    if both == 1:
        g.award(4, f"the p99 stays within {s['slo_p99_ms']:g} ms every hour of the three hidden days, "
                   f"Black Friday included (worst {worst:.0f} ms)")
    else:
        g.partial(4 * both, f"SLO met for {sum(hours)} of {len(hours)} Deployment-days, counted with the budget")
        g.suggest("Size for the Black Friday peak the HPA reaches one hour late: the replicas it adds are "
                  "sized for the previous hour's demand at your target utilisation, so max_replicas and the "
                  "target decide what the peak gets.")
    if both == 1:
        g.award(3, f"{month:.2f} USD a month within the budget of {budget:.2f}")
    else:
        g.partial(3 * both, f"{month:.2f} USD a month against the budget of {budget:.2f}, counted with the SLO")
        g.suggest("Cost follows replica-hours: a high floor of replicas all night, a canary as big as the "
                  "stable version and a dev environment running at weekends are paid for every hour.")
    tolerant = set(s["spot_tolerant"])
    checks = {"mTLS stays on": answer["mtls"] is True,
              "payment keeps >= 2 replicas": deps["payment"]["min_replicas"] >= 2,
              "memory >= the floor everywhere": all(deps[d]["memory_mb"] >= s["memory_floor_mb"][d] for d in deps),
              "spot only where interruptions are tolerated": set(answer.get("spot", [])) <= tolerant}
    kept = [k for k, v in checks.items() if v]
    if len(kept) == len(checks) and both > 0:
        g.award(2 * both, "every constraint is respected: " + ", ".join(kept))
    else:
        g.partial(2 * both * len(kept) / len(checks), "constraints broken: "
                  + ", ".join(k for k, v in checks.items() if not v) if len(kept) < len(checks) else
                  "constraints respected, but the plan misses the SLO or the budget")
    measured, floor = challenge_live_floor(ev)
    applied = {d: min(int(deps[d]["min_replicas"]), LIVE_MAX_REPLICAS) for d in deps if d in ev.data["replicas"]}
    same = all(ev.data["replicas"][d] == n for d, n in applied.items())
    ratio = measured / floor if floor > 0 else math.inf
    consistent = same and CHALLENGE_BAND[0] <= ratio <= CHALLENGE_BAND[1] and ev.data["load"]["error_rate"] < 0.05
    if consistent and both > 0:
        g.award(1 * both, f"the live run had your replicas, and its cost is {ratio:.2f}x the requests' floor "
                          f"(band {CHALLENGE_BAND[0]:g}-{CHALLENGE_BAND[1]:g})")
    elif consistent:
        g.miss("the live evidence matches the prediction, but it counts only with the SLO and the budget")
    else:
        g.miss(f"the live evidence does not match the prediction: replicas as planned {same}, cost "
               f"{ratio:.2f}x the floor (band {CHALLENGE_BAND[0]:g}-{CHALLENGE_BAND[1]:g}), error rate "
               f"{ev.data['load']['error_rate']:.2f}")


# the notebook's starting point: the configuration CloudMart runs today (not the answer)
EXAMPLE_CHALLENGE = {
    "deployments": {d: {"min_replicas": 2, "max_replicas": 4, "cpu_cores": 0.5, "memory_mb": 256.0}
                    for d in CHALLENGE_DEPLOYMENTS},
    "hpa_target_utilization": 0.7, "spot": [], "mtls": True, "dev_weekend_off": False}


def _example_challenge(v: int, replicas: dict[str, int] | None = None) -> CostEvidence:
    """Evidence of a made-up live run (for the trivial answers and the tests)."""
    rng = np.random.default_rng([v, 7])
    node = {"cpuHourlyCost": 0.031247, "ramHourlyCostPerGiB": 0.0041882, "instanceType": "general.large"}
    replicas = replicas or {d: 1 for d in CHALLENGE_DEPLOYMENTS}
    pods, minutes = {}, 1.0
    for dep, n in replicas.items():
        for i in range(n):
            cpu, ram = 0.05, 96 * 2**20
            floor_h = cpu * node["cpuHourlyCost"] + ram / 2**30 * node["ramHourlyCostPerGiB"]
            pods[f"{dep}-{i}"] = {"totalCost": floor_h * float(rng.uniform(1.0, 1.3)) * minutes / 60,
                                  "cpuCoreRequestAverage": cpu, "ramByteRequestAverage": ram}
    return _sign("challenge", {"replicas": dict(replicas), "pods": pods, "node": node, "start": 0.0, "end": minutes * 60,
                               "load": {"sent": 600, "error_rate": 0.0, "p99_ms": 40.0, "p50_ms": 8.0}})


@grading.trivial("day5.challenge")
def _challenge_trivial(v: int) -> dict[str, Any]:
    def live(answer):
        return _example_challenge(v, {d: min(int(c["min_replicas"]), LIVE_MAX_REPLICAS)
                                      for d, c in answer["deployments"].items()})

    uniform = {"deployments": {d: {"min_replicas": 2, "max_replicas": 2, "cpu_cores": 1.0, "memory_mb": 256.0}
                               for d in CHALLENGE_DEPLOYMENTS},
               "hpa_target_utilization": 0.5, "spot": [], "mtls": True, "dev_weekend_off": False}
    extreme = {"deployments": {d: {"min_replicas": 1, "max_replicas": 1, "cpu_cores": 0.05, "memory_mb": 16.0}
                               for d in CHALLENGE_DEPLOYMENTS},
               "hpa_target_utilization": 0.95, "spot": list(CHALLENGE_DEPLOYMENTS), "mtls": False,
               "dev_weekend_off": True}
    copied = json.loads(json.dumps(EXAMPLE_CHALLENGE))
    out = {"empty": {}}
    for name, a in (("uniform: two one-core replicas of everything", uniform),
                    ("extreme: one tiny replica of everything, all on spot, mTLS off", extreme),
                    ("copied: the notebook's starting configuration", copied)):
        out[name] = {**a, "evidence": live(a)}
    return out
