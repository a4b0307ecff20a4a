"""Day 3 sim models against closed forms: first-passage times and reach probabilities for lateral
movement, the JWKS refetch rule in key rotation, revocation exposure, mTLS migration failures,
handshake reuse, and the admission failure-policy model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim import policy, security


# -- lateral movement -------------------------------------------------------------------------

def chain(k: int) -> frozenset:
    return frozenset((f"n{i}", f"n{i + 1}") for i in range(k))


@pytest.mark.parametrize("hops", [1, 3])
def test_chain_reach_probability_and_erlang_time(hops):
    lam, mu = 0.5, 0.2
    result = security.LateralMovement(chain(hops), "n0", f"n{hops}", lam, mu, horizon_h=1e6).run(seed=3, replications=3000)
    expected = security.chain_reach_probability(hops, lam, mu)
    se = math.sqrt(expected * (1 - expected) / 3000)
    assert abs(result.p_reach - expected) < 4 * se
    # Without detection the time is Erlang(hops, λ): mean hops/λ.
    free = security.LateralMovement(chain(hops), "n0", f"n{hops}", lam, 0.0, horizon_h=1e6).run(seed=4, replications=3000)
    assert free.p_reach == 1.0
    sd = math.sqrt(hops) / lam
    assert abs(free.mean_time_to_target_h() - hops / lam) < 4 * sd / math.sqrt(3000)


def test_complete_graph_first_passage_matches_janson():
    n, lam = 6, 1.0
    nodes = [f"n{i}" for i in range(n)]
    edges = frozenset((a, b) for a in nodes for b in nodes if a != b)
    result = security.LateralMovement(edges, "n0", "n5", lam, 0.0, horizon_h=1e6).run(seed=5, replications=3000)
    expected = security.complete_graph_mean_time_h(n, lam)
    sd = float(np.std(result.time_to_target_h))
    assert abs(result.mean_time_to_target_h() - expected) < 4 * sd / math.sqrt(3000)
    assert expected < 1 / lam                                 # many parallel paths beat one hop
    assert expected == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 5)        # by hand, n = 6


def test_regimes_order_the_exposure_of_the_database():
    hops = {r: security.LateralMovement.cloudmart(r).hops() for r in security.REGIMES}
    assert hops == {"flat": 1, "mtls": 1, "mtls+authz": 1, "mtls+authz+netpol": None}
    p = {r: security.LateralMovement.cloudmart(r, target="payment").run(seed=1, replications=400).p_reach
         for r in security.REGIMES}
    # notification calls nobody: with AuthorizationPolicies it cannot reach payment over the mesh.
    assert p["flat"] == p["mtls"] > 0.5 and p["mtls+authz"] == 0.0 and p["mtls+authz+netpol"] == 0.0
    flat = security.reachable_edges("flat", ["a", "b"], [("a", "b")], {"db": "b"})
    assert flat == {("a", "b"), ("b", "a"), ("a", "db"), ("b", "db")}
    assert security.reachable_edges("mtls+authz+netpol", ["a", "b"], [("a", "b")], {"db": "b"}) == {("a", "b"), ("b", "db")}


def test_lateral_bad_input():
    with pytest.raises(ValueError, match="regime"):
        security.reachable_edges("zero-trust", ["a"], [])
    with pytest.raises(ValueError, match="not in services"):
        security.reachable_edges("flat", ["a"], [("a", "b")])
    with pytest.raises(ValueError, match="p_exploit_per_h"):
        security.LateralMovement(chain(1), "n0", "n1", 0.0)
    with pytest.raises(ValueError, match="target"):
        security.LateralMovement(chain(1), "n0", "elsewhere")


# -- key rotation -------------------------------------------------------------------------------

def test_rotation_with_overlap_refuses_nothing():
    result = security.simulate_key_rotation(security.KeyRotation(overlap=True, last_fetch_age_s=1.0), seed=1)
    assert result.rejected == 0 and result.relogins == 0 and len(result.requests) > 1000


def test_rotation_without_overlap_costs_each_active_client_one_request():
    s = security.KeyRotation(overlap=False, last_fetch_age_s=60.0, rate_per_s=50, clients=20)
    result = security.simulate_key_rotation(s, seed=2)
    after = result.requests[result.requests.t_s >= s.rotate_at_s]
    # Every client that sent anything after the rotation lost exactly its first request, no more.
    assert result.rejected == after.client.nunique() == result.relogins
    assert set(result.requests[result.requests.rejected].reason) == {"edge: key withdrawn"}
    # On average: clients · (1 − e^{−r_c·T}) with r_c the per-client rate.
    rate_c = s.rate_per_s / s.clients
    expected = s.clients * (1 - math.exp(-rate_c * (s.duration_s - s.rotate_at_s)))
    mean = np.mean([security.simulate_key_rotation(
        security.KeyRotation(overlap=False, rate_per_s=2, clients=20, duration_s=15), seed=i).rejected for i in range(200)])
    assert abs(mean - 20 * (1 - math.exp(-0.1 * 5))) < 0.5
    assert expected == pytest.approx(20.0, abs=1e-6)


def test_refresh_window_adds_rejections_only_while_refetch_is_not_allowed():
    """Verifiers that fetched 2 s before the rotation refuse new-key tokens for the remaining 3 s."""
    s = security.KeyRotation(overlap=False, last_fetch_age_s=2.0, jwks_refresh_s=5.0, rate_per_s=100, clients=10)
    result = security.simulate_key_rotation(s, seed=3)
    window = result.requests[result.requests.reason == "verifier: unknown kid, refetch not yet allowed"]
    assert len(window) > 50
    assert window.t_s.min() >= s.rotate_at_s and window.t_s.max() < s.rotate_at_s + 3.0
    # Without the edge check old tokens pass the verifiers until they refetch (they cached the old key).
    no_edge = security.simulate_key_rotation(security.KeyRotation(overlap=False, edge_check=False,
                                                                  last_fetch_age_s=60.0), seed=4)
    assert no_edge.rejected <= no_edge.scenario.clients + no_edge.scenario.replicas
    share = result.rejected_share_over_time()
    assert share.rejected_share.max() > 0.5 and share.rejected_share.iloc[0] == 0.0


def test_rotation_bad_input():
    with pytest.raises(ValueError, match="rotate_at_s"):
        security.KeyRotation(rotate_at_s=40, duration_s=30)
    with pytest.raises(ValueError, match="replicas"):
        security.KeyRotation(replicas=0)


# -- revocation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("detect_s", [None, 60.0, 3000.0, 9000.0])
def test_revocation_exposure_closed_form(detect_s):
    ttl = 3600.0
    samples = security.simulate_revocation_exposure(ttl, detect_s, thefts=20000, seed=1)
    expected = security.revocation_exposure_s(ttl, detect_s)
    assert abs(samples.mean() - expected) < 4 * samples.std() / math.sqrt(20000) + 1e-9
    if detect_s is None:
        assert expected == ttl / 2


def test_token_lifetime_trades_exposure_for_issuer_load():
    short, long = 300.0, 3600.0
    assert security.revocation_exposure_s(short) < security.revocation_exposure_s(long)
    assert security.token_issue_rate_per_s(1000, short) > security.token_issue_rate_per_s(1000, long)
    assert security.token_issue_rate_per_s(1000, 3600, 0.5) == pytest.approx(1000 / 1800)
    with pytest.raises(ValueError, match="refresh_fraction"):
        security.token_issue_rate_per_s(10, 60, 0)


# -- mTLS migration -----------------------------------------------------------------------------

SERVICES = ["order", "product", "payment"]
TRAFFIC = {("reports", "order"): 2.0, ("reports", "product"): 1.0, ("gateway", "product"): 10.0}


def test_strict_too_early_fails_exactly_the_legacy_edges():
    plan = [("mode", "product", "STRICT"), ("migrate", "reports"), ("mode", "*", "STRICT")]
    steps = security.mtls_migration(plan, TRAFFIC, legacy=["reports"], services=SERVICES, step_s=60)
    assert steps.failed_requests.tolist() == [60.0, 0.0, 0.0]           # 1 rps × 60 s, by hand
    assert steps.failing_edges[0] == [("reports", "product")]
    good = security.mtls_migration([("migrate", "reports"), ("mode", "*", "STRICT")], TRAFFIC, ["reports"], SERVICES)
    assert good.failed_requests.sum() == 0 and set(good.modes.iloc[-1].values()) == {"STRICT"}
    drawn = [security.mtls_migration(plan[:1], TRAFFIC, ["reports"], SERVICES, seed=i).failed_requests[0]
             for i in range(300)]
    assert abs(np.mean(drawn) - 60) < 4 * math.sqrt(60 / 300)


@pytest.mark.parametrize("plan, fragment", [
    ([("mode", "order", "OFF")], "mode 'OFF'"),
    ([("mode", "cart", "STRICT")], "service 'cart'"),
    ([("migrate", "gateway")], "not a legacy client"),
    ([("upgrade",)], "valid:"),
    (["STRICT"], "valid:"),
])
def test_migration_bad_plans(plan, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        security.mtls_migration(plan, TRAFFIC, ["reports"], SERVICES)


# -- handshakes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("rate, timeout", [(20.0, 0.1), (5.0, 0.2), (50.0, 0.01)])
def test_handshake_share_matches_the_idle_gap_law(rate, timeout):
    s = security.HandshakeScenario(rate_per_s=rate, service_ms=0.0, handshake_ms=0.0, idle_timeout_s=timeout,
                                   duration_s=400)
    out = security.simulate_handshakes(s, seed=7)
    p = security.handshake_share_theory(rate, timeout)
    assert abs(out["handshake_share"] - p) < 4 * math.sqrt(p * (1 - p) / out["requests"])


def test_busy_connections_need_more_handshakes_than_the_idle_gap_law():
    """A handshake or a request in flight holds its connection: the law is then a lower bound."""
    busy = security.simulate_handshakes(security.HandshakeScenario(rate_per_s=50, service_ms=20, handshake_ms=3,
                                                                   idle_timeout_s=0.05, duration_s=200), seed=2)
    assert busy["handshake_share"] > security.handshake_share_theory(50, 0.05)


def test_no_keepalive_pays_a_handshake_per_request():
    s = security.HandshakeScenario(keepalive=False, handshake_ms=3.0)
    out = security.simulate_handshakes(s, seed=1)
    assert out["handshake_share"] == 1.0 and out["added_ms_per_request"] == 3.0
    kept = security.simulate_handshakes(security.HandshakeScenario(idle_timeout_s=60.0), seed=1)
    assert kept["handshake_share"] < 0.01


# -- admission ----------------------------------------------------------------------------------

@pytest.mark.parametrize("stage, failure_policy", [("admission-deny", "Ignore"), ("admission-deny", "Fail"),
                                                   ("ci", "Ignore"), ("admission-warn", "Ignore"), ("audit", "Fail")])
def test_admission_outcomes_match_the_closed_form(stage, failure_policy):
    s = policy.AdmissionScenario(deploys_per_h=5, p_violation=0.1, webhook_availability=0.9, stage=stage,
                                 failure_policy=failure_policy, weeks=1)
    sim = policy.simulate_admission(s, seed=1, replications=400)
    for key, expected in s.expected().items():
        values = sim[key]
        assert abs(values.mean() - expected) < 4 * max(values.std(), 1e-9) / math.sqrt(400) + 1e-9, key


def test_failure_policy_trades_leaks_for_blocked_deploys():
    ignore = policy.AdmissionScenario(failure_policy="Ignore").expected()
    fail = policy.AdmissionScenario(failure_policy="Fail").expected()
    assert ignore["violations_admitted"] > 0 == fail["violations_admitted"]
    assert fail["compliant_blocked"] > 0 == ignore["compliant_blocked"]
    with pytest.raises(ValueError, match="failure_policy"):
        policy.AdmissionScenario(failure_policy="ignore")
    with pytest.raises(ValueError, match="stage"):
        policy.AdmissionScenario(stage="pre-commit")
