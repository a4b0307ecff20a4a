"""Day 3 exercises: a correct answer (written here, never in the notebooks) scores full marks, the
trivial answers score at most 30 %, and hidden cases, not the shown ones, decide."""

from __future__ import annotations

import json

import pytest
import yaml

import grading
from grading import day3, testing, variants

IDS = ["day3.authz_policy", "day3.rego_authz", "day3.control_stages"]


pytestmark = pytest.mark.usefixtures("no_stamp")   # each test sets the variant it needs


# ----- correct answers ---------------------------------------------------------------------------

def policies_for(s: dict) -> str:
    """One ALLOW policy per edge, on the callee, naming the caller's principal and the edge's operation."""
    docs = []
    for i, e in enumerate(s["edges"]):
        docs.append({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                     "metadata": {"name": f"edge-{i}", "namespace": "cloudmart"},
                     "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": e["to"]}}, "action": "ALLOW",
                              "rules": [{"from": [{"source": {"principals": [f"cluster.local/ns/cloudmart/sa/{e['from']}"]}}],
                                         "to": [{"operation": {"methods": e["methods"], "paths": e["paths"]}}]}]}})
    return yaml.safe_dump_all(docs, sort_keys=False)


def rego_for(s: dict) -> str:
    cancel_support = f'\nallow if {{\n    authed\n    cancel\n    "{s["support_role"]}" in input.roles\n}}\n' if s["support_may_cancel"] else ""
    return f"""package cloudmart.authz

import rego.v1

default allow := false

seg := split(trim_prefix(input.path, "/"), "/")

authed if {{
    is_string(input.sub)
    input.sub != ""
}}

roles := input.roles if authed
roles := [] if not authed

admin if "admin" in roles

admin_area if {{
    count(seg) >= 2
    seg[0] == "api"
    seg[1] == "admin"
}}

products if {{
    seg[0] == "api"
    seg[1] == "products"
    count(seg) <= 3
}}

cancel if {{
    count(seg) == 4
    seg[0] == "api"
    seg[1] == "orders"
    seg[3] == "cancel"
    input.method == "POST"
}}

allow if {{
    admin
    input.method == "DELETE"
}}

allow if {{
    admin
    admin_area
}}

allow if {{
    not admin_area
    products
    input.method == "GET"
    {"true" if s["anonymous_catalog"] else "authed"}
}}

allow if {{
    not admin_area
    products
    input.method in {json.dumps(s["catalog_write_methods"])}
    some r in roles
    r in {{"admin", "{s['catalog_role']}"}}
}}

allow if {{
    authed
    input.method == "POST"
    input.path == "/api/orders"
}}

order_read if {{
    authed
    input.method == "GET"
    count(seg) == 3
    seg[0] == "api"
    seg[1] == "orders"
}}

allow if {{
    order_read
    input.sub == input.owner
}}

allow if {{
    order_read
    admin
}}

allow if {{
    order_read
    "{s['support_role']}" in roles
}}

allow if {{
    authed
    cancel
    input.sub == input.owner
}}
{cancel_support}"""


def token_for(s: dict) -> dict:
    """A TTL inside the window where exposure, signing load and deny-list size all fit."""
    t = s["token"]
    ttl_min = t["clients"] / (t["issuer_capacity_per_s"] * 0.8)
    ttl_max = 2 * t["deny_list_capacity"] / (t["revocations_per_h"] / 3600)
    assert ttl_min < ttl_max
    return {"ttl_s": (ttl_min + ttl_max) / 2, "deny_list": True}


BEST_STAGES = {  # what each rule must see, and where a false alarm is cheap
    "secret-in-code": "ci", "unpinned-action": "ci", "sbom-present": "ci",
    "lint-sast": "pre-commit", "owner-label": "pre-commit",
    "privileged-container": "admission-deny", "image-from-registry": "admission-deny",
    "resource-limits": "audit", "netpol-default-deny": "audit", "cve-after-deploy": "audit",
}


def test_correct_authz_policies_score_full_marks():
    fb = grading.check("day3.authz_policy", policies_for(day3.scenario("day3.authz_policy", 0)))
    assert fb.score == fb.max_score, str(fb)


def test_correct_rego_and_token_policy_score_full_marks():
    s = day3.scenario("day3.rego_authz", 0)
    fb = grading.check("day3.rego_authz", {"rego": rego_for(s), "token": token_for(s)})
    assert fb.score == fb.max_score, str(fb)


def test_the_reasoned_stage_assignment_scores_full_marks():
    fb = grading.check("day3.control_stages", BEST_STAGES)
    assert fb.score == fb.max_score, str(fb)


