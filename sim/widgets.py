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
           "hpa_update", "hpa_explorer"]


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
