"""Day 4 exercises: GitHub Actions workflows, graded by actionlint, zizmor and act.

==========================  ========  ============================================================
exercise id                 notebook  answer shape
==========================  ========  ============================================================
``day4.branching``          01        a dict: ``strategy``, ``release_branches``, ``release_every_days``, ``approval``
``day4.workflow``           02        the workflow file's text (a ``str`` of YAML)
``day4.ci_design``          03        a dict: cache ``key``/``restore_keys``, ``max_parallel``, runners, ``runs_on``, concurrency
==========================  ========  ============================================================

**``day4.branching``.** The learner's variant (:func:`scenario`) is a mobile team: its size, the
app versions it must keep supporting, a regulated approval of every production release that one
approver takes ``approval_h`` for, the failure probability of one change and two targets. The
answer picks a branching strategy (``trunk``, ``github_flow``, ``gitflow``), whether each
supported version gets a release branch, how often releases ship (``release_every_days``, 0 for
every merge) and the release gate (``none`` or ``environment``: a protected environment with
required reviewers). Compliance is a gate: more than one supported version needs release
branches (GitHub Flow has none: one deployable ``main``), and a regulated team needs the
environment approval. The answer then runs through :class:`sim.delivery.TeamScenario` on the
shown case and on hidden ones (other seeds, a busier or quieter team): lead time p85 within the
target (4 points) and change failure rate within the target (3), in proportion to the cases met;
the compliance rules (3) count in proportion to those delivery results. Speed and compliance
pull apart: an approval of every merge queues at the approver, skipping it is not allowed, and a
long release train is slow and ships big, risky batches.

**``day4.ci_design``.** The variant names the lockfile, the test matrix, the pipelines per hour
and the share from forks, runner prices, a mean-time target and a daily budget. The answer's
expressions (cache key and restore keys, ``runs_on``, concurrency group and cancel) are evaluated
by act itself on a fixture repository: three commits to ``main`` (one changes code only, one the
lockfile), two pushes to one pull request and a pull request from a fork (hidden PR numbers and
branch names). The key design read from act's ``hashFiles`` and the runner each event gets then
go into :mod:`sim.delivery` (a cached dependency job, the matrix at ``max_parallel``, a
self-hosted pool paid per hour or hosted runners paid per started minute) at the shown and hidden
rates: time target and budget met together (4); the key changes with the lockfile and not with
every commit (3); pushes to ``main`` never cancel each other (1); superseded PR runs are cancelled
(1); no fork on a self-hosted runner (1). The rules count in proportion to the time-and-budget
cases met.

**``day4.workflow``.** The learner's variant (:func:`scenario`) names the default branch, the
release tag pattern, the Python versions of the test matrix and the artifact name. The workflow
must run on pull requests to the default branch, pushes to it and pushes of release tags, and
nothing else; jobs ``lint`` → ``test`` (a matrix over the Python versions, each with
``actions/setup-python``) → ``render`` (``kubectl kustomize cluster/manifests/base`` into
``rendered/all.yaml``, uploaded as the variant's artifact) → ``release`` (release tags only);
least-privilege ``permissions``; a ``concurrency`` group that cancels superseded PR runs.

Points (10): the jobs each hidden event starts, by ``act -n`` after GitHub's ``on`` filters (4:
the share of the events that must start the pipeline, times the share of those that must
not, so "never" and "always" both score 0); a real act run of a push to the default branch
produces the artifact with the fixture's rendered manifests (2; the matrix runs on this host's
Python); actionlint clean (1), no high zizmor finding offline (1), permissions that are neither
missing nor write-all (1), and the concurrency group (1). The last four count in proportion to
the event score: a tidy workflow that does not do the job earns little.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

import grading
from course_i18n import N_, t
from grading import AnswerShapeError, Grader, exercise, variants

__all__ = ["BRANCHING_SCENARIO", "WORKFLOW_SCENARIO", "scenario", "branching_cases", "workflow_events", "EXAMPLE_WORKFLOW",
           "EXAMPLE_BRANCHING"]

_BRANCHES = ("main", "trunk", "develop")
_TAG_PATTERNS = (("v*", "v{major}.{minor}.{patch}", "nightly-{major}"), ("release-*", "release-{major}.{minor}", "v{major}.{minor}"))
_PYTHONS = (("3.11", "3.12"), ("3.10", "3.11"), ("3.11", "3.12", "3.13"))
_ARTIFACTS = ("rendered-manifests", "k8s-rendered", "manifests-all")
_HIDDEN = 1
JOBS_PIPELINE = ("lint", "test", "render")
JOBS_RELEASE = (*JOBS_PIPELINE, "release")
TIMEOUT_S = 120

WORKFLOW_SCENARIO = {
    "default_branch": "main", "release_tag_pattern": "v*", "python_versions": ["3.11", "3.12"],
    "artifact": "rendered-manifests", "overlay": "cluster/manifests/base",
}

# the notebook's worked example: right anatomy, wrong events, no matrix, no artifact
EXAMPLE_WORKFLOW = """\
name: ci
on:
  push:
  pull_request:
permissions:
  contents: read
