"""Offline schema validation of Kubernetes objects, as the API server's strict field validation does.

Core kinds are checked with `kubernetes-validate` (the OpenAPI schemas of one Kubernetes release,
strict about unknown fields); custom resources against the `openAPIV3Schema` of their CRD in
`cluster/schemas/crds` (made strict the same way); Gatekeeper constraints against the schema
Gatekeeper generates from their ConstraintTemplate. `tests/kind` validates the rendered overlays
with the same functions.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CRD_DIR = Path(__file__).resolve().parents[1] / "schemas" / "crds"
KUBERNETES_VERSION = "1.33"
CONSTRAINT_GROUP = "constraints.gatekeeper.sh"


def group_of(api_version: str) -> str:
    """The API group of an apiVersion ("" for the core group's "v1")."""
    return api_version.split("/")[0] if "/" in api_version else ""


def strict_schema(schema: Any) -> Any:
    """A CRD schema that rejects unknown fields, like `kubectl apply --validate=strict` does.

    Structural schemas prune unknown fields silently; strict field validation reports them. Objects
    with `x-kubernetes-preserve-unknown-fields` or their own `additionalProperties` stay open.
    `x-kubernetes-int-or-string` becomes "integer or string".
    """
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("x-kubernetes-int-or-string"):
                node.pop("type", None)
                node["anyOf"] = node.get("anyOf") or [{"type": "integer"}, {"type": "string"}]
            if (node.get("type") == "object" and "properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # metadata is validated by the API server's ObjectMeta, not by the CRD schema.
    properties = schema.setdefault("properties", {})
    properties["metadata"] = {"type": "object"}
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    return schema


@functools.lru_cache(maxsize=2)
def _crd_schemas(crd_dir: str) -> dict[tuple[str, str, str], dict]:
    schemas = {}
    for path in sorted(Path(crd_dir).rglob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=LOADER):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                schema = version["schema"]["openAPIV3Schema"]
                schemas[(spec["group"], version["name"], spec["names"]["kind"])] = strict_schema(schema)
    return schemas


def load_crd_schemas(crd_dir: Path = CRD_DIR) -> dict[tuple[str, str, str], dict]:
    """(group, version, kind) -> strict openAPIV3Schema, from the CRDs in cluster/schemas/crds."""
    return dict(_crd_schemas(str(crd_dir)))


def constraint_schema(template: dict) -> dict:
    """The CRD schema Gatekeeper generates for a ConstraintTemplate's constraint kind (the parts we use)."""
    parameters = template["spec"]["crd"]["spec"].get("validation", {}).get("openAPIV3Schema", {"type": "object"})
    match = {"type": "object", "properties": {
        "kinds": {"type": "array", "items": {"type": "object", "additionalProperties": False, "properties": {
            "apiGroups": {"type": "array", "items": {"type": "string"}},
            "kinds": {"type": "array", "items": {"type": "string"}}}}},
        "namespaces": {"type": "array", "items": {"type": "string"}},
        "excludedNamespaces": {"type": "array", "items": {"type": "string"}},
        "scope": {"type": "string", "enum": ["*", "Cluster", "Namespaced"]},
        "labelSelector": {"type": "object"},
        "namespaceSelector": {"type": "object"}}, "additionalProperties": False}
    return strict_schema({"type": "object", "required": ["spec"], "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
        "spec": {"type": "object", "properties": {
            "enforcementAction": {"type": "string", "enum": ["deny", "dryrun", "warn"]},
            "match": match,
            "parameters": parameters}}}})


def is_custom(obj: dict, crd_schemas: dict) -> bool:
    """Whether an object is a custom resource (validated against a CRD, not kubernetes-validate)."""
    group = group_of(obj["apiVersion"])
    return group == CONSTRAINT_GROUP or any(g == group for g, _, _ in crd_schemas)


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(object)"


def schema_errors(obj: dict, crd_schemas: dict, templates: dict[str, dict]) -> list[str]:
    """Schema violations of one object, each "field.path: message" ([] when it is valid).

    `templates`: constraint kind -> its ConstraintTemplate (for constraints). An apiVersion/kind
    that no schema knows is reported as an unknown kind."""
    import jsonschema
    import kubernetes_validate

    api_version, kind = obj["apiVersion"], obj["kind"]
    if is_custom(obj, crd_schemas):
        group, _, version = api_version.partition("/")
        if group == CONSTRAINT_GROUP:
            template = templates.get(kind)
            if template is None:
                return [f"kind: unknown kind {kind!r} in {api_version} (no ConstraintTemplate declares it)"]
            schema = constraint_schema(template)
        else:
            schema = crd_schemas.get((group, version, kind))
            if schema is None:
                return [f"kind: unknown kind {kind!r} in {api_version} (no CRD in cluster/schemas/crds)"]
        validator = jsonschema.Draft7Validator(schema)
        return sorted(f"{_path(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj))
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"kind: unknown kind {kind!r} in {api_version} (Kubernetes {KUBERNETES_VERSION})"]
    except kubernetes_validate.ValidationError as exc:
        return [f"{_path(exc.path)}: {exc.message}"]
    return []
