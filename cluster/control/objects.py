"""Kubernetes objects as the control plane handles them: read from YAML, named, normalised.

`load_objects(source)` accepts what `kubectl apply -f` accepts and what Python code has at hand:
YAML text (several documents), a path to a file, a folder (its `*.yaml`, `*.yml` and `*.json`
files, not recursive, like `kubectl apply -f DIR`), ``-`` for standard input, a dict or a list of
dicts. `kind: List` documents are expanded. Anything else raises `ApplyError`, one line.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

DEFAULT_NAMESPACE = "cloudmart"
# Kinds that live outside any namespace (the ones CloudMart's manifests and lessons use).
CLUSTER_SCOPED = {
    "Namespace", "Node", "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass",
    "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "APIService",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy",
    "ConstraintTemplate", "GatewayClass", "KongClusterPlugin", "RuntimeClass",
}
CONSTRAINT_GROUP = "constraints.gatekeeper.sh"
# Fields the API server owns: never part of the desired state.
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                   "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class ApplyError(ValueError):
    """An apply (or delete) that was refused as a whole: one line naming each object and field.

    `reasons` lists them; `result` is the `ApplyResult` with the refusals (nothing was stored)."""

    def __init__(self, message: str, reasons: list[str] | None = None, result: "ApplyResult | None" = None,
                 status: int = 422):
        super().__init__(message)
        self.reasons = reasons or [message]
        self.result = result
        self.status = status    # the HTTP status the supervisor answers with (400, 403, 422)


@dataclass(frozen=True, order=True)
class Key:
    """Which object: API group, kind, namespace ("" when cluster-scoped) and name."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        """kubectl's way of naming it: `deployment.apps/product`, `service/product`."""
        kind = self.kind.lower() + (f".{self.group}" if self.group else "")
        return f"{kind}/{self.name}"

    @property
    def label(self) -> str:
        """For messages: `Deployment cloudmart/product`."""
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"

    def text(self) -> str:
        """A stable string form (for the store): group/kind/namespace/name."""
        return f"{self.group}/{self.kind}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> "Key":
        group, kind, namespace, name = text.split("/")
        return cls(group, kind, namespace, name)


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def is_cluster_scoped(obj: dict) -> bool:
    return obj.get("kind") in CLUSTER_SCOPED or group_of(obj.get("apiVersion", "")) == CONSTRAINT_GROUP


def key_of(obj: dict) -> Key:
    meta = obj.get("metadata") or {}
    namespace = "" if is_cluster_scoped(obj) else (meta.get("namespace") or DEFAULT_NAMESPACE)
    return Key(group_of(obj.get("apiVersion", "")), obj.get("kind", ""), namespace, meta.get("name", ""))


def describe(obj: Any, index: int) -> str:
    """How to name an object in an error before it is known to be well-formed."""
    if isinstance(obj, dict):
        kind = obj.get("kind") if isinstance(obj.get("kind"), str) and obj.get("kind") else "object"
        meta = obj.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if isinstance(name, str) and name:
            return f"{kind} {name}"
        return f"{kind} #{index + 1}"
    return f"document #{index + 1}"


def structure_errors(obj: Any) -> list[str]:
    """What makes a document not a Kubernetes object at all ("field: problem")."""
    if not isinstance(obj, dict):
        return [f"(document): expected a mapping with apiVersion, kind and metadata, got {type(obj).__name__}"]
    errors = []
    for fld in ("apiVersion", "kind"):
        if not isinstance(obj.get(fld), str) or not obj.get(fld):
            errors.append(f"{fld}: required, a non-empty string")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        errors.append("metadata: required, a mapping with a name")
        return errors
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        errors.append("metadata.name: required, a non-empty string")
    elif len(name) > 253 or not NAME_RE.match(name):
        errors.append(f"metadata.name: {name!r} is not a valid name (lower-case letters, digits, '-' and '.', "
                      f"at most 253 characters)")
    ns = meta.get("namespace")
    if ns is not None and (not isinstance(ns, str) or not NAME_RE.match(ns) or len(ns) > 63):
        errors.append(f"metadata.namespace: {ns!r} is not a valid namespace name")
    return errors


