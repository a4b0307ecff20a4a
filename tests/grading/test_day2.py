"""Day 2 exercises: a good answer (written here, never in the notebooks or the package) scores
high, trivial answers score at most 30 % in variants 0–7, a copied answer fails another variant,
malformed answers are reported, not crashed."""

from __future__ import annotations

import pytest

import grading
from grading import day2, testing
from grading.testing import as_variant
from sim.mesh import sidecar_cost

pytestmark = pytest.mark.usefixtures("no_stamp")   # each test sets the variant it needs

FAST = ["day2.edge_limits", "day2.gateway_choice", "day2.kong_bundle"]
SIMULATED = ["day2.rollout_policy", "day2.mesh_resilience"]


# ----- good answers, derived from each variant's scenario ------------------------------------------
def edge_answer(v):
    s = day2.scenario("day2.edge_limits", v)
    return {"auth_at": "edge", "limits": {
        "app": {"key": "subject", "rate_per_s": max(2.0, 5 * s["user_rate_per_s"]), "burst": 10},
        "partner": {"key": "header:x-api-key", "rate_per_s": 1.5 * s["partner_rate_per_s"],
                    "burst": int(2 * s["partner_rate_per_s"] * s["partner_burst_factor"]) + 10},
        "anonymous": {"key": "ip", "rate_per_s": 0.5, "burst": 5}}}


def choice_answer(v):
    s = day2.scenario("day2.gateway_choice", v)
    out = {}
    for name, c in s["cards"].items():
        reqs = set(c["requirements"])
        mesh, edge = reqs & {"R2", "R7", "R9"}, reqs & {"R1", "R5", "R8"}
        a = {"choice": "both" if mesh and edge else "istio" if mesh else "kong" if edge else "neither",
             "because": sorted(mesh | edge) or sorted(reqs)}
        if mesh:
            a["sidecar_usd_per_month"] = sidecar_cost(c["rate_per_s"], c["meshed_hops"])["usd"]
        out[name] = a
    return out


def rollout_answer(v):
    return {"steps_percent": [2, 5, 10, 25, 50, 100], "step_s": 60, "max_error_rate": 0.02,
            "failed_checks_to_rollback": 2, "retry": {"attempts": 3, "budget": 0.2},
            "outlier": {"consecutive_5xx": 5, "base_ejection_s": 30, "max_ejection_percent": 50}}


def mesh_answer(v):
    s = day2.scenario("day2.mesh_resilience", v)
    per_try = max(20, round(4 * s["service_ms"]))
    return f"""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: product}}
spec:
  host: product
  trafficPolicy:
    connectionPool: {{tcp: {{maxConnections: 100}}, http: {{http1MaxPendingRequests: 100, maxRetries: 20}}}}
    outlierDetection: {{consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 60s, maxEjectionPercent: 50}}
    loadBalancer: {{simple: LEAST_REQUEST}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: product}}
spec:
  hosts: [product]
  http:
  - route: [{{destination: {{host: product}}}}]
    timeout: 500ms
    retries: {{attempts: 2, perTryTimeout: {per_try}ms, retryOn: "5xx,connect-failure"}}
"""


