"""Fixtures of the control plane's offline tests: the rendered manifests (once) and a fresh plane."""

from __future__ import annotations

import pytest

from cluster import topology
from cluster.control import ControlPlane
from cluster.control.schemas import load_crd_schemas


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