jobs:
  lint:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0
        with:
          persist-credentials: false
      - run: actionlint .github/workflows/*.yml
  test:
    needs: lint
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0
        with:
          persist-credentials: false
      - run: python -m pytest -q tests
"""


BRANCHING_SCENARIO = {
    "devs": 12, "changes_per_dev_day": 1.0, "supported_versions": 2, "regulated": True, "approval_h": 2.3,
    "p_fail_per_change": 0.01, "target_lead_time_p85_h": 36.0, "target_change_failure_rate": 0.10,
}

# the notebook's worked example (GitHub Flow, as the Predict section runs it)
EXAMPLE_BRANCHING = {"strategy": "github_flow", "release_branches": False, "release_every_days": 0, "approval": "none"}
APPROVALS = ("none", "environment")
_BRANCHING_HIDDEN = 2
BRANCHING_DAYS = 90.0


def _branching_scenario(v: int) -> dict[str, Any]:
    if v == 0:
        return dict(BRANCHING_SCENARIO)
    rng = variants.rng("day4.branching", v)
    devs = int(rng.choice([10, 12, 14, 16]))
    rate = float(rng.choice([0.8, 1.0, 1.2]))
    # one approver is over-committed (load 1.1 to 1.3) if every merge needs an approval
    approval_h = round(float(rng.uniform(1.1, 1.3)) * 24.0 / (devs * rate), 1)
    return {"devs": devs, "changes_per_dev_day": rate, "supported_versions": int(rng.choice([2, 3])), "regulated": True,
            "approval_h": approval_h, "p_fail_per_change": float(rng.choice([0.008, 0.01, 0.012])),
            "target_lead_time_p85_h": float(rng.choice([36.0, 42.0, 48.0])),
            "target_change_failure_rate": float(rng.choice([0.10, 0.12]))}


def scenario(exercise_id: str = "day4.workflow", variant: int | None = None) -> dict[str, Any]:
    """The current learner's scenario (variant 0: :data:`WORKFLOW_SCENARIO` or :data:`BRANCHING_SCENARIO`)."""
    if exercise_id not in ("day4.workflow", "day4.branching", "day4.ci_design"):
        raise ValueError(f"exercise_id: got {exercise_id!r}; valid: day4.workflow, day4.branching or day4.ci_design")
    v = variants.variant(exercise_id) if variant is None else variant
    if exercise_id == "day4.branching":
        return _branching_scenario(v)
    if exercise_id == "day4.ci_design":
        return _ci_scenario(v)
    if v == 0:
        return dict(WORKFLOW_SCENARIO, python_versions=list(WORKFLOW_SCENARIO["python_versions"]))
    rng = variants.rng(exercise_id, v)
    tag = _TAG_PATTERNS[int(rng.integers(len(_TAG_PATTERNS)))]
    return {"default_branch": _BRANCHES[int(rng.integers(len(_BRANCHES)))], "release_tag_pattern": tag[0],
            "python_versions": list(_PYTHONS[int(rng.integers(len(_PYTHONS)))]),
            "artifact": _ARTIFACTS[int(rng.integers(len(_ARTIFACTS)))], "overlay": "cluster/manifests/base"}


def _tag_templates(pattern: str) -> tuple[str, str]:
    for p, good, bad in _TAG_PATTERNS:
        if p == pattern:
            return good, bad
    raise ValueError(f"release_tag_pattern: got {pattern!r}; valid: {', '.join(p for p, _, _ in _TAG_PATTERNS)}")


def workflow_events(s: dict[str, Any], seed: int) -> list[tuple[str, str, dict, set[str]]]:
    """(label, event, payload, expected job ids) for one hidden case of scenario ``s``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = {k: int(rng.integers(0, 20)) for k in ("major", "minor", "patch")}
    good, bad = _tag_templates(s["release_tag_pattern"])
    base = s["default_branch"]
    other = str(rng.choice([b for b in _BRANCHES if b != base] + ["release/1.x"]))
    feature = f"feature/cart-{int(rng.integers(100, 999))}"

    def pr(action, to):
        return {"action": action, "number": int(rng.integers(1, 500)),
                "pull_request": {"head": {"ref": feature}, "base": {"ref": to}}}

    return [
        (N_("PR opened into the default branch"), "pull_request", pr("opened", base), set(JOBS_PIPELINE)),
        (N_("PR updated (synchronize)"), "pull_request", pr("synchronize", base), set(JOBS_PIPELINE)),
        (N_("push to the default branch"), "push", {"ref": f"refs/heads/{base}"}, set(JOBS_PIPELINE)),
        (N_("push of a release tag"), "push", {"ref": "refs/tags/" + good.format(**n)}, set(JOBS_RELEASE)),
        (N_("PR into another branch"), "pull_request", pr("opened", other), set()),
        (N_("push to a feature branch"), "push", {"ref": f"refs/heads/{feature}"}, set()),
        (N_("push of a tag that is no release"), "push", {"ref": "refs/tags/" + bad.format(**n)}, set()),
    ]


def _fixture_repo(root: Path, workflow: str, configmap: str) -> Path:
    (root / ".github/workflows").mkdir(parents=True)
    (root / ".github/workflows/answer.yml").write_text(workflow)
    base = root / "cluster/manifests/base"
    base.mkdir(parents=True)
    (base / "kustomization.yaml").write_text("resources:\n  - configmap.yaml\n")
    (base / "configmap.yaml").write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {configmap}\ndata:\n  k: v\n")
    (root / "tests").mkdir()
    (root / "tests/test_smoke.py").write_text("def test_smoke():\n    assert 1 + 1 == 2\n")
    (root / "requirements.txt").write_text("pytest\n")
    git = ["git", "-C", str(root), "-c", "user.email=grader@example.com", "-c", "user.name=grader"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "fixture"]):
        subprocess.run([*git, *args], check=True, capture_output=True, timeout=30)
    return root


def _tool(name: str) -> str | None:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else shutil.which(name)


def _actionlint(path: Path) -> list[str]:
    proc = subprocess.run([_tool("actionlint") or "actionlint", "-no-color", "-oneline", str(path)],
                          capture_output=True, text=True, timeout=60)
    return [line for line in proc.stdout.splitlines() if line.strip()] if proc.returncode else []


def _zizmor_high(path: Path) -> list[str]:
    proc = subprocess.run([_tool("zizmor") or "zizmor", "--offline", "--format", "json", str(path)],
                          capture_output=True, text=True, timeout=120)
    try:
        findings = json.loads(proc.stdout or "[]")
    except ValueError:
        return [f"zizmor could not read the workflow: {proc.stderr.strip().splitlines()[-1:]}"]
    return sorted({f["ident"] for f in findings if f["determinations"]["severity"] == "High"})


def _permissions_ok(wf: dict) -> bool:
    """Top-level permissions listed one by one, none of them write (write-all and read-all are too broad)."""
    perms = wf.get("permissions")
    return isinstance(perms, dict) and bool(perms) and all(v in ("read", "none") for v in perms.values())


def _concurrency_ok(wf: dict) -> bool:
    c = wf.get("concurrency")
    if not isinstance(c, dict) or "group" not in c:
        return False
    group, cancel = str(c.get("group", "")), str(c.get("cancel-in-progress", ""))
    # per ref (or PR number) and cancelling: always, or only for pull requests
    per_ref = any(tok in group for tok in ("github.ref", "github.head_ref", "pull_request.number"))
    return per_ref and (cancel == "True" or cancel == "true" or "pull_request" in cancel)


def _matrix_key(wf: dict, versions: list[str]) -> str | None:
    test = (wf.get("jobs") or {}).get("test") or {}
    matrix = ((test.get("strategy") or {}).get("matrix") or {})
    for key, values in matrix.items():
        if isinstance(values, list) and sorted(map(str, values)) == sorted(versions):
            return key
    return None


@exercise("day4.workflow", max_score=10)
def check_workflow(answer: Any, g: Grader) -> None:
    """Answer: the workflow's YAML text (see the module docstring for the spec and the points)."""
    from cluster import ci

    if not isinstance(answer, str) or not answer.strip():
        raise AnswerShapeError(t("answer: give the workflow file's text, a non-empty str of YAML"))
    s = scenario("day4.workflow")
    work = Path(tempfile.mkdtemp(prefix="grade-day4-"))
    try:
        seeds = [0, *variants.hidden_seeds("day4.workflow", _HIDDEN)]
        configmap = f"graded-{variants.hidden_seeds('day4.workflow.configmap', 1)[0] % 100000}"
        repo = _fixture_repo(work / "repo", answer, configmap)
        path = repo / ".github/workflows/answer.yml"
        try:
            wf = ci.load_workflow(path)
        except ci.WorkflowError as err:
            g.miss(t("the workflow does not load: {error}", error=str(err).split(": ", 1)[-1]))
            g.suggest(t("Validate the YAML first: actionlint prints the line and column of the problem."))
            return
        # 1. which jobs each event starts (positives and negatives multiply)
        pos_ok = pos_n = neg_ok = neg_n = 0
        wrong = []
        for seed in seeds:
            for label, event, payload, expected in workflow_events(s, seed):
                try:
                    got = set(ci.dry_run(path, event, payload, repo=repo, timeout_s=TIMEOUT_S,
                                         changed_files=["cluster/manifests/base/configmap.yaml"]))
                except (ci.WorkflowError, ci.WorkflowTimeout) as err:
                    got = {f"error: {err}"}
                ok = got == expected
                if expected:
                    pos_n, pos_ok = pos_n + 1, pos_ok + ok
                else:
                    neg_n, neg_ok = neg_n + 1, neg_ok + ok
                if not ok and label not in [w[0] for w in wrong]:
                    wrong.append((label, sorted(got), sorted(expected)))
        behaviour = (pos_ok / pos_n) * (neg_ok / neg_n)
        if behaviour == 1:
            g.award(4, t("every event, shown and hidden, starts exactly the jobs it should"))
        elif behaviour > 0:
            g.partial(4 * behaviour, t("{pos_ok}/{pos_n} events that must run the pipeline and {neg_ok}/{neg_n} that must not are right",
                                        pos_ok=pos_ok, pos_n=pos_n, neg_ok=neg_ok, neg_n=neg_n))
        else:
            g.miss(t("no event starts the right jobs") if not pos_ok else t("every event that must start nothing starts jobs"))
        for label, got, expected in wrong[:3]:
            g.miss(t("{event}: the jobs started were {jobs}", event=t(label), jobs=got or t("none")))
        if wrong:
            g.suggest(t("Filter in `on:` (branches, tags, types) and keep `if:` for the job that only tags run; "
                        "`cluster.ci.dry_run(path, event, payload)` shows what an event starts."))
        # 2. a real run of a push to the default branch produces the artifact
        key = _matrix_key(wf, s["python_versions"])
        produced = False
        if key is None:
            g.miss(t("the test job has no matrix over exactly the Python versions {versions}", versions=s["python_versions"]))
        elif behaviour > 0:
            host = ".".join(map(str, sys.version_info[:2]))
            artifacts = work / "artifacts"
            try:
                run = ci.run_workflow(path, "push", {"ref": f"refs/heads/{s['default_branch']}"}, repo=repo,
                                      matrix={key: host}, artifact_dir=artifacts, timeout_s=TIMEOUT_S,
                                      changed_files=["cluster/manifests/base/configmap.yaml"],
                                      env={"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")})
                files = list(artifacts.glob(f"*/{s['artifact']}/**/all.yaml"))
                produced = run.ok and any(f"name: {configmap}" in f.read_text() for f in files)
                if produced:
                    g.award(2, t("a real act run uploads `{artifact}` with the rendered manifests", artifact=s["artifact"]))
                else:
                    failed = run.steps[run.steps.result == "failure"]["step"].tolist()
                    g.miss(t("the real act run did not upload `{artifact}` with rendered/all.yaml", artifact=s["artifact"])
                           + (t(" (failed steps: {steps})", steps=failed[:3]) if failed else ""))
            except (ci.WorkflowError, ci.WorkflowTimeout) as err:
                g.miss(t("the real act run failed: {error}", error=err))
        # 3. hygiene, earned in proportion to the behaviour
        lint = _actionlint(path)
        high = _zizmor_high(path)
        hygiene = [(t("actionlint is clean"), not lint, f"actionlint: {lint[0] if lint else ''}"),
                   (t("zizmor finds nothing of high severity"), not high,
                    t("zizmor high findings: {findings}", findings=", ".join(high))),
                   (t("permissions are least-privilege (contents: read)"), _permissions_ok(wf),
                    t("permissions: missing or broader than contents: read")),
                   (t("a concurrency group per ref cancels superseded PR runs"), _concurrency_ok(wf),
                    t("concurrency: no group per ref that cancels superseded pull-request runs"))]
        for good, ok, bad in hygiene:
            if ok and behaviour == 1:
                g.award(1, good)
            elif ok and behaviour > 0:
                g.partial(behaviour, t("{criterion} (counted in proportion to the events right)", criterion=good))
            elif ok:
                g.miss(t("{criterion}, but it counts only for a workflow that starts the right jobs", criterion=good))
            else:
                g.miss(bad)
        if high:
            g.suggest(t("Run `zizmor --offline` on the file: each finding links to its audit's page, which names the fix."))
    finally:
        shutil.rmtree(work, ignore_errors=True)


