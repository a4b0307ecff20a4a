"""Helpers of the control plane's offline tests (a module of its own: every test folder has a conftest)."""

from __future__ import annotations

import copy
from pathlib import Path

from cluster import topology

GATEKEEPER = Path(topology.MANIFESTS_DIR) / "components" / "gatekeeper"


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
