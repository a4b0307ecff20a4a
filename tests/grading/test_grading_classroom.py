"""grading.classroom: the time budget adds up to the slot; reset changes only what differs."""

from __future__ import annotations

import pytest

from grading import classroom


def test_time_budget_adds_up_and_says_when_each_section_starts():
    table = classroom.time_budget({"theory": 10, "predict": 15, "decide": 25}, slot_min=50)
    assert list(table.minutes) == [10, 15, 25]
    assert list(table.from_start_min) == [0, 10, 25]


@pytest.mark.parametrize("rows, slot, words", [
    ({"a": 10, "b": 30}, 50, "add up to 40 min"),
    ({}, 50, "rows"),
    ({"a": 0, "b": 50}, 50, "minutes > 0"),
    ({"a": 2.5}, 2.5, "minutes > 0"),
])
def test_time_budget_refuses_a_budget_that_does_not_fit(rows, slot, words):
    with pytest.raises(ValueError, match=words):
        classroom.time_budget(rows, slot_min=slot)


class FakeCloudMart:
    """Deployments with replicas and a fault per replica, as the handle reports them."""

    def __init__(self, wanted: dict[str, int], faulty: set[str]):
        self.wanted = dict(wanted)
        self.faulty = set(faulty)
        self.calls: list[tuple] = []

    def status(self):
        return {"deployments": {n: {"wanted": w, "ready": w,
                                    "replicas": [{"port": hash((n, i)) % 60000, "ready": True, "name": n}
                                                 for i in range(w)]}
                                for n, w in self.wanted.items()}}

    def scale(self, name, replicas):
        self.calls.append(("scale", name, replicas))
        self.wanted[name] = replicas

    def reset(self, name):
        self.calls.append(("reset", name))
        self.faulty.discard(name)
        return []

    def canary(self, service, weight):
        self.calls.append(("canary", service, weight))


def test_reset_scales_back_clears_faults_and_is_idempotent(monkeypatch):
    cm = FakeCloudMart({"order": 2, "product": 1, "product-canary": 1}, faulty={"product"})
    ports = {}
    for n, d in cm.status()["deployments"].items():
        for r in d["replicas"]:
            ports[r["port"]] = n
    monkeypatch.setattr(classroom, "_has_fault", lambda _cm, port: ports.get(port) in cm.faulty)
    changed = classroom.reset(cm)
    assert changed == {"order": ["replicas -> 1"], "product-canary": ["replicas -> 0"],
                       "product": ["faults cleared on 1 replica(s)"]}
    assert ("canary", "product", 0) in cm.calls
    cm.calls.clear()
    assert classroom.reset(cm) == {}
    assert [c for c in cm.calls if c[0] != "canary"] == []  # nothing scaled or reset again
