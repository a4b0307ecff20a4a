"""Every rendered object is valid: core kinds with kubernetes-validate --strict, custom resources
against their CRD's openAPIV3Schema (strict about unknown fields), Gatekeeper constraints against
the schema their ConstraintTemplate declares."""

from __future__ import annotations

import jsonschema
import kubernetes_validate
import pytest

from kind_manifests import KUBERNETES_VERSION, OVERLAYS, constraint_schema, is_custom


def crd_errors(obj, crd_schemas, templates):
    api_version = obj["apiVersion"]
    group, version = api_version.split("/")
    if group == "constraints.gatekeeper.sh":
        template = templates.get(obj["kind"])
        if template is None:
            return [f"no ConstraintTemplate declares kind {obj['kind']}"]
        schema = constraint_schema(template)
    else:
        schema = crd_schemas.get((group, version, obj["kind"]))
        if schema is None:
            return [f"no CRD schema for {api_version} {obj['kind']}"]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_core_objects_validate_strictly(rendered, crd_schemas, overlay):
    failures = []
    core = [o for o in rendered[overlay] if not is_custom(o, crd_schemas)]
    assert core, "no core objects rendered"
    for obj in core:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{obj['apiVersion']} {obj['kind']}: no schema in Kubernetes {KUBERNETES_VERSION}")
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert failures == []


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_custom_resources_validate_against_their_crds(rendered, crd_schemas, overlay):
    objects = rendered[overlay]
    templates = {t["spec"]["crd"]["spec"]["names"]["kind"]: t for t in objects if t["kind"] == "ConstraintTemplate"}
    custom = [o for o in objects if is_custom(o, crd_schemas)]
    assert custom, "every overlay has custom resources (at least the Gateway and HTTPRoutes)"
    failures = {f"{o['kind']}/{o['metadata']['name']}": errs for o in custom if (errs := crd_errors(o, crd_schemas, templates))}
    assert failures == {}


def test_strict_crd_validation_catches_a_typo(rendered, crd_schemas):
    route = next(o for o in rendered["base"] if o["kind"] == "HTTPRoute")
    broken = {**route, "spec": {**route["spec"], "parentRef": route["spec"]["parentRefs"]}}
    errors = crd_errors(broken, crd_schemas, {})
    assert any("parentRef" in e for e in errors)
    wrong_type = {**route, "spec": {**route["spec"], "rules": [{**route["spec"]["rules"][0], "timeouts": {"request": 10}}]}}
    assert crd_errors(wrong_type, crd_schemas, {}) != []


def test_constraint_with_unknown_parameter_is_rejected(rendered, crd_schemas):
    objects = rendered["kong-all"]
    templates = {t["spec"]["crd"]["spec"]["names"]["kind"]: t for t in objects if t["kind"] == "ConstraintTemplate"}
    constraint = next(o for o in objects if o["kind"] == "CloudMartAllowedRepos")
    broken = {**constraint, "spec": {**constraint["spec"], "parameters": {"repositories": ["x/"]}}}
    assert any("repositories" in e for e in crd_errors(broken, crd_schemas, templates))


def test_core_validation_catches_a_typo(rendered):
    deployment = next(o for o in rendered["base"] if o["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