@pytest.mark.parametrize("exercise_id", IDS)
def test_other_variants_have_a_full_marks_answer_of_their_own(exercise_id):
    for v in (3, 11, 42):
        s = day3.scenario(exercise_id, v)
        answer = {"day3.authz_policy": lambda: policies_for(s),
                  "day3.rego_authz": lambda: {"rego": rego_for(s), "token": token_for(s)},
                  "day3.control_stages": lambda: {r: st for r, st in BEST_STAGES.items()}}[exercise_id]()
        with testing.as_variant(exercise_id, v):
            fb = grading.check(exercise_id, answer)
        floor = 0.9 if exercise_id == "day3.control_stages" else 1.0   # stage costs move with the variant
        assert fb.score >= floor * fb.max_score, f"variant {v}: {fb}"


# ----- trivial and copied answers ------------------------------------------------------------------

def test_trivial_answers_score_at_most_30_percent():
    scores = testing.assert_trivial_answers_score_low(0.30, IDS, (0, 5, 17))
    assert {s.label.split(":")[0] for s in scores} == set(grading.TRIVIAL_KINDS)


@pytest.mark.parametrize("exercise_id", ["day3.authz_policy", "day3.rego_authz"])
def test_an_answer_copied_from_another_variant_scores_low(exercise_id):
    s0 = day3.scenario(exercise_id, 0)
    differs = {"day3.authz_policy": lambda s: s["service"] != s0["service"],
               "day3.rego_authz": lambda s: s["support_role"] != s0["support_role"] and s["catalog_role"] != s0["catalog_role"]
               and not s["anonymous_catalog"] and s["catalog_write_methods"] != s0["catalog_write_methods"]}
    v = next(i for i in range(1, 500) if differs[exercise_id](day3.scenario(exercise_id, i)))
    answer = policies_for(s0) if exercise_id == "day3.authz_policy" else {"rego": rego_for(s0), "token": token_for(s0)}
    with testing.as_variant(exercise_id, v):
        fb = grading.check(exercise_id, answer)
    assert fb.score <= 0.5 * fb.max_score, str(fb)


# ----- each criterion can fail ------------------------------------------------------------------

def test_an_extra_caller_costs_a_quarter_per_pair():
    s = day3.scenario("day3.authz_policy", 0)
    docs = list(yaml.safe_load_all(policies_for(s)))
    docs[0]["spec"]["rules"][0]["from"][0]["source"]["principals"].append("cluster.local/ns/cloudmart/sa/notification")
    fb = grading.check("day3.authz_policy", yaml.safe_dump_all(docs))
    assert fb.score == 7.5 and "extra" in str(fb), str(fb)


def test_a_namespace_wide_rule_is_not_identity_based():
    s = day3.scenario("day3.authz_policy", 0)
    docs = list(yaml.safe_load_all(policies_for(s)))
    docs[0]["spec"]["rules"][0]["from"] = [{"source": {"namespaces": ["cloudmart"]}}]
    fb = grading.check("day3.authz_policy", yaml.safe_dump_all(docs))
    assert fb.score <= 2.5 and "principal" in str(fb), str(fb)


def test_a_deny_policy_that_breaks_cloudmarts_edges_loses_points():
    s = day3.scenario("day3.authz_policy", 0)
    deny = ("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-get, namespace: cloudmart}\n"
            "spec:\n  selector: {matchLabels: {app.kubernetes.io/name: product}}\n  action: DENY\n"
            "  rules:\n    - from: [{source: {principals: [cluster.local/ns/cloudmart/sa/order]}}]\n")
    fb = grading.check("day3.authz_policy", policies_for(s) + deny)
    assert fb.score < 10 and "CloudMart's own" in str(fb), str(fb)


def test_unsupported_policy_fields_are_a_clear_error_not_a_pass():
    s = day3.scenario("day3.authz_policy", 0)
    docs = list(yaml.safe_load_all(policies_for(s)))
    docs[0]["spec"]["rules"][0]["when"] = [{"key": "request.headers[x]", "values": ["1"]}]
    fb = grading.check("day3.authz_policy", yaml.safe_dump_all(docs))
    assert fb.score == 0 and "'when' conditions are not graded" in str(fb)
    fb = grading.check("day3.authz_policy", "kind: [\n")
    assert fb.score == 0 and "invalid YAML at line" in str(fb)


