"""Admission control as a deploy stream: where a rule runs (CI, admission deny/warn, audit), the
webhook's availability and its ``failurePolicy``, and what reaches the cluster.

Gatekeeper's validating webhook is installed with ``failurePolicy: Ignore`` by default (its docs,
"Failing Closed"): while the webhook is down, objects are admitted unchecked and only the audit
finds them later. ``Fail`` blocks every deploy in that time, compliant or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import check_fraction, check_nonnegative, check_positive

STAGES = ("none", "ci", "admission-deny", "admission-warn", "audit")
FAILURE_POLICIES = ("Ignore", "Fail")


@dataclass(frozen=True)
class AdmissionScenario:
    """Deploys arrive (Poisson, ``deploys_per_h``) over ``weeks``; each violates the rule with
    ``p_violation``. ``stage`` is where the rule is enforced:

    * ``ci``: a check in CI blocks a violating change with probability ``ci_coverage`` (a change
      that bypasses CI, e.g. ``kubectl apply`` by hand, is not checked);
    * ``admission-deny``: the webhook refuses violations while it is up; while it is down
      (``webhook_availability`` is the share of time it is up) ``failure_policy`` decides:
      ``Ignore`` admits every deploy unchecked, ``Fail`` refuses every deploy;
    * ``admission-warn``: admits with a warning (violations reach the cluster, nothing is blocked);
    * ``audit`` / ``none``: nothing is blocked at deploy time.

    Outcomes per run: violations that reach the cluster, compliant deploys blocked."""

    deploys_per_h: float = 2.0
    p_violation: float = 0.05
    stage: str = "admission-deny"
    webhook_availability: float = 0.995
    failure_policy: str = "Ignore"
    ci_coverage: float = 0.9
    weeks: float = 1.0

    def __post_init__(self):
        check_positive("deploys_per_h", self.deploys_per_h)
        check_fraction("p_violation", self.p_violation)
        check_fraction("webhook_availability", self.webhook_availability)
        check_fraction("ci_coverage", self.ci_coverage)
        check_positive("weeks", self.weeks)
        if self.stage not in STAGES:
            raise ValueError(f"stage: got {self.stage!r}; valid: {', '.join(STAGES)}")
        if self.failure_policy not in FAILURE_POLICIES:
            raise ValueError(f"failure_policy: got {self.failure_policy!r}; valid: {', '.join(FAILURE_POLICIES)}")

    @property
    def deploys(self) -> float:
        return self.deploys_per_h * 24 * 7 * self.weeks

    def expected(self) -> dict[str, float]:
        """The closed form: expected violations reaching the cluster and compliant deploys blocked."""
        n, p, a = self.deploys, self.p_violation, self.webhook_availability
        if self.stage == "ci":
            return {"violations_admitted": n * p * (1 - self.ci_coverage), "compliant_blocked": 0.0}
        if self.stage == "admission-deny":
            if self.failure_policy == "Ignore":
                return {"violations_admitted": n * p * (1 - a), "compliant_blocked": 0.0}
            return {"violations_admitted": 0.0, "compliant_blocked": n * (1 - p) * (1 - a)}
        return {"violations_admitted": n * p, "compliant_blocked": 0.0}


def simulate_admission(s: AdmissionScenario, seed: int = 0, replications: int = 200) -> dict[str, np.ndarray]:
    """Monte-Carlo outcomes (arrays over replications) of :class:`AdmissionScenario`: each deploy
    is independently a violation, and finds the webhook down with probability 1 − availability."""
    rng = np.random.default_rng(seed)
    check_nonnegative("replications", replications)
    admitted = np.zeros(replications)
    blocked = np.zeros(replications)
    for r in range(replications):
        n = rng.poisson(s.deploys)
        bad = rng.random(n) < s.p_violation
        down = rng.random(n) >= s.webhook_availability
        if s.stage == "ci":
            caught = rng.random(n) < s.ci_coverage
            admitted[r] = np.sum(bad & ~caught)
        elif s.stage == "admission-deny":
            if s.failure_policy == "Ignore":
                admitted[r] = np.sum(bad & down)
            else:
                blocked[r] = np.sum(~bad & down)
        else:
            admitted[r] = np.sum(bad)
    return {"violations_admitted": admitted, "compliant_blocked": blocked}
