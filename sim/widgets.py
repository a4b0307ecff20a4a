"""ipywidgets front-ends for the Predict step. Each explorer has an ``*_update`` function that does
one update (run the seeded model, draw the figure) without displaying anything, so it can be
timed and tested; the explorer wraps it in ``ipywidgets.interactive``.
"""

from __future__ import annotations

import networkx as nx

from . import theory
from .autoscaling import HPA, HPAScenario, simulate_autoscaling
from .callgraph import CallGraph, run_callgraph
from .distributions import Exponential, LogNormal
from .plots import plot_autoscaling, plot_latency_cdf
from .queueing import QueueScenario, run_queueing
from .resilience import Retry

__all__ = ["latency_update", "latency_explorer", "resilience_update", "resilience_explorer",
           "hpa_update", "hpa_explorer", "ratelimit_update", "ratelimit_explorer", "canary_update",
           "canary_explorer", "mesh_update", "mesh_explorer"]


def _figure():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    return fig, ax


def _finish(fig, show: bool):
    import matplotlib.pyplot as plt

    if show:
        plt.show()
    else:
        plt.close(fig)


def latency_update(rate_per_s: float = 8.0, servers: int = 2, service_ms: float = 200.0, cv: float = 1.0,
                   customers: int = 4_000, seed: int = 0, show: bool = False) -> dict:
    """One update of :func:`latency_explorer`: an M/G/c station's sojourn CDF and percentiles."""
    service = Exponential(service_ms / 1000.0) if cv == 1.0 else LogNormal(service_ms / 1000.0, cv)
    sc = QueueScenario(rate_per_s, service, servers, customers=customers)
    result = run_queueing(sc, seed)
    st = result.station
    summary = {"utilisation": round(sc.utilisation, 3), "p50_ms": round(st.p50_sojourn_s.value * 1000, 1),
               "p99_ms": round(st.p99_sojourn_s.value * 1000, 1)}
    if cv == 1.0 and sc.utilisation < 1:
        summary["p99_theory_ms"] = round(
            theory.mmc_sojourn_percentile_s(rate_per_s, 1000.0 / service_ms, servers, 0.99) * 1000, 1)
    fig, ax = _figure()
    plot_latency_cdf({f"{servers} server(s), ρ = {sc.utilisation:.2f}": result}, ax=ax,
                     title=f"p99 {summary['p99_ms']:g} ms at {sc.utilisation:.0%} utilisation")
    _finish(fig, show)
    return summary


def latency_explorer():
    """Sliders for load, servers, service time and its variability; shows the latency CDF."""
    import ipywidgets as w

    return w.interactive(
        lambda **kw: print(latency_update(show=True, **kw)),
        rate_per_s=w.FloatSlider(value=8.0, min=1.0, max=19.0, step=0.5, description="req/s"),
        servers=w.IntSlider(value=2, min=1, max=8, description="servers"),
        service_ms=w.FloatSlider(value=200.0, min=20.0, max=500.0, step=10.0, description="service ms"),
        cv=w.FloatSlider(value=1.0, min=0.1, max=3.0, step=0.1, description="service cv"),
    )


def resilience_update(error_rate: float = 0.1, attempts: int = 3, timeout_ms: float = 50.0,
                      backend_ms: float = 10.0, rate_per_s: float = 50.0, n_requests: int = 2_000,
                      seed: int = 0, show: bool = False) -> dict:
    """One update of :func:`resilience_explorer`: a client calling a flaky backend with retries."""
    g = nx.DiGraph()
    g.add_node("client", service_time=Exponential(0.001), servers=16)
    g.add_node("backend", service_time=LogNormal(backend_ms / 1000.0, 1.0), servers=2, error_rate=error_rate)
    g.add_edge("client", "backend", timeout_ms=timeout_ms,
               retry=Retry(attempts=attempts, backoff_ms=5.0) if attempts > 1 else None, hop_delay_ms=0.3)
    result = run_callgraph(CallGraph(g), rate_per_s, n_requests, seed)
    summary = {**result.summary(),
               "success_theory": round(theory.retry_success_probability(error_rate, attempts), 4),
               "backend_load_factor": round(float(result.edges.loc["client->backend", "attempts"]) / n_requests, 3)}
    fig, ax = _figure()
    plot_latency_cdf({f"{attempts} attempt(s)": result}, ax=ax,
                     title=f"success {summary['success_rate']:.1%}, backend sees "
                           f"{summary['backend_load_factor']:.2f}× the load")
    _finish(fig, show)
    return summary


def resilience_explorer():
    """Sliders for backend error rate, attempts and timeout; shows success rate and latency."""
    import ipywidgets as w

    return w.interactive(
        lambda **kw: print(resilience_update(show=True, **kw)),
        error_rate=w.FloatSlider(value=0.1, min=0.0, max=0.9, step=0.05, description="error rate"),
        attempts=w.IntSlider(value=3, min=1, max=6, description="attempts"),
        timeout_ms=w.FloatSlider(value=50.0, min=5.0, max=500.0, step=5.0, description="timeout ms"),
        backend_ms=w.FloatSlider(value=10.0, min=1.0, max=100.0, step=1.0, description="backend ms"),
    )


