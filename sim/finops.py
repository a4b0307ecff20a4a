"""FinOps models on top of :mod:`sim.cost`: right-sizing, purchase plans, unit cost, diurnal load.

* :func:`rightsize` follows Kubecost's container request right-sizing (``savings/requestSizingV2``,
  Kubecost documentation): per container spec, a *base* recommendation from the observed usage of
  every replica in the window — ``max`` (the maximum observed) or ``quantile`` (the ``q`` quantile of
  the observed samples) — divided by the target utilisation (``targetCPUUtilization``, default 0.7:
  a base of 100 m at 0.8 recommends 125 m), floored at ``minRecCPUMillicores`` (10) and
  ``minRecRAMBytes`` (20 MiB); monthly savings are (current − recommended) × the resource price ×
  730 h. This is CloudMart's implementation of Kubecost's documented behaviour; Kubecost itself is
  not run. Numpy's default (linear) quantile is used; Kubecost does not document its estimator.
* :func:`purchase_plan` bills an hourly node demand under on-demand, reserved instances (a fixed
  count paid every hour), a savings plan (a USD/h commitment at a discount, as AWS Savings Plans:
  usage is charged at the plan's rate up to the commitment, the rest on demand, unused commitment
  is lost) and spot (a share of the nodes at the spot price, with expected interruptions).
  :func:`optimal_reserved` finds the cheapest reserved count; theory: reserve the n-th node iff
  it is busy in at least a fraction ``1 − reserved_discount`` of the hours (the newsvendor rule).
* :func:`unit_cost` — cost per unit (order, request) with fixed costs amortised:
  ``fixed_usd_per_h / units_per_h + variable_usd_per_unit``.
* :func:`diurnal_load` — a daily sinusoid of request rates as :func:`sim.load_steps` (hourly
  steps, usable by :class:`sim.HPAScenario`); :func:`hpa_node_hours` — the replicas an HPA
  would hold per hour (``ceil(load / (capacity × target))`` within min/max) and the node-hours they
  need, against provisioning for the peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ._validate import check_fraction, check_int, check_nonnegative, check_positive
from .cost import HOURS_PER_MONTH, OPENCOST_CPU_USD_PER_CORE_H, OPENCOST_RAM_USD_PER_GIB_H, _instance

__all__ = ["rightsize", "purchase_plan", "PurchasePlan", "optimal_reserved", "unit_cost", "diurnal_load",
           "hpa_node_hours", "ALGORITHMS"]

ALGORITHMS = ("max", "quantile")
MIN_REC_CPU_MILLICORES = 10.0
MIN_REC_RAM_BYTES = 20 * 1024 * 1024


def _base(samples: np.ndarray, algorithm: str, q: float | None, what: str) -> float:
    if algorithm == "max":
        return float(samples.max())
    if algorithm == "quantile":
        if q is None or isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q <= 1:
            raise ValueError(f"q{what}: got {q!r}; valid: a quantile in (0, 1] (needed with algorithm{what}='quantile')")
        return float(np.quantile(samples, q))
    raise ValueError(f"algorithm{what}: got {algorithm!r}; valid: one of {list(ALGORITHMS)}")


def _target(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{name}: got {value!r}; valid: a utilisation in (0, 1]")
    return float(value)


def rightsize(usage: pd.DataFrame, requests: Mapping[str, tuple[float, float]] | None = None, *,
              algorithm_cpu: str = "max", algorithm_ram: str = "max", q_cpu: float | None = None,
              q_ram: float | None = None, target_cpu_utilization: float = 0.7,
              target_ram_utilization: float = 0.7, min_rec_cpu_millicores: float = MIN_REC_CPU_MILLICORES,
              min_rec_ram_bytes: float = MIN_REC_RAM_BYTES,
              cpu_usd_per_core_h: float = OPENCOST_CPU_USD_PER_CORE_H,
              ram_usd_per_gib_h: float = OPENCOST_RAM_USD_PER_GIB_H) -> pd.DataFrame:
    """Kubecost-style request recommendations per container spec.

    ``usage``: one row per usage sample with columns ``container`` (the spec: e.g. the
    Deployment), ``cpu_cores`` and ``memory_bytes`` (the samples of every replica of it; a
    usage-recorder frame with ``deployment``/``pss_mb`` works too). ``requests``: container ->
    (cpu cores, memory bytes) currently requested, for the savings and efficiency columns.
    Returns one row per container: ``cpu_recommended_cores``, ``memory_recommended_bytes``, the
    base values, ``cpu_latest_cores``/``memory_latest_bytes``, ``monthly_savings_usd`` (cpu,
    memory, total; negative when the recommendation is larger) and ``cpu_efficiency`` (mean usage
    / request)."""
    if not isinstance(usage, pd.DataFrame):
        raise ValueError(f"usage: got {type(usage).__name__}; valid: a DataFrame of usage samples")
    frame = usage.copy()
    if "container" not in frame and "deployment" in frame:
        frame["container"] = frame["deployment"]
    if "memory_bytes" not in frame and "pss_mb" in frame:
        frame["memory_bytes"] = frame["pss_mb"] * 2**20
    missing = [c for c in ("container", "cpu_cores", "memory_bytes") if c not in frame]
    if missing:
        raise ValueError(f"usage: missing columns {missing}; valid: container, cpu_cores, memory_bytes")
    t_cpu = _target("target_cpu_utilization", target_cpu_utilization)
    t_ram = _target("target_ram_utilization", target_ram_utilization)
    check_nonnegative("min_rec_cpu_millicores", min_rec_cpu_millicores)
    check_nonnegative("min_rec_ram_bytes", min_rec_ram_bytes)
    check_nonnegative("cpu_usd_per_core_h", cpu_usd_per_core_h)
    check_nonnegative("ram_usd_per_gib_h", ram_usd_per_gib_h)
    rows = []
    for name, group in frame.groupby("container", sort=True):
        cpu = pd.to_numeric(group["cpu_cores"], errors="coerce").dropna().to_numpy(float)
        mem = pd.to_numeric(group["memory_bytes"], errors="coerce").dropna().to_numpy(float)
        if not len(cpu) or not len(mem):
            raise ValueError(f"usage[{name!r}]: no usage samples; valid: at least one cpu and one memory sample")
        if (cpu < 0).any() or (mem < 0).any():
            raise ValueError(f"usage[{name!r}]: negative usage; valid: samples >= 0")
        base_cpu = _base(cpu, algorithm_cpu, q_cpu, "_cpu")
        base_mem = _base(mem, algorithm_ram, q_ram, "_ram")
        rec_cpu = max(base_cpu / t_cpu, min_rec_cpu_millicores / 1000.0)
        rec_mem = max(base_mem / t_ram, float(min_rec_ram_bytes))
        req = (requests or {}).get(name)
        row = {"container": name, "samples": int(len(cpu)), "cpu_base_cores": base_cpu,
               "memory_base_bytes": base_mem, "cpu_recommended_cores": rec_cpu, "memory_recommended_bytes": rec_mem,
               "cpu_latest_cores": None, "memory_latest_bytes": None, "cpu_savings_usd": None,
               "memory_savings_usd": None, "monthly_savings_usd": None, "cpu_efficiency": None}
        if req is not None:
            cur_cpu = check_nonnegative(f"requests[{name!r}][0]", req[0])
            cur_mem = check_nonnegative(f"requests[{name!r}][1]", req[1])
            cpu_sav = (cur_cpu - rec_cpu) * cpu_usd_per_core_h * HOURS_PER_MONTH
            mem_sav = (cur_mem - rec_mem) / 2**30 * ram_usd_per_gib_h * HOURS_PER_MONTH
            row.update(cpu_latest_cores=cur_cpu, memory_latest_bytes=cur_mem, cpu_savings_usd=cpu_sav,
                       memory_savings_usd=mem_sav, monthly_savings_usd=cpu_sav + mem_sav,
                       cpu_efficiency=float(cpu.mean() / cur_cpu) if cur_cpu else None)
        rows.append(row)
    return pd.DataFrame(rows).set_index("container")


@dataclass(frozen=True)
class PurchasePlan:
    """An hourly bill under a purchase mix (USD); ``hourly`` has one row per hour."""

    hourly: pd.DataFrame
    total_usd: float
    on_demand_only_usd: float
    reserved_nodes: int
    savings_plan_usd_per_h: float
    spot_fraction: float
    expected_spot_interruptions: float

    @property
    def saving_fraction(self) -> float:
        return 1 - self.total_usd / self.on_demand_only_usd if self.on_demand_only_usd else 0.0


def purchase_plan(node_demand: Sequence[float], instance_type="general.xlarge", *, reserved_nodes: int = 0,
                  savings_plan_usd_per_h: float = 0.0, savings_plan_discount: float = 0.28,
                  spot_fraction: float = 0.0, price_sheet=None) -> PurchasePlan:
    """Bill ``node_demand`` (nodes needed in each hour) of one instance type.

    Per hour, with d nodes wanted: ``spot_fraction × d`` run on spot (spot price); of the rest,
    up to ``reserved_nodes`` are reserved — every reserved node is paid every hour, used or not;
    the remaining node-hours cost the savings-plan rate (on-demand × (1 − discount)) out of the
    hourly commitment ``savings_plan_usd_per_h`` (paid in full every hour), and whatever the
    commitment does not cover is billed on demand."""
    inst = _instance(instance_type, price_sheet)
    demand = np.asarray(node_demand, dtype=float)
    if demand.ndim != 1 or not len(demand) or not np.isfinite(demand).all() or (demand < 0).any():
        raise ValueError(f"node_demand: got {node_demand!r}; valid: a non-empty sequence of node counts >= 0")
    check_int("reserved_nodes", reserved_nodes, 0)
    check_nonnegative("savings_plan_usd_per_h", savings_plan_usd_per_h)
    check_fraction("savings_plan_discount", savings_plan_discount, closed_high=False)
    check_fraction("spot_fraction", spot_fraction)
    od = inst.price_usd_per_h("on_demand")
    spot_nodes = demand * spot_fraction
    rest = demand - spot_nodes
    reserved_used = np.minimum(rest, reserved_nodes)
    remaining = rest - reserved_used
    sp_rate_cost = remaining * od * (1 - savings_plan_discount)
    covered = np.minimum(sp_rate_cost, savings_plan_usd_per_h)
    uncovered_on_demand = (sp_rate_cost - covered) / (1 - savings_plan_discount)
    hourly = pd.DataFrame({
        "demand_nodes": demand, "spot_nodes": spot_nodes, "reserved_used_nodes": reserved_used,
        "spot_usd": spot_nodes * inst.price_usd_per_h("spot"),
        "reserved_usd": np.full(len(demand), reserved_nodes * inst.price_usd_per_h("reserved")),
        "savings_plan_usd": np.full(len(demand), float(savings_plan_usd_per_h)),
        "savings_plan_unused_usd": savings_plan_usd_per_h - covered,
        "on_demand_usd": uncovered_on_demand,
    })
    hourly["total_usd"] = hourly.spot_usd + hourly.reserved_usd + hourly.savings_plan_usd + hourly.on_demand_usd
    return PurchasePlan(hourly, float(hourly.total_usd.sum()), float(demand.sum() * od), int(reserved_nodes),
                        float(savings_plan_usd_per_h), float(spot_fraction),
                        float(spot_nodes.sum() * inst.spot_interruptions_per_h))


def optimal_reserved(node_demand: Sequence[float], instance_type="general.xlarge", price_sheet=None) -> int:
    """The reserved-node count with the lowest bill (on-demand for the rest), by trying each."""
    demand = np.asarray(node_demand, dtype=float)
    if demand.ndim != 1 or not len(demand):
        raise ValueError(f"node_demand: got {node_demand!r}; valid: a non-empty sequence of node counts >= 0")
    top = int(math.ceil(demand.max()))
    costs = [purchase_plan(demand, instance_type, reserved_nodes=n, price_sheet=price_sheet).total_usd
             for n in range(top + 1)]
    return int(np.argmin(costs))


def unit_cost(fixed_usd_per_h: float, variable_usd_per_unit: float, units_per_h) -> np.ndarray | float:
    """Cost per unit at ``units_per_h``: fixed cost amortised over the units plus the variable
    cost of one (the unit-economics curve: falls as 1/volume towards the variable cost)."""
    check_nonnegative("fixed_usd_per_h", fixed_usd_per_h)
    check_nonnegative("variable_usd_per_unit", variable_usd_per_unit)
    units = np.asarray(units_per_h, dtype=float)
    if not np.isfinite(units).all() or (units <= 0).any():
        raise ValueError(f"units_per_h: got {units_per_h!r}; valid: numbers > 0")
    out = fixed_usd_per_h / units + variable_usd_per_unit
    return float(out) if out.ndim == 0 else out


def diurnal_load(mean_rps: float, amplitude: float = 0.5, peak_hour: float = 14.0, hours: int = 24,
                 step_s: float = 3600.0) -> tuple:
    """Piecewise-constant load (``sim.load_steps`` form) following
    ``mean_rps × (1 + amplitude × cos(2π (h − peak_hour) / 24))``, sampled at each step's middle."""
    check_positive("mean_rps", mean_rps)
    check_fraction("amplitude", amplitude)
    check_int("hours", hours, 1)
    check_positive("step_s", step_s)
    n = int(round(hours * 3600 / step_s))
    if n < 1:
        raise ValueError(f"step_s: got {step_s!r}; valid: at most hours × 3600")
    mids_h = (np.arange(n) + 0.5) * step_s / 3600.0
    rates = mean_rps * (1 + amplitude * np.cos(2 * np.pi * (mids_h - peak_hour) / 24.0))
    return tuple((float(i * step_s), float(r)) for i, r in enumerate(rates))


