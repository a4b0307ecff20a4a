"""Classroom helpers every notebook uses at its top: a reset to a fresh CloudMart and the time
budget per section.

``reset(cm)`` puts a running CloudMart back into the state ``cloudmart up`` leaves it in: no
injected faults on any replica, each Deployment at the replicas it started with, no canary
traffic. It is idempotent (running it twice changes nothing the second time) and touches only
what differs, so on a fresh CloudMart it is a few HTTP calls.

``time_budget(rows)`` renders the minutes per section as a table and checks they add up to the
slot the course plan gives the notebook.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["reset", "time_budget"]


def reset(cm: Any, replicas: dict[str, int] | None = None) -> dict[str, Any]:
    """Faults off on every ready replica, ``replicas`` (default: 1 per Deployment, 0 for a canary)
    and canary weight 0. Returns what was changed, per Deployment (empty on a fresh CloudMart)."""
    changed: dict[str, Any] = {}
    deployments = cm.status()["deployments"]
    for name, dep in deployments.items():
        want = (replicas or {}).get(name, 0 if name.endswith("-canary") else 1)
        if dep.get("wanted", dep.get("ready")) != want:
            cm.scale(name, want)
            changed.setdefault(name, []).append(f"replicas -> {want}")
    status = cm.status()["deployments"]
    for name, dep in status.items():
        if name.endswith("-canary"):
            continue
        ports = [r["port"] for r in dep["replicas"] if r["ready"]]
        faulty = [p for p in ports if _has_fault(cm, p)]
        if faulty:
            cm.reset(name)
            changed.setdefault(name, []).append(f"faults cleared on {len(faulty)} replica(s)")
    for name in deployments:
        if name.endswith("-canary"):
            try:
                cm.canary(name.removesuffix("-canary"), 0)
            except Exception as exc:  # a target without canary routing has nothing to reset
                changed.setdefault(name, []).append(f"canary weight not reset: {exc}")
    return changed


def _has_fault(cm: Any, port: int) -> bool:
    import httpx

    resp = httpx.get(f"http://127.0.0.1:{port}/admin/fault", headers=cm._admin_headers(), timeout=10)
    resp.raise_for_status()
    body = resp.json()
    return bool(body.get("latency_ms") or body.get("error_rate"))


def time_budget(rows: dict[str, int], slot_min: int) -> pd.DataFrame:
    """The minutes per section as a table; raises ``ValueError`` unless they add up to
    ``slot_min``, the slot the course plan gives the notebook."""
    if not rows or any(not isinstance(m, int) or m <= 0 for m in rows.values()):
        raise ValueError(f"rows: got {rows!r}; valid: section -> minutes > 0")
    total = sum(rows.values())
    if total != slot_min:
        raise ValueError(f"sections add up to {total} min; valid: the slot's {slot_min} min")
    table = pd.DataFrame({"minutes": list(rows.values())}, index=pd.Index(list(rows), name="section"))
    table["from_start_min"] = table["minutes"].cumsum() - table["minutes"]
    return table