def normalise(obj: dict) -> dict:
    """The desired-state form of an object: a deep copy with its namespace filled in (cluster-scoped
    kinds have none), without `status` and without the metadata the API server owns."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    for fld in SERVER_METADATA:
        meta.pop(fld, None)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
        if not annotations:
            meta.pop("annotations")
    if is_cluster_scoped(out):
        meta.pop("namespace", None)
    else:
        meta["namespace"] = meta.get("namespace") or DEFAULT_NAMESPACE
    return out


def _yaml_documents(text: str, where: str) -> list[Any]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ApplyError(f"{where}: malformed YAML{at}: {problem}", status=400) from None
    return [d for d in docs if d is not None]


def _read_path(path: Path) -> list[Any]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))
        if not files:
            raise ApplyError(f"{path}: no .yaml, .yml or .json file in this folder", status=400)
        return [d for f in files for d in _read_path(f)]
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ApplyError(f"{path}: cannot read: {exc.strerror if isinstance(exc, OSError) else exc}",
                         status=400) from None
    return _yaml_documents(text, str(path))


def _expand_lists(docs: Iterable[Any]) -> list[Any]:
    out = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(doc["items"])
        else:
            out.append(doc)
    return out


def load_objects(source: Any) -> list[Any]:
    """The documents of `source` (YAML text, a path, a folder, ``-``, a dict or a list of dicts).

    Only reading happens here: each document is checked later (`structure_errors`)."""
    if isinstance(source, dict):
        docs = [source]
    elif isinstance(source, (list, tuple)):
        docs = list(source)
    elif isinstance(source, Path):
        if not source.exists():
            raise ApplyError(f"{source}: no such file or folder", status=400)
        docs = _read_path(source)
    elif isinstance(source, str):
        if source == "-":
            docs = _yaml_documents(sys.stdin.read(), "standard input")
        elif "\n" not in source and ":" not in source and len(source) < 4096:
            path = Path(source)
            if not path.exists():
                raise ApplyError(f"{source}: no such file or folder", status=400)
            docs = _read_path(path)
        else:
            docs = _yaml_documents(source, "YAML text")
    elif isinstance(source, bytes):
        docs = _yaml_documents(source.decode(errors="replace"), "YAML text")
    else:
        raise ApplyError(f"cannot apply a {type(source).__name__}: give YAML text, a path, a dict or a list "
                         f"of dicts", status=400)
    docs = _expand_lists(docs)
    if not docs:
        raise ApplyError("no objects to apply (the input is empty)", status=400)
    return docs


def canonical(obj: Any) -> str:
    """A stable text of an object (sorted keys), to compare two versions."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class ApplyResult:
    """What an apply did (or, with `dry_run`, would do), in kubectl's words."""

    created: list[str] = field(default_factory=list)
    configured: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)   # (object, reason)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.rejected

    @property
    def changed(self) -> bool:
        return bool(self.created or self.configured or self.deleted)

    def lines(self) -> list[str]:
        """`kubectl apply`'s output: one line per object, then the warnings."""
        suffix = " (dry run)" if self.dry_run else ""
        out = [f"Warning: {w}" for w in self.warnings]
        for verb in ("created", "configured", "unchanged", "deleted"):
            out += [f"{name} {verb}{suffix}" for name in getattr(self, verb)]
        out += [f"{name} rejected: {reason}" for name, reason in self.rejected]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict:
        return {"created": self.created, "configured": self.configured, "unchanged": self.unchanged,
                "deleted": self.deleted, "rejected": [list(r) for r in self.rejected],
                "warnings": self.warnings, "dry_run": self.dry_run}

    @classmethod
    def from_dict(cls, data: dict) -> "ApplyResult":
        return cls(created=list(data.get("created", [])), configured=list(data.get("configured", [])),
                   unchanged=list(data.get("unchanged", [])), deleted=list(data.get("deleted", [])),
                   rejected=[tuple(r) for r in data.get("rejected", [])],
                   warnings=list(data.get("warnings", [])), dry_run=bool(data.get("dry_run", False)))