def hpa_update(peak_rate_per_s: float = 400.0, target_utilisation: float = 0.6, pod_start_s: float = 20.0,
               scale_down_window_s: float = 300.0, seed: int = 0, show: bool = False) -> dict:
    """One update of :func:`hpa_explorer`: a load step up and down under the HPA."""
    sc = HPAScenario(load_rate_per_s=((0, 50), (300, peak_rate_per_s), (1200, 50)),
                     hpa=HPA(target_utilisation=target_utilisation, scale_down_window_s=scale_down_window_s,
                             max_replicas=100),
                     pod_start_s=pod_start_s, duration_s=2400)
    result = simulate_autoscaling(sc, seed)
    peak = int(result.timeline["replicas"].max())
    fig, ax = _figure()
    plot_autoscaling(result, ax=ax, title=f"peak {peak} replicas; back to {result.final_replicas}")
    _finish(fig, show)
    return {"peak_replicas": peak, "final_replicas": result.final_replicas,
            "analytic_peak": sc.analytic_replicas(peak_rate_per_s), "scale_events": result.scale_events}


def hpa_explorer():
    """Sliders for the load peak and HPA settings; shows replicas over time."""
    import ipywidgets as w

    return w.interactive(
        lambda **kw: print(hpa_update(show=True, **kw)),
        peak_rate_per_s=w.FloatSlider(value=400.0, min=50.0, max=1500.0, step=50.0, description="peak req/s"),
        target_utilisation=w.FloatSlider(value=0.6, min=0.2, max=0.9, step=0.05, description="target"),
        pod_start_s=w.FloatSlider(value=20.0, min=0.0, max=120.0, step=5.0, description="pod start s"),
        scale_down_window_s=w.FloatSlider(value=300.0, min=0.0, max=600.0, step=30.0, description="window s"),
    )


def ratelimit_update(limit_per_s: int = 10, burst: int = 10, max_multiple: float = 3.0, duration_s: float = 120.0,
                     seed: int = 0, show: bool = False) -> dict:
    """One update of :func:`ratelimit_explorer`: token bucket vs fixed window from 0.5× to
    ``max_multiple``× the limit — admitted share (the fixed window's closed form dashed) and the
    worst sliding second of each."""
    import numpy as np

    from .ratelimit import compare_limiters

    multiples = tuple(float(x) for x in np.round(np.linspace(0.5, max(max_multiple, 0.6), 6), 2))
    table = compare_limiters(limit_per_s, multiples, burst=burst, duration_s=duration_s, seed=seed)
    fig, ax = _figure()
    x = table.index.to_numpy()
    ax.plot(x, table["token_bucket_admitted"], "o-", label="token bucket (sim)")
    ax.plot(x, table["fixed_window_admitted"], "s-", label="fixed window (sim)")
    ax.plot(x, table["fixed_window_theory"], "k--", label="fixed window (closed form)")
    ax.set_xlabel("offered load / limit")
    ax.set_ylabel("admitted share")
    ax.legend()
    worst = int(table["fixed_window_worst_1s"].max())
    ax.set_title(f"fixed window: up to {worst} requests in one sliding second (limit {limit_per_s})")
    _finish(fig, show)
    return {"table": table, "fixed_window_worst_1s": worst,
            "token_bucket_worst_1s": int(table["token_bucket_worst_1s"].max()),
            "fixed_window_bound_1s": int(table["fixed_window_bound_1s"].iloc[0]),
            "token_bucket_bound_1s": float(table["token_bucket_bound_1s"].iloc[0])}


def ratelimit_explorer():
    """Sliders for the limit, the bucket's burst and the load range."""
    import ipywidgets as w

    return w.interactive(
        lambda **kw: print({k: v for k, v in ratelimit_update(show=True, **kw).items() if k != "table"}),
        limit_per_s=w.IntSlider(value=10, min=1, max=50, description="limit/s"),
        burst=w.IntSlider(value=10, min=1, max=100, description="burst"),
        max_multiple=w.FloatSlider(value=3.0, min=1.0, max=5.0, step=0.5, description="max load ×"),
    )


