"""Evaluate Gatekeeper ConstraintTemplates + Constraints against manifests, offline, with regopy.

Usage: ``python -m cluster.policies.gatekeeper FILE.yaml [...]`` prints one line per violation and
exits 1 if there is any (``-`` reads standard input, e.g. ``kubectl kustomize DIR | ...``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import regopy
import yaml

GATEKEEPER_DIR = Path(__file__).resolve().parents[1] / "manifests" / "components" / "gatekeeper"
TEMPLATE_KIND = "ConstraintTemplate"
CONSTRAINT_GROUP = "constraints.gatekeeper.sh"


@dataclass(frozen=True)
class Violation:
    """One policy violation: which constraint, which object, and Gatekeeper's message."""

    constraint: str
    kind: str
    name: str
    namespace: str | None
    msg: str
    action: str = "deny"          # the Constraint's enforcementAction: deny, warn or dryrun

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"[{self.constraint}] {self.kind} {where}{self.name}: {self.msg}"


@dataclass
class Policy:
    """A Constraint bound to its template's Rego."""

    template: str                 # template name == Rego package
    constraint: dict[str, Any]
    rego: str
    _interpreter: regopy.Interpreter | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The Constraint's metadata.name."""
        return self.constraint["metadata"]["name"]

    @property
    def enforcement_action(self) -> str:
        """deny (refused at admission), warn (admitted with a warning) or dryrun (audit only)."""
        return self.constraint.get("spec", {}).get("enforcementAction", "deny")

    def matches(self, obj: dict[str, Any], namespace_labels: dict[str, dict[str, str]] | None = None) -> bool:
        """Gatekeeper's match semantics: `kinds`, `namespaces`, `excludedNamespaces`,
        `labelSelector` and `namespaceSelector` (given the labels of each Namespace by name; a
        namespaced object whose Namespace is unknown does not match a namespaceSelector)."""
        match = self.constraint.get("spec", {}).get("match", {})
        api_version = obj.get("apiVersion", "")
        group = api_version.split("/")[0] if "/" in api_version else ""
        kinds = match.get("kinds")
        if kinds and not any(
            (group in k.get("apiGroups", ["*"]) or "*" in k.get("apiGroups", ["*"]))
            and (obj.get("kind") in k.get("kinds", ["*"]) or "*" in k.get("kinds", ["*"]))
            for k in kinds
        ):
            return False
        meta = obj.get("metadata", {})
        ns = meta["name"] if obj.get("kind") == "Namespace" else meta.get("namespace")
        namespaces = match.get("namespaces")
        if namespaces and not any(_glob(pattern, ns) for pattern in namespaces):
            return False
        if ns is not None and any(_glob(pattern, ns) for pattern in match.get("excludedNamespaces") or []):
            return False
        if "labelSelector" in match and not selector_matches(match["labelSelector"], meta.get("labels") or {}):
            return False
        if "namespaceSelector" in match:
            if obj.get("kind") == "Namespace":
                labels = meta.get("labels") or {}
            elif ns is None:
                labels = None          # cluster-scoped objects are not selected by namespaceSelector
            else:
                labels = (namespace_labels or {}).get(ns)
            if labels is None or not selector_matches(match["namespaceSelector"], labels):
                return False
        return True

    def evaluate(self, obj: dict[str, Any], namespace_labels: dict[str, dict[str, str]] | None = None) -> list[Violation]:
        """Run the template's `violation` rule on one object; [] when it passes or doesn't match."""
        if not self.matches(obj, namespace_labels):
            return []
        if self._interpreter is None:
            self._interpreter = regopy.Interpreter()
            self._interpreter.add_module(self.template, self.rego)
        review = {"review": {"object": obj, "kind": {"kind": obj.get("kind")}},
                  "parameters": self.constraint.get("spec", {}).get("parameters", {})}
        self._interpreter.set_input_term(json.dumps(review))
        output = self._interpreter.query(f"data.{self.template}.violation")
        if not output.ok():
            raise RuntimeError(f"template {self.template!r} failed to evaluate: {output}")
        result = json.loads(str(output))
        messages = sorted(v["msg"] for v in result["expressions"][0]) if result.get("expressions") else []
        meta = obj.get("metadata", {})
        return [Violation(self.name, obj.get("kind", "?"), meta.get("name", "?"), meta.get("namespace"), m,
                          self.enforcement_action) for m in messages]


