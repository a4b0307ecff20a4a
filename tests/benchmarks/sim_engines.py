"""Benchmark: sim/ against ciw on the same queues, plus a call graph and a widget update.

    python tests/benchmarks/sim_engines.py --json

Runs an M/M/4 queue at utilisation 0.8 (200,000 customers) and a 6-node Jackson network in both
engines, a 10-service call graph with sidecar hops, retries and timeouts (100,000 requests), and
one default widget update. Prints one JSON object as the last line: customers/s per engine, the
ratio sim/ciw for both queueing cases, the call-graph wall time and the widget update time,
with the targets next to them. Wall-clock figures vary with machine load, so CPU-time figures
(``*_cpu``) and the load average are printed too; this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import ciw  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402

import sim  # noqa: E402
from sim import theory  # noqa: E402

MMC_CUSTOMERS = 200_000
NETWORK_CUSTOMERS = 100_000
CALLGRAPH_REQUESTS = 100_000
TARGET_RATIO = 1.8
TARGET_CALLGRAPH_S = 10.0
TARGET_WIDGET_MS = 300.0

# A 6-node open network: (servers, service rate per s), external arrivals, routing.
NETWORK = {
    "stations": {"gateway": (1, 3.0), "catalog": (2, 1.0), "cart": (1, 1.5), "checkout": (1, 1.0),
                 "payment": (1, 0.8), "search": (1, 2.0)},
    "external": {"gateway": 1.5, "search": 0.2},
    "routing": {"gateway": {"catalog": 0.5, "search": 0.3, "cart": 0.1}, "search": {"catalog": 0.6},
                "catalog": {"cart": 0.4, "gateway": 0.1}, "cart": {"checkout": 0.6},
                "checkout": {"payment": 0.9}, "payment": {"checkout": 0.1}},
}


CPU = {}  # label -> CPU seconds of the last timed call (robust when other jobs share the cores)


def timed(fn, label=None):
    """Wall-clock seconds and value of ``fn()``; the CPU seconds go to ``CPU[label]``."""
    cpu = time.process_time()
    start = time.perf_counter()
    value = fn()
    wall = time.perf_counter() - start
    if label:
        CPU[label] = time.process_time() - cpu
    return wall, value


def mmc_sim(seed):
    res = sim.run(sim.QueueScenario(3.2, sim.Exponential(1.0), 4, customers=MMC_CUSTOMERS), seed=seed)
    return res.station.mean_wait_s.value


def mmc_ciw(seed):
    ciw.seed(seed)
    net = ciw.create_network(arrival_distributions=[ciw.dists.Exponential(3.2)],
                             service_distributions=[ciw.dists.Exponential(1.0)], number_of_servers=[4])
    q = ciw.Simulation(net)
    q.simulate_until_max_customers(MMC_CUSTOMERS, method="Finish")
    waits = [r.waiting_time for r in q.get_all_records()]
    return float(np.mean(waits[len(waits) // 10:]))


def network_sim(seed):
    stations = tuple(sim.Station(n, sim.Exponential(1 / mu), c) for n, (c, mu) in NETWORK["stations"].items())
    sc = sim.NetworkScenario(stations, NETWORK["external"], NETWORK["routing"], customers=NETWORK_CUSTOMERS)
    return sim.run(sc, seed=seed).mean_response_s.value


def network_ciw(seed):
    names = list(NETWORK["stations"])
    ciw.seed(seed)
    routing = [[NETWORK["routing"].get(a, {}).get(b, 0.0) for b in names] for a in names]
    net = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(NETWORK["external"][n]) if n in NETWORK["external"] else None
                               for n in names],
        service_distributions=[ciw.dists.Exponential(NETWORK["stations"][n][1]) for n in names],
        number_of_servers=[NETWORK["stations"][n][0] for n in names],
        routing=routing,
    )
    q = ciw.Simulation(net)
    q.simulate_until_max_customers(NETWORK_CUSTOMERS, method="Finish")
    # mean time in the network per customer: sum of its visits' sojourns
    per_customer = {}
    for r in q.get_all_records():
        per_customer[r.id_number] = per_customer.get(r.id_number, 0.0) + r.waiting_time + r.service_time
    values = list(per_customer.values())
    return float(np.mean(values[len(values) // 10:]))


def call_graph() -> sim.CallGraph:
    """Ten services of a shop: gateway → frontend → catalogue, cart, recommendations, checkout…"""
    g = nx.DiGraph()
    services = {"gateway": (0.5, 4), "frontend": (2.0, 4), "product": (3.0, 4), "cart": (2.0, 2),
                "recommendation": (4.0, 4), "checkout": (3.0, 2), "payment": (5.0, 2), "inventory": (2.0, 2),
                "order": (3.0, 2), "notification": (2.0, 1)}
    for name, (mean_ms, servers) in services.items():
        g.add_node(name, service_time=sim.LogNormal(mean_ms / 1000, 1.0), servers=servers, error_rate=0.01)
    retry = sim.Retry(attempts=3, backoff_ms=5, budget=0.2)
    g.add_edge("gateway", "frontend", timeout_ms=500)
    g.add_edge("frontend", "product", timeout_ms=100, retry=retry)
    g.add_edge("frontend", "cart", timeout_ms=100, retry=retry)
    g.add_edge("frontend", "recommendation", timeout_ms=100, retry=retry, breaker=sim.CircuitBreaker())
    g.add_edge("recommendation", "product", timeout_ms=50)
    g.add_edge("frontend", "checkout", probability=0.3, timeout_ms=300, retry=retry)
    g.add_edge("checkout", "payment", timeout_ms=200, retry=retry)
    g.add_edge("checkout", "inventory", timeout_ms=100, retry=retry)
    g.add_edge("checkout", "order", timeout_ms=100, retry=retry)
    g.add_edge("order", "notification", mode="async")
    return sim.CallGraph(g, hop_delay_ms=0.1, sidecar_ms=0.3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    say = (lambda *a: None) if args.json else print

    t_mmc_sim, w_sim = timed(lambda: mmc_sim(args.seed), "mmc_sim")
    say(f"M/M/4 sim: {MMC_CUSTOMERS / t_mmc_sim:,.0f} customers/s (Wq {w_sim:.4f})")
    t_mmc_ciw, w_ciw = timed(lambda: mmc_ciw(args.seed), "mmc_ciw")
    say(f"M/M/4 ciw: {MMC_CUSTOMERS / t_mmc_ciw:,.0f} customers/s (Wq {w_ciw:.4f})")
    wq_theory = theory.mmc_mean_wait_s(3.2, 1.0, 4)

    t_net_sim, r_sim = timed(lambda: network_sim(args.seed), "net_sim")
    say(f"network sim: {NETWORK_CUSTOMERS / t_net_sim:,.0f} customers/s (W {r_sim:.4f})")
    t_net_ciw, r_ciw = timed(lambda: network_ciw(args.seed), "net_ciw")
    say(f"network ciw: {NETWORK_CUSTOMERS / t_net_ciw:,.0f} customers/s (W {r_ciw:.4f})")
    stations = {n: (c, mu) for n, (c, mu) in NETWORK["stations"].items()}
    w_theory = theory.jackson_network(stations, NETWORK["external"], NETWORK["routing"])["mean_response_s"]

    cg = call_graph()
    t_cg, cg_result = timed(lambda: sim.run(cg, seed=args.seed, rate_per_s=100, n_requests=CALLGRAPH_REQUESTS), "callgraph")
    say(f"call graph: {CALLGRAPH_REQUESTS:,} requests in {t_cg:.2f} s ({cg_result.summary()})")

    from sim.widgets import latency_update

    latency_update()  # first call pays matplotlib's start-up
    widget_times, widget_cpu = [], []
    for _ in range(3):
        widget_times.append(timed(latency_update, "widget")[0] * 1000)
        widget_cpu.append(CPU["widget"] * 1000)
    widget_ms = statistics.median(widget_times)
    say(f"widget update: {widget_ms:.0f} ms (median of 3)")

    out = {
        "mmc": {"customers": MMC_CUSTOMERS, "utilisation": 0.8, "servers": 4,
                "sim_customers_per_s": round(MMC_CUSTOMERS / t_mmc_sim),
                "ciw_customers_per_s": round(MMC_CUSTOMERS / t_mmc_ciw),
                "ratio_sim_ciw": round(t_mmc_ciw / t_mmc_sim, 3),
                "ratio_sim_ciw_cpu": round(CPU["mmc_ciw"] / CPU["mmc_sim"], 3),
                "mean_wait_s": {"sim": round(w_sim, 4), "ciw": round(w_ciw, 4), "theory": round(wq_theory, 4)}},
        "jackson6": {"customers": NETWORK_CUSTOMERS,
                     "sim_customers_per_s": round(NETWORK_CUSTOMERS / t_net_sim),
                     "ciw_customers_per_s": round(NETWORK_CUSTOMERS / t_net_ciw),
                     "ratio_sim_ciw": round(t_net_ciw / t_net_sim, 3),
                     "ratio_sim_ciw_cpu": round(CPU["net_ciw"] / CPU["net_sim"], 3),
                     "mean_response_s": {"sim": round(r_sim, 4), "ciw": round(r_ciw, 4), "theory": round(w_theory, 4)}},
        "callgraph": {"services": cg.graph.number_of_nodes(), "requests": CALLGRAPH_REQUESTS,
                      "wall_s": round(t_cg, 3), "cpu_s": round(CPU["callgraph"], 3), "success_rate": round(cg_result.success_rate.value, 4),
                      "p99_ms": round(cg_result.p99_latency_ms.value, 3)},
        "widget_update_ms": round(widget_ms, 1),
        "widget_update_cpu_ms": round(statistics.median(widget_cpu), 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "targets": {"ratio_sim_ciw_min": TARGET_RATIO, "callgraph_wall_s_max": TARGET_CALLGRAPH_S,
                    "widget_update_ms_max": TARGET_WIDGET_MS},
        "meets_targets": {
            "mmc_ratio": t_mmc_ciw / t_mmc_sim >= TARGET_RATIO,
            "jackson6_ratio": t_net_ciw / t_net_sim >= TARGET_RATIO,
            "callgraph": t_cg <= TARGET_CALLGRAPH_S,
            "widget": widget_ms <= TARGET_WIDGET_MS,
        },
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
