"""Delivery models for Day 4: CI pipelines as a DAG on a runner pool, and a team's branching strategy.

    from sim.delivery import Job, PipelineScenario, RunnerPool, CacheModel, TeamScenario
    p = PipelineScenario({"lint": Job(30), "test": Job(120, needs=("lint",), shards=6, max_parallel=3),
                          "deploy": Job(45, needs=("test",))}, runners=RunnerPool(count=4))
    r = sim.run(p, seed=1)          # one pipeline: makespan_s, critical path, a Gantt table
    r.makespan_s, r.critical_path_s, r.gantt
    sim.run(p, seed=1, pipelines_per_h=6, n_pipelines=400)   # a stream of pipelines: queueing

    team = TeamScenario(devs=8, strategy="github_flow")
    sim.run(team, seed=1).dora      # lead time, deploy frequency, change failure rate, MTTR

Time is in seconds inside the pipeline model and in hours inside the team model (the names say
which). Job durations are a number (deterministic) or any :class:`sim.Distribution`.

Checked against theory in ``tests/sim/test_delivery.py``: with enough runners the makespan of
one pipeline is the DAG's critical path; a matrix of n shards of t seconds with ``max-parallel`` p
takes ``ceil(n/p)·t``; one-job pipelines with exponential durations on c runners wait as M/M/c
(Erlang C); a GitFlow release train adds half a release cadence to the lead time; a release of b
changes fails with probability ``1 - (1 - p)^b``. Against a measurement: act's matrix makespans at
``max-parallel`` 1/2/3/6 (``tests/ci``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd
import simpy

from ._validate import check_fraction, check_int, check_nonnegative, check_positive
from .distributions import Deterministic, Distribution
from .results import Estimate, percentile_estimate, replication_estimate

__all__ = [
    "CacheModel", "Job", "RunnerPool", "PipelineScenario", "PipelineResult",
    "TeamScenario", "TeamResult", "matrix_makespan_s", "cache_hit_ratio", "STRATEGIES", "CACHE_KEY_DESIGNS",
]

CACHE_KEY_DESIGNS = ("static", "lockfile_hash", "commit_sha")
STRATEGIES = ("trunk", "github_flow", "gitflow")


def _duration(value, name: str) -> Distribution:
    if isinstance(value, Distribution):
        return value
    return Deterministic(check_positive(name, value))


@dataclass(frozen=True)
class CacheModel:
    """A dependency cache in front of a build step (actions/cache semantics).

    ``key``: ``static`` (one key forever: always a hit after the first save, stale when the lockfile
    changes), ``lockfile_hash`` (``hashFiles(lockfile)``: misses only when the lockfile changed)
    or ``commit_sha`` (a new key every commit: never a hit). A miss with a ``restore-keys`` prefix
    restores the newest older entry and rebuilds only ``partial_build_fraction`` of the build.
    """

    build_s: float = 60.0
    restore_s: float = 5.0
    save_s: float = 8.0
    lockfile_change_p: float = 0.1
    key: str = "lockfile_hash"
    restore_keys: bool = True
    partial_build_fraction: float = 0.5

    def __post_init__(self):
        check_positive("build_s", self.build_s)
        check_nonnegative("restore_s", self.restore_s)
        check_nonnegative("save_s", self.save_s)
        check_fraction("lockfile_change_p", self.lockfile_change_p)
        check_fraction("partial_build_fraction", self.partial_build_fraction)
        if self.key not in CACHE_KEY_DESIGNS:
            raise ValueError(f"key: got {self.key!r}; valid: one of {', '.join(CACHE_KEY_DESIGNS)}")

    def step_s(self, hit: bool, first: bool) -> float:
        """Seconds of the cache + build steps for one commit."""
        if hit:
            return self.restore_s
        partial = self.restore_keys and not first
        return self.restore_s + self.build_s * (self.partial_build_fraction if partial else 1.0) + self.save_s


def cache_hit_ratio(key: str, lockfile_change_p: float) -> float:
    """Long-run exact-hit ratio of a key design when each commit changes the lockfile with probability p."""
    return {"static": 1.0, "lockfile_hash": 1.0 - lockfile_change_p, "commit_sha": 0.0}[key]


@dataclass(frozen=True)
class Job:
    """One job of a workflow: a duration per shard, the jobs it ``needs``, a matrix of ``shards``."""

    duration: float | Distribution
    needs: tuple[str, ...] = ()
    shards: int = 1
    max_parallel: int | None = None
    cache: CacheModel | None = None

    def __post_init__(self):
        _duration(self.duration, "duration")
        check_int("shards", self.shards)
        if self.max_parallel is not None:
            check_int("max_parallel", self.max_parallel)
        object.__setattr__(self, "needs", tuple(self.needs))


@dataclass(frozen=True)
class RunnerPool:
    """``count`` runners: ``hosted`` (billed per started minute of each job, GitHub's rule) or
    ``self-hosted`` (billed per hour whether busy or not); ``start_s`` is the VM/pod start per job."""

    count: int = 20
    kind: str = "hosted"
    usd_per_min: float = 0.008
    usd_per_h: float = 0.0
    start_s: float = 0.0

    def __post_init__(self):
        check_int("count", self.count)
        if self.kind not in ("hosted", "self-hosted"):
            raise ValueError(f"kind: got {self.kind!r}; valid: hosted or self-hosted")
        check_nonnegative("usd_per_min", self.usd_per_min)
        check_nonnegative("usd_per_h", self.usd_per_h)
        check_nonnegative("start_s", self.start_s)


def matrix_makespan_s(shards: int, max_parallel: int, shard_s: float) -> float:
    """Makespan of a matrix of equal shards: ``ceil(n / p) · t``."""
    return math.ceil(check_int("shards", shards) / check_int("max_parallel", max_parallel)) * shard_s


@dataclass
class PipelineResult:
    """Per-pipeline makespans and waits, one pipeline's Gantt table, cost, cache hits."""

    makespans_s: np.ndarray
    waits_s: np.ndarray
    gantt: pd.DataFrame
    critical_path_s: float
    cost_usd: float
    runner_busy_s: float
    horizon_s: float
    cache_hits: int
    cache_lookups: int
    runners: int = 1

    @property
    def makespan_s(self) -> float:
        return float(self.makespans_s[0])

    @property
    def mean_makespan_s(self) -> Estimate:
        return replication_estimate(self.makespans_s) if len(self.makespans_s) > 1 else Estimate(*(3 * [self.makespan_s]))

    def makespan_percentile_s(self, q: float) -> Estimate:
        return percentile_estimate(self.makespans_s, q)

    @property
    def mean_wait_s(self) -> float:
        return float(np.mean(self.waits_s)) if len(self.waits_s) else 0.0

    @property
    def cost_per_pipeline_usd(self) -> float:
        return self.cost_usd / len(self.makespans_s)

    @property
    def cache_hit_ratio(self) -> float:
        return self.cache_hits / self.cache_lookups if self.cache_lookups else float("nan")

    @property
    def utilisation(self) -> float:
        """Busy share of the pool over the run (runner-seconds busy / runner-seconds available)."""
        return self.runner_busy_s / (self.horizon_s * self.runners) if self.horizon_s else 0.0


@dataclass(frozen=True)
class PipelineScenario:
    """A workflow as a DAG of :class:`Job` on a :class:`RunnerPool`.

    GitHub starts a job as soon as the jobs it ``needs`` are done. act plans a run in stages
    (the jobs at each depth of the DAG) and starts a stage only when the previous one is done:
    ``stages=True`` models that, so a measured act run can be compared like for like.
    """

    jobs: dict
    runners: RunnerPool = field(default_factory=RunnerPool)
    stages: bool = False

    def __post_init__(self):
        if not self.jobs:
            raise ValueError("jobs: got an empty mapping; valid: at least one Job")
        for name, job in self.jobs.items():
            if not isinstance(job, Job):
                raise ValueError(f"jobs[{name!r}]: got {type(job).__name__}; valid: a sim.delivery.Job")
            for need in job.needs:
                if need not in self.jobs:
                    raise ValueError(f"jobs[{name!r}].needs: {need!r} is not a job; valid: {', '.join(self.jobs)}")
        if not nx.is_directed_acyclic_graph(self.graph()):
            raise ValueError("jobs: the needs form a cycle; valid: a DAG")

    def graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for name, job in self.jobs.items():
            g.add_node(name)
            g.add_edges_from((need, name) for need in job.needs)
        return g

    def levels(self) -> dict[str, int]:
        """Depth of each job in the DAG (0 for jobs that need nothing): act's stages."""
        depth: dict[str, int] = {}
        for name in nx.topological_sort(self.graph()):
            depth[name] = max((depth[n] + 1 for n in self.jobs[name].needs), default=0)
        return depth

    def _waits_for(self) -> dict[str, tuple[str, ...]]:
        if not self.stages:
            return {name: job.needs for name, job in self.jobs.items()}
        depth = self.levels()
        return {name: tuple(n for n in self.jobs if depth[n] == depth[name] - 1) for name in self.jobs}

    def critical_path_s(self) -> float:
        """The longest path through mean job times (each matrix at its own ``max-parallel``)."""
        finish: dict[str, float] = {}
        waits = self._waits_for()
        for name in nx.topological_sort(self.graph()):
            job = self.jobs[name]
            t = _duration(job.duration, "duration").mean_s + self.runners.start_s
            own = matrix_makespan_s(job.shards, job.max_parallel or job.shards, t)
            finish[name] = max((finish[n] for n in waits[name]), default=0.0) + own
        return max(finish.values())

    def _run(self, seed: int = 0, pipelines_per_h: float | None = None, n_pipelines: int = 1) -> PipelineResult:
        check_int("n_pipelines", n_pipelines)
        if pipelines_per_h is not None:
            check_positive("pipelines_per_h", pipelines_per_h)
        rng = np.random.default_rng(seed)
        env = simpy.Environment()
        pool = simpy.Resource(env, capacity=self.runners.count)
        order = list(nx.topological_sort(self.graph()))
        waits_for = self._waits_for()
        records: list[dict] = []
        makespans, waits = [], []
        busy = [0.0]
        billed_min = [0]
        cache_state = {"seen": False, "hits": 0, "lookups": 0}

        def shard(pid, name, i, limit):
            job = self.jobs[name]
            with limit.request() as slot:
                yield slot
                queued = env.now
                with pool.request() as runner:
                    yield runner
                    waits.append(env.now - queued)
                    start = env.now
                    t = self.runners.start_s + float(_duration(job.duration, "duration").sample(rng, 1)[0])
                    if job.cache is not None:
                        first = not cache_state["seen"]
                        changed = rng.random() < job.cache.lockfile_change_p
                        hit = (not first) and {"static": True, "lockfile_hash": not changed, "commit_sha": False}[job.cache.key]
                        cache_state.update(seen=True, hits=cache_state["hits"] + hit, lookups=cache_state["lookups"] + 1)
                        t += job.cache.step_s(hit, first)
                    yield env.timeout(t)
                    busy[0] += t
                    billed_min[0] += math.ceil(t / 60.0)
                    records.append({"pipeline": pid, "job": name, "shard": i, "start_s": start, "end_s": env.now})

        def pipeline(pid):
            t0 = env.now
            done = {name: env.event() for name in order}

            def run_job(name):
                job = self.jobs[name]
                yield env.all_of([done[n] for n in waits_for[name]])
                limit = simpy.Resource(env, capacity=job.max_parallel or job.shards)
                yield env.all_of([env.process(shard(pid, name, i, limit)) for i in range(job.shards)])
                done[name].succeed()

            for name in order:
                env.process(run_job(name))
            yield env.all_of(list(done.values()))
            makespans.append(env.now - t0)

        def source():
            for pid in range(n_pipelines):
                env.process(pipeline(pid))
                if pipelines_per_h is not None:
                    yield env.timeout(rng.exponential(3600.0 / pipelines_per_h))
            if pipelines_per_h is None:
                yield env.timeout(0)

        env.process(source())
        env.run()
        gantt = pd.DataFrame([r for r in records if r["pipeline"] == 0]).sort_values(["start_s", "job", "shard"]).reset_index(drop=True)
        horizon = env.now
        if self.runners.kind == "hosted":
            cost = billed_min[0] * self.runners.usd_per_min
        else:
            cost = self.runners.count * self.runners.usd_per_h * horizon / 3600.0
        return PipelineResult(np.asarray(makespans), np.asarray(waits), gantt, self.critical_path_s(), cost, busy[0], horizon,
                              cache_state["hits"], cache_state["lookups"], self.runners.count)


# --- team and branching strategy -------------------------------------------------------------------

@dataclass
class TeamResult:
    """The DORA four with intervals, plus conflicts and batch sizes; ``changes`` has one row per change."""

    changes: pd.DataFrame
    deploys: pd.DataFrame
    days: float

    @property
    def lead_time_h(self) -> Estimate:
        return percentile_estimate(self.changes["lead_time_h"].to_numpy(), 0.5)

    def lead_time_percentile_h(self, q: float) -> Estimate:
        return percentile_estimate(self.changes["lead_time_h"].to_numpy(), q)

    @property
    def deploys_per_day(self) -> float:
        return len(self.deploys) / self.days

    @property
    def change_failure_rate(self) -> float:
        return float(self.deploys["failed"].mean()) if len(self.deploys) else float("nan")

    @property
    def mttr_h(self) -> float:
        failed = self.deploys[self.deploys["failed"]]
        return float(failed["restore_h"].mean()) if len(failed) else 0.0

    @property
    def mean_batch(self) -> float:
        return float(self.deploys["batch"].mean()) if len(self.deploys) else 0.0

    @property
    def conflict_rate(self) -> float:
        return float(self.changes["conflict"].mean())

    @property
    def dora(self) -> pd.DataFrame:
        p50, p85 = self.lead_time_h, self.lead_time_percentile_h(0.85)
        return pd.DataFrame([
            {"metric": "lead time p50 (h)", "value": p50.value, "low": p50.low, "high": p50.high},
            {"metric": "lead time p85 (h)", "value": p85.value, "low": p85.low, "high": p85.high},
            {"metric": "deploys per day", "value": self.deploys_per_day, "low": None, "high": None},
            {"metric": "change failure rate", "value": self.change_failure_rate, "low": None, "high": None},
            {"metric": "MTTR (h)", "value": self.mttr_h, "low": None, "high": None},
        ])


@dataclass(frozen=True)
class TeamScenario:
    """A team delivering changes under a branching strategy (hours inside the model).

    Each developer starts changes as a Poisson stream (``changes_per_dev_day`` per 8-hour day);
    a change takes ``work_h`` (exponential) on its branch, capped at ``max_branch_age_h`` for
    ``trunk`` (work lands behind flags). It then waits for one of ``reviewers`` for
    ``review_h``; ``trunk`` with ``reviewers=0`` merges at once. While a branch is open, every
    other branch open at the same time adds conflict hazard ``p_conflict_per_overlap_h`` per hour
    of overlap; a conflict costs ``conflict_fix_h``. ``trunk`` and ``github_flow`` deploy every
    merge (``deploy_h``); ``gitflow`` merges into ``develop`` and ships a release every
    ``release_cadence_days``, and so does ``trunk`` with ``release_train=True`` (releases cut from
    trunk on a schedule). With ``approval_h`` every production deploy (a single change or a
    release) first waits for one of ``approvers`` for that long. A deploy of b changes
    fails with ``1 - (1 - p_fail_per_change)^b``; it is restored in ``detect_h`` plus a revert and
    redeploy for a single change, or a hotfix of ``diagnose_h_per_change·b`` for a batch.
    """

    devs: int = 8
    changes_per_dev_day: float = 1.0
    strategy: str = "github_flow"
    work_h: float = 6.0
    max_branch_age_h: float = 24.0
    reviewers: int = 2
    review_h: float = 1.0
    release_cadence_days: float = 14.0
    approval_h: float = 0.0
    approvers: int = 1
    release_train: bool = False
    p_conflict_per_overlap_h: float = 0.002
    conflict_fix_h: float = 1.0
    p_fail_per_change: float = 0.02
    deploy_h: float = 0.25
    detect_h: float = 0.5
    diagnose_h_per_change: float = 0.1
    days: float = 60.0

    def __post_init__(self):
        check_int("devs", self.devs)
        check_positive("changes_per_dev_day", self.changes_per_dev_day)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy: got {self.strategy!r}; valid: one of {', '.join(STRATEGIES)}")
        for name in ("work_h", "max_branch_age_h", "release_cadence_days", "deploy_h", "days"):
            check_positive(name, getattr(self, name))
        for name in ("review_h", "approval_h", "conflict_fix_h", "detect_h", "diagnose_h_per_change"):
            check_nonnegative(name, getattr(self, name))
        check_int("reviewers", self.reviewers, minimum=0)
        check_int("approvers", self.approvers)
        if self.release_train and self.strategy == "github_flow":
            raise ValueError("release_train: got True with github_flow; valid: False (GitHub Flow deploys main on every merge) "
                             "or strategy trunk / gitflow")
        check_fraction("p_conflict_per_overlap_h", self.p_conflict_per_overlap_h)
        check_fraction("p_fail_per_change", self.p_fail_per_change)
        if self.reviewers == 0 and self.strategy != "trunk":
            raise ValueError("reviewers: got 0; valid: >= 1 unless strategy is trunk (pairing, no PR review)")

    def _run(self, seed: int = 0) -> TeamResult:
        rng = np.random.default_rng(seed)
        env = simpy.Environment()
        horizon_h = self.days * 24.0
        review = simpy.Resource(env, capacity=max(self.reviewers, 1))
        approver = simpy.Resource(env, capacity=self.approvers)
        train = self.strategy == "gitflow" or self.release_train
        open_branches: dict[int, float] = {}
        changes: list[dict] = []
        pending: list[int] = []  # merged into develop, waiting for the release train
        deploys: list[dict] = []
        rate_per_h = self.devs * self.changes_per_dev_day / 24.0  # changes per wall-clock hour

        def overlap_hazard(cid, opened):
            # other branches open now, each for as long as both were open
            return sum(env.now - max(opened, other) for k, other in open_branches.items() if k != cid)

        def deploy(batch_ids):
            if self.approval_h:
                with approver.request() as a:
                    yield a
                    yield env.timeout(self.approval_h)
            yield env.timeout(self.deploy_h)
            b = len(batch_ids)
            failed = rng.random() < 1.0 - (1.0 - self.p_fail_per_change) ** b
            restore = 0.0
            if failed:
                restore = self.detect_h + (self.deploy_h if b == 1 else self.diagnose_h_per_change * b + self.deploy_h)
            deploys.append({"time_h": env.now, "batch": b, "failed": failed, "restore_h": restore})
            for cid in batch_ids:
                changes[cid]["deployed_h"] = env.now

        def change(cid):
            opened = env.now
            open_branches[cid] = opened
            work = rng.exponential(self.work_h)
            if self.strategy == "trunk":
                work = min(work, self.max_branch_age_h)
            yield env.timeout(work)
            if self.reviewers:
                with review.request() as r:
                    yield r
                    yield env.timeout(rng.exponential(self.review_h) if self.review_h else 0)
            hazard = overlap_hazard(cid, opened) * self.p_conflict_per_overlap_h
            conflict = rng.random() < 1.0 - math.exp(-hazard)
            if conflict:
                yield env.timeout(self.conflict_fix_h)
            del open_branches[cid]
            changes[cid].update(merged_h=env.now, conflict=conflict, branch_age_h=env.now - opened)
            if train:
                pending.append(cid)
            else:
                env.process(deploy([cid]))

        def arrivals():
            while True:
                yield env.timeout(rng.exponential(1.0 / rate_per_h))
                changes.append({"id": len(changes), "start_h": env.now, "deployed_h": None, "conflict": False})
                env.process(change(len(changes) - 1))

        def release_train():
            while True:
                yield env.timeout(self.release_cadence_days * 24.0)
                batch = list(pending)
                pending.clear()
                if batch:
                    env.process(deploy(batch))

        env.process(arrivals())
        if train:
            env.process(release_train())
        env.run(until=horizon_h)
        done = pd.DataFrame([c for c in changes if c.get("deployed_h") is not None])
        if done.empty:
            raise ValueError("days: no change was deployed in the horizon; valid: a longer `days` or a shorter release cadence")
        done["lead_time_h"] = done["deployed_h"] - done["start_h"]
        return TeamResult(done, pd.DataFrame(deploys), self.days)
