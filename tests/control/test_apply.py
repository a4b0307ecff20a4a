"""The local control plane offline: parse → validate → admit → store, all or nothing."""

from __future__ import annotations

import copy
import io
import json

import pytest
import yaml

from cluster.control import GATEKEEPER_MESSAGE, ApplyError, ApplyResult, ControlPlane, load_objects
from cluster.control.store import StoreError
from control_helpers import GATEKEEPER, base_object, set_env


def store_bytes(plane: ControlPlane) -> bytes | None:
    return plane.store.path.read_bytes() if plane.store.path.exists() else None


# ----- parse -------------------------------------------------------------------------------
def test_every_input_form_gives_the_same_objects(tmp_path, monkeypatch):
    docs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}, "data": {"k": str(i)}}
            for i in range(3)]
    text = yaml.safe_dump_all(docs)
    (tmp_path / "one.yaml").write_text(yaml.safe_dump_all(docs[:2]))
    (tmp_path / "two.json").write_text(json.dumps(docs[2]))
    (tmp_path / "notes.txt").write_text("not read")
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    forms = {
        "text": load_objects(text),
        "file": load_objects(str(tmp_path / "one.yaml")) + load_objects(tmp_path / "two.json"),
        "folder": load_objects(tmp_path),
        "stdin": load_objects("-"),
        "list": load_objects(docs),
        "List": load_objects({"apiVersion": "v1", "kind": "List", "items": docs}),
    }
    for name, objs in forms.items():
        assert objs == docs, name
    assert load_objects(docs[0]) == docs[:1]


@pytest.mark.parametrize("source, words", [
    ("apiVersion: v1\nkind: [ConfigMap\n", "malformed YAML at line"),
    ("---\n---\n", "empty"),
    ("/no/such/manifest.yaml", "no such file"),
    (42, "cannot apply a int"),
])
def test_unreadable_input_is_one_line(source, words):
    with pytest.raises(ApplyError) as err:
        load_objects(source)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert err.value.status == 400


# ----- apply -------------------------------------------------------------------------------
def test_applying_the_manifests_unchanged_writes_nothing(plane, base_objects):
    result = plane.apply(base_object(base_objects, "Deployment", "product"))
    assert result.unchanged == ["deployment.apps/product"] and not result.changed
    assert store_bytes(plane) is None


def test_a_new_service_version_is_configured_stored_and_survives_a_restart(plane, base_objects, crd_schemas):
    product = set_env(base_object(base_objects, "Deployment", "product"), "SERVICE_VERSION", "v7")
    result = plane.apply([product])
    assert result.configured == ["deployment.apps/product"] and result.ok
    assert plane.topology().deployments["product"].version == "v7"
    # A supervisor started again reads the same desired state from the state folder.
    again = ControlPlane(plane.store.folder, base_objects, crd_schemas=crd_schemas)
    assert again.topology().deployments["product"].version == "v7"
    assert again.apply([product]).unchanged == ["deployment.apps/product"]
    # The topology keeps every route of the manifests (the gateway must not lose them).
    assert {r.route for r in again.topology().rules} == {o["metadata"]["name"] for o in base_objects
                                                         if o["kind"] == "HTTPRoute"}


def test_replicas_and_created_objects(plane, base_objects):
    order = base_object(base_objects, "Deployment", "order")
    order["spec"]["replicas"] = 3
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "feature-flags"}, "data": {"a": "1"}}
    result = plane.apply([order, config])
    assert result.configured == ["deployment.apps/order"] and result.created == ["configmap/feature-flags"]
    assert plane.topology().deployments["order"].replicas == 3
    [got] = plane.get("cm", "feature-flags")
    assert got["metadata"]["namespace"] == "cloudmart" and got["data"] == {"a": "1"}
    assert {o["metadata"]["name"] for o in plane.get("deployments")} >= {"order", "product", "product-canary"}
    with pytest.raises(ApplyError, match='not found'):
        plane.get("deployment", "nope")


