"""cluster.ci: GitHub's trigger filters, the stand-in actions' cache semantics, and act run for real
on small workflows in scratch repositories (each run a few seconds, every one bounded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cluster import ci

sys.path.insert(0, str(ci.STANDINS))
import standin  # noqa: E402  (the stand-ins' own module, importable for unit tests)

TIMEOUT_S = 90


def make_repo(root: Path, workflows: dict[str, str], files: dict[str, str] | None = None) -> Path:
    wf = root / ".github" / "workflows"
    wf.mkdir(parents=True)
    for name, text in workflows.items():
        (wf / name).write_text(textwrap.dedent(text))
    for name, text in (files or {}).items():
        (root / name).write_text(text)
    git = ["git", "-C", str(root), "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True, timeout=30)
    subprocess.run([*git, "add", "-A"], check=True, timeout=30)
    subprocess.run([*git, "commit", "-qm", "init"], check=True, timeout=30)
    return root


# --- bad input ------------------------------------------------------------------------------------

def test_yaml_error_is_one_line_with_the_position(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [\n")
    with pytest.raises(ci.WorkflowError) as err:
        ci.run_workflow(bad, "push", repo=tmp_path)
    message = str(err.value)
    assert "\n" not in message and "invalid YAML" in message and f"{bad}:" in message


def test_a_workflow_without_jobs_is_refused(tmp_path):
    bad = tmp_path / "nojobs.yml"
    bad.write_text("on: push\n")
    with pytest.raises(ci.WorkflowError, match="jobs"):
        ci.load_workflow(bad)


def test_timeout_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="timeout_s"):
        ci.run_workflow(tmp_path / "x.yml", timeout_s=0)


# --- trigger filters (GitHub's documented pattern semantics) ----------------------------------------

@pytest.mark.parametrize("patterns, value, expected", [
    (["main"], "main", True),
    (["main"], "main2", False),
    (["releases/*"], "releases/1.0", True),
    (["releases/*"], "releases/1.0/hotfix", False),
    (["releases/**"], "releases/1.0/hotfix", True),
    (["v*"], "v1.2.3", True),
    (["v[12].*"], "v3.0", False),
    (["**.py", "!docs/**"], "docs/conf.py", False),
    (["!docs/**", "**.py"], "docs/conf.py", True),   # the last matching pattern decides
    (["*.jsx?"], "page.js", True),
    (["*.jsx?"], "page.jsx", True),
])
def test_filter_patterns(patterns, value, expected):
    assert ci.matches(patterns, value) is expected


def test_triggers_branches_tags_paths_and_types():
    wf = {"on": {"push": {"branches": ["main"], "paths-ignore": ["docs/**"]},
                 "pull_request": {"branches": ["main"], "types": ["opened"]}}, "jobs": {"a": {}}}
    assert ci.triggers(wf, "push", {"ref": "refs/heads/main"}, changed_files=["src/a.py"])
    assert not ci.triggers(wf, "push", {"ref": "refs/heads/dev"}, changed_files=["src/a.py"])
    assert not ci.triggers(wf, "push", {"ref": "refs/heads/main"}, changed_files=["docs/a.md"])
    assert not ci.triggers(wf, "push", {"ref": "refs/tags/v1"})           # branches only: tags do not start it
    assert ci.triggers(wf, "pull_request", {"action": "opened", "pull_request": {"base": {"ref": "main"}}})
    assert not ci.triggers(wf, "pull_request", {"action": "synchronize", "pull_request": {"base": {"ref": "main"}}})
    assert not ci.triggers(wf, "workflow_dispatch", {})
    tags_only = {"on": {"push": {"tags": ["v*"]}}, "jobs": {"a": {}}}
    assert ci.triggers(tags_only, "push", {"ref": "refs/tags/v2.0"})
    assert not ci.triggers(tags_only, "push", {"ref": "refs/heads/main"})


def test_paths_filter_needs_the_changed_files():
    wf = {"on": {"push": {"paths": ["src/**"]}}, "jobs": {"a": {}}}
    with pytest.raises(ci.WorkflowError, match="changed_files"):
        ci.triggers(wf, "push", {"ref": "refs/heads/main"})


# --- stand-in cache matching (unit) ------------------------------------------------------------------

def _entry(root: Path, key: str, ref: str, created_ns: int, version: str = "v1"):
    d = root / f"{key}-{ref.replace('/', '_')}"
    d.mkdir()
    (d / "meta.json").write_text(json.dumps({"key": key, "version": version, "ref": ref, "created_ns": created_ns, "files": []}))


def test_cache_matching_order(tmp_path):
    main, feat = "refs/heads/main", "refs/heads/feat"
    _entry(tmp_path, "deps-linux-aaa", main, 1)
    _entry(tmp_path, "deps-linux-bbb", main, 2)
    _entry(tmp_path, "deps-linux-ccc", feat, 3)
    _entry(tmp_path, "deps-linux-ddd", main, 4, version="other-paths")
    find = standin.find_entry
    # exact key wins over newer prefix matches
    assert find(tmp_path, ["deps-linux-aaa", "deps-"], "v1", [main])["key"] == "deps-linux-aaa"
    # prefix: the newest entry created with that prefix (and the right version)
    assert find(tmp_path, ["deps-linux-zzz", "deps-linux-"], "v1", [main])["key"] == "deps-linux-bbb"
    # the run's own branch first, then the default branch
    assert find(tmp_path, ["deps-linux-zzz", "deps-linux-"], "v1", [feat, main])["key"] == "deps-linux-ccc"
    # another branch's cache is not visible from main
    assert find(tmp_path, ["deps-linux-ccc"], "v1", [main]) is None
    # the primary key itself is also prefix-matched (GitHub's second step), newest first
    assert find(tmp_path, ["deps-linux"], "v1", [main])["key"] == "deps-linux-bbb"
    assert find(tmp_path, ["nothing-", "other-"], "v1", [main]) is None


# --- act for real -----------------------------------------------------------------------------------

PIPELINE = """\
    name: pipeline
    on:
      push:
        branches: [main]
        tags: ["v*"]
      pull_request:
        branches: [main]
    permissions:
      contents: read
    jobs:
      lint:
        runs-on: ubuntu-latest
        steps:
          - run: echo lint
      test:
        needs: lint
        runs-on: ubuntu-latest
        strategy:
          matrix:
            shard: [1, 2]
        steps:
          - run: sleep 0.3 && echo "shard ${{ matrix.shard }}"
      release:
        needs: test
        if: startsWith(github.ref, 'refs/tags/v')
        runs-on: ubuntu-latest
        steps:
          - run: echo release
    """


@pytest.fixture(scope="module")
def pipeline_repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("pipeline"), {"pipeline.yml": PIPELINE})


def test_dry_run_job_sets_per_event(pipeline_repo):
    wf = pipeline_repo / ".github/workflows/pipeline.yml"
    pr = {"action": "opened", "number": 7, "pull_request": {"head": {"ref": "feat"}, "base": {"ref": "main"}}}
    assert set(ci.dry_run(wf, "pull_request", pr, timeout_s=TIMEOUT_S)) == {"lint", "test"}
    assert set(ci.dry_run(wf, "push", {"ref": "refs/tags/v1.0"}, timeout_s=TIMEOUT_S)) == {"lint", "test", "release"}
    assert ci.dry_run(wf, "push", {"ref": "refs/heads/feature"}, timeout_s=TIMEOUT_S) == {}


def test_dry_run_executes_no_step(tmp_path):
    marker = tmp_path / "ran"
    repo = make_repo(tmp_path / "repo", {"touch.yml": f"""\
        on: workflow_dispatch
        jobs:
          a:
            runs-on: ubuntu-latest
            steps:
              - run: touch {marker}
        """})
    assert ci.dry_run(repo / ".github/workflows/touch.yml", "workflow_dispatch", {}, timeout_s=TIMEOUT_S) == {"a": "success"}
    assert not marker.exists()                                 # `act -n` alone would have created it


def test_real_run_times_jobs_and_steps(pipeline_repo):
    run = ci.run_workflow(pipeline_repo / ".github/workflows/pipeline.yml", "push", {"ref": "refs/heads/main"},
                          timeout_s=TIMEOUT_S)
    assert run.ok, run.output()
    assert sorted(run.jobs["job_id"]) == ["lint", "test", "test"]   # two shards; release skipped by its if
    shards = run.jobs[run.jobs.job_id == "test"]
    lint = run.jobs[run.jobs.job_id == "lint"].iloc[0]
    assert (shards["start_s"] >= lint["end_s"] - 0.05).all()         # needs: lint
    sleeps = run.steps[run.steps.step.str.startswith("sleep")]
    assert len(sleeps) == 2 and (sleeps["act_s"] >= 0.3).all() and (sleeps["duration_s"] >= 0.25).all()
    assert "shard 1" in run.output() and "shard 2" in run.output()
    assert run.wall_s >= lint["duration_s"] + 0.3


def test_a_failing_step_fails_its_job(tmp_path):
    repo = make_repo(tmp_path, {"f.yml": """\
        on: workflow_dispatch
        jobs:
          boom:
            runs-on: ubuntu-latest
            steps:
              - run: exit 3
              - run: echo never
        """})
    run = ci.run_workflow(repo / ".github/workflows/f.yml", "workflow_dispatch", {}, timeout_s=TIMEOUT_S)
    assert not run.ok and run.returncode != 0
    assert run.job_results == {"f/boom": "failure"} or set(run.job_results.values()) == {"failure"}
    assert "never" not in run.output()


def test_event_not_taken_runs_nothing(pipeline_repo):
    run = ci.run_workflow(pipeline_repo / ".github/workflows/pipeline.yml", "push", {"ref": "refs/heads/dev"})
    assert not run.triggered and not run.ok and len(run.jobs) == 0


CACHE = """\
    name: cache
    on: workflow_dispatch
    jobs:
      build:
        runs-on: ubuntu-latest
        steps:
          - uses: actions/checkout@v4
          - id: cache
            uses: actions/cache@v4
            with:
              path: deps
              key: deps-${{ hashFiles('requirements.txt') }}
              restore-keys: |
                deps-
          - if: steps.cache.outputs.cache-hit != 'true'
            run: mkdir -p deps && cat requirements.txt >> deps/built.txt
          - run: echo "hit=${{ steps.cache.outputs.cache-hit }}" && cat deps/built.txt
          - uses: actions/upload-artifact@v4
            with:
              name: deps
              path: deps/
    """


def test_cache_miss_hit_and_partial_restore(tmp_path):
    repo = make_repo(tmp_path / "repo", {"cache.yml": CACHE}, {"requirements.txt": "a==1\n"})
    wf, store = repo / ".github/workflows/cache.yml", tmp_path / "store"
    artifacts = tmp_path / "artifacts"

    first = ci.run_workflow(wf, "workflow_dispatch", {}, cache_dir=store, artifact_dir=artifacts, timeout_s=TIMEOUT_S)
    assert first.ok, first.output()
    assert "hit=false" in first.output() and "Cache saved with key: deps-" in first.output()
    assert list(artifacts.glob("*/deps/built.txt"))                       # upload-artifact stored the folder

    second = ci.run_workflow(wf, "workflow_dispatch", {}, cache_dir=store, timeout_s=TIMEOUT_S)
    assert second.ok and "hit=true" in second.output()
    assert "not saving cache" in second.output()                          # exact hit: nothing saved
    assert second.output().count("a==1") == 1                             # the build step did not run

    (repo / "requirements.txt").write_text("a==1\nb==2\n")                # lockfile change: new key
    third = ci.run_workflow(wf, "workflow_dispatch", {}, cache_dir=store, timeout_s=TIMEOUT_S)
    assert third.ok and "hit=false" in third.output()
    assert "Cache restored from key: deps-" in third.output()             # partial restore via restore-keys
    assert "a==1\na==1\nb==2" in third.output()                            # old contents + the rebuild
    assert len(list(store.glob("*/meta.json"))) == 2


def test_keys_are_immutable_and_artifact_names_too(tmp_path):
    repo = make_repo(tmp_path / "repo", {"imm.yml": """\
        on: workflow_dispatch
        jobs:
          a:
            runs-on: ubuntu-latest
            steps:
              - run: mkdir -p out && echo first > out/v.txt
              - uses: actions/cache/save@v4
                with: {path: out, key: fixed}
              - run: echo second > out/v.txt
              - uses: actions/cache/save@v4
                with: {path: out, key: fixed}
              - run: rm -rf out
              - id: r
                uses: actions/cache/restore@v4
                with: {path: out, key: fixed}
              - run: echo "got=$(cat out/v.txt) hit=${{ steps.r.outputs.cache-hit }}"
              - uses: actions/upload-artifact@v4
                with: {name: same, path: out}
              - uses: actions/upload-artifact@v4
                with: {name: same, path: out}
        """})
    run = ci.run_workflow(repo / ".github/workflows/imm.yml", "workflow_dispatch", {}, timeout_s=TIMEOUT_S)
    out = run.output()
    assert "Unable to reserve cache with key fixed" in " ".join(d.get("msg", "") for d in run.log)
    assert "got=first hit=true" in out
    assert not run.ok                                                      # the second upload of `same` fails
    failed = run.steps[run.steps.result == "failure"]
    assert list(failed["step"]) == ["actions/upload-artifact@v4"]


def test_setup_python_uses_a_host_interpreter(tmp_path):
    version = ".".join(map(str, sys.version_info[:2]))
    repo = make_repo(tmp_path, {"py.yml": f"""\
        on: workflow_dispatch
        jobs:
          ok:
            runs-on: ubuntu-latest
            steps:
              - id: py
                uses: actions/setup-python@v5
                with: {{python-version: "{version}"}}
              - run: python -c "import sys; print('ver', sys.version_info[:2])" && echo "out=${{{{ steps.py.outputs.python-version }}}}"
          missing:
            runs-on: ubuntu-latest
            steps:
              - uses: actions/setup-python@v5
                with: {{python-version: "2.6"}}
        """})
    run = ci.run_workflow(repo / ".github/workflows/py.yml", "workflow_dispatch", {}, timeout_s=TIMEOUT_S,
                          env={"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]})
    results = {job.split("/")[-1]: r for job, r in run.job_results.items()}
    assert results == {"ok": "success", "missing": "failure"}
    major, minor = sys.version_info[:2]
    assert f"ver ({major}, {minor})" in run.output() and f"out={version}." in run.output()
    assert "'2.6' with architecture 'x64' was not found" in " ".join(d.get("msg", "") for d in run.log)


def test_parity_table_names_the_known_differences():
    table = ci.parity_table()
    features = " ".join(table["feature"])
    for known in ("fail-fast", "services:", "`on` filters", "actions/cache", "setup-python", "OIDC"):
        assert known in features, known
    assert table.notna().all().all() and len(table) >= 10


MATRIX = """\
    name: pool
    on: workflow_dispatch
    jobs:
      shard:
        runs-on: ubuntu-latest
        strategy:
          max-parallel: {p}
          matrix:
            i: [1, 2, 3, 4]
        steps:
          - run: sleep 0.6
    """


def test_matrix_makespan_follows_the_pipeline_model(tmp_path):
    """act's measured makespan at max-parallel 1, 2 and 4 against sim.delivery: ceil(4/p) shards in
    series, each the step plus act's measured per-shard overhead (fitted on p = 4 alone)."""
    from sim.delivery import Job, PipelineScenario, RunnerPool
    import sim

    measured = {}
    for p in (4, 2, 1):
        repo = make_repo(tmp_path / f"p{p}", {"pool.yml": MATRIX.format(p=p)})
        run = ci.run_workflow(repo / ".github/workflows/pool.yml", "workflow_dispatch", {}, timeout_s=TIMEOUT_S)
        assert run.ok, run.output()
        measured[p] = run.jobs["end_s"].max() - run.jobs["start_s"].min()
    shard_s = measured[4]                                     # one wave: the step plus act's overhead
    assert shard_s >= 0.6
    for p in (2, 1):
        predicted = sim.run(PipelineScenario({"shard": Job(shard_s, shards=4, max_parallel=p)}, RunnerPool(count=8)), seed=0).makespan_s
        assert predicted == pytest.approx(4 / p * shard_s)
        assert measured[p] == pytest.approx(predicted, rel=0.3), measured
    assert measured[1] > measured[2] > measured[4]