def test_istio_evaluation_order():
    w = {"app.kubernetes.io/name": "x"}
    allow = {"kind": "AuthorizationPolicy", "spec": {"action": "ALLOW", "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/cloudmart/sa/a"]}}]}]}}
    deny = {"kind": "AuthorizationPolicy", "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]}}
    assert day3.authz_decision([], w, None, "GET", "/")                       # no policy: allow
    assert day3.authz_decision([deny], w, "b", "GET", "/")                    # only DENY, not matching: allow
    assert not day3.authz_decision([deny, allow], w, "a", "DELETE", "/")     # DENY first
    assert day3.authz_decision([allow], w, "a", "GET", "/")
    assert not day3.authz_decision([allow], w, "b", "GET", "/")              # an ALLOW exists, none matches
    assert not day3.authz_decision([allow], w, None, "GET", "/")             # plaintext has no principal
    nothing = {"kind": "AuthorizationPolicy", "spec": {}}
    assert not day3.authz_decision([nothing], w, "a", "GET", "/")            # allow-nothing


def test_rego_that_errors_fails_closed_and_says_so():
    s = day3.scenario("day3.rego_authz", 0)
    broken = rego_for(s) + '\nconflict := 1\n\nconflict := 2 if input.method == "GET"\n\nallow if conflict == 3\n'
    fb = grading.check("day3.rego_authz", {"rego": broken, "token": token_for(s)})
    assert fb.score < 10 and "evaluation error (denied, fail closed)" in str(fb), str(fb)
    fb = grading.check("day3.rego_authz", {"rego": "package cloudmart.authz\nallow if {", "token": token_for(s)})
    assert fb.score == 0 and "does not compile" in str(fb)


def test_rego_ownership_check_is_needed():
    s = day3.scenario("day3.rego_authz", 0)
    no_owner = rego_for(s).replace("    order_read\n    input.sub == input.owner", "    order_read")
    fb = grading.check("day3.rego_authz", {"rego": no_owner, "token": token_for(s)})
    assert fb.score < 10 and "must be denied" in str(fb), str(fb)


@pytest.mark.parametrize("token, needle", [({"ttl_s": 30.0, "deny_list": True}, "issuer must sign"),
                                           ({"ttl_s": 7200.0, "deny_list": False}, "over the"),
                                           ({"ttl_s": 1e6, "deny_list": True}, "deny list holds")])
def test_each_token_budget_can_fail(token, needle):
    s = day3.scenario("day3.rego_authz", 0)
    fb = grading.check("day3.rego_authz", {"rego": rego_for(s), "token": token})
    assert 7 <= fb.score < 10 and needle in str(fb), str(fb)


def test_hidden_rego_cases_are_not_the_shown_ones():
    s = day3.scenario("day3.rego_authz", 0)
    shown = day3.rego_cases(s, 0, 8)
    hidden = [c for seed in variants.hidden_seeds("day3.rego_authz", 2) for c in day3.rego_cases(s, seed, 20)]
    assert len(hidden) == 40 and not [c for c in shown if c in hidden]
    assert sum(day3.rego_expected(c, s) for c in hidden) == 20


def test_stage_answer_shape_errors_name_the_valid_values():
    fb = grading.check("day3.control_stages", {"secret-in-code": "ci"})
    assert fb.score == 0 and "missing rules" in str(fb)
    fb = grading.check("day3.control_stages", dict(BEST_STAGES, **{"secret-in-code": "code-review"}))
    assert fb.score == 0 and "pre-commit" in str(fb)


def test_a_rule_at_a_stage_that_cannot_see_it_costs_points():
    fb = grading.check("day3.control_stages", dict(BEST_STAGES, **{"secret-in-code": "admission-deny"}))
    assert fb.score <= 5, str(fb)


def test_stage_simulation_matches_its_expectation():
    """The Monte Carlo mean of escaped violations' risk agrees with the closed form n·p·(1−c)·L·sev."""
    s = day3.control_scenario(0)
    rule = s["rules"]["privileged-container"]
    n = s["changes_per_week"] * s["weeks"]
    reps = 2000
    for stage in ("ci", "admission-deny"):
        res = day3.simulate_stages({r: stage for r in s["rules"]}, s, seed=3, replications=reps)
        lam = n * rule["p"] * (1 - day3._catch(rule, stage, s))     # escapes: a thinned Poisson count
        expected = lam * s["lifetime_h"] * rule["severity"]
        se = rule["severity"] * s["lifetime_h"] * (2 * lam / reps) ** 0.5   # compound Poisson, Exp(L) hours
        assert abs(res["rules"]["privileged-container"]["risk"] - expected) < 4 * se, (stage, expected, se)
    res = day3.simulate_stages({r: "audit" for r in s["rules"]}, s, seed=3, replications=2000)
    expected = n * rule["p"] * (s["audit_interval_h"] / 2 + s["fix_h"]) * rule["severity"]
    assert res["rules"]["privileged-container"]["risk"] == pytest.approx(expected, rel=0.05)
