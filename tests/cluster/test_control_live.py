"""The control plane on a live CloudMart: apply under load, Gatekeeper's refusal, rollout undo,
a failed rollout, and the desired state kept across a supervisor restart."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from cluster.control import GATEKEEPER_MESSAGE, ApplyError

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[2]
GATEKEEPER = REPO / "cluster" / "manifests" / "components" / "gatekeeper"


@pytest.fixture(scope="module")
def running(tmp_path_factory, start_cloudmart):
    """A CloudMart of this module's own: its changes do not reach other modules."""
    with start_cloudmart(tmp_path_factory.mktemp("control")) as running:
        yield running


def documents(folder: str) -> int:
    """How many objects the gatekeeper component's templates/ or constraints/ hold."""
    return sum(1 for f in (GATEKEEPER / folder).glob("*.yaml") for d in yaml.safe_load_all(f.read_text()) if d)


def product(cm) -> dict:
    [obj] = cm.get_objects("deployment", "product")
    return obj


def with_version(obj: dict, version: str) -> dict:
    obj = copy.deepcopy(obj)
    for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]:
        if e["name"] == "SERVICE_VERSION":
            e["value"] = version
    return obj


def served_versions(cm, n: int = 6) -> set[str]:
    return {cm.get("/api/products").headers.get("x-service-version") for _ in range(n)}


def store(running) -> bytes:
    path = running.state_dir / "control" / "desired.json"
    return path.read_bytes() if path.exists() else b""


def test_new_service_version_under_load_drops_no_request(running):
    cm = running.cm
    obj = product(cm)
    obj["spec"]["replicas"] = 2
    obj["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert cm.apply(obj).configured == ["deployment.apps/product"]
    cm.wait_rollout("product", 60)
    assert cm.status()["deployments"]["product"]["ready"] == 2
    box = {}
    load = threading.Thread(target=lambda: box.setdefault("result", cm.load(20, 14, "browse", seed=3)))
    load.start()
    time.sleep(2.0)
    t_apply = time.monotonic()
    result = cm.apply(with_version(obj, "v2"))
    assert result.configured == ["deployment.apps/product"] and result.ok
    status = cm.wait_rollout("product", 60)
    rollout_s = time.monotonic() - t_apply
    load.join()
    df = box["result"].requests
    products = df[df["path"].str.startswith("/api/products")]
    print(f"rollout of 2 replicas: {rollout_s:.1f} s; {len(df)} requests, {int((~df['ok']).sum())} failed")
    assert len(df) > 150
    assert int((~df["ok"]).sum()) == 0, df[~df["ok"]][["t_s", "status", "path"]].head().to_dict("records")
    versions = products.sort_values("t_s")["x-service-version"].tolist()
    assert versions[0] == "v1" and versions[-1] == "v2"
    assert {r["version"] for r in status["replicas"]} == {"v2"} and len(status["replicas"]) == 2
    assert served_versions(cm) == {"v2"}
    # Every route of the manifests is still served after the applies (none lost by the reload).
    assert cm.get("/api/inventory/1").status_code in (200, 404)
    assert cm.get("/api/auth/.well-known/jwks.json").status_code == 200


def test_rollout_undo_restores_the_previous_version(running):
    cm = running.cm
    history = cm.rollout_status("product")["history"]
    assert [h["summary"].split()[0] for h in history][-1] == "SERVICE_VERSION=v2"
    proc = running.cli("rollout", "undo", "deployment/product")
    assert proc.returncode == 0, proc.stderr
    assert "rolled back" in proc.stdout
    proc = running.cli("rollout", "status", "deployment/product", "--timeout", "60")
    assert proc.returncode == 0 and "successfully rolled out" in proc.stdout, proc.stdout + proc.stderr
    assert served_versions(cm) == {"v1"}
    assert product(cm)["spec"]["template"]["spec"]["containers"][0]["env"] == \
        with_version(product(cm), "v1")["spec"]["template"]["spec"]["containers"][0]["env"]
    history = running.cli("rollout", "history", "deployment/product").stdout
    assert "SERVICE_VERSION=v1" in history.splitlines()[-1]


def test_a_deployment_violating_a_constraint_is_refused_and_leaves_nothing(running, tmp_path):
    cm = running.cm
    assert len(cm.apply(GATEKEEPER / "templates").created) == documents("templates")
    assert len(cm.apply(GATEKEEPER / "constraints").created) == documents("constraints")
    bad = product(cm)
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/cloudmart-course/cloudmart:latest"
    manifest = tmp_path / "latest.yaml"
    manifest.write_text(yaml.safe_dump(bad))
    before, replicas_before = store(running), cm.rollout_status("product")["replicas"]
    proc = running.cli("apply", "-f", str(manifest))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and proc.stdout == ""
    assert lines[0] == ("cloudmart: error: deployment.apps/product: " + GATEKEEPER_MESSAGE +
                        "[cloudmart-disallowed-tags] container <product> uses the disallowed tag <latest> in image "
                        "<ghcr.io/cloudmart-course/cloudmart:latest>; pin a version")
    with pytest.raises(ApplyError) as err:
        cm.apply(bad)
    assert err.value.status == 403
    assert store(running) == before
    assert product(cm)["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0")
    assert [r["id"] for r in cm.rollout_status("product")["replicas"]] == [r["id"] for r in replicas_before]
    assert cm.target.audit() == []


def test_bad_input_is_one_line_and_exit_1(running):
    env_cmd = [sys.executable, "-m", "cluster.cli", "apply", "-f", "-"]
    before = store(running)
    for text, words in [("kind: [\n", "malformed YAML"),
                        ("apiVersion: v1\nkind: Gadget\nmetadata: {name: g}\n", "unknown kind 'Gadget'"),
                        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: product}\nspec: {replicas: -1}\n",
                         "Deployment cloudmart/product: spec")]:
        proc = subprocess.run(env_cmd, input=text, capture_output=True, text=True, timeout=60, cwd=REPO,
                              env={**os.environ, "CLOUDMART_STATE_DIR": str(running.state_dir),
                                   "CLOUDMART_GATEWAY_PORT": str(running.port)})
        assert proc.returncode == 1, proc.stdout
        assert len(proc.stderr.strip().splitlines()) == 1 and words in proc.stderr, proc.stderr
    assert store(running) == before