def test_act_runs_the_dag_in_stages(tmp_path):
    """The parity table's claim: a job starts when its whole stage's predecessors are done, not its needs."""
    repo = make_repo(tmp_path, {"st.yml": """\
        on: workflow_dispatch
        jobs:
          slow:
            runs-on: ubuntu-latest
            steps: [{run: sleep 1.5}]
          fast:
            runs-on: ubuntu-latest
            steps: [{run: "true"}]
          after_fast:
            needs: fast
            runs-on: ubuntu-latest
            steps: [{run: "true"}]
        """})
    run = ci.run_workflow(repo / ".github/workflows/st.yml", "workflow_dispatch", {}, timeout_s=TIMEOUT_S)
    assert run.ok
    t = run.jobs.set_index("job_id")
    assert t.loc["fast", "end_s"] < t.loc["slow", "end_s"] - 0.5
    assert t.loc["after_fast", "start_s"] >= t.loc["slow", "end_s"] - 0.05


def test_cli_yaml_error_is_one_line_and_exit_1(tmp_path, capsys):
    from cluster.cli import main

    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs: [\n")
    assert main(["ci", "run", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cloudmart: error: ") and "invalid YAML" in err
    assert main(["ci", "dry-run", str(bad), "--payload", str(tmp_path / "missing.json")]) == 1
    assert "cannot read the payload" in capsys.readouterr().err


def test_cli_dry_run_lists_the_jobs_of_a_tag_push(pipeline_repo, tmp_path, capsys):
    from cluster.cli import main

    payload = tmp_path / "tag.json"
    payload.write_text(json.dumps({"ref": "refs/tags/v2.1"}))
    assert main(["ci", "dry-run", str(pipeline_repo / ".github/workflows/pipeline.yml"), "--payload", str(payload), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"lint", "test", "release"}
