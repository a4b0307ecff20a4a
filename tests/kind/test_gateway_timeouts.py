"""Route timeouts reach both gateways.

Kong's controller maps only `timeouts.backendRequest` (to the Kong service's connect/read/write
timeouts), not `timeouts.request` (Kong/kubernetes-ingress-controller#5243), and its admission
webhook rejects a route whose rules set different backendRequest values (#5451, #5478); a route
with only `request` falls back to Kong's 60 s. Istio honours both. The local gateway reads
`request`, and Gateway API requires backendRequest <= request.
"""

from __future__ import annotations

import pytest

from cluster.topology import _duration_s
from kind_manifests import OVERLAYS


def timeout_problems(objects: list[dict]) -> list[str]:
    problems = []
    for route in (o for o in objects if o["kind"] == "HTTPRoute"):
        name = route["metadata"]["name"]
        values = set()
        for i, rule in enumerate(route["spec"]["rules"]):
            timeouts = rule.get("timeouts", {})
            if "backendRequest" not in timeouts:
                problems.append(f"HTTPRoute {name} rule {i}: no timeouts.backendRequest (Kong would use 60 s)")
                continue
            values.add(timeouts["backendRequest"])
            if "request" in timeouts and _duration_s(timeouts["backendRequest"]) > _duration_s(timeouts["request"]):
                problems.append(f"HTTPRoute {name} rule {i}: backendRequest exceeds request")
        if len(values) > 1:
            problems.append(f"HTTPRoute {name}: rules set different backendRequest values {sorted(values)}")
    return problems


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_every_route_rule_sets_a_backend_request_timeout(rendered, overlay):
    routes = [o for o in rendered[overlay] if o["kind"] == "HTTPRoute"]
    assert len(routes) == 7
    assert timeout_problems(rendered[overlay]) == []


def test_timeouts_keep_their_values(rendered):
    by_name = {o["metadata"]["name"]: o for o in rendered["base"] if o["kind"] == "HTTPRoute"}
    assert by_name["order"]["spec"]["rules"][0]["timeouts"] == {"request": "15s", "backendRequest": "15s"}
    assert {r["timeouts"]["backendRequest"] for r in by_name["product"]["spec"]["rules"]} == {"10s"}


def test_the_check_sees_request_only_and_mixed_values():
    route = {"kind": "HTTPRoute", "metadata": {"name": "x"}, "spec": {"rules": [
        {"timeouts": {"request": "10s"}}, {"timeouts": {"request": "10s", "backendRequest": "5s"}},
        {"timeouts": {"request": "10s", "backendRequest": "20s"}}]}}
    problems = timeout_problems([route])
    assert len(problems) == 3 and "60 s" in problems[0] and "exceeds" in problems[1] and "different" in problems[2]