@dataclass
class PolicySet:
    """All Constraints of a set of manifests, each bound to its ConstraintTemplate."""

    policies: list[Policy]

    def evaluate(self, objects: Iterable[dict[str, Any]],
                 namespace_labels: dict[str, dict[str, str]] | None = None) -> list[Violation]:
        """Every violation of every policy over the given objects."""
        return [v for obj in objects for p in self.policies for v in p.evaluate(obj, namespace_labels)]


def _glob(pattern: str, name: str | None) -> bool:
    """Gatekeeper's namespace patterns: an exact name, or a prefix ending in `*`."""
    if name is None:
        return False
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (`matchLabels` and `matchExpressions`) against labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"label selector: unknown operator {op!r}")
    return True


def split_policy_objects(objects: Iterable[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """Split manifests into (ConstraintTemplates, Constraints)."""
    templates, constraints = [], []
    for obj in objects:
        if obj.get("kind") == TEMPLATE_KIND:
            templates.append(obj)
        elif obj.get("apiVersion", "").startswith(CONSTRAINT_GROUP + "/"):
            constraints.append(obj)
    return templates, constraints


def template_rego(template: dict[str, Any]) -> str:
    """The Rego of a template's target: `code: [{engine: Rego, source: {version, rego}}]` (how
    Gatekeeper takes Rego v1), else the legacy `rego:` field (parsed by Gatekeeper as Rego v0)."""
    target = template["spec"]["targets"][0]
    for code in target.get("code", []):
        if code.get("engine") == "Rego":
            return code["source"]["rego"]
    if "rego" in target:
        return target["rego"]
    raise ValueError(f"template {template['metadata']['name']!r}: its target has no Rego")


def policies_from_objects(objects: Iterable[dict[str, Any]]) -> PolicySet:
    """Bind every Constraint among `objects` to its ConstraintTemplate's Rego."""
    templates, constraints = split_policy_objects(objects)
    by_kind = {}
    for t in templates:
        kind = t["spec"]["crd"]["spec"]["names"]["kind"]
        targets = t["spec"]["targets"]
        if len(targets) != 1:
            raise ValueError(f"template {t['metadata']['name']!r}: expected one target")
        template_rego(t)                      # raises ValueError when there is none
        by_kind[kind] = t
    policies = []
    for c in constraints:
        if c["kind"] not in by_kind:
            raise ValueError(f"constraint {c['metadata']['name']!r}: no ConstraintTemplate for kind {c['kind']!r}")
        t = by_kind[c["kind"]]
        policies.append(Policy(t["metadata"]["name"], c, template_rego(t)))
    return PolicySet(policies)


def load_yaml_documents(paths: Iterable[Path | str]) -> list[dict[str, Any]]:
    """All non-empty YAML documents of the given files (``-`` is standard input)."""
    docs = []
    for p in paths:
        text = sys.stdin.read() if str(p) == "-" else Path(p).read_text()
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def load_policies(directory: Path = GATEKEEPER_DIR) -> PolicySet:
    """The policies of the gatekeeper component (templates/ and constraints/ YAML files)."""
    return policies_from_objects(load_yaml_documents(sorted(directory.rglob("*.yaml"))))


def main(argv: list[str] | None = None) -> int:
    """CLI: check manifests against CloudMart's Gatekeeper policies."""
    parser = argparse.ArgumentParser(prog="python -m cluster.policies.gatekeeper", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="YAML manifests ('-' for standard input)")
    args = parser.parse_args(argv)
    try:
        objects = load_yaml_documents(args.files)
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: cannot read manifests: {exc}", file=sys.stderr)
        return 2
    violations = load_policies().evaluate(objects)
    for v in violations:
        print(v)
    print(f"{len(objects)} objects, {len(violations)} violations", file=sys.stderr)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
