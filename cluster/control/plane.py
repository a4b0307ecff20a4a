"""The local control plane: parse → validate → admit → store, all or nothing.

    plane = ControlPlane(state_dir / "control", topology.render())   # the manifests are the base
    plane.apply("deploy.yaml")            # → ApplyResult (created / configured / unchanged / warnings)
    plane.apply(objs, dry_run=True)       # everything but the store
    plane.topology()                      # what the supervisor runs: manifests + applied − deleted

The desired state is the manifests' objects, with the applied objects on top (an applied object
replaces the whole object of the same group, kind, namespace and name, like `kubectl apply` of a
complete manifest) and deleted ones left out. An apply of several objects first checks every one
of them — its structure, its schema (`cluster.control.schemas`), CloudMart's semantic rules
(replicas ≥ 0, a selector that selects the pod template, references to Services and scale targets
that exist, a Deployment the local target can run) and then admission by the Gatekeeper
Constraints of the desired state (`cluster.policies.gatekeeper`, regopy) — and stores them only
when none is refused: a refused apply raises `ApplyError` and leaves the store file untouched.

Admission follows Gatekeeper: a Constraint's `enforcementAction` `deny` refuses the object with
Gatekeeper's words (`admission webhook "validation.gatekeeper.sh" denied the request: [name]
message`), `warn` admits it with a warning, `dryrun` only shows in `audit()`. ConstraintTemplates
and Constraints applied in the same batch as other objects already take part in that batch's
admission (on Kubernetes the Constraint's CRD would first have to be created: apply them first).
"""

from __future__ import annotations

import copy
import difflib
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import yaml

from cluster.control import schemas
from cluster.control.objects import (
    CONSTRAINT_GROUP, ApplyError, ApplyResult, Key, canonical, describe, key_of, load_objects, normalise,
    structure_errors)
from cluster.control.store import Store

GATEKEEPER_MESSAGE = 'admission webhook "validation.gatekeeper.sh" denied the request: '
TEMPLATE_KIND = "ConstraintTemplate"
REVISION_HISTORY_LIMIT = 10
SHORT_NAMES = {"deploy": "deployment", "svc": "service", "hpa": "horizontalpodautoscaler", "cm": "configmap",
               "ns": "namespace", "po": "pod", "netpol": "networkpolicy", "pdb": "poddisruptionbudget",
               "sa": "serviceaccount", "constrainttemplates": "constrainttemplate"}
COMPONENT_LABEL = "app.kubernetes.io/component"


def _join(reasons: list[str]) -> str:
    return "; ".join(" ".join(r.split()) for r in reasons)


def pod_template(obj: dict) -> dict:
    """A Deployment's pod template (what a change of starts a rollout)."""
    return (obj.get("spec") or {}).get("template") or {}


def template_summary(template: dict) -> str:
    """SERVICE_VERSION and image of a pod template's first container, for history lines."""
    containers = (template.get("spec") or {}).get("containers") or [{}]
    c = containers[0]
    version = next((e.get("value") for e in c.get("env") or [] if e.get("name") == "SERVICE_VERSION"), None)
    return f"SERVICE_VERSION={version} image={c.get('image')}" if version else f"image={c.get('image')}"


