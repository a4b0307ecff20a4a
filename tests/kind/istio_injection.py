"""What Istio's sidecar injector does to a pod, as data, for the offline checks.

Modelled on istiod's injection template (manifests/charts/istio-control/istio-discovery/files/
injection-template.yaml) with the values `cluster/kind/helm/istiod.yaml` passes to the chart:

- an init container `istio-init` (iptables, NET_ADMIN/NET_RAW, no privilege escalation) whose
  `resources` are `global.proxy_init.resources`, or `{}` when that value is unset;
- the `istio-proxy` container, whose `resources` are the pod's `sidecar.istio.io/proxy*`
  annotations, else `global.proxy.resources`;
- with metrics merging (`meshConfig.enablePrometheusMerge`, on by default) the pod's
  `prometheus.io/*` annotations are replaced by the agent's merged endpoint, port 15020, path
  /stats/prometheus (Istio's Prometheus integration page, "Option 1: Metrics merging").

Gatekeeper's validating webhook runs after the mutating webhooks, so it judges the pod as mutated.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ISTIOD_VALUES = ROOT / "cluster" / "kind" / "helm" / "istiod.yaml"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
MERGED_METRICS_PORT = 15020


def istio_version() -> str:
    from cluster.kind_target import ISTIO_VERSION

    return ISTIO_VERSION


def load_values(path: Path = ISTIOD_VALUES) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def injected_namespaces(objects: list[dict]) -> set[str]:
    return {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"
            and o["metadata"].get("labels", {}).get("istio-injection") == "enabled"}


def _proxy_resources(annotations: dict, values: dict) -> dict:
    keys = {("requests", "cpu"): "sidecar.istio.io/proxyCPU", ("requests", "memory"): "sidecar.istio.io/proxyMemory",
            ("limits", "cpu"): "sidecar.istio.io/proxyCPULimit",
            ("limits", "memory"): "sidecar.istio.io/proxyMemoryLimit"}
    if any(a in annotations for a in keys.values()):
        out: dict = {}
        for (kind, name), annotation in keys.items():
            if annotation in annotations:
                out.setdefault(kind, {})[name] = annotations[annotation]
        return out
    return copy.deepcopy(values.get("global", {}).get("proxy", {}).get("resources") or {})


def inject_pod(template: dict, values: dict, version: str | None = None) -> dict:
    """A pod template as the injector returns it (a copy)."""
    version = version or istio_version()
    pod = copy.deepcopy(template)
    meta = pod.setdefault("metadata", {})
    annotations = meta.setdefault("annotations", {})
    spec = pod["spec"]
    image = f"docker.io/istio/proxyv2:{version}"
    init = {
        "name": "istio-init", "image": image,
        "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337"],
        "resources": copy.deepcopy(values.get("global", {}).get("proxy_init", {}).get("resources") or {}),
        "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
                            "runAsUser": 0, "runAsNonRoot": False},
    }
    proxy = {
        "name": "istio-proxy", "image": image, "args": ["proxy", "sidecar"],
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "resources": _proxy_resources(annotations, values),
        "securityContext": {"allowPrivilegeEscalation": False, "privileged": False, "runAsUser": 1337,
                            "runAsNonRoot": True, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    spec["initContainers"] = [init, *spec.get("initContainers", [])]
    spec["containers"] = [*spec["containers"], proxy]
    if values.get("meshConfig", {}).get("enablePrometheusMerge", True) \
            and annotations.get("prometheus.io/scrape") != "false":
        annotations.update({"prometheus.io/scrape": "true", "prometheus.io/port": str(MERGED_METRICS_PORT),
                            "prometheus.io/path": "/stats/prometheus"})
    annotations["sidecar.istio.io/status"] = '{"initContainers":["istio-init"],"containers":["istio-proxy"]}'
    return pod


def is_injected(obj: dict, namespaces: set[str]) -> bool:
    if obj["kind"] not in WORKLOAD_KINDS or obj["metadata"].get("namespace") not in namespaces:
        return False
    meta = obj["spec"]["template"].get("metadata", {})
    opted_out = meta.get("annotations", {}).get("sidecar.istio.io/inject") == "false" \
        or meta.get("labels", {}).get("sidecar.istio.io/inject") == "false"
    return not opted_out


def injected_pods(objects: list[dict], values: dict | None = None) -> list[dict]:
    """Every Pod the workloads of an injected namespace create, as Gatekeeper sees it after mutation."""
    values = load_values() if values is None else values
    namespaces = injected_namespaces(objects)
    pods = []
    for obj in objects:
        if not is_injected(obj, namespaces):
            continue
        template = inject_pod(obj["spec"]["template"], values)
        pods.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {**template.get("metadata", {}), "name": obj["metadata"]["name"],
                                  "namespace": obj["metadata"]["namespace"]},
                     "spec": template["spec"]})
    return pods
