"""Day 3 exercises: zero-trust authorization, token policy and where compliance controls run.

==========================  ========  ============================================================
exercise id                 notebook  answer shape
==========================  ========  ============================================================
``day3.authz_policy``       01        Istio AuthorizationPolicy YAML (a ``str``, one or more docs)
``day3.rego_authz``         02        ``{"rego": str, "token": {"ttl_s": float, "deny_list": bool}}``
``day3.control_stages``     03        ``{rule: stage}`` for the variant's ten candidate rules
==========================  ========  ============================================================

**``day3.authz_policy``.** The variant adds a service to CloudMart's namespace, with the edges it
needs (who calls it, what it calls, with which methods and paths). The learner writes the
AuthorizationPolicies that let exactly those edges through on top of CloudMart's own policies
(``cluster/manifests/components/istio/authorizationpolicies.yaml``: deny by default, then one
ALLOW per edge). The grader evaluates every probe request (every identity, plaintext included,
× every workload × method × path, with a hidden attacker identity and hidden request ids) under
Istio's documented evaluation order: a matching DENY denies; a workload with no ALLOW policy
allows; else a matching ALLOW allows; else deny. Points (10): 10 × (share of the needed requests
allowed) × (1 − ¼ per extra (identity, workload, method) allowed beyond the baseline and the
needed edges, CloudMart's own edges broken counting as extras). ALLOW rules must name their
callers by identity (``from.source.principals``, exact principals): other rules halve the score.
This is CloudMart's implementation of Istio's documented semantics, evaluated offline.

**``day3.rego_authz``.** A Rego policy, package ``cloudmart.authz``, rule ``allow`` over ``input``
= ``{method, path, sub, roles, owner}`` for the variant's access rules; evaluated by regopy on ~40
hidden requests. Anything but ``allow == true`` denies, an evaluation error included (fail
closed). 7 points × ((share of requests that must be allowed and are) × (share that must be
denied and are))². The token policy (3 points, in proportion to the Rego score) is scored on the
mean exposure of a stolen token against the variant's budget, the issuer's signing load against
its capacity and, with a ``jti`` deny list, the list's size against its capacity
(:func:`sim.security.revocation_exposure_s`, :func:`sim.security.token_issue_rate_per_s`).

**``day3.control_stages``.** Ten candidate rules, each assigned to one stage of
:data:`STAGES`. :func:`simulate_stages` replays a quarter of changes through the assignment
(seeded Monte Carlo) and returns the risk (violation-hours weighted by severity) and the friction
(engineer-minutes lost to waiting and false alarms). The score compares the answer with the best
assignment (the one with the least risk + friction, rule by rule) on the same random draws, on
the shown scenario and two hidden ones: with f = the mean of (R* + F*) / (R + F), 10 × f², full
marks from f ≥ 0.95; "block everything" pays in friction, "audit everything" in risk, and both
lose.
"""

from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import grading
from grading import AnswerShapeError, Grader, exercise, variants
from grading.manifests import yaml_documents

__all__ = [
    "AUTHZ_SCENARIO", "BASELINE_POLICIES", "CONTROL_RULES", "EXAMPLE_POLICY", "EXAMPLE_REGO", "STAGES",
    "authz_decision", "authz_probe", "control_scenario", "rego_cases", "rego_expected", "scenario",
    "rego_rules_text", "simulate_stages", "stage_table", "token_outcome",
]

ROOT = Path(__file__).resolve().parents[1]
BASELINE_FILE = ROOT / "cluster/manifests/components/istio/authorizationpolicies.yaml"
NAMESPACE = "cloudmart"
TRUST = "cluster.local/ns/cloudmart/sa/"
GATEWAY_SA = "cloudmart-istio"
SERVICES = ("auth", "user", "product", "inventory", "order", "payment", "notification")
JWKS_PATH = "/api/auth/.well-known/jwks.json"


def principal(sa: str) -> str:
    """The Istio principal of a service account of CloudMart's namespace."""
    return TRUST + sa


# ---------------------------------------------------------------------------------------------
# day3.authz_policy: Istio AuthorizationPolicy semantics, offline
# ---------------------------------------------------------------------------------------------

_NEW = ("reviews", "wishlist", "recommendation", "loyalty", "search")
_CALLERS = ("order", "notification", "payment", "user")
_CALLEES = {"product": "/api/products/*", "inventory": "/api/inventory/*", "user": "/api/users/*"}

AUTHZ_SCENARIO = {
    "service": "reviews",
    "labels": {"app.kubernetes.io/name": "reviews", "app.kubernetes.io/component": "service"},
    "edges": [
        {"from": "order", "to": "reviews", "methods": ["POST"], "paths": ["/internal/reviews/purchases"]},
        {"from": "reviews", "to": "product", "methods": ["GET"], "paths": ["/api/products/*"]},
        {"from": "reviews", "to": "auth", "methods": ["GET"], "paths": [JWKS_PATH]},
    ],
}

# the notebook's worked example: one policy, right anatomy, but it names a namespace (any workload
# in it may call) instead of the one caller, and it opens the new service to every method and path
EXAMPLE_POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ratings-callers
  namespace: cloudmart
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: ratings
  action: ALLOW
  rules:
    - from:
        - source:
            namespaces: ["cloudmart"]
