"""Fixtures of the control plane's offline tests: the rendered manifests (once) and a fresh plane."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from cluster import topology
from cluster.control import ControlPlane
from cluster.control.schemas import load_crd_schemas

GATEKEEPER = Path(topology.MANIFESTS_DIR) / "components" / "gatekeeper"


@pytest.fixture(scope="session")
def base_objects():
    """The kustomize base, rendered with the real kubectl kustomize."""
    return topology.render()


@pytest.fixture(scope="session")
def crd_schemas():
    return load_crd_schemas()


@pytest.fixture
def plane(tmp_path, base_objects, crd_schemas):
    """A control plane whose store is a fresh folder."""
    return ControlPlane(tmp_path / "control", base_objects, crd_schemas=crd_schemas)


def base_object(base_objects, kind: str, name: str) -> dict:
    """A deep copy of one object of the manifests."""
    return copy.deepcopy(next(o for o in base_objects if o["kind"] == kind and o["metadata"]["name"] == name))


def set_env(deployment: dict, name: str, value: str) -> dict:
    """Set an env value of a Deployment's first container (in place); returns the Deployment."""
    env = deployment["spec"]["template"]["spec"]["containers"][0].setdefault("env", [])
    for item in env:
        if item["name"] == name:
            item["value"] = value
            break
    else:
        env.append({"name": name, "value": value})
    return deployment