def _int_or_percent(value: Any, total: int, round_up: bool, where: str) -> int:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{where}: expected an integer or a percentage such as '25%'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{where}: {value} must not be negative")
        return value
    text = str(value)
    if not text.endswith("%") or not text[:-1].isdigit():
        raise ValueError(f"{where}: {value!r} is neither an integer nor a percentage such as '25%'")
    share = int(text[:-1]) * total
    return -(-share // 100) if round_up else share // 100


def rolling_parameters(obj: dict) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) of a Deployment as replica counts, rounded as Kubernetes does
    (surge up, unavailable down; defaults 25 % / 25 %). Both given as 0 is refused; both resolving
    to 0 (percentages of few replicas) makes maxUnavailable 1, like Kubernetes' fenceposts."""
    spec = obj.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    raw_surge, raw_unavailable = rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%")
    surge = _int_or_percent(raw_surge, replicas, True, "spec.strategy.rollingUpdate.maxSurge")
    unavailable = _int_or_percent(raw_unavailable, replicas, False, "spec.strategy.rollingUpdate.maxUnavailable")
    if str(raw_surge).rstrip("%") == "0" and str(raw_unavailable).rstrip("%") == "0":
        raise ValueError("spec.strategy.rollingUpdate: maxSurge and maxUnavailable may not both be 0")
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def semantic_errors(obj: dict, desired: dict[Key, dict]) -> list[str]:
    """CloudMart's checks beyond the schema, each "field: problem": what the API server or a
    controller would refuse, and the references that must resolve in the desired state."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    ns = obj["metadata"].get("namespace", "")
    errors = []
    if kind == "Deployment" and obj["apiVersion"] == "apps/v1":
        replicas = spec.get("replicas", 1)
        if isinstance(replicas, int) and replicas < 0:
            errors.append(f"spec.replicas: {replicas} must be greater than or equal to 0")
        selector = (spec.get("selector") or {})
        labels = (pod_template(obj).get("metadata") or {}).get("labels") or {}
        from cluster.policies.gatekeeper import selector_matches

        try:
            if not selector_matches(selector, labels):
                errors.append("spec.template.metadata.labels: `selector` does not match template `labels`")
        except ValueError as exc:
            errors.append(f"spec.selector: {exc}")
        if (spec.get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate" and isinstance(replicas, int):
            try:
                rolling_parameters(obj)
            except ValueError as exc:
                errors.append(str(exc))
        deadline = spec.get("progressDeadlineSeconds")
        if isinstance(deadline, int) and deadline <= spec.get("minReadySeconds", 0):
            errors.append("spec.progressDeadlineSeconds: must be greater than minReadySeconds")
        if (obj["metadata"].get("labels") or {}).get(COMPONENT_LABEL) == "service":
            containers = (pod_template(obj).get("spec") or {}).get("containers") or []
            command = containers[0].get("command") if containers else None
            if not command or len(command) < 3 or command[1] != "-m" or not str(command[0]).startswith("python"):
                errors.append("spec.template.spec.containers[0].command: the local target runs a CloudMart "
                              "service as ['python', '-m', MODULE]")
    elif kind == "HorizontalPodAutoscaler":
        target = spec.get("scaleTargetRef") or {}
        tkey = Key("apps" if target.get("kind") in ("Deployment", "StatefulSet", "ReplicaSet") else "",
                   target.get("kind", ""), ns, target.get("name", ""))
        if tkey not in desired:
            errors.append(f"spec.scaleTargetRef: {target.get('kind')} {target.get('name')!r} not found in "
                          f"namespace {ns}")
        low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
        if isinstance(low, int) and low < 1:
            errors.append(f"spec.minReplicas: {low} must be greater than or equal to 1")
        if isinstance(high, int) and isinstance(low, int) and high < low:
            errors.append(f"spec.maxReplicas: {high} must be greater than or equal to minReplicas ({low})")
    elif kind in ("HTTPRoute", "GRPCRoute"):
        for i, rule in enumerate(spec.get("rules") or []):
            for j, ref in enumerate(rule.get("backendRefs") or []):
                if ref.get("kind", "Service") != "Service" or ref.get("group", "") != "":
                    continue
                rns = ref.get("namespace", ns)
                if Key("", "Service", rns, ref.get("name", "")) not in desired:
                    errors.append(f"spec.rules[{i}].backendRefs[{j}].name: Service {ref.get('name')!r} "
                                  f"not found in namespace {rns}")
    return errors


class ControlPlane:
    """Desired state of one local CloudMart: the manifests (`base_objects`) plus what was applied."""

    def __init__(self, folder: str | Path, base_objects: Iterable[dict], *, crd_schemas: dict | None = None):
        self.store = Store(folder)
        self.base: dict[Key, dict] = {}
        for obj in base_objects:
            self.base[key_of(obj)] = normalise(obj)
        self.crd_schemas = crd_schemas if crd_schemas is not None else schemas.load_crd_schemas()
        self._lock = threading.RLock()

    # ----- reading ------------------------------------------------------------------------
    def _desired(self, state: dict) -> dict[Key, dict]:
        deleted = {Key.parse(k) for k in state["deleted"]}
        applied = {Key.parse(k): v for k, v in state["applied"].items()}
        out = {k: applied.get(k, v) for k, v in self.base.items() if k not in deleted}
        out.update({k: v for k, v in sorted(applied.items()) if k not in out})
        return out

    def desired(self) -> dict[Key, dict]:
        """Every object of the desired state, by key (the manifests' order, then applied ones)."""
        with self._lock:
            return copy.deepcopy(self._desired(self.store.read()))

    def desired_objects(self) -> list[dict]:
        return list(self.desired().values())

    def topology(self):
        """The desired state as the supervisor's `Topology` (every object kept, so the gateway
        renders all routes of the manifests and of the applied objects)."""
        from cluster import topology

        return topology.parse(self.desired_objects())

    def get(self, kind: str, name: str | None = None, namespace: str | None = None) -> list[dict]:
        """Objects of the desired state by kind (`deployment`, `deploy`, `deployments`, `Deployment`,
        `deployment.apps`) and optionally name; an unknown name raises `ApplyError`."""
        wanted = kind.lower().split(".")[0]
        wanted = SHORT_NAMES.get(wanted, wanted)
        found = [o for k, o in self.desired().items()
                 if wanted in (k.kind.lower(), k.kind.lower() + "s", k.kind.lower() + "es")
                 and (namespace is None or k.namespace in ("", namespace))]
        if name is not None:
            found = [o for o in found if o["metadata"]["name"] == name]
            if not found:
                raise ApplyError(f'{kind} "{name}" not found', status=404)
        return found

    def history(self, name: str, namespace: str = "cloudmart") -> list[dict]:
        """A Deployment's revisions, oldest first: {revision, summary, template, applied_at}."""
        key = Key("apps", "Deployment", namespace, name)
        with self._lock:
            state = self.store.read()
            desired = self._desired(state)
            if key not in desired:
                raise ApplyError(f'deployment "{name}" not found', status=404)
            revisions = copy.deepcopy(state["history"].get(key.text(), []))
            if not revisions:
                template = pod_template(desired[key])
                revisions = [{"revision": 1, "summary": template_summary(template), "template": template,
                              "applied_at": None}]
            return revisions

    # ----- checking -----------------------------------------------------------------------
    def _check(self, docs: list[Any], desired: dict[Key, dict], deleting: bool = False
               ) -> tuple[list[tuple[Key, dict]], dict[Key, dict], list[str]]:
        """Validate and admit a batch: (its objects, the desired state after it, warnings); raises
        ApplyError naming every refused object and field."""
        malformed = []
        objects: list[tuple[Key, dict]] = []
        seen: dict[Key, int] = {}
        for i, doc in enumerate(docs):
            errors = structure_errors(doc)
            if errors:
                malformed += [f"{describe(doc, i)}: {e}" for e in errors]
                continue
            obj = normalise(doc)
            key = key_of(obj)
            if key in seen:
                malformed.append(f"{key.label}: appears twice in one apply (documents #{seen[key] + 1} and #{i + 1})")
                continue
            seen[key] = i
            objects.append((key, obj))
        if malformed:
            raise ApplyError(_join(malformed), malformed, self._rejected(docs, malformed), status=400)
        after = dict(desired)
        for key, obj in objects:
            if deleting:
                after.pop(key, None)
            else:
                after[key] = obj
        invalid = []
        if not deleting:
            templates = {t["spec"]["crd"]["spec"]["names"]["kind"]: t for t in after.values()
                         if t.get("kind") == TEMPLATE_KIND and isinstance(t.get("spec"), dict)
                         and _template_kind(t)}
            for key, obj in objects:
                invalid += [f"{key.label}: {e}" for e in schemas.schema_errors(obj, self.crd_schemas, templates)]
            if invalid:   # semantic checks read fields the schema guarantees
                raise ApplyError(_join(invalid), invalid, self._rejected_keys(invalid, objects), status=422)
        for key, obj in after.items():
            if deleting or key in dict(objects):
                invalid += [f"{key.label}: {e}" for e in semantic_errors(obj, after)]
        if not invalid:
            invalid += self._whole_state_errors(after)
        if invalid:
            raise ApplyError(_join(invalid), invalid, self._rejected_keys(invalid, objects), status=422)
        if deleting:
            return objects, after, []
        denied, warnings = self._admit(objects, after)
        if denied:
            result = ApplyResult(rejected=denied, warnings=warnings)
            reasons = [f"{name}: {reason}" for name, reason in denied]
            raise ApplyError(_join(reasons), reasons, result, status=403)
        return objects, after, warnings

    def _whole_state_errors(self, after: dict[Key, dict]) -> list[str]:
        """What only the whole desired state can tell: every Constraint has its template, and the
        local target can build its topology (runnable Deployments, routes it can serve)."""
        from cluster import topology
        from cluster.policies import gatekeeper

        errors = []
        try:
            gatekeeper.policies_from_objects(after.values())
        except (ValueError, KeyError, TypeError) as exc:
            errors.append(f"Gatekeeper: {exc}")
        try:
            topo = topology.parse(list(after.values()))
            for dep in topo.deployments.values():
                dep.module   # noqa: B018  (raises when the command is not `python -m MODULE`)
        except (ValueError, KeyError, TypeError) as exc:
            errors.append(f"local target: {exc}")
        return errors

    def _admit(self, objects: list[tuple[Key, dict]], after: dict[Key, dict]) -> tuple[list[tuple[str, str]], list[str]]:
        from cluster.policies import gatekeeper

        policies = gatekeeper.policies_from_objects(after.values())
        ns_labels = {k.name: (o["metadata"].get("labels") or {}) for k, o in after.items() if k.kind == "Namespace"}
        denied, warnings = [], []
        for key, obj in objects:
            if key.kind == TEMPLATE_KIND or key.group == CONSTRAINT_GROUP:
                continue
            violations = policies.evaluate([obj], ns_labels)
            deny = [v for v in violations if v.action == "deny"]
            warnings += [f"[{v.constraint}] {v.msg}" for v in violations if v.action == "warn"]
            if deny:
                denied.append((str(key), GATEKEEPER_MESSAGE + "\n".join(f"[{v.constraint}] {v.msg}" for v in deny)))
        return denied, warnings

    @staticmethod
    def _rejected(docs: list[Any], reasons: list[str]) -> ApplyResult:
        return ApplyResult(rejected=[(r.split(":", 1)[0], r.split(":", 1)[1].strip()) for r in reasons])

    @staticmethod
    def _rejected_keys(reasons: list[str], objects: list[tuple[Key, dict]]) -> ApplyResult:
        labels = {k.label: str(k) for k, _ in objects}
        rejected = []
        for r in reasons:
            label, _, why = r.partition(": ")
            rejected.append((labels.get(label, label), why))
        return ApplyResult(rejected=rejected)

    # ----- changing -----------------------------------------------------------------------
    def apply(self, source: Any, dry_run: bool = False) -> ApplyResult:
        """Validate, admit and store a batch of objects, all or nothing (see the module doc)."""
        docs = load_objects(source)
        with self._lock:
            state = self.store.read()
            desired = self._desired(state)
            objects, _, warnings = self._check(docs, desired)
            result = ApplyResult(warnings=warnings, dry_run=dry_run)
            new_state = copy.deepcopy(state)
            for key, obj in objects:
                old = desired.get(key)
                if old is None:
                    result.created.append(str(key))
                elif canonical(old) == canonical(obj):
                    result.unchanged.append(str(key))
                    continue
                else:
                    result.configured.append(str(key))
                if key in self.base and canonical(self.base[key]) == canonical(obj):
                    new_state["applied"].pop(key.text(), None)     # back to the manifests' version
                else:
                    new_state["applied"][key.text()] = obj
                if key.text() in new_state["deleted"]:
                    new_state["deleted"].remove(key.text())
                if key.kind == "Deployment" and (old is None or canonical(pod_template(old)) != canonical(pod_template(obj))):
                    self._record_revision(new_state, key, old, obj)
            if result.changed and not dry_run:
                self.store.write(new_state)
            return result

    def delete(self, source: Any, dry_run: bool = False) -> ApplyResult:
        """Remove objects from the desired state (all or nothing: a deletion that would leave a
        reference dangling, e.g. a Service an HTTPRoute sends to, is refused)."""
        docs = load_objects(source)
        with self._lock:
            state = self.store.read()
            desired = self._desired(state)
            objects, _, _ = self._check(docs, desired, deleting=True)
            result = ApplyResult(dry_run=dry_run)
            new_state = copy.deepcopy(state)
            missing = [k for k, _ in objects if k not in desired]
            if missing:
                reasons = [f"{k.label}: not found" for k in missing]
                raise ApplyError(_join(reasons), reasons, ApplyResult(rejected=[(str(k), "not found") for k in missing]),
                                 status=404)
            for key, _ in objects:
                result.deleted.append(str(key))
                new_state["applied"].pop(key.text(), None)
                new_state["history"].pop(key.text(), None)
                if key in self.base and key.text() not in new_state["deleted"]:
                    new_state["deleted"].append(key.text())
            if result.changed and not dry_run:
                self.store.write(new_state)
            return result

    def diff(self, source: Any) -> str:
        """`kubectl diff`: a unified diff (YAML) from the desired state to the batch ("" when the
        batch changes nothing). The batch is validated and admitted first, like a dry run."""
        docs = load_objects(source)
        with self._lock:
            desired = self._desired(self.store.read())
            objects, _, _ = self._check(docs, desired)
        out = []
        for key, obj in objects:
            old = desired.get(key)
            if old is not None and canonical(old) == canonical(obj):
                continue
            before = yaml.safe_dump(old, sort_keys=True).splitlines(keepends=True) if old else []
            after = yaml.safe_dump(obj, sort_keys=True).splitlines(keepends=True)
            name = f"{key.group or 'v1'}.{key.kind}.{key.namespace or '-'}.{key.name}"
            out += difflib.unified_diff(before, after, f"live/{name}", f"merged/{name}")
        return "".join(out)

    def undo(self, name: str, to_revision: int | None = None, namespace: str = "cloudmart",
             dry_run: bool = False) -> ApplyResult:
        """`kubectl rollout undo`: apply a Deployment with the pod template of its previous revision
        (or of `to_revision`), through admission like any apply."""
        revisions = self.history(name, namespace)
        if to_revision is None:
            if len(revisions) < 2:
                raise ApplyError(f"deployment {name!r}: no rollout history to undo (one revision)", status=409)
            target = revisions[-2]
        else:
            target = next((r for r in revisions if r["revision"] == to_revision), None)
            if target is None:
                raise ApplyError(f"deployment {name!r}: revision {to_revision} not found; revisions: "
                                 f"{', '.join(str(r['revision']) for r in revisions)}", status=404)
        obj = copy.deepcopy(self.get("deployment", name, namespace)[0])
        obj["spec"]["template"] = copy.deepcopy(target["template"])
        return self.apply([obj], dry_run=dry_run)

    @staticmethod
    def _record_revision(state: dict, key: Key, old: dict | None, new: dict) -> None:
        revisions = state["history"].setdefault(key.text(), [])
        if not revisions and old is not None:
            template = pod_template(old)
            revisions.append({"revision": 1, "summary": template_summary(template), "template": template,
                              "applied_at": None})
        template = pod_template(new)
        number = max((r["revision"] for r in revisions), default=0) + 1
        # Like a ReplicaSet brought back by a rollback: the same template keeps no second entry.
        revisions[:] = [r for r in revisions if canonical(r["template"]) != canonical(template)]
        revisions.append({"revision": number, "summary": template_summary(template), "template": template,
                          "applied_at": time.time()})
        limit = (new.get("spec") or {}).get("revisionHistoryLimit", REVISION_HISTORY_LIMIT)
        del revisions[:max(0, len(revisions) - (int(limit) + 1))]

    def reset(self) -> list[str]:
        """Back to the manifests: every applied object pruned or restored, every deleted one back,
        the revision histories cleared; what changed, one line per object ([] when nothing)."""
        with self._lock:
            state = self.store.read()
            changed = []
            for text in sorted(state["applied"]):
                key = Key.parse(text)
                changed.append(f"{key}: {'back to the manifests' if key in self.base else 'deleted'}")
            changed += [f"{Key.parse(text)}: restored from the manifests" for text in sorted(state["deleted"])]
            if changed or state["history"]:
                self.store.write(self.store.empty())
            return changed

    # ----- audit --------------------------------------------------------------------------
    def audit(self) -> list:
        """Gatekeeper's audit: every violation of every Constraint (deny, warn and dryrun alike) by
        the objects of the desired state."""
        from cluster.policies import gatekeeper

        desired = self.desired()
        policies = gatekeeper.policies_from_objects(desired.values())
        ns_labels = {k.name: (o["metadata"].get("labels") or {}) for k, o in desired.items() if k.kind == "Namespace"}
        targets = [o for k, o in desired.items() if k.kind != TEMPLATE_KIND and k.group != CONSTRAINT_GROUP]
        return policies.evaluate(targets, ns_labels)


def _template_kind(t: dict) -> bool:
    try:
        return isinstance(t["spec"]["crd"]["spec"]["names"]["kind"], str)
    except (KeyError, TypeError):
        return False