"""


def scenario(exercise_id: str = "day3.authz_policy", variant: int | None = None) -> dict[str, Any]:
    """The current learner's scenario of a Day 3 exercise (variant 0: the notebook's)."""
    if exercise_id == "day3.authz_policy":
        return _authz_scenario(variants.variant(exercise_id) if variant is None else variant)
    if exercise_id == "day3.rego_authz":
        return _rego_scenario(variants.variant(exercise_id) if variant is None else variant)
    if exercise_id == "day3.control_stages":
        return control_scenario(variants.variant(exercise_id) if variant is None else variant)
    raise ValueError(f"exercise_id: got {exercise_id!r}; valid: day3.authz_policy, day3.rego_authz, day3.control_stages")


def _authz_scenario(v: int) -> dict[str, Any]:
    if v == 0:
        return json.loads(json.dumps(AUTHZ_SCENARIO))
    rng = variants.rng("day3.authz_policy", v)
    new = str(rng.choice(_NEW))
    callers = sorted(rng.choice(_CALLERS, size=int(rng.integers(1, 3)), replace=False).tolist())
    callees = sorted(rng.choice(sorted(_CALLEES), size=int(rng.integers(1, 3)), replace=False).tolist())
    edges = []
    for c in callers:
        method = str(rng.choice(["GET", "POST"]))
        edges.append({"from": c, "to": new, "methods": [method],
                      "paths": [f"/internal/{new}/{str(rng.choice(['events', 'lookup', 'sync', 'scores']))}"]})
    for c in callees:
        edges.append({"from": new, "to": c, "methods": ["GET"], "paths": [_CALLEES[c]]})
    edges.append({"from": new, "to": "auth", "methods": ["GET"], "paths": [JWKS_PATH]})
    return {"service": new, "labels": {"app.kubernetes.io/name": new, "app.kubernetes.io/component": "service"},
            "edges": edges}


def _load_docs(answer: Any) -> list[dict]:
    docs = yaml_documents(answer, "answer: give the policies' YAML text (a str with one or more documents)")
    for d in docs:
        _check_policy(d)
    return docs


_SOURCE_KEYS = {"principals", "notPrincipals", "namespaces", "notNamespaces"}
_OPERATION_KEYS = {"methods", "notMethods", "paths", "notPaths"}


def _check_policy(d: Any) -> None:
    """A clear error for anything this evaluator does not implement (never a silent pass)."""
    if not isinstance(d, dict):
        raise AnswerShapeError(f"every YAML document must be a mapping, got {type(d).__name__}")
    name = (d.get("metadata") or {}).get("name", "?")
    if d.get("kind") != "AuthorizationPolicy" or d.get("apiVersion") not in ("security.istio.io/v1", "security.istio.io/v1beta1"):
        raise AnswerShapeError(f"{name}: only security.istio.io/v1 AuthorizationPolicy documents are graded, "
                               f"got {d.get('apiVersion')}/{d.get('kind')}")
    spec = d.get("spec") or {}
    if not isinstance(spec, dict):
        raise AnswerShapeError(f"{name}: spec must be a mapping")
    action = spec.get("action", "ALLOW")
    if action not in ("ALLOW", "DENY"):
        raise AnswerShapeError(f"{name}: action {action!r} is not graded here; valid: ALLOW, DENY")
    if set(spec) - {"selector", "action", "rules"}:
        raise AnswerShapeError(f"{name}: spec fields {sorted(set(spec) - {'selector', 'action', 'rules'})} are not graded; "
                               "use selector, action and rules")
    sel = spec.get("selector")
    if sel is not None and (not isinstance(sel, dict) or set(sel) - {"matchLabels"}):
        raise AnswerShapeError(f"{name}: selector: only matchLabels is graded")
    rules = spec.get("rules", [])
    if not isinstance(rules, list):
        raise AnswerShapeError(f"{name}: rules must be a list")
    for r in rules:
        if not isinstance(r, dict) or set(r) - {"from", "to"}:
            raise AnswerShapeError(f"{name}: each rule has only 'from' and 'to' here ('when' conditions are not graded)")
        for f in r.get("from", []) or []:
            src = (f or {}).get("source")
            if not isinstance(src, dict) or set(src) - _SOURCE_KEYS:
                raise AnswerShapeError(f"{name}: from.source supports {sorted(_SOURCE_KEYS)} here")
        for t in r.get("to", []) or []:
            op = (t or {}).get("operation")
            if not isinstance(op, dict) or set(op) - _OPERATION_KEYS:
                raise AnswerShapeError(f"{name}: to.operation supports {sorted(_OPERATION_KEYS)} here")
        for field_values in [v for f in r.get("from", []) or [] for v in f["source"].values()] + \
                            [v for t in r.get("to", []) or [] for v in t["operation"].values()]:
            if not isinstance(field_values, list) or not all(isinstance(x, str) for x in field_values):
                raise AnswerShapeError(f"{name}: every source and operation field is a list of strings")


def _str_match(pattern: str, value: str) -> bool:
    """Istio string match: exact, prefix ``abc*``, suffix ``*abc``, or ``*`` (any non-empty value)."""
    if pattern == "*":
        return value != ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _any(patterns, value) -> bool:
    return any(_str_match(p, value) for p in patterns)


def _source_matches(src: dict, identity: str | None) -> bool:
    p = principal(identity) if identity else ""
    ns = NAMESPACE if identity else ""
    if "principals" in src and not _any(src["principals"], p):
        return False
    if "notPrincipals" in src and _any(src["notPrincipals"], p):
        return False
    if "namespaces" in src and not _any(src["namespaces"], ns):
        return False
    if "notNamespaces" in src and _any(src["notNamespaces"], ns):
        return False
    return True


def _operation_matches(op: dict, method: str, path: str) -> bool:
    if "methods" in op and not _any(op["methods"], method):
        return False
    if "notMethods" in op and _any(op["notMethods"], method):
        return False
    if "paths" in op and not _any(op["paths"], path):
        return False
    if "notPaths" in op and _any(op["notPaths"], path):
        return False
    return True


def _rule_matches(rule: dict, identity: str | None, method: str, path: str) -> bool:
    froms = rule.get("from") or []
    tos = rule.get("to") or []
    if froms and not any(_source_matches(f["source"], identity) for f in froms):
        return False
    if tos and not any(_operation_matches(t["operation"], method, path) for t in tos):
        return False
    return True


def _applies(policy: dict, labels: dict[str, str]) -> bool:
    ns = (policy.get("metadata") or {}).get("namespace", NAMESPACE)
    if ns not in (NAMESPACE, "istio-system"):
        return False
    sel = ((policy.get("spec") or {}).get("selector") or {}).get("matchLabels")
    return not sel or all(labels.get(k) == v for k, v in sel.items())


def authz_decision(policies: list[dict], labels: dict[str, str], identity: str | None, method: str, path: str) -> bool:
    """Istio's evaluation for one request to the workload with ``labels`` from ``identity``
    (a service account, or None for a plaintext caller without a certificate): a matching DENY
    denies; with no ALLOW policy on the workload, allow; a matching ALLOW allows; else deny."""
    applicable = [p for p in policies if _applies(p, labels)]
    allow = []
    for p in applicable:
        spec = p.get("spec") or {}
        rules = spec.get("rules") or []
        if spec.get("action", "ALLOW") == "DENY":
            if any(_rule_matches(r, identity, method, path) for r in rules):
                return False
        else:
            allow.append(rules)
    if not allow:
        return True
    return any(_rule_matches(r, identity, method, path) for rules in allow for r in rules)


BASELINE_POLICIES: list[dict] = [d for d in yaml.safe_load_all(BASELINE_FILE.read_text()) if d] if BASELINE_FILE.exists() else []


def _workloads(s: dict) -> dict[str, dict[str, str]]:
    out = {svc: {"app.kubernetes.io/name": svc, "app.kubernetes.io/component": "service"} for svc in SERVICES}
    out[s["service"]] = dict(s["labels"])
    return out


def _instances(path: str, rng) -> list[str]:
    if path.endswith("*"):
        return [path[:-1] + f"{int(rng.integers(1, 10_000))}" for _ in range(2)]
    return [path]


def authz_probe(s: dict, seed: int = 0) -> dict[str, Any]:
    """The probe of scenario ``s``: needed requests, and every (identity, workload, method, path)
    the grader tries. Seed 0 is what the notebook shows; hidden seeds change the request ids and
    add an attacker identity the notebook never names."""
    rng = np.random.default_rng(seed)
    identities: list[str | None] = [None, GATEWAY_SA, *SERVICES, s["service"]]
    if seed:
        identities.append(f"{rng.choice(['debug', 'batch', 'legacy', 'ci'])}-{int(rng.integers(100, 999))}")
    needed = []
    for e in s["edges"]:
        for m in e["methods"]:
            for p in e["paths"]:
                for inst in _instances(p, rng):
                    needed.append((e["from"], e["to"], m, inst))
    targets = _workloads(s)
    requests = []
    for dst in targets:
        paths = {f"/api/{dst}/{int(rng.integers(1, 10_000))}", f"/internal/{dst}/{int(rng.integers(1, 10_000))}", "/admin/fault"}
        paths |= {n[3] for n in needed if n[1] == dst}
        for ident in identities:
            for m in ("GET", "POST", "DELETE"):
                for p in sorted(paths):
                    requests.append((ident, dst, m, p))
    return {"identities": identities, "workloads": targets, "needed": needed, "requests": requests}


def _edge_covers(s: dict, ident: str | None, dst: str, method: str, path: str) -> bool:
    """Whether one of the scenario's edges names this request (its caller, callee, method, path pattern)."""
    return any(e["from"] == ident and e["to"] == dst and method in e["methods"] and _any(e["paths"], path)
               for e in s["edges"])


