"""GitOps timing for Day 4: how long a commit takes to be live, how long drift lives, a revert's MTTR.

    from sim.gitops import ReconcileScenario, RollingUpdate
    sc = ReconcileScenario(poll_s=180, sync_s=2, rollout=RollingUpdate(replicas=3, max_surge=1, max_unavailable=0, pod_start_s=4))
    r = sim.run(sc, seed=1)
    r.converge_s          # samples of commit -> Healthy
    r.p_converge_s(0.9)   # an Estimate
    r.theory_mean_s       # poll/2 + sync + rollout

The Argo CD behaviour modelled (its documentation): the repository is polled every
``timeout.reconciliation`` (180 s by default) unless a webhook announces the push; a commit is
picked up at the next poll, so the wait is uniform on ``[0, poll_s)`` for commits at random times
(Argo CD adds up to ``jitter_s`` to each poll); a sync applies the manifests (``sync_s``) and
the Deployment's RollingUpdate replaces pods. With ``selfHeal`` a live change is noticed through
the watch at once and reverted after ``self_heal_s`` (Argo CD's ``--self-heal-timeout-seconds``,
5 s by default), so drift lives ``self_heal_s + sync_s``; without it drift lives until the next
sync of a new commit.

:class:`RollingUpdate` follows the Deployment controller: at most ``replicas + max_surge`` pods and
at least ``replicas - max_unavailable`` available; with equal pod start times that is
``ceil(replicas / (max_surge + max_unavailable))`` waves of ``pod_start_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import simpy

from ._validate import check_int, check_nonnegative, check_positive
from .distributions import Deterministic, Distribution
from .results import Estimate, percentile_estimate

__all__ = ["RollingUpdate", "ReconcileScenario", "ReconcileResult", "simulate_rolling_update"]


@dataclass(frozen=True)
class RollingUpdate:
    """A Deployment's RollingUpdate strategy (absolute numbers, not percentages)."""

    replicas: int = 2
    max_surge: int = 1
    max_unavailable: int = 0
    pod_start_s: float | Distribution = 5.0

    def __post_init__(self):
        check_int("replicas", self.replicas)
        check_int("max_surge", self.max_surge, minimum=0)
        check_int("max_unavailable", self.max_unavailable, minimum=0)
        if self.max_surge + self.max_unavailable == 0:
            raise ValueError("max_surge, max_unavailable: both 0; valid: at least one > 0 (Kubernetes rejects 0 and 0)")
        if self.max_unavailable > self.replicas:
            raise ValueError(f"max_unavailable: got {self.max_unavailable}; valid: 0..replicas ({self.replicas})")
        if not isinstance(self.pod_start_s, Distribution):
            check_positive("pod_start_s", self.pod_start_s)

    @property
    def start(self) -> Distribution:
        return self.pod_start_s if isinstance(self.pod_start_s, Distribution) else Deterministic(self.pod_start_s)

    def theory_s(self) -> float:
        """Duration with equal start times: ``ceil(replicas / (surge + unavailable))`` waves."""
        return math.ceil(self.replicas / (self.max_surge + self.max_unavailable)) * self.start.mean_s


def simulate_rolling_update(ru: RollingUpdate, rng: np.random.Generator) -> tuple[float, int]:
    """One rollout in SimPy: (seconds until every pod is new and ready, least pods available on the way)."""
    env = simpy.Environment()
    state = {"old": ru.replicas, "new_ready": 0, "starting": 0, "min_available": ru.replicas}
    changed = [env.event()]

    def notify():
        changed[0].succeed()
        changed[0] = env.event()

    def pod():
        yield env.timeout(float(ru.start.sample(rng, 1)[0]))
        state["starting"] -= 1
        state["new_ready"] += 1
        notify()

    def controller():
        while state["new_ready"] < ru.replicas or state["old"] > 0:
            # scale down old pods while availability allows
            while state["old"] > 0 and state["old"] + state["new_ready"] - 1 >= ru.replicas - ru.max_unavailable:
                state["old"] -= 1
            # scale up new pods within the surge limit
            while (state["new_ready"] + state["starting"] < ru.replicas
                   and state["old"] + state["new_ready"] + state["starting"] < ru.replicas + ru.max_surge):
                state["starting"] += 1
                env.process(pod())
            state["min_available"] = min(state["min_available"], state["old"] + state["new_ready"])
            if state["new_ready"] == ru.replicas and state["old"] == 0:
                break
            yield changed[0]

    env.process(controller())
    env.run()
    return env.now, state["min_available"]


@dataclass
class ReconcileResult:
    converge_s: np.ndarray
    detect_s: np.ndarray
    rollout_s: np.ndarray
    min_available: int
    drift_lifetime_s: float
    revert_mttr_s: np.ndarray
    theory_mean_s: float

    def p_converge_s(self, q: float) -> Estimate:
        return percentile_estimate(self.converge_s, q)

    @property
    def mean_converge_s(self) -> float:
        return float(np.mean(self.converge_s))


@dataclass(frozen=True)
class ReconcileScenario:
    """Commit -> OutOfSync -> Synced -> Healthy for ``n_commits`` commits at random times."""

    poll_s: float = 180.0
    jitter_s: float = 0.0
    webhook: bool = False
    webhook_s: float = 1.0
    sync_s: float = 2.0
    rollout: RollingUpdate = field(default_factory=RollingUpdate)
    self_heal: bool = True
    self_heal_s: float = 5.0
    detect_alert_s: float = 60.0
    human_revert_s: float = 120.0
    n_commits: int = 400

    def __post_init__(self):
        check_positive("poll_s", self.poll_s)
        check_nonnegative("jitter_s", self.jitter_s)
        check_nonnegative("webhook_s", self.webhook_s)
        check_nonnegative("sync_s", self.sync_s)
        check_nonnegative("self_heal_s", self.self_heal_s)
        check_nonnegative("detect_alert_s", self.detect_alert_s)
        check_nonnegative("human_revert_s", self.human_revert_s)
        check_int("n_commits", self.n_commits)
        if not isinstance(self.rollout, RollingUpdate):
            raise ValueError(f"rollout: got {type(self.rollout).__name__}; valid: a sim.gitops.RollingUpdate")

    def theory_mean_s(self) -> float:
        detect = self.webhook_s if self.webhook else self.poll_s / 2 + self.jitter_s / 2
        return detect + self.sync_s + self.rollout.theory_s()

    def _detect(self, rng, n):
        if self.webhook:
            return np.full(n, self.webhook_s)
        return rng.uniform(0, self.poll_s, n) + (rng.uniform(0, self.jitter_s, n) if self.jitter_s else 0.0)

    def _run(self, seed: int = 0) -> ReconcileResult:
        rng = np.random.default_rng(seed)
        n = self.n_commits
        detect = self._detect(rng, n)
        rollouts = [simulate_rolling_update(self.rollout, rng) for _ in range(n)]
        rollout_s = np.array([r[0] for r in rollouts])
        converge = detect + self.sync_s + rollout_s
        revert = self.detect_alert_s + self.human_revert_s + self._detect(rng, n) + self.sync_s + rollout_s
        drift = self.self_heal_s + self.sync_s if self.self_heal else float("inf")
        return ReconcileResult(converge, detect, rollout_s, min(r[1] for r in rollouts), drift, revert, self.theory_mean_s())