@grading.trivial("day4.workflow")
def _workflow_trivial(v: int) -> dict[str, Any]:
    everything = """\
on: [push, pull_request]
permissions: write-all
jobs:
  lint: {runs-on: ubuntu-latest, steps: [{run: echo lint}]}
  test:
    needs: lint
    runs-on: ubuntu-latest
    strategy: {matrix: {python: ["3.11", "3.12", "3.10", "3.13"]}}
    steps: [{run: echo test}]
  render: {needs: test, runs-on: ubuntu-latest, steps: [{run: echo render}]}
  release: {needs: render, runs-on: ubuntu-latest, steps: [{run: echo release}]}
"""
    never = """\
on: workflow_dispatch
permissions:
  contents: read
concurrency:
  group: ci-${{ github.ref }}
  cancel-in-progress: true
jobs:
  lint: {runs-on: ubuntu-latest, steps: [{run: echo lint}]}
"""
    return {"empty": " ", "uniform: every job on every event": everything,
            "extreme: a tidy workflow that never runs on these events": never,
            "copied: the notebook's example workflow": EXAMPLE_WORKFLOW}


# --- day4.branching ------------------------------------------------------------------------------

def branching_cases(s: dict[str, Any]) -> list[tuple[int, float]]:
    """(seed, changes per developer-day) of the shown case and the hidden ones for scenario ``s``."""
    import numpy as np

    cases = [(0, s["changes_per_dev_day"])]
    for seed in variants.hidden_seeds("day4.branching", _BRANCHING_HIDDEN):
        factor = float(np.random.default_rng(seed).uniform(0.85, 1.15))
        cases.append((seed, round(s["changes_per_dev_day"] * factor, 3)))
    return cases


