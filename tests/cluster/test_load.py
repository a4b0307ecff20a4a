"""The load generator against a local upstream it cannot overwhelm: the in-flight cap drops and
counts arrivals, it never delays them (open loop)."""

from __future__ import annotations

import contextlib
import time

import pytest

from cluster.load import run_load
from local_http import JSONHandler, serve


@contextlib.contextmanager
def upstream(hold_s: float):
    """/api/products answers at once (the scenario's preparation); every other request is held
    for `hold_s` seconds, then answered 200."""
    class Handler(JSONHandler):
        def do_GET(self):
            if self.path != "/api/products":
                time.sleep(hold_s)
            self.send_json({"items": [{"id": "P1"}, {"id": "P2"}]})

    with serve(Handler) as url:
        yield url


def test_arrivals_over_the_in_flight_cap_are_dropped_and_counted():
    """100 req/s for 1 s against an upstream that holds every request 2 s: only the first 4
    (the cap) are sent; every later arrival is dropped and counted, none waits for a slot."""
    rps, seconds, cap = 100, 1.0, 4
    with upstream(hold_s=2.0) as url:
        result = run_load(url, rps, seconds, "read", seed=11, max_in_flight=cap)
    s = result.summary
    assert s["sent"] == cap and s["ok"] == cap, s
    arrivals = s["sent"] + s["dropped"]
    # a Poisson count of mean 100: within 5 standard deviations
    assert abs(arrivals - rps * seconds) <= 5 * (rps * seconds) ** 0.5, s
    assert s["dropped"] == arrivals - cap
    # the 4 sent left at their own arrival times (open loop): none was delayed for a free slot
    assert (result.requests["dispatch_lag_ms"] < 1000).all(), result.requests   # a slot frees after 2 s
    assert (result.requests["latency_ms"] >= 2000 * 0.9).all()


def test_nothing_is_dropped_under_the_cap():
    with upstream(hold_s=0.0) as url:
        result = run_load(url, 50, 1.0, "read", seed=11, max_in_flight=64)
    s = result.summary
    assert s["dropped"] == 0 and s["sent"] == s["ok"] > 20, s
    assert abs(s["sent"] - 50) <= 5 * 50 ** 0.5


def test_bad_cap_is_a_value_error():
    with pytest.raises(ValueError, match="max_in_flight"):
        run_load("http://127.0.0.1:9", 1, 1, "read", max_in_flight=0)