def kong_answer(v):
    s = day2.scenario("day2.kong_bundle", v)
    kp = "apiVersion: configuration.konghq.com/v1\nkind: KongPlugin\n"
    docs = [kp + f"metadata: {{name: anon-per-ip}}\nplugin: rate-limiting\n"
                 f"config: {{minute: {s['anonymous_per_minute']}, limit_by: ip, policy: local}}"]
    for tier, lim in s["tiers"].items():
        docs.append(kp + f"metadata: {{name: tier-{tier}}}\nplugin: rate-limiting\n"
                         f"config: {{minute: {lim}, limit_by: consumer, policy: local}}")
    for user, tier in s["consumers"].items():
        docs.append("apiVersion: configuration.konghq.com/v1\nkind: KongConsumer\n"
                    f"metadata: {{name: {user}, annotations: {{konghq.com/plugins: tier-{tier}}}}}\n"
                    f"username: {user}\ncredentials: [{user}-key]")
    docs.append(kp + "metadata: {name: orders-key-auth}\nplugin: key-auth\nconfig: {key_names: [apikey]}")
    docs.append(kp + f"metadata: {{name: products-cache}}\nplugin: proxy-cache\n"
                     f"config: {{strategy: memory, cache_ttl: {s['cache_ttl_s']}, request_method: [GET, HEAD]}}")
    docs.append(kp + f"metadata: {{name: orders-header}}\nplugin: request-transformer\n"
                     f"config: {{add: {{headers: ['{s['header'][0]}:{s['header'][1]}']}}}}")
    for route, plugins in (("products", "anon-per-ip,products-cache"), ("orders", "orders-key-auth,orders-header"),
                           ("auth", "")):
        ann = f"{{konghq.com/plugins: '{plugins}'}}" if plugins else "{}"
        docs.append(f"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
                    f"metadata: {{name: {route}, annotations: {ann}}}\n"
                    f"spec: {{rules: [{{matches: [{{path: {{type: PathPrefix, value: {s['routes'][route]}}}}}], "
                    f"backendRefs: [{{name: {route}, port: 8080}}]}}]}}")
    return "\n---\n".join(docs) + "\n"


ANSWERS = {"day2.edge_limits": edge_answer, "day2.gateway_choice": choice_answer, "day2.kong_bundle": kong_answer,
           "day2.rollout_policy": rollout_answer, "day2.mesh_resilience": mesh_answer}


def score(eid, answer, v):
    with as_variant(eid, v):
        fb = grading.check(eid, answer)
    return fb.score / fb.max_score, fb


@pytest.mark.parametrize("eid", FAST)
def test_good_answers_score_full_marks_fast(eid):
    for v in range(8):
        frac, fb = score(eid, ANSWERS[eid](v), v)
        assert frac == 1.0, f"variant {v}\n{fb}"


@pytest.mark.parametrize("eid", SIMULATED)
def test_good_answers_score_high_simulated(eid):
    for v in (0, 1, 2):
        frac, fb = score(eid, ANSWERS[eid](v), v)
        assert frac >= 0.9, f"variant {v}\n{fb}"


def test_trivial_answers_score_at_most_30_percent_fast():
    scores = testing.assert_trivial_answers_score_low(0.30, FAST, range(8))
    assert len(scores) >= 8 * 12


def test_trivial_answers_score_at_most_30_percent_simulated():
    scores = testing.assert_trivial_answers_score_low(0.30, SIMULATED, range(8))
    assert len(scores) >= 8 * 8


@pytest.mark.parametrize("eid", ["day2.gateway_choice", "day2.kong_bundle"])
def test_an_answer_copied_from_another_variant_loses_points(eid):
    lost = 0
    for v in range(1, 6):
        frac, _ = score(eid, ANSWERS[eid](v), v + 1)
        lost += frac < 1.0
    assert lost >= 3


def test_the_key_choice_decides_under_carrier_nat():
    a = edge_answer(0)
    by_ip = {**a, "limits": {**a["limits"], "app": {**a["limits"]["app"], "key": "ip"}}}
    frac, fb = score("day2.edge_limits", by_ip, 0)
    assert frac <= 0.3, str(fb)   # NAT'd users share the address bucket and the abuser drains it
    at_service = {**a, "auth_at": "service"}
    assert score("day2.edge_limits", at_service, 0)[0] <= 0.3


def test_both_everywhere_loses_most_points_even_with_right_costs():
    a = choice_answer(3)
    both = {c: {**x, "choice": "both"} for c, x in a.items()}
    frac, fb = score("day2.gateway_choice", both, 3)
    assert frac <= 0.3, str(fb)