def _branching_answer(answer: Any) -> dict[str, Any]:
    from sim.delivery import STRATEGIES

    keys = ("strategy", "release_branches", "release_every_days", "approval")
    if not isinstance(answer, dict) or set(answer) != set(keys):
        raise AnswerShapeError(t("answer: give a dict with exactly the keys {keys}", keys=", ".join(keys)))
    if answer["strategy"] not in STRATEGIES:
        raise AnswerShapeError(t("strategy: got {got!r}; valid: one of {valid}", got=answer["strategy"], valid=", ".join(STRATEGIES)))
    if not isinstance(answer["release_branches"], bool):
        raise AnswerShapeError(t("release_branches: give True or False"))
    every = answer["release_every_days"]
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0 <= every <= 60:
        raise AnswerShapeError(t("release_every_days: got {got!r}; valid: a number in [0, 60] (0: deploy every merge)", got=every))
    if answer["strategy"] == "gitflow" and every == 0:
        raise AnswerShapeError(t("release_every_days: GitFlow ships releases from develop on a schedule; valid: > 0"))
    if answer["strategy"] == "github_flow" and every > 0:
        raise AnswerShapeError(t("release_every_days: GitHub Flow deploys main on every merge; valid: 0"))
    if answer["approval"] not in APPROVALS:
        raise AnswerShapeError(t("approval: got {got!r}; valid: one of {valid}", got=answer["approval"], valid=", ".join(APPROVALS)))
    return dict(answer)


