"""A small in-memory Kubernetes API for the kind handle's offline tests, built from the rendered
manifests: Deployments (the ReplicaSet controller is simulated: pods follow `spec.replicas` one
`list` later and are ready at once), their pods and EndpointSlices, HPAs and custom objects.

It answers the calls `KindTarget` makes with objects shaped like the kubernetes client's (attribute
access, snake_case), and records every write as (group, kind, name, new object) so a test can see
which fields the handle changed on the cluster.
"""

from __future__ import annotations

import copy
import itertools
from types import SimpleNamespace as NS
from typing import Any

PLURALS = {"httproutes": "HTTPRoute", "virtualservices": "VirtualService"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class FakeKube:
    def __init__(self, objects: list[dict], namespace: str = "cloudmart"):
        self.namespace = namespace
        self.objects = {(o["kind"], o["metadata"]["name"]): copy.deepcopy(o) for o in objects
                        if o["metadata"].get("namespace", namespace) == namespace}
        self.writes: list[tuple[str, str, str, dict]] = []      # (group, kind, name, object after)
        self.pods: dict[str, list[dict]] = {}                    # deployment -> pods
        self.restarts: dict[str, int] = {}
        self._names = itertools.count(1)
        self.apps, self.core, self.autoscaling, self.custom, self.discovery = (NS() for _ in range(5))
        self.apps.list_namespaced_deployment = self._list_deployments
        self.apps.read_namespaced_deployment = lambda name, ns: self._deployment_ns(self.objects[("Deployment", name)])
        self.apps.patch_namespaced_deployment_scale = self._patch_scale
        self.core.list_namespaced_pod = self._list_pods
        self.core.delete_namespaced_pod = self._delete_pod
        self.autoscaling.read_namespaced_horizontal_pod_autoscaler = \
            lambda name, ns: self.objects[("HorizontalPodAutoscaler", name)]
        self.autoscaling.patch_namespaced_horizontal_pod_autoscaler = \
            lambda name, ns, body: self._patch("autoscaling", "HorizontalPodAutoscaler", name, body)
        self.custom.get_namespaced_custom_object = \
            lambda group, version, ns, plural, name: copy.deepcopy(self.objects[(PLURALS[plural], name)])
        self.custom.replace_namespaced_custom_object = self._replace_custom
        self.custom.patch_namespaced_custom_object = \
            lambda group, version, ns, plural, name, body: self._patch(group, PLURALS[plural], name, body)
        self.discovery.list_namespaced_endpoint_slice = self._list_slices

    # ----- writes ------------------------------------------------------------------------------
    def _record(self, group: str, kind: str, name: str) -> None:
        self.writes.append((group, kind, name, copy.deepcopy(self.objects[(kind, name)])))

    def _patch(self, group: str, kind: str, name: str, body: dict) -> dict:
        self.objects[(kind, name)] = merge_patch(self.objects[(kind, name)], body)
        self._record(group, kind, name)
        return self.objects[(kind, name)]

    def _patch_scale(self, name: str, ns: str, body: dict) -> None:
        self._patch("apps", "Deployment", name, {"spec": {"replicas": body["spec"]["replicas"]}})

    def _replace_custom(self, group, version, ns, plural, name, body) -> dict:
        self.objects[(PLURALS[plural], name)] = copy.deepcopy(body)
        self._record(group, PLURALS[plural], name)
        return body

    def _delete_pod(self, name: str, ns: str, grace_period_seconds: int | None = None) -> None:
        for pods in self.pods.values():
            pods[:] = [p for p in pods if p["name"] != name]

    # ----- reads -------------------------------------------------------------------------------
    def _deployments(self) -> list[dict]:
        return [o for (kind, _), o in self.objects.items() if kind == "Deployment"]

    def _reconcile(self) -> None:
        """The ReplicaSet controller: as many ready pods as each Deployment wants."""
        for d in self._deployments():
            name, wanted = d["metadata"]["name"], d["spec"].get("replicas", 1)
            pods = self.pods.setdefault(name, [])
            while len(pods) < wanted:
                pods.append({"name": f"{name}-{next(self._names):05d}", "deployment": name})
            del pods[wanted:]

    def _deployment_ns(self, d: dict) -> NS:
        containers = [NS(name=c["name"], env=[NS(name=e["name"], value=e.get("value")) for e in c.get("env", [])])
                      for c in d["spec"]["template"]["spec"]["containers"]]
        ready = len(self.pods.get(d["metadata"]["name"], []))
        return NS(metadata=NS(name=d["metadata"]["name"], labels=d["metadata"].get("labels", {})),
                  spec=NS(replicas=d["spec"].get("replicas", 1),
                          selector=NS(match_labels=d["spec"]["selector"]["matchLabels"]),
                          template=NS(spec=NS(containers=containers))),
                  status=NS(ready_replicas=ready))

    def _list_deployments(self, ns: str, label_selector: str = "") -> NS:
        wanted = dict(kv.split("=") for kv in label_selector.split(",") if kv)
        items = [self._deployment_ns(d) for d in self._deployments()
                 if all(d["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]
        self._reconcile()          # the controller catches up after this read
        return NS(items=items)

    def _pod_ns(self, pod: dict) -> NS:
        d = self.objects[("Deployment", pod["deployment"])]
        template = d["spec"]["template"]
        names = [c["name"] for c in template["spec"]["containers"]]
        return NS(metadata=NS(name=pod["name"], labels=template["metadata"].get("labels", {})),
                  spec=NS(containers=[NS(name=n) for n in names]),
                  status=NS(phase="Running", container_statuses=[
                      NS(name=n, ready=True, restart_count=self.restarts.get(pod["name"], 0)) for n in names]))

    def _list_pods(self, ns: str, label_selector: str = "") -> NS:
        wanted = dict(kv.split("=") for kv in label_selector.split(",") if kv)
        items = []
        for name, pods in self.pods.items():
            labels = self.objects[("Deployment", name)]["spec"]["template"]["metadata"].get("labels", {})
            if all(labels.get(k) == v for k, v in wanted.items()):
                items += [self._pod_ns(p) for p in pods]
        return NS(items=items)

    def _list_slices(self, ns: str) -> NS:
        items = []
        for (kind, name), svc in self.objects.items():
            if kind != "Service":
                continue
            selector = svc["spec"].get("selector", {})
            endpoints = []
            for dep, pods in self.pods.items():
                labels = self.objects[("Deployment", dep)]["spec"]["template"]["metadata"].get("labels", {})
                if selector and all(labels.get(k) == v for k, v in selector.items()):
                    endpoints += [NS(conditions=NS(ready=True), target_ref=NS(name=p["name"])) for p in pods]
            items.append(NS(metadata=NS(labels={"kubernetes.io/service-name": name}), endpoints=endpoints))
        return NS(items=items)