@pytest.mark.parametrize("eid,answer,needle", [
    ("day2.edge_limits", {"auth_at": "edge", "limits": {"app": {"key": "mac", "rate_per_s": 1, "burst": 1}}}, "key"),
    ("day2.edge_limits", {"auth_at": "cdn", "limits": {}}, "auth_at"),
    ("day2.edge_limits", [1, 2], "dict"),
    ("day2.gateway_choice", {"card_a": {"choice": "nginx", "because": []}}, "choice"),
    ("day2.gateway_choice", {"card_z": {"choice": "kong"}}, "unknown card"),
    ("day2.rollout_policy", {"steps_percent": "abc"}, "missing"),
    ("day2.rollout_policy", {**rollout_answer(0), "steps_percent": [50, 10]}, "steps_percent"),
    ("day2.kong_bundle", "kind: [unclosed", "invalid YAML"),
    ("day2.kong_bundle", 42, "YAML"),
    ("day2.mesh_resilience", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: p}\n"
                             "spec: {host: product, subsets: [{name: v1, labels: {v: '1'}}]}\n", "subsets"),
    ("day2.mesh_resilience", "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec: {}\n",
     "Sidecar"),
])
def test_malformed_answers_are_reported_not_crashed(eid, answer, needle):
    fb = grading.check(eid, answer)
    assert fb.score == 0
    assert needle in str(fb), str(fb)


def test_an_unsupported_plugin_field_is_reported_in_the_bundle():
    bad = kong_answer(0).replace("key_names: [apikey]", "key_names: [apikey], key_rotation: daily")
    frac, fb = score("day2.kong_bundle", bad, 0)
    assert "key_rotation" in str(fb) and frac < 1


def test_reference_answers_are_not_in_the_package():
    names = {n.lower() for n in dir(day2)} - {"answershapeerror"}
    assert not {n for n in names if "solution" in n or "reference" in n or "good" in n or "answer" in n}
    # the worked examples the notebooks show are weak answers, not solutions
    for eid, example in (("day2.edge_limits", day2.EXAMPLE_EDGE_LIMITS), ("day2.kong_bundle", day2.EXAMPLE_KONG_BUNDLE),
                         ("day2.rollout_policy", day2.EXAMPLE_ROLLOUT), ("day2.mesh_resilience", day2.EXAMPLE_MESH_POLICY)):
        assert score(eid, example, 0)[0] <= 0.3, eid


def test_kong_conformance_counts_per_consumer_windows_like_the_translation():
    c = day2.kong_conformance(kong_answer(1), 1, seed=5)
    s = day2.scenario("day2.kong_bundle", 1)
    assert c["share"] == 1.0 and c["valid_configs"]
    limits = [case[3] for case in c["cases"]]
    assert limits == [s["anonymous_per_minute"], *[s["tiers"][t] for t in s["consumers"].values()]]
    # twice the limit offered, a fixed window of a minute: exactly the limit admitted each minute
    assert all(case[2] == [case[3]] * 3 for case in c["cases"])
    # the same limits per second instead of per minute are 60× too loose
    loose = kong_answer(1).replace("minute:", "second:")
    assert day2.kong_conformance(loose, 1, seed=5)["share"] == 0.0


def test_because_must_name_a_requirement_of_the_card():
    a = choice_answer(0)
    s = day2.scenario("day2.gateway_choice", 0)
    name, card = next((n, c) for n, c in s["cards"].items() if "R2" not in c["requirements"])
    padded = {**a, name: {**a[name], "because": a[name]["because"] + ["R2"]}}
    full, _ = score("day2.gateway_choice", a, 0)
    less, fb = score("day2.gateway_choice", padded, 0)
    assert full == 1.0 and less < 1.0 and "5/6 cards cite" in str(fb)


def test_a_fault_in_the_production_policy_is_refused():
    bad = mesh_answer(0).replace("    timeout: 500ms\n", "    timeout: 500ms\n    fault: {abort: {httpStatus: 503, percentage: {value: 10}}}\n")
    fb = grading.check("day2.mesh_resilience", bad)
    assert fb.score == 0 and "fault" in str(fb)