def _identity_only(policies: list[dict]) -> list[str]:
    """Names of ALLOW rules that do not name their callers by exact principals."""
    bad = []
    for p in policies:
        spec = p.get("spec") or {}
        if spec.get("action", "ALLOW") != "ALLOW":
            continue
        name = (p.get("metadata") or {}).get("name", "?")
        for r in spec.get("rules") or []:
            froms = r.get("from") or []
            ok = bool(froms) and all(set(f["source"]) == {"principals"} and f["source"]["principals"]
                                     and not any("*" in x for x in f["source"]["principals"]) for f in froms)
            if not ok:
                bad.append(name)
                break
    return bad


@exercise("day3.authz_policy", max_score=10)
def check_authz_policy(answer: Any, g: Grader) -> None:
    """Answer: AuthorizationPolicy YAML (see the module docstring for the spec and the points)."""
    if isinstance(answer, str) and not answer.strip():
        raise AnswerShapeError("answer: give the policies' YAML text (a str with one or more documents)")
    docs = _load_docs(answer)
    if not docs:
        raise AnswerShapeError("answer: no AuthorizationPolicy in the YAML")
    s = scenario("day3.authz_policy")
    seeds = [0, *variants.hidden_seeds("day3.authz_policy", 2)]
    needed_ok = needed_n = 0
    missing, extras, broken = [], set(), set()
    for seed in seeds:
        probe = authz_probe(s, seed)
        needed = set(probe["needed"])
        for src, dst, m, p in probe["needed"]:
            ok = authz_decision(BASELINE_POLICIES + docs, probe["workloads"][dst], src, m, p)
            needed_n, needed_ok = needed_n + 1, needed_ok + ok
            if not ok and (src, dst, m) not in [x[:3] for x in missing]:
                missing.append((src, dst, m, p))
        for ident, dst, m, p in probe["requests"]:
            if (ident, dst, m, p) in needed or _edge_covers(s, ident, dst, m, p):
                continue
            labels = probe["workloads"][dst]
            before = authz_decision(BASELINE_POLICIES, labels, ident, m, p)
            after = authz_decision(BASELINE_POLICIES + docs, labels, ident, m, p)
            if after and not before:
                extras.add((ident or "plaintext", dst, m))
            elif before and not after and dst != s["service"]:
                broken.add((ident or "plaintext", dst, m))
    share = needed_ok / needed_n
    cost = len(extras) + len(broken)
    lp = max(0.0, 1.0 - cost / 4)
    if share == 1:
        g.award(0, f"all {needed_n} needed requests (shown and hidden) are allowed")
    else:
        g.miss(f"{needed_n - needed_ok} of {needed_n} needed requests are denied")
        for src, dst, m, p in missing[:3]:
            g.miss(f"needed and denied: {src} → {dst} {m} {p}")
    if extras:
        shown = sorted(extras)[:4]
        g.miss(f"{len(extras)} extra (caller, workload, method) pairs allowed, e.g. "
               + "; ".join(f"{a} → {b} {m}" for a, b, m in shown))
    if broken:
        g.miss(f"{len(broken)} of CloudMart's own (caller, workload, method) pairs are now denied, e.g. "
               + "; ".join(f"{a} → {b} {m}" for a, b, m in sorted(broken)[:3]))
    if not extras and not broken:
        g.award(0, "nothing beyond the needed edges is allowed, nothing CloudMart needs is broken")
    points = 10 * share * lp
    bad = _identity_only(docs)
    if bad:
        points *= 0.5
        g.miss(f"ALLOW rules that do not name their callers by exact principal (score halved): {', '.join(sorted(set(bad)))}")
    if points >= 10 - 1e-9:
        g.award(10, "the policies allow exactly the needed edges, by identity")
    elif points > 0:
        g.partial(points, f"{100 * share:.0f}% of the needed requests allowed, least-privilege factor {lp:.2f}")
    if missing:
        g.suggest("An ALLOW policy on a workload denies everything it does not match: list every caller and "
                  "operation the edge table names, on the callee's selector.")
    elif extras or broken:
        g.suggest("Narrow each rule to one caller principal and the edge's methods and paths; a policy "
                  "without a selector applies to every workload of the namespace.")