def branching_team(s: dict[str, Any], answer: dict[str, Any], changes_per_dev_day: float | None = None):
    """The :class:`sim.delivery.TeamScenario` of an answer for scenario ``s``."""
    from sim.delivery import TeamScenario

    every = float(answer["release_every_days"])
    return TeamScenario(devs=s["devs"], changes_per_dev_day=changes_per_dev_day or s["changes_per_dev_day"],
                        strategy=answer["strategy"], release_train=answer["strategy"] == "trunk" and every > 0,
                        release_cadence_days=every if every > 0 else 14.0,
                        approval_h=s["approval_h"] if answer["approval"] == "environment" else 0.0,
                        p_fail_per_change=s["p_fail_per_change"], days=BRANCHING_DAYS)


@exercise("day4.branching", max_score=10)
def check_branching(answer: Any, g: Grader) -> None:
    """Answer: ``{"strategy", "release_branches", "release_every_days", "approval"}`` (see the module docstring)."""
    import sim

    a = _branching_answer(answer)
    s = scenario("day4.branching")
    # compliance is a gate: both rules or nothing
    versions_ok = s["supported_versions"] < 2 or (a["release_branches"] and a["strategy"] != "github_flow")
    approval_ok = not s["regulated"] or a["approval"] == "environment"
    if not versions_ok:
        g.miss(t("{n} app versions are supported, but this strategy keeps no release branch to fix the older ones on",
                 n=s["supported_versions"]))
        g.suggest(t("Which strategies let a fix land on a version that is already released? Look at where each one keeps that code."))
    if not approval_ok:
        g.miss(t("the team is regulated: every production release needs an approval gate"))
    compliant = versions_ok and approval_ok
    lead_ok = cfr_ok = 0
    worst = []
    for seed, rate in branching_cases(s):
        r = sim.run(branching_team(s, a, rate), seed=seed)
        p85, cfr = r.lead_time_percentile_h(0.85).value, r.change_failure_rate
        lead_ok += p85 <= s["target_lead_time_p85_h"]
        cfr_ok += cfr <= s["target_change_failure_rate"]
        worst.append((p85, cfr))
    n = len(worst)
    speed, stability = lead_ok / n, cfr_ok / n
    p85_max = max(p for p, _ in worst)
    cfr_max = max(c for _, c in worst)
    if not compliant:
        g.miss(t("delivery is not scored for a non-compliant process (lead time p85 up to {p85:.0f} h, change failure rate up to {cfr:.0%})",
                 p85=p85_max, cfr=cfr_max))
        return
    for points, share, good, bad in (
            (4, speed, t("lead time p85 within {target:.0f} h in every case, shown and hidden", target=s["target_lead_time_p85_h"]),
             t("lead time p85 within {target:.0f} h in {k}/{n} cases (worst {worst:.0f} h)", target=s["target_lead_time_p85_h"],
               k=lead_ok, n=n, worst=p85_max)),
            (3, stability, t("change failure rate within {target:.0%} in every case", target=s["target_change_failure_rate"]),
             t("change failure rate within {target:.0%} in {k}/{n} cases (worst {worst:.0%})", target=s["target_change_failure_rate"],
               k=cfr_ok, n=n, worst=cfr_max))):
        if share == 1:
            g.award(points, good)
        elif share > 0:
            g.partial(points * share, bad)
        else:
            g.miss(bad)
    rules = (speed + stability) / 2
    message = t("release branches for the supported versions and an approval gate for the regulated releases")
    if rules == 1:
        g.award(3, message)
    elif rules > 0:
        g.partial(3 * rules, t("{criterion} (counted in proportion to the delivery targets met)", criterion=message))
    else:
        g.miss(t("{criterion}, but it counts only for a process that meets a delivery target", criterion=message))
    if speed < 1:
        g.suggest(t("Look at where a change waits longest in the simulation: the approver's queue, or the release train."))
    if stability < 1:
        g.suggest(t("A release of b changes fails with 1 - (1 - p)^b: what sets b?"))


@grading.trivial("day4.branching")
def _branching_trivial(v: int) -> dict[str, Any]:
    return {"empty": {},
            "uniform: every safeguard at its maximum": {"strategy": "gitflow", "release_branches": True, "release_every_days": 60,
                                                        "approval": "environment"},
            "extreme: trunk, every merge straight to production": {"strategy": "trunk", "release_branches": False,
                                                                    "release_every_days": 0, "approval": "none"},
            "copied: the notebook's GitHub Flow example": dict(EXAMPLE_BRANCHING)}


