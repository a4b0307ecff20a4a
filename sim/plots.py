"""Plots that take results (never run a model themselves).

Each function draws on ``ax`` (a new figure if ``None``) and returns the Axes. Titles state the
finding when the caller gives none; axes carry units; a legend appears only with several series.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

__all__ = ["plot_percentiles_vs_load", "plot_latency_cdf", "plot_cost_slo_frontier", "plot_autoscaling"]


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 4))
    return ax


def _legend(ax):
    handles, labels = ax.get_legend_handles_labels()
    if len(labels) > 1:
        ax.legend(frameon=False)


def plot_percentiles_vs_load(
    frame: pd.DataFrame,
    x: str = "rate_per_s",
    percentiles=("p50", "p99"),
    measured: pd.DataFrame | None = None,
    theory: Mapping[str, np.ndarray] | None = None,
    ax=None,
    title: str | None = None,
):
    """Latency percentiles (ms) against load, with confidence bands from :func:`sim.sweep`.

    ``measured`` (same ``x`` column and ``p50_ms``/``p99_ms`` columns, e.g. from
    ``cm.load(...)`` summaries) is drawn as points; ``theory`` maps a label to values at ``frame[x]``.
    """
    ax = _axes(ax)
    if x not in frame:
        raise ValueError(f"x: got {x!r}; valid: one of the frame's columns {list(frame.columns)}")
    for p in percentiles:
        col = f"{p}_ms"
        if col not in frame:
            raise ValueError(f"percentiles: got {p!r}; valid: names with a '{p}_ms' column, e.g. 'p50', 'p99'")
        line, = ax.plot(frame[x], frame[col], marker="o", label=f"{p} simulated")
        if f"{col}_low" in frame:
            ax.fill_between(frame[x], frame[f"{col}_low"], frame[f"{col}_high"], alpha=0.2, color=line.get_color())
        if measured is not None and col in measured:
            ax.plot(measured[x], measured[col], linestyle="none", marker="x", markersize=9,
                    color=line.get_color(), label=f"{p} measured")
    for label, values in (theory or {}).items():
        ax.plot(frame[x], values, linestyle="--", color="grey", label=label)
    ax.set_xlabel(x.replace("_per_s", " (req/s)").replace("_", " "))
    ax.set_ylabel("latency (ms)")
    if title is None:
        last = f"{percentiles[-1]}_ms"
        lo, hi = frame[last].iloc[0], frame[last].iloc[-1]
        title = (f"{percentiles[-1]} grows {hi / lo:.1f}× from {frame[x].iloc[0]:g} to {frame[x].iloc[-1]:g}"
                 if lo > 0 else f"{percentiles[-1]} against load")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend(ax)
    return ax


def _latencies_ms(value) -> np.ndarray:
    if hasattr(value, "latency_ms") and not isinstance(value, pd.DataFrame):
        return np.asarray(value.latency_ms)
    if hasattr(value, "response_times_s"):
        return np.asarray(value.response_times_s) * 1000.0
    if isinstance(value, pd.DataFrame) and "latency_ms" in value:
        return value["latency_ms"].to_numpy()
    return np.asarray(value, dtype=float)


def plot_latency_cdf(series: Mapping[str, object], ax=None, title: str | None = None, log_x: bool = True):
    """Empirical CDFs of latency (ms). Values are results, DataFrames with ``latency_ms`` or arrays."""
    ax = _axes(ax)
    p99s = {}
    for label, value in series.items():
        x = np.sort(_latencies_ms(value))
        if x.size == 0:
            continue
        y = np.arange(1, x.size + 1) / x.size
        ax.step(x, y, where="post", label=label)
        p99s[label] = float(np.quantile(x, 0.99))
    if log_x:
        ax.set_xscale("log")
    ax.axhline(0.99, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    if title is None and p99s:
        worst = max(p99s, key=p99s.get)
        title = f"{worst} has the longest tail: p99 {p99s[worst]:.3g} ms"
    ax.set_title(title or "latency CDF")
    ax.grid(alpha=0.3)
    _legend(ax)
    return ax


def plot_cost_slo_frontier(frame: pd.DataFrame, slo_p99_ms: float | None = None, label: str | None = None,
                           ax=None, title: str | None = None):
    """Cost (USD/h) against p99 (ms) of candidate plans, with the Pareto frontier and the SLO."""
    ax = _axes(ax)
    for col in ("cost_usd_per_h", "p99_ms"):
        if col not in frame:
            raise ValueError(f"frame: got columns {list(frame.columns)}; valid: needs {col!r}")
    ax.scatter(frame["p99_ms"], frame["cost_usd_per_h"], alpha=0.6, label="plans")
    ordered = frame.sort_values("p99_ms")
    frontier, best = [], float("inf")
    for _, row in ordered.iterrows():
        if row["cost_usd_per_h"] < best:
            best = row["cost_usd_per_h"]
            frontier.append(row)
    front = pd.DataFrame(frontier)
    ax.plot(front["p99_ms"], front["cost_usd_per_h"], drawstyle="steps-post", color="black", label="frontier")
    if label and label in frame:
        for _, row in frame.iterrows():
            ax.annotate(str(row[label]), (row["p99_ms"], row["cost_usd_per_h"]), fontsize=8,
                        textcoords="offset points", xytext=(3, 3))
    if slo_p99_ms is not None:
        ax.axvline(slo_p99_ms, color="red", linestyle="--", label=f"SLO p99 {slo_p99_ms:g} ms")
        ok = frame[frame["p99_ms"] <= slo_p99_ms]
        if title is None and len(ok):
            title = f"cheapest plan within the SLO costs ${ok['cost_usd_per_h'].min():.3f}/h"
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("cost (USD/h)")
    ax.set_title(title or "cost against p99")
    ax.grid(alpha=0.3)
    _legend(ax)
    return ax


def plot_autoscaling(result, ax=None, title: str | None = None):
    """Replicas (desired and ready) and load over time from an autoscaling result."""
    ax = _axes(ax)
    tl = result.timeline
    ax.step(tl["t_s"], tl["replicas"], where="post", label="desired replicas")
    ax.step(tl["t_s"], tl["ready"], where="post", label="ready replicas")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pods")
    twin = ax.twinx()
    twin.plot(tl["t_s"], tl["load_rate_per_s"], color="grey", alpha=0.5)
    twin.set_ylabel("load (req/s)")
    ax.set_title(title or f"HPA settles at {result.final_replicas} replicas (formula: {result.analytic_replicas})")
    ax.grid(alpha=0.3)
    _legend(ax)
    return ax
