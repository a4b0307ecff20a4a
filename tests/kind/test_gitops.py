"""Argo CD keeps the cluster equal to git without undoing the labs, and follows the right overlay.

- `ignoreDifferences` only hides fields from the diff; without `RespectIgnoreDifferences=true` a
  sync applies git's values as-is (Argo CD's sync options). Every field the handle changes on the
  cluster on purpose (`scale`, `canary`, `mesh_fault`, measured here on an in-memory API) must be
  ignored, or selfHeal reverts it within seconds.
- The Application follows the overlay of the same gateway, one that does not contain the
  Application itself, and everything that overlay renders is allowed by the AppProject.
- With no repository given, `up` creates no Application (upstream's `main` would overwrite the
  manifests under test).
"""

from __future__ import annotations

import re
import socket

import pytest
import yaml

from cluster import kind_target
from fake_kube import FakeKube
from kind_manifests import OVERLAYS, ROOT, render

WITH_ARGOCD = [o for o in OVERLAYS if o.endswith("-all")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def application(objects: list[dict]) -> dict:
    (app,) = [o for o in objects if o["kind"] == "Application"]
    return app


def changed_pointers(before, after, path: str = "") -> list[str]:
    """JSON pointers of every leaf that differs between two objects (added, removed or changed)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for k in sorted(set(before) | set(after), key=str):
            out += changed_pointers(before.get(k), after.get(k), f"{path}/{k}")
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [p for i, (b, a) in enumerate(zip(before, after)) for p in changed_pointers(b, a, f"{path}/{i}")]
    return [] if before == after else [path]


def jq_to_regex(expression: str) -> re.Pattern:
    """An Argo CD jqPathExpression of the simple form `.a.b[].c` as a regex over JSON pointers."""
    if not re.fullmatch(r"(\.[A-Za-z0-9_]+(\[\])?)+", expression):
        raise ValueError(f"jq path {expression!r} is not of the modelled form .a.b[].c")
    pattern = expression.replace("[]", "/[0-9]+").replace(".", "/")
    return re.compile(f"^{pattern}(/.*)?$")


def ignored(app: dict, group: str, kind: str, name: str, pointer: str) -> bool:
    for rule in app["spec"].get("ignoreDifferences", []):
        if rule.get("group", "") != group or rule["kind"] != kind or rule.get("name", name) != name:
            continue
        if any(pointer == p or pointer.startswith(p + "/") for p in rule.get("jsonPointers", [])):
            return True
        if any(jq_to_regex(e).match(pointer) for e in rule.get("jqPathExpressions", [])):
            return True
    return False


def lab_writes(objects: list[dict], tmp_path, monkeypatch) -> list[tuple[str, str, str, str]]:
    """(group, kind, name, pointer) of every field the labs' handle operations change."""
    monkeypatch.setenv("CLOUDMART_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CLOUDMART_GATEWAY", "istio")
    api = FakeKube(objects)
    cm = kind_target.KindCluster(user=None, target=kind_target.KindTarget(clients=api, port=free_port()))
    cm.scale("product", 3, timeout_s=10)          # Day 2 capacity lab
    cm.canary("product", 30)                      # Day 3 canary
    cm.mesh_fault("inventory", latency_ms=300, error_rate=0.2)   # Day 3 chaos in the mesh
    originals = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    out = []
    for group, kind, name, after in api.writes:
        out += [(group, kind, name, p) for p in changed_pointers(originals[(kind, name)], after)]
    return sorted(set(out))


@pytest.mark.parametrize("overlay", WITH_ARGOCD)
def test_ignored_differences_are_respected_during_sync(rendered, overlay):
    app = application(rendered[overlay])
    assert app["spec"]["ignoreDifferences"]
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]


