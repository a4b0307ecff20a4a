"""`grading.day5.capture_cost` bills a window only once every running replica was sampled past
its end: the usage recorder knows a replica only up to its newest sample, so querying at once
would bill the window's last second as not running (a live allocation below the requests)."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from grading import day5


class FakeHandle:
    """Samples of two replicas that arrive one call at a time; one more replica stopped long ago."""

    def __init__(self, end: float, late_calls: int):
        self.end, self.calls, self.late_calls = end, 0, late_calls
        self.allocated_after_calls = None

    def usage(self, window_s: float) -> pd.DataFrame:
        self.calls += 1
        newest = self.end + (0.5 if self.calls > self.late_calls else -0.4)
        return pd.DataFrame({"replica": ["product-0", "order-0", "old-0"],
                             "t": [newest, self.end + 0.3, self.end - 60.0]})

    @property
    def opencost(self):
        handle = self

        class Api:
            def allocation(self, window, **kw):
                handle.allocated_after_calls = handle.calls
                return {"data": [{}], "bills": [{}], "node": {}}
        return Api()


@pytest.fixture(autouse=True)
def no_orders(monkeypatch):
    monkeypatch.setattr(day5, "_confirmed_orders", lambda cm, start, end: 0)


def test_the_allocation_waits_for_a_sample_past_the_end():
    end = time.time()
    cm = FakeHandle(end, late_calls=3)
    day5.capture_cost(cm, end - 10, end)
    # Three answers still ended before `end` for product-0; the fourth covered it. The replica that
    # stopped a minute earlier was not waited for.
    assert cm.allocated_after_calls == 4


def test_the_wait_is_bounded(monkeypatch):
    end = time.time()
    cm = FakeHandle(end, late_calls=10**9)
    started = time.monotonic()
    day5._wait_until_sampled_past(cm, end, timeout_s=0.6)
    assert 0.5 <= time.monotonic() - started < 3.0 and cm.calls >= 2