# --- day4.ci_design ------------------------------------------------------------------------------

CI_DESIGN_SCENARIO = {
    "lockfile": "requirements.txt", "shards": 6, "shard_s": 60.0, "build_s": 90.0, "lockfile_change_p": 0.1,
    "pipelines_per_h": 6.0, "fork_share": 0.25, "hosted_usd_per_min": 0.008, "hosted_start_s": 20.0,
    "self_hosted_usd_per_h": 0.10, "target_mean_s": 150.0, "budget_usd_per_day": 12.5,
}
CI_KEYS = ("cache_key", "restore_keys", "max_parallel", "self_hosted_runners", "runs_on", "concurrency_group", "cancel_in_progress")
_LOCKFILES = ("requirements.txt", "poetry.lock", "uv.lock", "requirements/ci.txt")
_CI_HIDDEN = 2
CI_PIPELINES = 300

# the notebook's worked example: a key on the commit, everything on hosted runners, one group per workflow
EXAMPLE_CI_DESIGN = {
    "cache_key": "deps-${{ github.sha }}", "restore_keys": [], "max_parallel": 2, "self_hosted_runners": 0,
    "runs_on": "ubuntu-latest", "concurrency_group": "${{ github.workflow }}", "cancel_in_progress": "true",
}


def _ci_scenario(v: int) -> dict[str, Any]:
    if v == 0:
        return dict(CI_DESIGN_SCENARIO)
    rng = variants.rng("day4.ci_design", v)
    return dict(CI_DESIGN_SCENARIO, lockfile=str(rng.choice(_LOCKFILES)), pipelines_per_h=float(rng.choice([5.0, 6.0])),
                fork_share=float(rng.choice([0.2, 0.25])))