def canary_update(canary_error_rate: float = 0.02, max_error_rate: float = 0.01, first_weight: float = 10.0,
                  step_s: float = 60.0, failed_checks_to_rollback: int = 1, rate_per_s: float = 20.0,
                  seeds: int = 100, show: bool = False) -> dict:
    """One update of :func:`canary_explorer`: detection probability and exposed errors over
    ``seeds`` rollouts, for canary error rates around the chosen one."""
    import numpy as np

    from .canary import CanaryScenario, Version, detection_probability

    steps = tuple(w for w in (first_weight, 25.0, 50.0, 100.0) if w >= first_weight)
    rates = sorted({round(float(x), 4) for x in (0.0, max_error_rate / 2, max_error_rate, canary_error_rate,
                                                2 * canary_error_rate)})
    rows = []
    for p in rates:
        sc = CanaryScenario(canary=Version(error_rate=min(p, 1.0)), steps_percent=steps, step_s=step_s,
                            rate_per_s=rate_per_s, max_error_rate=max_error_rate,
                            failed_checks_to_rollback=failed_checks_to_rollback, histogram_buckets_s=None)
        d = detection_probability(sc, range(seeds))
        rows.append({"canary_error_rate": p, **d})
    fig, ax = _figure()
    x = np.array([r["canary_error_rate"] for r in rows])
    y = np.array([r["rolled_back"] for r in rows])
    ax.errorbar(x, y, yerr=[y - np.array([r["low"] for r in rows]), np.array([r["high"] for r in rows]) - y],
                fmt="o-", capsize=3)
    ax.axvline(max_error_rate, color="k", ls=":", label="gate")
    ax.set_xlabel("canary error rate")
    ax.set_ylabel("rolled back (share of seeds)")
    ax.legend()
    mine = next(r for r in rows if r["canary_error_rate"] == round(canary_error_rate, 4))
    ax.set_title(f"at {canary_error_rate:.1%} errors: rolled back {mine['rolled_back']:.0%}, "
                 f"{mine['mean_exposed_errors']:.1f} errors exposed")
    _finish(fig, show)
    return {"rows": rows, "rolled_back": mine["rolled_back"], "mean_exposed_errors": mine["mean_exposed_errors"]}


def canary_explorer():
    """Sliders for the canary's error rate, the gate, the first weight and the rollback threshold."""
    import ipywidgets as w

    return w.interactive(
        lambda **kw: print({k: v for k, v in canary_update(show=True, **kw).items() if k != "rows"}),
        canary_error_rate=w.FloatSlider(value=0.02, min=0.0, max=0.2, step=0.005, description="canary err"),
        max_error_rate=w.FloatSlider(value=0.01, min=0.001, max=0.1, step=0.001, description="gate"),
        first_weight=w.FloatSlider(value=10.0, min=1.0, max=50.0, step=1.0, description="first %"),
        failed_checks_to_rollback=w.IntSlider(value=1, min=1, max=5, description="threshold"),
    )


def mesh_update(bad_error_rate: float = 0.5, replicas: int = 4, consecutive_5xx_errors: int = 5,
                retry_attempts: int = 3, rate_per_s: float = 20.0, duration_s: float = 30.0, seeds: int = 60,
                show: bool = False) -> dict:
    """One update of :func:`mesh_explorer`: the probability that outlier detection ejects one bad
    replica within ``duration_s``, with and without retries, for a detector that sees every attempt
    (Envoy) and one that sees only final responses."""
    from .mesh import ejection_probability
    from .resilience import OutlierDetection

    od = OutlierDetection(consecutive_5xx_errors=consecutive_5xx_errors, max_ejection_percent=100.0)
    rates = [bad_error_rate] + [0.0] * (replicas - 1)
    out = {}
    for label, attempts, sees in (("no retries", 1, "attempt"), ("retries, per attempt", retry_attempts, "attempt"),
                                  ("retries, final response", retry_attempts, "response")):
        out[label] = ejection_probability(rates, retry_attempts=attempts, detector_sees=sees, outlier=od,
                                          rate_per_s=rate_per_s, duration_s=duration_s, seeds=range(seeds))
    fig, ax = _figure()
    labels = list(out)
    ax.bar(labels, [out[k]["probability"] for k in labels],
           yerr=[[out[k]["probability"] - out[k]["low"] for k in labels],
                 [out[k]["high"] - out[k]["probability"] for k in labels]], capsize=4)
    ax.set_ylabel(f"P(bad replica ejected within {duration_s:g} s)")
    hidden = out["retries, final response"]["probability"]
    ax.set_title(f"behind retries the detector ejects in {hidden:.0%} of runs, "
                 f"per attempt in {out['retries, per attempt']['probability']:.0%}")
    _finish(fig, show)
    return out


def mesh_explorer():
    """Sliders for the bad replica's error rate, replicas, the detector's threshold and retries."""
    import ipywidgets as w

    return w.interactive(
        lambda **kw: print({k: round(v["probability"], 3) for k, v in mesh_update(show=True, **kw).items()}),
        bad_error_rate=w.FloatSlider(value=0.5, min=0.05, max=1.0, step=0.05, description="bad err"),
        replicas=w.IntSlider(value=4, min=2, max=10, description="replicas"),
        consecutive_5xx_errors=w.IntSlider(value=5, min=1, max=20, description="consecutive"),
        retry_attempts=w.IntSlider(value=3, min=2, max=5, description="attempts"),
    )