def hpa_node_hours(load_steps: tuple, rps_per_replica: float, target_utilization: float = 0.7,
                   min_replicas: int = 1, max_replicas: int = 100, replicas_per_node: int = 4) -> pd.DataFrame:
    """Steady-state HPA replicas per step of a load (``ceil(rate / (rps_per_replica × target))``
    within min/max; the HPA's formula at equilibrium), the nodes they need and the node-hours,
    with the peak-provisioned baseline (the peak's replicas all day) alongside."""
    check_positive("rps_per_replica", rps_per_replica)
    t = _target("target_utilization", target_utilization)
    check_int("min_replicas", min_replicas, 1)
    check_int("max_replicas", max_replicas, min_replicas)
    check_int("replicas_per_node", replicas_per_node, 1)
    if not load_steps:
        raise ValueError("load_steps: got none; valid: (start_s, rate_per_s) pairs, e.g. diurnal_load(...)")
    starts = np.array([s for s, _ in load_steps], dtype=float)
    rates = np.array([r for _, r in load_steps], dtype=float)
    widths = np.diff(np.append(starts, starts[-1] + (starts[1] - starts[0] if len(starts) > 1 else 3600.0)))
    replicas = np.clip(np.ceil(rates / (rps_per_replica * t) - 1e-9), min_replicas, max_replicas).astype(int)
    nodes = np.ceil(replicas / replicas_per_node).astype(int)
    frame = pd.DataFrame({"start_s": starts, "rate_per_s": rates, "replicas": replicas, "nodes": nodes,
                          "node_hours": nodes * widths / 3600.0})
    peak_nodes = int(nodes.max())
    frame.attrs["node_hours"] = float(frame.node_hours.sum())
    frame.attrs["peak_provisioned_node_hours"] = float(peak_nodes * widths.sum() / 3600.0)
    return frame