def _ci_answer(answer: Any, s: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(answer, dict) or set(answer) != set(CI_KEYS):
        raise AnswerShapeError(t("answer: give a dict with exactly the keys {keys}", keys=", ".join(CI_KEYS)))
    for key in ("cache_key", "runs_on", "concurrency_group", "cancel_in_progress"):
        if not isinstance(answer[key], str) or not answer[key].strip() or "\n" in answer[key]:
            raise AnswerShapeError(t("{key}: give a one-line, non-empty str (an expression may use ${{{{ }}}})", key=key))
    if not isinstance(answer["restore_keys"], list) or not all(isinstance(k, str) and k.strip() for k in answer["restore_keys"]):
        raise AnswerShapeError(t("restore_keys: give a list of non-empty str (may be empty)"))
    mp, runners = answer["max_parallel"], answer["self_hosted_runners"]
    if isinstance(mp, bool) or not isinstance(mp, int) or not 1 <= mp <= s["shards"]:
        raise AnswerShapeError(t("max_parallel: got {got!r}; valid: an int in [1, {n}] (the matrix has {n} shards)", got=mp, n=s["shards"]))
    if isinstance(runners, bool) or not isinstance(runners, int) or not 0 <= runners <= 20:
        raise AnswerShapeError(t("self_hosted_runners: got {got!r}; valid: an int in [0, 20]", got=runners))
    return dict(answer)


def _probe_workflow(a: dict[str, Any]) -> str:
    env = {"KEY": a["cache_key"], "GROUP": a["concurrency_group"], "CANCEL": a["cancel_in_progress"], "RUNS_ON": a["runs_on"]}
    env.update({f"RESTORE_{i}": k for i, k in enumerate(a["restore_keys"])})
    printed = " ".join(f'"{name}=${name}"' for name in env)
    wf = {"on": ["push", "pull_request"], "permissions": {"contents": "read"},
          "jobs": {"probe": {"runs-on": "ubuntu-latest", "steps": [
              {"uses": "actions/checkout@v4"}, {"env": env, "run": f"printf 'probe:%s\\n' {printed}"}]}}}
    return yaml.safe_dump(wf, sort_keys=False)


def _probe_fixture(root: Path, s: dict[str, Any], workflow: str) -> Path:
    (root / ".github/workflows").mkdir(parents=True)
    (root / ".github/workflows/probe.yml").write_text(workflow)
    lock = root / s["lockfile"]
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("fastapi==0.115.0\nhttpx==0.27.2\n")
    (root / "src").mkdir()
    (root / "src/app.py").write_text("VERSION = 1\n")
    _commit(root, "init", "-b", "main")
    return root


def _commit(root: Path, message: str, *init: str) -> None:
    git = ["git", "-C", str(root), "-c", "user.email=grader@example.com", "-c", "user.name=grader"]
    steps = ([["init", "-q", *init]] if init else []) + [["add", "-A"], ["commit", "-qm", message]]
    for args in steps:
        subprocess.run([*git, *args], check=True, capture_output=True, timeout=30)


def _probe(path: Path, event: str, payload: dict) -> dict[str, str]:
    from cluster import ci

    run = ci.run_workflow(path, event, payload, timeout_s=TIMEOUT_S)
    if not run.ok:
        raise ci.WorkflowError(t("act could not evaluate the expressions: {error}", error=run.output()[-300:].strip()))
    out = {}
    for line in run.output().splitlines():
        if line.startswith("probe:") and "=" in line:
            k, v = line[len("probe:"):].split("=", 1)
            out[k] = v
    return out


def ci_design_probes(answer: dict[str, Any], s: dict[str, Any], seed: int = 0) -> dict[str, dict[str, str]]:
    """What act makes of the answer's expressions: on three commits to main (A, A' with a code change,
    B with a lockfile change), two pushes of one pull request and a pull request from a fork."""
    import numpy as np

    rng = np.random.default_rng(seed)
    number = int(rng.integers(2, 900))
    branch = f"feature/{rng.choice(['cart', 'search', 'promo'])}-{int(rng.integers(10, 99))}"
    work = Path(tempfile.mkdtemp(prefix="grade-day4-ci-"))
    try:
        repo = _probe_fixture(work / "repo", s, _probe_workflow(answer))
        path = repo / ".github/workflows/probe.yml"

        def pr(fork: bool) -> dict:
            return {"action": "synchronize", "number": number,
                    "pull_request": {"number": number, "head": {"ref": branch, "repo": {"fork": fork}}, "base": {"ref": "main"}}}

        out = {"push A": _probe(path, "push", {"ref": "refs/heads/main"}), "pr A": _probe(path, "pull_request", pr(False)),
               "fork pr": _probe(path, "pull_request", pr(True))}
        (repo / "src/app.py").write_text("VERSION = 2\n")
        _commit(repo, "code change")
        out["push A2"] = _probe(path, "push", {"ref": "refs/heads/main"})
        out["pr A2"] = _probe(path, "pull_request", pr(False))
        (repo / s["lockfile"]).write_text("fastapi==0.115.0\nhttpx==0.28.1\n")
        _commit(repo, "lockfile change")
        out["push B"] = _probe(path, "push", {"ref": "refs/heads/main"})
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _key_design(p: dict[str, dict[str, str]]) -> str:
    same_code = p["push A"]["KEY"] == p["push A2"]["KEY"]
    moved_lock = p["push A2"]["KEY"] != p["push B"]["KEY"]
    return "lockfile_hash" if same_code and moved_lock else ("static" if same_code else "commit_sha")


def ci_design_pipeline(s: dict[str, Any], answer: dict[str, Any], key: str, restore: bool, self_hosted: bool):
    """The sim.delivery pipeline of an answer: a cached dependency build, then the test matrix."""
    from sim.delivery import CacheModel, Job, PipelineScenario, RunnerPool

    cache = CacheModel(build_s=s["build_s"], restore_s=5.0, save_s=8.0, lockfile_change_p=s["lockfile_change_p"], key=key,
                       restore_keys=restore)
    jobs = {"deps": Job(1.0, cache=cache),
            "test": Job(s["shard_s"], needs=("deps",), shards=s["shards"], max_parallel=answer["max_parallel"])}
    if self_hosted:
        pool = RunnerPool(count=answer["self_hosted_runners"], kind="self-hosted", usd_per_h=s["self_hosted_usd_per_h"])
    else:
        pool = RunnerPool(count=20, kind="hosted", usd_per_min=s["hosted_usd_per_min"], start_s=s["hosted_start_s"])
    return PipelineScenario(jobs, pool)


def ci_design_outcome(s: dict[str, Any], answer: dict[str, Any], key: str, restore: bool, forks_self_hosted: bool,
                      trusted_self_hosted: bool, seed: int = 0, pipelines_per_h: float | None = None) -> dict[str, float]:
    """Mean pipeline seconds and dollars per day of the answer (trusted and fork pipelines on their runners)."""
    import sim

    rate = pipelines_per_h or s["pipelines_per_h"]
    shares = {"trusted": (1 - s["fork_share"], trusted_self_hosted), "fork": (s["fork_share"], forks_self_hosted)}
    on_self = sum(share for share, sh in shares.values() if sh)
    mean_s = cost = 0.0
    if on_self:
        r = sim.run(ci_design_pipeline(s, answer, key, restore, True), seed=seed, pipelines_per_h=rate * on_self, n_pipelines=CI_PIPELINES)
        mean_s += on_self * r.mean_makespan_s.value
        cost += answer["self_hosted_runners"] * s["self_hosted_usd_per_h"] * 24
    if on_self < 1:
        r = sim.run(ci_design_pipeline(s, answer, key, restore, False), seed=seed + 1, pipelines_per_h=rate * (1 - on_self),
                    n_pipelines=CI_PIPELINES)
        mean_s += (1 - on_self) * r.mean_makespan_s.value
        cost += r.cost_per_pipeline_usd * rate * (1 - on_self) * 24
    return {"mean_s": mean_s, "usd_per_day": cost}


@exercise("day4.ci_design", max_score=10)
def check_ci_design(answer: Any, g: Grader) -> None:
    """Answer: a dict with the keys in :data:`CI_KEYS` (see ``help(grading.day4)`` and notebook 03)."""
    import numpy as np

    from cluster import ci

    s = scenario("day4.ci_design")
    a = _ci_answer(answer, s)
    seeds = variants.hidden_seeds("day4.ci_design", _CI_HIDDEN)
    try:
        p = ci_design_probes(a, s, seed=seeds[0])
    except (ci.WorkflowError, ci.WorkflowTimeout) as err:
        g.miss(t("the expressions do not evaluate under act: {error}", error=str(err)[:300]))
        return
    key = _key_design(p)
    restore = any(p["push B"].get(f"RESTORE_{i}", "") and p["push B"]["KEY"].startswith(p["push B"][f"RESTORE_{i}"])
                  and p["push B"][f"RESTORE_{i}"] != p["push B"]["KEY"] for i in range(len(a["restore_keys"])))
    fork_self = "self-hosted" in p["fork pr"]["RUNS_ON"]
    trusted_self = "self-hosted" in p["push A"]["RUNS_ON"]
    if (fork_self or trusted_self) and a["self_hosted_runners"] == 0:
        g.miss(t("runs-on picks self-hosted runners, but the pool has none: those jobs would wait forever"))
        return
    # 1. the sim: mean pipeline time within the target and cost within the budget, shown and hidden rates
    cases = [(0, s["pipelines_per_h"])] + [(sd, s["pipelines_per_h"] * float(np.random.default_rng(sd).uniform(0.9, 1.1))) for sd in seeds]
    fast = cheap = both = 0
    worst_s = worst_usd = 0.0
    for seed, rate in cases:
        o = ci_design_outcome(s, a, key, restore, fork_self, trusted_self, seed=seed % 10_000, pipelines_per_h=rate)
        fast += o["mean_s"] <= s["target_mean_s"]
        cheap += o["usd_per_day"] <= s["budget_usd_per_day"]
        both += o["mean_s"] <= s["target_mean_s"] and o["usd_per_day"] <= s["budget_usd_per_day"]
        worst_s, worst_usd = max(worst_s, o["mean_s"]), max(worst_usd, o["usd_per_day"])
    share = both / len(cases)
    summary = t("mean pipeline {mean:.0f} s (target {target:.0f} s), {usd:.2f} USD a day (budget {budget:.2f}), worst case",
                mean=worst_s, target=s["target_mean_s"], usd=worst_usd, budget=s["budget_usd_per_day"])
    if share == 1:
        g.award(4, t("the sim meets the time target and the budget in every case: {summary}", summary=summary))
    elif share > 0:
        g.partial(4 * share, t("time and budget met together in {k}/{n} cases: {summary}", k=both, n=len(cases), summary=summary))
    else:
        g.miss(t("time and budget are never met together: {summary}", summary=summary))
        if fast and not cheap:
            g.suggest(t("Fast but over budget: compare what an idle self-hosted runner costs with what a hosted minute costs."))
        elif cheap and not fast:
            g.suggest(t("Cheap but slow: where does a pipeline spend its time, the dependency build or the matrix waves?"))
    weight = max(share, 0.0)
    # 2. rules from act's own evaluation, counted in proportion to the sim
    rules = [
        (3, key == "lockfile_hash", t("the cache key changes with the lockfile and not with every commit (act's hashFiles)"),
         {"static": t("the cache key does not change when the lockfile changes: a stale cache"),
          "commit_sha": t("the cache key changes on every commit: it never hits")}.get(key, "")),
        (1, p["push A"]["GROUP"] != p["push A2"]["GROUP"] or (p["push A"]["CANCEL"] == "false" and p["push A2"]["CANCEL"] == "false"),
         t("two pushes to main never cancel each other (their deploys all finish)"),
         t("a second push to main cancels the first one's run: a deploy can be cut off")),
        (1, p["pr A"]["GROUP"] == p["pr A2"]["GROUP"] and p["pr A2"]["CANCEL"] == "true",
         t("a new push to a pull request cancels its superseded run"),
         t("a pull request's superseded runs are not cancelled (one group per PR, cancel-in-progress true)")),
        (1, not fork_self, t("pull requests from forks never reach a self-hosted runner"),
         t("a fork's pull request runs on a self-hosted runner: anyone could run code on that machine")),
    ]
    for points, ok, good, bad in rules:
        if ok and weight == 1:
            g.award(points, good)
        elif ok and weight > 0:
            g.partial(points * weight, t("{criterion} (counted in proportion to the time and budget cases met)", criterion=good))
        elif ok:
            g.miss(t("{criterion}, but it counts only for a design that meets time and budget together", criterion=good))
        else:
            g.miss(bad)
    if key != "lockfile_hash":
        g.suggest(t("Evaluate your key on two commits that differ only in code, and on one that changes the lockfile."))


@grading.trivial("day4.ci_design")
def _ci_design_trivial(v: int) -> dict[str, Any]:
    s = _ci_scenario(v)
    everything = {"cache_key": "deps", "restore_keys": [], "max_parallel": s["shards"], "self_hosted_runners": 20,
                  "runs_on": "self-hosted", "concurrency_group": "${{ github.workflow }}", "cancel_in_progress": "true"}
    cheapest = {"cache_key": "deps-${{ github.sha }}", "restore_keys": ["deps-"], "max_parallel": 1, "self_hosted_runners": 1,
                "runs_on": "self-hosted", "concurrency_group": "${{ github.ref }}", "cancel_in_progress": "false"}
    return {"empty": {}, "uniform: every runner and every shard at once": everything,
            "extreme: one self-hosted runner, one shard at a time": cheapest,
            "copied: the notebook's example design": dict(EXAMPLE_CI_DESIGN)}