def test_every_field_the_labs_change_is_ignored(rendered, tmp_path, monkeypatch):
    objects = rendered["istio-all"]
    writes = lab_writes(objects, tmp_path, monkeypatch)
    kinds = {(g, k) for g, k, _, _ in writes}
    assert {("apps", "Deployment"), ("autoscaling", "HorizontalPodAutoscaler"),
            ("gateway.networking.k8s.io", "HTTPRoute"), ("networking.istio.io", "VirtualService")} <= kinds
    app = application(objects)
    assert [w for w in writes if not ignored(app, *w)] == []


def test_the_ignore_check_sees_an_unignored_lab_field(rendered, tmp_path, monkeypatch):
    objects = rendered["istio-all"]
    writes = lab_writes(objects, tmp_path, monkeypatch)
    app = application(objects)
    app = {**app, "spec": {**app["spec"], "ignoreDifferences": [
        r for r in app["spec"]["ignoreDifferences"] if r["kind"] != "HTTPRoute"]}}
    missed = [w for w in writes if not ignored(app, *w)]
    assert missed and {w[1] for w in missed} == {"HTTPRoute"}
    assert all(w[3].endswith("/weight") for w in missed)


def gateway_of(kustomization: dict) -> str:
    (gateway,) = [c.rsplit("/", 1)[-1] for c in kustomization.get("components", [])
                  if c.rsplit("/", 1)[-1] in kind_target.GATEWAYS]
    return gateway


@pytest.mark.parametrize("overlay", WITH_ARGOCD)
def test_application_follows_the_same_gateway_without_itself(rendered, overlay):
    app = application(rendered[overlay])
    path = ROOT / app["spec"]["source"]["path"]
    own = yaml.safe_load((ROOT / "cluster/manifests/overlays" / overlay / "kustomization.yaml").read_text())
    target = yaml.safe_load((path / "kustomization.yaml").read_text())
    assert gateway_of(target) == gateway_of(own)
    assert not any(c.endswith("/argocd") for c in target.get("components", []))


@pytest.mark.parametrize("overlay", WITH_ARGOCD)
def test_what_the_application_syncs_is_allowed_by_its_project(rendered, overlay):
    objects = rendered[overlay]
    app = application(objects)
    (project,) = [o for o in objects if o["kind"] == "AppProject" and o["metadata"]["name"] == app["spec"]["project"]]
    namespaces = {d["namespace"] for d in project["spec"]["destinations"]}
    cluster_kinds = {(w["group"], w["kind"]) for w in project["spec"]["clusterResourceWhitelist"]}
    synced = render(ROOT / app["spec"]["source"]["path"])
    assert synced
    for obj in synced:
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        namespace = obj["metadata"].get("namespace")
        if namespace is None and obj["kind"] in ("Namespace", "GatewayClass", "ClusterRole", "ClusterRoleBinding",
                                                 "ConstraintTemplate"):
            assert (group, obj["kind"]) in cluster_kinds or (group, "*") in cluster_kinds, obj["kind"]
        else:
            assert (namespace or app["spec"]["destination"]["namespace"]) in namespaces, (obj["kind"], namespace)


def test_no_repository_no_application(tmp_path):
    without = kind_target.overlay_kustomization(tmp_path, "kong", ["argocd"])
    assert not any(c.endswith("/argocd") for c in without["components"])
    objects = kind_target.render(kind_target.write_overlay(tmp_path / "a", "istio", ["argocd"]))
    assert not any(o["kind"] in ("Application", "AppProject") for o in objects)


def test_a_given_repository_and_revision_are_followed(tmp_path):
    repo = "https://example.org/learner/cloudmart.git"
    objects = kind_target.render(kind_target.write_overlay(tmp_path / "b", "istio", ["argocd"], repo, "abc1234"))
    app = application(objects)
    assert (app["spec"]["source"]["repoURL"], app["spec"]["source"]["targetRevision"]) == (repo, "abc1234")
    assert app["spec"]["source"]["path"] == "cluster/manifests/overlays/istio"
    (project,) = [o for o in objects if o["kind"] == "AppProject"]
    assert project["spec"]["sourceRepos"] == [repo]