def test_the_control_channel_answers_400_422_403(running):
    import httpx

    state = json.loads((running.state_dir / "supervisor.json").read_text())
    url = f"http://127.0.0.1:{state['control_port']}/apply"
    auth = {"Authorization": f"Bearer {state['token']}"}
    assert httpx.post(url, json={"objects": [product(running.cm)]}).status_code == 401    # no token
    before = store(running)
    cases = [({"objects": "deployment.yaml"}, 400), ({"objects": ["not a mapping"]}, 400),
             ({"objects": [{**product(running.cm), "spek": {}}]}, 422)]
    for body, code in cases:
        resp = httpx.post(url, json=body, headers=auth, timeout=30)
        assert resp.status_code == code, resp.text
        assert resp.json()["detail"] and "\n" not in resp.json()["detail"]
    resp = httpx.post(url, content=b"{not json", headers=auth, timeout=30)
    assert resp.status_code == 400 and resp.json()["detail"] == "the request body is not JSON"
    assert store(running) == before


def test_a_rollout_that_cannot_progress_fails_visibly(running):
    cm = running.cm
    obj = product(cm)
    obj["spec"]["progressDeadlineSeconds"] = 4
    broken = copy.deepcopy(obj)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/never-ready"
    cm.apply(broken)
    deadline = time.monotonic() + 30
    while (status := cm.rollout_status("product"))["phase"] != "Failed":
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    assert status["reason"] == "ProgressDeadlineExceeded"
    proc = running.cli("rollout", "status", "deployment/product")
    assert proc.returncode == 1 and "ProgressDeadlineExceeded" in proc.stderr
    # maxUnavailable 0: the old replicas keep serving.
    assert served_versions(cm) == {"v1"}
    cm.apply(obj)
    cm.wait_rollout("product", 60)


def test_cli_get_diff_and_delete(running, tmp_path):
    proc = running.cli("get", "deployment", "product", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["kind"] == "Deployment" and obj["metadata"]["name"] == "product"
    assert obj["status"]["availableReplicas"] == obj["spec"]["replicas"] == obj["status"]["updatedReplicas"]
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]} == {"Available": "True", "Progressing": "True"}
    assert "service/product" in running.cli("get", "svc").stdout.split()
    manifest = tmp_path / "flags.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags"},
                                        "data": {"new-search": "on"}}))
    diff = running.cli("diff", "-f", str(manifest))
    assert diff.returncode == 1 and "+  new-search: 'on'" in diff.stdout, diff.stdout + diff.stderr
    assert running.cli("apply", "-f", str(manifest)).stdout.strip() == "configmap/flags created"
    assert running.cli("diff", "-f", str(manifest)).returncode == 0
    assert running.cli("apply", "-f", str(manifest)).stdout.strip() == "configmap/flags unchanged"
    assert running.cli("delete", "-f", str(manifest)).stdout.strip() == "configmap/flags deleted"
    gone = running.cli("get", "configmap", "flags")
    assert gone.returncode == 1 and gone.stderr.strip() == 'cloudmart: error: configmap "flags" not found'


def test_the_desired_state_survives_a_supervisor_restart(running):
    cm = running.cm
    cm.apply(with_version(product(cm), "v3"))
    cm.wait_rollout("product", 60)
    running.target.down(timeout_s=30)
    running.target.up(port=running.port)
    from cluster.handle import CloudMart

    again = CloudMart(running.target)
    assert served_versions(again) == {"v3"}
    assert again.status()["deployments"]["product"]["wanted"] == 2
    assert len(again.get_objects("constrainttemplate")) == documents("templates")


def test_reset_brings_back_the_manifests(running):
    from cluster.reset import reset

    results = {r.name: r for r in reset(running.target, steps=["objects", "scale"])}
    changed = results["objects"].changed
    assert "deployment.apps/product: back to the manifests" in changed
    assert sum(c.startswith("constrainttemplate") for c in changed) == documents("templates")
    assert results["scale"].changed == []      # the manifests' replica count came with the objects
    from cluster.handle import CloudMart

    cm = CloudMart(running.target)             # a new handle: the supervisor was started again
    assert served_versions(cm) == {"v1"}
    assert cm.status()["deployments"]["product"]["wanted"] == 1
    assert cm.get_objects("constrainttemplate") == []
    assert [r.changed for r in reset(running.target, steps=["objects", "scale"])] == [[], []]
