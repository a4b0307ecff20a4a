"""Which pods Prometheus scrapes, with which target labels, from `prometheus.yml` and the rendered
pods — Prometheus' documented service discovery and relabelling, offline.

Supported: `kubernetes_sd_configs` role `pod` (one target per declared container port, or one per
pod without ports; `__meta_kubernetes_namespace`, `_pod_name`, `_pod_annotation_*`, `_pod_label_*`,
`_pod_container_port_number`), `static_configs` whose targets are `<service>.<namespace>.svc:<port>`
(resolved to the pods the Service selects), and the relabel actions `keep`, `drop` and `replace`
(regexes anchored, source labels joined with `;`, `$1`-style replacements). Labels starting with
`__` are dropped after relabelling. Roles other than `pod` are skipped: their targets are not pods.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

POD_IP = "10.244.0.{n}"


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


@dataclass
class Target:
    job: str
    pod: str                   # the pod's workload name (the model has one pod per workload)
    namespace: str
    port: int
    path: str
    labels: dict[str, str] = field(default_factory=dict)
    honor_labels: bool = False


def pods_of(objects: list[dict]) -> list[dict]:
    """One pod per workload (or the Pods given), with its namespace, labels, annotations, containers."""
    pods = []
    for o in objects:
        if o["kind"] == "Pod":
            pods.append({"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"],
                         "labels": o["metadata"].get("labels", {}), "annotations": o["metadata"].get("annotations", {}),
                         "containers": o["spec"]["containers"]})
        elif o["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            template = o["spec"]["template"]
            pods.append({"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"],
                         "labels": template["metadata"].get("labels", {}),
                         "annotations": template["metadata"].get("annotations", {}),
                         "containers": template["spec"]["containers"]})
    return pods


def _pod_targets(pod: dict, index: int) -> list[dict[str, str]]:
    base = {"__meta_kubernetes_namespace": pod["namespace"], "__meta_kubernetes_pod_name": pod["name"]}
    for k, v in pod["annotations"].items():
        base[f"__meta_kubernetes_pod_annotation_{_sanitize(k)}"] = str(v)
    for k, v in pod["labels"].items():
        base[f"__meta_kubernetes_pod_label_{_sanitize(k)}"] = str(v)
    ip = POD_IP.format(n=index)
    ports = [(c["name"], p) for c in pod["containers"] for p in c.get("ports", [])]
    if not ports:
        return [{**base, "__address__": ip}]
    return [{**base, "__address__": f"{ip}:{p['containerPort']}", "__meta_kubernetes_pod_container_name": c,
             "__meta_kubernetes_pod_container_port_number": str(p["containerPort"])} for c, p in ports]


def _expand(replacement: str, match: re.Match) -> str:
    return re.sub(r"\$\{?(\d+)\}?", lambda m: match.group(int(m.group(1))) or "", replacement)


def relabel(labels: dict[str, str], configs: list[dict]) -> dict[str, str] | None:
    """Apply relabel_configs; None when the target is dropped."""
    labels = dict(labels)
    for rc in configs:
        action = rc.get("action", "replace")
        value = rc.get("separator", ";").join(labels.get(s, "") for s in rc.get("source_labels", []))
        regex = re.compile(f"^(?:{rc.get('regex', '(.*)')})$")
        match = regex.match(value)
        if action == "keep":
            if not match:
                return None
        elif action == "drop":
            if match:
                return None
        elif action == "replace":
            if match:
                labels[rc["target_label"]] = _expand(rc.get("replacement", "$1"), match)
        else:
            raise ValueError(f"relabel action {action!r} is not modelled")
    return labels


def _selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def targets(config: dict, objects: list[dict]) -> list[Target]:
    """Every scrape target of pods among `objects` that `config` (a parsed prometheus.yml) finds."""
    pods = pods_of(objects)
    services = {(o["metadata"]["name"], o["metadata"].get("namespace")): o for o in objects if o["kind"] == "Service"}
    out = []
    for job in config.get("scrape_configs", []):
        candidates: list[tuple[dict, dict[str, str]]] = []
        for sd in job.get("kubernetes_sd_configs", []):
            if sd.get("role") != "pod":
                continue
            names = sd.get("namespaces", {}).get("names")
            for i, pod in enumerate(pods):
                if names is None or pod["namespace"] in names:
                    candidates += [(pod, t) for t in _pod_targets(pod, i)]
        for static in job.get("static_configs", []):
            for address in static.get("targets", []):
                host, _, port = address.partition(":")
                parts = host.split(".")
                service = services.get((parts[0], parts[1] if len(parts) > 1 else None))
                if service is None:
                    raise ValueError(f"job {job['job_name']}: static target {address!r} is not a Service here")
                for pod in pods:
                    if pod["namespace"] == service["metadata"]["namespace"] \
                            and _selects(service["spec"].get("selector", {}), pod["labels"]):
                        candidates.append((pod, {"__address__": address, **static.get("labels", {})}))
        for pod, meta in candidates:
            meta = {"__metrics_path__": job.get("metrics_path", "/metrics"), "job": job["job_name"], **meta}
            labels = relabel(meta, job.get("relabel_configs", []))
            if labels is None:
                continue
            address = labels["__address__"]
            port = int(address.rsplit(":", 1)[1]) if ":" in address else 80
            out.append(Target(job["job_name"], pod["name"], pod["namespace"], port, labels["__metrics_path__"],
                              {k: v for k, v in labels.items() if not k.startswith("__")},
                              bool(job.get("honor_labels", False))))
    return out


def stored_labels(target: Target, scraped: dict[str, str]) -> dict[str, str]:
    """The labels a scraped series is stored with: target labels win unless `honor_labels`, and the
    scraped value of a conflicting label moves to `exported_<name>` (Prometheus' `honor_labels`)."""
    if target.honor_labels:
        return {**target.labels, **scraped}
    out = dict(scraped)
    for k, v in target.labels.items():
        if k in out and out[k] != v:
            out[f"exported_{k}"] = out[k]
        out[k] = v
    return out