@grading.trivial("day3.authz_policy")
def _authz_trivial(v: int) -> dict[str, Any]:
    allow_all = ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-all, namespace: cloudmart}\n"
                 "spec:\n  action: ALLOW\n  rules:\n    - {}\n")
    deny_all = ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, namespace: cloudmart}\n"
                "spec:\n  action: DENY\n  rules:\n    - {}\n")
    return {"empty": "", "uniform: allow everything in the namespace": allow_all,
            "extreme: deny everything": deny_all, "copied: the notebook's example policy": EXAMPLE_POLICY}


# ---------------------------------------------------------------------------------------------
# day3.rego_authz: a Rego authorization policy and a token policy
# ---------------------------------------------------------------------------------------------

_SUPPORT = ("support", "helpdesk", "customer-care")
_CATALOG = ("catalog-editor", "merchandiser", "buyer")

REGO_SCENARIO = {
    "support_role": "support", "catalog_role": "catalog-editor", "support_may_cancel": False,
    "anonymous_catalog": True, "catalog_write_methods": ["PUT", "POST"],
    "token": {"clients": 6000, "issuer_capacity_per_s": 20.0, "exposure_budget_s": 120.0, "detect_s": 60.0,
              "revocations_per_h": 40.0, "deny_list_capacity": 8},
}

# the notebook's worked example: a first attempt that lets a resource's owner do anything with it
EXAMPLE_REGO = """\
package cloudmart.authz

import rego.v1

default allow := false

allow if {
    input.sub == input.owner
}
"""


def _rego_scenario(v: int) -> dict[str, Any]:
    if v == 0:
        return json.loads(json.dumps(REGO_SCENARIO))
    rng = variants.rng("day3.rego_authz", v)
    clients = int(rng.integers(20, 120)) * 100
    capacity = float(rng.choice([10.0, 20.0, 25.0, 40.0]))
    ttl_min = clients / (capacity * 0.8)                 # clients renew at 80 % of the lifetime
    budget = round(float(ttl_min * rng.uniform(0.2, 0.4)))
    detect = round(float(budget * rng.uniform(0.3, 0.7)))
    rev_per_h = float(rng.choice([20.0, 40.0, 60.0, 120.0]))
    ttl_max = ttl_min * float(rng.uniform(2.5, 4.0))
    cap = max(1, int(rev_per_h / 3600 * ttl_max / 2))
    return {"support_role": str(rng.choice(_SUPPORT)), "catalog_role": str(rng.choice(_CATALOG)),
            "support_may_cancel": bool(rng.integers(2)), "anonymous_catalog": bool(rng.integers(2)),
            "catalog_write_methods": [["PUT", "POST"], ["PATCH"], ["PUT"]][int(rng.integers(3))],
            "token": {"clients": clients, "issuer_capacity_per_s": capacity, "exposure_budget_s": float(budget),
                      "detect_s": float(detect), "revocations_per_h": rev_per_h, "deny_list_capacity": cap}}


def _segments(path: str) -> list[str]:
    return path.split("/")[1:] if path.startswith("/") else []


def rego_expected(case: dict, s: dict) -> bool:
    """The variant's access rules (the notebook states them in words)."""
    method, path, sub, roles, owner = case["method"], case["path"], case["sub"], case["roles"], case["owner"]
    authed = isinstance(sub, str) and sub != ""
    roles = roles if authed else []
    admin = "admin" in roles
    seg = _segments(path)
    if method == "DELETE" or seg[:2] == ["api", "admin"]:
        return admin
    if seg[:2] == ["api", "products"] and len(seg) in (2, 3):
        if method == "GET":
            return authed or s["anonymous_catalog"]
        if method in s["catalog_write_methods"]:
            return admin or s["catalog_role"] in roles
        return False
    if seg[:2] == ["api", "orders"]:
        if len(seg) == 2 and method == "POST":
            return authed
        if len(seg) == 3 and method == "GET":
            return authed and (sub == owner or admin or s["support_role"] in roles)
        if len(seg) == 4 and seg[3] == "cancel" and method == "POST":
            return authed and (sub == owner or (s["support_may_cancel"] and s["support_role"] in roles))
    return False