def test_dry_run_reports_without_storing(plane, base_objects):
    product = set_env(base_object(base_objects, "Deployment", "product"), "SERVICE_VERSION", "v2")
    result = plane.apply(product, dry_run=True)
    assert result.configured == ["deployment.apps/product"] and result.dry_run
    assert "(dry run)" in str(result)
    assert store_bytes(plane) is None and plane.topology().deployments["product"].version == "v1"


def test_result_round_trips_through_json():
    result = ApplyResult(created=["a"], configured=["b"], rejected=[("c", "why")], warnings=["w"], dry_run=True)
    assert ApplyResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


# ----- bad input: one line naming object and field, nothing stored -------------------------
def _bad_cases(base_objects):
    product = base_object(base_objects, "Deployment", "product")
    negative = copy.deepcopy(product)
    negative["spec"]["replicas"] = -1
    typo = copy.deepcopy(product)
    typo["spec"]["replica"] = 2
    wrong_type = copy.deepcopy(product)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    route = base_object(base_objects, "HTTPRoute", "product")
    route["spec"]["rules"][0]["backendRefs"][0]["name"] = "catalogue"
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "catalogue"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "catalogue"},
                    "minReplicas": 1, "maxReplicas": 4}}
    unknown = {"apiVersion": "cloudmart.io/v1", "kind": "Shop", "metadata": {"name": "x"}}
    selector = copy.deepcopy(product)
    selector["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "other"
    return {
        "negative replicas": (negative, "Deployment cloudmart/product", "spec.replicas"),
        "schema typo": (typo, "Deployment cloudmart/product", "'replica' was unexpected"),
        "wrong type": (wrong_type, "Deployment cloudmart/product", "containerPort"),
        "missing Service": (route, "HTTPRoute cloudmart/product", "backendRefs[0].name: Service 'catalogue' not found"),
        "HPA on missing target": (hpa, "HorizontalPodAutoscaler cloudmart/catalogue", "spec.scaleTargetRef"),
        "unknown kind": (unknown, "Shop cloudmart/x", "unknown kind 'Shop'"),
        "selector": (selector, "Deployment cloudmart/product", "does not match template"),
        "no name": ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}, "ConfigMap #2", "metadata.name"),
        "bad name": ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}, "ConfigMap Bad_Name",
                     "metadata.name"),
        "not a mapping": (["a", "b"], "document #2", "expected a mapping"),
    }


CASES = ["negative replicas", "schema typo", "wrong type", "missing Service", "HPA on missing target",
         "unknown kind", "selector", "no name", "bad name", "not a mapping"]


@pytest.mark.parametrize("case", CASES)
def test_bad_object_is_refused_with_one_line_and_nothing_stored(plane, base_objects, case):
    obj, who, what = _bad_cases(base_objects)[case]
    # A good change in the same batch is not stored either.
    good = set_env(base_object(base_objects, "Deployment", "product-canary"), "SERVICE_VERSION", "v9")
    plane.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "seed"}})
    before = store_bytes(plane)
    with pytest.raises(ValueError) as err:
        plane.apply([good, obj])
    message = str(err.value)
    assert isinstance(err.value, ApplyError)
    assert who in message and what in message, message
    assert "\n" not in message
    assert err.value.status in (400, 422)
    assert store_bytes(plane) == before
    assert plane.topology().deployments["product-canary"].version == "v2"


def test_the_same_object_twice_in_one_batch_is_refused(plane, base_objects):
    product = base_object(base_objects, "Deployment", "product")
    with pytest.raises(ApplyError, match="appears twice"):
        plane.apply([product, product])


def test_a_deployment_the_local_target_cannot_run_is_refused(plane, base_objects):
    product = base_object(base_objects, "Deployment", "product")
    product["spec"]["template"]["spec"]["containers"][0]["command"] = ["uvicorn", "app"]
    with pytest.raises(ApplyError, match=r"containers\[0\].command"):
        plane.apply(product)


def test_both_rolling_limits_zero_is_refused(plane, base_objects):
    product = base_object(base_objects, "Deployment", "product")
    product["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}
    with pytest.raises(ApplyError, match="may not both be 0"):
        plane.apply(product)


# ----- admission ---------------------------------------------------------------------------
def _with_policies(plane) -> None:
    plane.apply(GATEKEEPER / "templates")
    plane.apply(GATEKEEPER / "constraints")


def _latest(base_objects) -> dict:
    product = base_object(base_objects, "Deployment", "product")
    product["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/cloudmart-course/cloudmart:latest"
    return product


def test_gatekeeper_denies_with_its_own_words_and_nothing_is_stored(plane, base_objects):
    _with_policies(plane)
    before = store_bytes(plane)
    with pytest.raises(ApplyError) as err:
        plane.apply(_latest(base_objects))
    assert err.value.status == 403
    [(name, reason)] = err.value.result.rejected
    assert name == "deployment.apps/product"
    assert reason == (GATEKEEPER_MESSAGE + "[cloudmart-disallowed-tags] container <product> uses the disallowed "
                      "tag <latest> in image <ghcr.io/cloudmart-course/cloudmart:latest>; pin a version")
    assert reason.startswith('admission webhook "validation.gatekeeper.sh" denied the request: [')
    assert store_bytes(plane) == before
    assert plane.audit() == []          # the manifests comply


def test_without_constraints_the_same_object_is_admitted(plane, base_objects):
    assert plane.apply(_latest(base_objects)).configured == ["deployment.apps/product"]


def _constraint(**spec_changes) -> dict:
    constraint = yaml.safe_load((GATEKEEPER / "constraints" / "disallowed-tags.yaml").read_text())
    constraint["spec"].update(spec_changes)
    return constraint


@pytest.mark.parametrize("action", ["warn", "dryrun"])
def test_warn_admits_with_a_warning_and_dryrun_only_audits(plane, base_objects, action):
    plane.apply(GATEKEEPER / "templates")
    plane.apply(_constraint(enforcementAction=action))
    result = plane.apply(_latest(base_objects))
    assert result.configured == ["deployment.apps/product"]
    if action == "warn":
        assert result.warnings == ["[cloudmart-disallowed-tags] container <product> uses the disallowed tag <latest> "
                                   "in image <ghcr.io/cloudmart-course/cloudmart:latest>; pin a version"]
    else:
        assert result.warnings == []
    [violation] = plane.audit()
    assert (violation.constraint, violation.name, violation.action) == ("cloudmart-disallowed-tags", "product", action)


@pytest.mark.parametrize("match, denied", [
    ({"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}], "excludedNamespaces": ["cloudmart"]}, False),
    ({"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}], "namespaces": ["cloud*"]}, True),
    ({"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}, False),
    ({"labelSelector": {"matchLabels": {"cloudmart.io/team": "catalog"}}}, True),
    ({"labelSelector": {"matchExpressions": [{"key": "cloudmart.io/team", "operator": "NotIn",
                                              "values": ["catalog"]}]}}, False),
    ({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cloudmart"}}}, None),
])
def test_match_fields(plane, base_objects, match, denied):
    namespace = base_object(base_objects, "Namespace", "cloudmart")
    labels = namespace["metadata"].get("labels") or {}
    if denied is None:   # namespaceSelector: decided by the Namespace object's labels
        denied = labels.get("kubernetes.io/metadata.name") == "cloudmart"
    plane.apply(GATEKEEPER / "templates")
    plane.apply(_constraint(match=match))
    if denied:
        with pytest.raises(ApplyError, match=r"\[cloudmart-disallowed-tags\]"):
            plane.apply(_latest(base_objects))
    else:
        assert plane.apply(_latest(base_objects)).ok


def test_namespace_selector_follows_the_namespace_labels(plane, base_objects):
    plane.apply(GATEKEEPER / "templates")
    plane.apply(_constraint(match={"namespaceSelector": {"matchLabels": {"policy": "strict"}}}))
    assert plane.apply(_latest(base_objects)).ok
    plane.apply(base_object(base_objects, "Deployment", "product"))     # back to the pinned tag
    namespace = base_object(base_objects, "Namespace", "cloudmart")
    namespace["metadata"].setdefault("labels", {})["policy"] = "strict"
    plane.apply(namespace)
    with pytest.raises(ApplyError, match="denied the request"):
        plane.apply(_latest(base_objects))


def test_a_constraint_without_its_template_is_refused(plane):
    with pytest.raises(ApplyError, match="unknown kind 'CloudMartDisallowedTags'"):
        plane.apply(_constraint())


# ----- delete, diff, history, undo ----------------------------------------------------------
def test_delete_is_all_or_nothing(plane, base_objects):
    plane.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags"}})
    service = base_object(base_objects, "Service", "product")
    before = store_bytes(plane)
    with pytest.raises(ApplyError, match="Service 'product' not found"):
        plane.delete([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags"}}, service])
    assert store_bytes(plane) == before
    assert plane.delete({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags"}}).deleted == [
        "configmap/flags"]
    assert plane.get("configmap", None) == [o for o in plane.get("configmap") if o["metadata"]["name"] != "flags"]
    with pytest.raises(ApplyError, match="not found"):
        plane.delete({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags"}})


def test_deleting_a_manifest_object_is_remembered(plane, base_objects, crd_schemas):
    pdb = next(o for o in base_objects if o["kind"] == "PodDisruptionBudget")
    plane.delete(pdb)
    again = ControlPlane(plane.store.folder, base_objects, crd_schemas=crd_schemas)
    assert pdb["metadata"]["name"] not in {o["metadata"]["name"] for o in again.get("pdb")}
    assert again.apply(pdb).created == [f"poddisruptionbudget.policy/{pdb['metadata']['name']}"]


def test_diff_shows_the_change_only(plane, base_objects):
    product = set_env(base_object(base_objects, "Deployment", "product"), "SERVICE_VERSION", "v3")
    text = plane.diff([product, base_object(base_objects, "Service", "product")])
    assert "+          value: v3" in text and "-          value: v1" in text
    assert "Service" not in text
    assert plane.diff(base_object(base_objects, "Deployment", "product")) == ""
    assert store_bytes(plane) is None


def test_history_and_undo(plane, base_objects):
    for version in ("v2", "v3"):
        plane.apply(set_env(base_object(base_objects, "Deployment", "product"), "SERVICE_VERSION", version))
    history = plane.history("product")
    assert [(h["revision"], h["summary"].split()[0]) for h in history] == [
        (1, "SERVICE_VERSION=v1"), (2, "SERVICE_VERSION=v2"), (3, "SERVICE_VERSION=v3")]
    assert plane.undo("product").configured == ["deployment.apps/product"]
    assert plane.topology().deployments["product"].version == "v2"
    # Like Kubernetes: the restored revision becomes the newest; its old number is gone.
    assert [h["revision"] for h in plane.history("product")] == [1, 3, 4]
    plane.undo("product", to_revision=1)
    assert plane.topology().deployments["product"].version == "v1"
    with pytest.raises(ApplyError, match="revision 9 not found"):
        plane.undo("product", to_revision=9)
    with pytest.raises(ApplyError, match="no rollout history"):
        plane.undo("order")


def test_a_corrupt_store_is_reported_not_guessed(plane):
    plane.store.folder.mkdir(parents=True)
    plane.store.path.write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        plane.desired()


def test_reset_goes_back_to_the_manifests(plane, base_objects):
    assert plane.reset() == []
    plane.apply(set_env(base_object(base_objects, "Deployment", "product"), "SERVICE_VERSION", "v2"))
    plane.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags"}})
    pdb = next(o for o in base_objects if o["kind"] == "PodDisruptionBudget")
    plane.delete(pdb)
    changed = plane.reset()
    assert changed == ["configmap/flags: deleted", "deployment.apps/product: back to the manifests",
                       f"poddisruptionbudget.policy/{pdb['metadata']['name']}: restored from the manifests"]
    assert plane.desired() == ControlPlane(plane.store.folder.parent / "fresh", base_objects,
                                           crd_schemas=plane.crd_schemas).desired()
    assert len(plane.history("product")) == 1
    assert plane.reset() == []