def rego_cases(s: dict, seed: int, n: int = 40) -> list[dict]:
    """``n`` requests, half that must be allowed and half that must be denied (seed 0: the shown ones)."""
    rng = np.random.default_rng(seed)
    users = ["alice", "bob", "carol", "dave"]
    role_pool = ["customer", s["support_role"], s["catalog_role"], "admin", "Admin", f"{s['support_role']}s"]

    def one():
        oid = f"{int(rng.integers(1, 10**6))}"
        pid = f"p-{int(rng.integers(1, 999))}"
        path = str(rng.choice([
            "/api/products", f"/api/products/{pid}", f"/api/productsx/{pid}", f"/api/products/{pid}/reviews",
            "/api/orders", f"/api/orders/{oid}", f"/api/orders/{oid}/cancel", f"/api/orders/{oid}/cancel/x",
            "/api/admin/users", "/api/admin", f"/api/payments/{oid}", f"/api/orderz/{oid}"]))
        method = str(rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"], p=[0.35, 0.3, 0.15, 0.1, 0.1]))
        sub = rng.choice([None, "", *users], p=[0.12, 0.04, 0.21, 0.21, 0.21, 0.21])
        sub = None if sub is None else str(sub)
        k = int(rng.integers(0, 3))
        roles = sorted({str(r) for r in rng.choice(role_pool, size=k, replace=False)}) if k else []
        owner = sub if (sub and rng.random() < 0.5) else str(rng.choice(users))
        return {"method": method, "path": path, "sub": sub, "roles": roles, "owner": owner}

    allow, deny = [], []
    # the rules' edges first: every seed probes each of them once, with fresh ids and users
    a, b = rng.choice(users, size=2, replace=False).tolist()
    oid, pid = f"{int(rng.integers(1, 10**6))}", f"p-{int(rng.integers(1, 999))}"
    sup, cat = s["support_role"], s["catalog_role"]
    edges = [
        {"method": "GET", "path": f"/api/orders/{oid}", "sub": a, "roles": ["customer"], "owner": b},
        {"method": "GET", "path": f"/api/orders/{oid}", "sub": a, "roles": ["customer"], "owner": a},
        {"method": "GET", "path": f"/api/orders/{oid}", "sub": a, "roles": [sup], "owner": b},
        {"method": "POST", "path": f"/api/orders/{oid}/cancel", "sub": a, "roles": [], "owner": b},
        {"method": "POST", "path": f"/api/orders/{oid}/cancel", "sub": a, "roles": [sup], "owner": b},
        {"method": "POST", "path": "/api/orders", "sub": None, "roles": [], "owner": b},
        {"method": "PUT", "path": f"/api/products/{pid}", "sub": a, "roles": [cat], "owner": b},
        {"method": "PATCH", "path": f"/api/products/{pid}", "sub": a, "roles": [cat], "owner": b},
        {"method": "PUT", "path": f"/api/products/{pid}", "sub": a, "roles": ["customer"], "owner": a},
        {"method": "DELETE", "path": f"/api/orders/{oid}", "sub": a, "roles": ["customer"], "owner": a},
        {"method": "GET", "path": "/api/admin/users", "sub": a, "roles": ["Admin"], "owner": a},
        {"method": "GET", "path": "/api/admin/users", "sub": None, "roles": ["admin"], "owner": a},
        {"method": "GET", "path": f"/api/products/{pid}", "sub": None, "roles": [], "owner": b},
    ]
    for c in edges if seed else []:
        (allow if rego_expected(c, s) else deny).append(c)
    tries = 0
    while (len(allow) < n // 2 or len(deny) < n - n // 2) and tries < 100_000:
        tries += 1
        c = one()
        (allow if rego_expected(c, s) else deny).append(c)
    return allow[: n // 2] + deny[: n - n // 2]


def _rego_decide(rego: str, cases: list[dict]) -> tuple[list[bool], list[str]]:
    import regopy

    decisions, errors = [], []
    try:
        interp = regopy.Interpreter()
        interp.add_module("answer", rego)
    except Exception as exc:                          # compile errors come here or at the first query
        return [False] * len(cases), [f"the policy does not compile: {str(exc).strip().splitlines()[0][:160]}"]
    for c in cases:
        try:
            interp.set_input_term(json.dumps(c))
            out = interp.query("data.cloudmart.authz.allow")
            if not out.ok():
                raise RuntimeError(str(out).strip().splitlines()[0][:160])
            body = str(out).strip()
            allowed = body != "undefined" and json.loads(body).get("expressions") == [True]
        except Exception as exc:                       # fail closed
            allowed = False
            if len(errors) < 3:
                errors.append(f"evaluation error (denied, fail closed): {str(exc).strip().splitlines()[0][:160]}")
        decisions.append(allowed)
    return decisions, errors


def token_outcome(policy: dict, t: dict) -> dict[str, float]:
    """Exposure of a stolen token, the issuer's signing load and the deny list's size for a token
    policy ``{"ttl_s", "deny_list"}`` under the variant's numbers ``t``."""
    from sim.security import revocation_exposure_s, token_issue_rate_per_s

    ttl = float(policy["ttl_s"])
    exposure = revocation_exposure_s(ttl, t["detect_s"] if policy["deny_list"] else None)
    rate = token_issue_rate_per_s(t["clients"], ttl, refresh_fraction=0.8)
    entries = t["revocations_per_h"] / 3600 * ttl / 2 if policy["deny_list"] else 0.0
    return {"exposure_s": exposure, "issue_rate_per_s": rate, "deny_list_entries": entries}


@exercise("day3.rego_authz", max_score=10)
def check_rego_authz(answer: Any, g: Grader) -> None:
    """Answer: ``{"rego": str, "token": {"ttl_s": float, "deny_list": bool}}``."""
    if not isinstance(answer, dict) or not isinstance(answer.get("rego"), str) or not answer["rego"].strip() \
            or not isinstance(answer.get("token"), dict):
        raise AnswerShapeError('answer: {"rego": "<policy text>", "token": {"ttl_s": <seconds>, "deny_list": <bool>}}')
    token = answer["token"]
    if not grading._is_number(token.get("ttl_s")) or token["ttl_s"] <= 0 or not isinstance(token.get("deny_list"), bool):
        raise AnswerShapeError("answer['token']: ttl_s must be a number of seconds > 0 and deny_list True or False")
    s = scenario("day3.rego_authz")
    cases = [c for seed in variants.hidden_seeds("day3.rego_authz", 2) for c in rego_cases(s, seed, 20)]
    decisions, errors = _rego_decide(answer["rego"], cases)
    expected = [rego_expected(c, s) for c in cases]
    pos = [d for d, e in zip(decisions, expected) if e]
    neg = [not d for d, e in zip(decisions, expected) if not e]
    a, d = sum(pos) / len(pos), sum(neg) / len(neg)
    for e in errors:
        g.miss(e)
    rego_fraction = (a * d) ** 2                      # every wrong decision is a security bug or an outage
    msg = f"{sum(pos)}/{len(pos)} hidden requests that must be allowed are, {sum(neg)}/{len(neg)} that must be denied are"
    if rego_fraction == 1:
        g.award(7, msg)
    elif rego_fraction > 0:
        g.partial(7 * rego_fraction, msg)
    else:
        g.miss(msg)
    wrong = [(c, e) for c, dd, e in zip(cases, decisions, expected) if dd != e]
    for c, e in wrong[:3]:
        g.miss(f"{'denied' if e else 'allowed'} but must be {'allowed' if e else 'denied'}: {c['method']} {c['path']} "
               f"sub={c['sub']!r} roles={c['roles']} owner={c['owner']!r}")
    t = s["token"]
    out = token_outcome(token, t)
    f_exp = min(1.0, t["exposure_budget_s"] / out["exposure_s"])
    f_load = min(1.0, t["issuer_capacity_per_s"] / out["issue_rate_per_s"])
    f_list = min(1.0, t["deny_list_capacity"] / out["deny_list_entries"]) if token["deny_list"] else 1.0
    quality = f_exp * f_load * f_list
    for ok, good, bad in (
            (f_exp == 1, f"a stolen token stays usable {out['exposure_s']:.0f} s on average, within {t['exposure_budget_s']:.0f} s",
             f"a stolen token stays usable {out['exposure_s']:.0f} s on average, over the {t['exposure_budget_s']:.0f} s budget"),
            (f_load == 1, f"the issuer signs {out['issue_rate_per_s']:.1f} tokens/s, within {t['issuer_capacity_per_s']:.0f}/s",
             f"the issuer must sign {out['issue_rate_per_s']:.1f} tokens/s, over its {t['issuer_capacity_per_s']:.0f}/s"),
            (f_list == 1, "the deny list fits its capacity" if token["deny_list"] else "no deny list to keep",
             f"the deny list holds {out['deny_list_entries']:.1f} entries on average, over its capacity of {t['deny_list_capacity']}")):
        (g.right if ok else g.wrong).append(good if ok else bad)
    points = 3 * quality * rego_fraction
    if quality == 1 and rego_fraction == 1:
        g.award(3, "the token policy meets all three budgets")
    elif points > 0:
        g.partial(points, f"token policy: {quality:.2f} of its budgets met, counted in proportion to the Rego score")
    if errors or rego_fraction < 1:
        g.suggest("Write one `allow if { ... }` per access rule and run each against the shown cases "
                  "(`rego_cases`) before checking; compare path segments (split), not string prefixes.")
    elif quality < 1:
        g.suggest("Plot exposure, signing load and deny-list size against the TTL (sim.security) and look "
                  "for the TTLs where all three are inside their budgets, with and without a deny list.")


@grading.trivial("day3.rego_authz")
def _rego_trivial(v: int) -> dict[str, Any]:
    allow_all = "package cloudmart.authz\n\nimport rego.v1\n\ndefault allow := true\n"
    deny_all = "package cloudmart.authz\n\nimport rego.v1\n\ndefault allow := false\n"
    good_token = {"ttl_s": 900.0, "deny_list": True}
    return {"empty": {"rego": "", "token": {"ttl_s": 1.0, "deny_list": False}},
            "uniform: allow everything": {"rego": allow_all, "token": good_token},
            "extreme: deny everything, tokens for a year": {"rego": deny_all, "token": {"ttl_s": 3.15e7, "deny_list": False}},
            "copied: the notebook's example": {"rego": EXAMPLE_REGO, "token": {"ttl_s": 3600.0, "deny_list": False}}}


# ---------------------------------------------------------------------------------------------
# day3.control_stages: where each control runs, scored by risk and friction
# ---------------------------------------------------------------------------------------------

STAGES = ("pre-commit", "ci", "admission-deny", "admission-warn", "audit")

#: Ten candidate rules: share of changes that violate it, severity (risk points per hour a
#: violation runs), the check's false-alarm share, its run time (s), and what it needs to see:
#: ``code`` (the repository), ``cluster`` (the object as admitted: defaults, mutations, manual
#: applies) or ``runtime`` (facts that appear after the deploy, e.g. a CVE published later).
CONTROL_RULES: dict[str, dict[str, Any]] = {
    "secret-in-code":        {"text": "no credential committed to the repository", "p": 0.010, "severity": 150.0, "fp": 0.02, "check_s": 2.0, "needs": "code"},
    "unpinned-action":       {"text": "GitHub Actions pinned to commit SHAs", "p": 0.030, "severity": 4.0, "fp": 0.00, "check_s": 6.0, "needs": "code"},
    "privileged-container":  {"text": "no privileged container in the cluster", "p": 0.010, "severity": 60.0, "fp": 0.00, "check_s": 0.05, "needs": "cluster"},
    "image-from-registry":   {"text": "images only from the course registry", "p": 0.020, "severity": 20.0, "fp": 0.00, "check_s": 0.05, "needs": "cluster"},
    "resource-limits":       {"text": "every container has CPU and memory limits", "p": 0.080, "severity": 0.3, "fp": 0.10, "check_s": 0.05, "needs": "cluster"},
    "owner-label":           {"text": "every object has a team label", "p": 0.100, "severity": 0.02, "fp": 0.05, "check_s": 0.05, "needs": "code"},
    "cve-after-deploy":      {"text": "no running image with a critical CVE (published any time)", "p": 0.020, "severity": 6.0, "fp": 0.10, "check_s": 30.0, "needs": "runtime"},
    "lint-sast":             {"text": "no high-severity bandit/semgrep finding in the code", "p": 0.050, "severity": 1.0, "fp": 0.30, "check_s": 8.0, "needs": "code"},
    "sbom-present":          {"text": "every release ships a CycloneDX SBOM", "p": 0.050, "severity": 0.05, "fp": 0.00, "check_s": 10.0, "needs": "code"},
    "netpol-default-deny":   {"text": "every namespace has a default-deny NetworkPolicy", "p": 0.020, "severity": 8.0, "fp": 0.20, "check_s": 0.05, "needs": "cluster"},
}

CONTROL_SCENARIO = {"changes_per_week": 40.0, "commits_per_change": 5.0, "hook_skip": 0.3, "ci_bypass": 0.1,
                    "webhook_availability": 0.995, "warn_fixed": 0.3, "audit_interval_h": 1.0, "fix_h": 24.0,
                    "lifetime_h": 72.0, "weeks": 13.0}

#: Engineer-minutes a false alarm costs at each stage, and the share of the check's run time
#: someone waits for it (a hook blocks the committer; CI runs while the author does other work).
FALSE_ALARM_MIN = {"pre-commit": 1.0, "ci": 15.0, "admission-deny": 45.0, "admission-warn": 2.0, "audit": 10.0}
WAIT_SHARE = {"pre-commit": 1.0, "ci": 0.1, "admission-deny": 1.0, "admission-warn": 1.0, "audit": 0.0}
EXAMPLE_STAGES = {rule: "pre-commit" for rule in CONTROL_RULES}   # the notebook's starting point: "shift everything left"


def control_scenario(v: int = 0, hidden_seed: int | None = None) -> dict[str, Any]:
    """The scenario's numbers (variant ``v``; a hidden seed perturbs them by up to ±25 %)."""
    s = dict(CONTROL_SCENARIO)
    rules = json.loads(json.dumps(CONTROL_RULES))
    if v:
        rng = variants.rng("day3.control_stages", v)
        s.update(changes_per_week=float(rng.choice([20.0, 40.0, 80.0])), hook_skip=float(rng.choice([0.2, 0.3, 0.5])),
                 ci_bypass=float(rng.choice([0.05, 0.1, 0.2])), audit_interval_h=float(rng.choice([0.5, 1.0, 2.0])))
        for r in rules.values():
            r["p"] = round(r["p"] * float(rng.uniform(0.7, 1.3)), 4)
            r["severity"] = round(r["severity"] * float(rng.uniform(0.7, 1.3)), 3)
    if hidden_seed is not None:
        rng = np.random.default_rng(hidden_seed)
        for k in ("changes_per_week", "hook_skip", "ci_bypass"):
            s[k] = s[k] * float(rng.uniform(0.75, 1.25))
        for r in rules.values():
            r["severity"] = r["severity"] * float(rng.uniform(0.75, 1.25))
    s["rules"] = rules
    return s


def _catch(rule: dict, stage: str, s: dict) -> float:
    """Share of violations the stage stops (or, for warn/audit, finds) before they run unchecked."""
    needs = rule["needs"]
    if stage == "pre-commit":
        return (1 - s["hook_skip"]) if needs == "code" else 0.0
    if stage == "ci":
        return (1 - s["ci_bypass"]) if needs == "code" else (1 - s["ci_bypass"]) * 0.8 if needs == "cluster" else 0.0
    if stage == "admission-deny":
        return s["webhook_availability"] if needs == "cluster" else 0.0
    if stage == "admission-warn":
        return s["warn_fixed"] if needs == "cluster" else 0.0
    return 1.0                                         # audit sees everything that runs


def simulate_stages(assignment: dict[str, str], s: dict, seed: int = 0, replications: int = 200) -> dict[str, Any]:
    """Replay ``s['weeks']`` of changes through ``assignment`` (rule → stage), ``replications``
    times: per rule, Poisson changes, binomial violations and catches, exponential lifetimes.

    Risk: severity × hours each violation runs (a violation caught before it runs: 0; found by the
    audit: the wait for the next audit, uniform over its interval, plus ``fix_h``; otherwise
    ``lifetime_h``, exponential with that mean, until the next change replaces it). Friction:
    false alarms × the stage's minutes per false alarm, plus the minutes someone waits for the
    check (every commit for a hook, every change otherwise). Returns per-rule means and totals."""
    unknown = sorted(set(assignment) - set(s["rules"]))
    missing = sorted(set(s["rules"]) - set(assignment))
    if unknown or missing:
        raise ValueError(f"assignment: unknown rules {unknown}, missing rules {missing}; valid: {sorted(s['rules'])}")
    bad = {r: st for r, st in assignment.items() if st not in STAGES}
    if bad:
        raise ValueError(f"assignment: stages {bad} are unknown; valid: {', '.join(STAGES)}")
    rng = np.random.default_rng(seed)
    rows = {}
    for name in sorted(s["rules"]):
        rule, stage = s["rules"][name], assignment[name]
        n = rng.poisson(s["changes_per_week"] * s["weeks"], replications)
        viol = rng.binomial(n, rule["p"])
        caught = rng.binomial(viol, _catch(rule, stage, s))
        escaped = viol - caught
        hours_escaped = np.array([rng.exponential(s["lifetime_h"], k).sum() for k in escaped])
        if stage == "audit":
            hours_caught = np.array([(rng.uniform(0, s["audit_interval_h"], k) + s["fix_h"]).sum() for k in caught])
        elif stage == "admission-warn":
            hours_caught = caught * s["fix_h"]
        else:
            hours_caught = np.zeros(replications)
        risk = rule["severity"] * (hours_escaped + hours_caught)
        checks = n * (s["commits_per_change"] if stage == "pre-commit" else 1.0)
        if stage == "audit":
            checks = np.full(replications, s["weeks"] * 168 / s["audit_interval_h"])
        false_alarms = rng.binomial((n - viol).astype(int), rule["fp"])
        friction = false_alarms * FALSE_ALARM_MIN[stage] + checks * rule["check_s"] / 60 * WAIT_SHARE[stage]
        rows[name] = {"stage": stage, "risk": float(risk.mean()), "friction_min": float(friction.mean())}
    table = rows
    return {"rules": table, "risk": sum(r["risk"] for r in table.values()),
            "friction_min": sum(r["friction_min"] for r in table.values())}


def stage_table(s: dict, seed: int = 0, replications: int = 200):
    """Risk and friction of every rule at every stage (a DataFrame, rule × stage), same draws per stage."""
    import pandas as pd

    out = []
    for stage in STAGES:
        res = simulate_stages({r: stage for r in s["rules"]}, s, seed=seed, replications=replications)
        for rule, row in res["rules"].items():
            out.append({"rule": rule, "stage": stage, "risk": row["risk"], "friction_min": row["friction_min"]})
    return pd.DataFrame(out)


def _best(s: dict, seed: int) -> dict[str, str]:
    t = stage_table(s, seed)
    t["cost"] = t["risk"] + t["friction_min"]
    return {r: str(g.loc[g["cost"].idxmin(), "stage"]) for r, g in t.groupby("rule")}


@exercise("day3.control_stages", max_score=10)
def check_control_stages(answer: Any, g: Grader) -> None:
    """Answer: ``{rule: stage}`` for every candidate rule of the variant."""
    s0 = scenario("day3.control_stages")
    if not isinstance(answer, dict) or not answer:
        raise AnswerShapeError(f"answer: a dict rule -> stage for the rules {sorted(s0['rules'])}; stages: {', '.join(STAGES)}")
    try:
        simulate_stages(answer, s0, replications=1)
    except ValueError as err:
        raise AnswerShapeError(str(err)) from None
    v = variants.variant("day3.control_stages")
    fractions = []
    for label, hidden in (("shown", None), *[("hidden", h) for h in variants.hidden_seeds("day3.control_stages", 2)]):
        s = control_scenario(v, hidden)
        seed = 1 if hidden is None else hidden
        best = simulate_stages(_best(s, seed), s, seed=seed)
        got = simulate_stages(answer, s, seed=seed)
        f_risk = min(1.0, best["risk"] / got["risk"]) if got["risk"] > 0 else 1.0
        f_fric = min(1.0, best["friction_min"] / got["friction_min"]) if got["friction_min"] > 0 else 1.0
        fractions.append(min(1.0, (best["risk"] + best["friction_min"]) / (got["risk"] + got["friction_min"])))
        if label == "shown":
            (g.right if f_risk >= 0.95 else g.wrong).append(
                f"risk {got['risk']:.0f} vs {best['risk']:.0f} for the best assignment (shown scenario)")
            (g.right if f_fric >= 0.95 else g.wrong).append(
                f"friction {got['friction_min']:.0f} engineer-min vs {best['friction_min']:.0f} (shown scenario)")
    frac = float(np.mean(fractions))
    if frac >= 0.95:
        g.award(10, f"within 5 % of the best assignment on the shown and two hidden scenarios ({frac:.2f})")
    else:
        g.partial(10 * frac ** 2, f"risk + friction is {frac:.2f} of the best's inverse, averaged over the shown and two hidden scenarios")
        g.suggest("For each rule ask what the check must see (the code, the admitted object, or facts that "
                  "appear later) and what a false alarm costs where it fires; `stage_table` gives both per stage.")


@grading.trivial("day3.control_stages")
def _stages_trivial(v: int) -> dict[str, Any]:
    rules = sorted(CONTROL_RULES)
    return {"empty": {},
            "uniform: block everything at admission": {r: "admission-deny" for r in rules},
            "extreme: audit everything": {r: "audit" for r in rules},
            "copied: the notebook's starting point": dict(EXAMPLE_STAGES)}


def rego_rules_text(s: dict) -> list[str]:
    """The variant's access rules in words, as the notebook shows them."""
    writes = " or ".join(s["catalog_write_methods"])
    return [
        "DELETE on any path, and any method under /api/admin: the admin role only.",
        "GET /api/products and /api/products/{id}: " + ("anyone, signed in or not." if s["anonymous_catalog"]
                                                         else "any signed-in caller (sub is a non-empty string)."),
        f"{writes} /api/products[/{{id}}]: admin or the role {s['catalog_role']!r}.",
        "POST /api/orders: any signed-in caller.",
        f"GET /api/orders/{{id}}: its owner (sub == owner), admin, or the role {s['support_role']!r}.",
        "POST /api/orders/{id}/cancel: its owner" + (f" or the role {s['support_role']!r}." if s["support_may_cancel"] else " only."),
        "Everything else: deny. Roles count only for a signed-in caller; role names compare exactly.",
    ]
