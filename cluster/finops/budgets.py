"""Budgets after Kubecost's Budget API (``POST /model/budget``, ``GET /model/budgets``,
``DELETE /model/deleteBudget?id=``), evaluated on the local allocation.

Fields as Kubecost documents them: ``name``, ``values`` (the filter: ``{"namespace": [...]}``,
``{"cluster": [...]}`` or ``{"label": ["key:value", ...]}``), ``kind``, ``interval`` (``weekly``
or ``monthly``), ``intervalDay`` (weekday 0 = Sunday, or day of the month), ``spendLimit``,
``actions`` (``percentage`` of the limit, ``lastFired``), and in the answer ``window`` and
``currentSpend``. Kubecost sends an action to emails, Slack or Teams; locally an action's
``webhooks`` (a CloudMart addition: loopback URLs only) receive a JSON POST once per budget
window when the spend passes the threshold. Kubecost itself is not run: this is CloudMart's
implementation of the documented fields.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import secrets
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

INTERVALS = ("weekly", "monthly")
FILTER_KEYS = ("namespace", "cluster", "label")


class BudgetError(ValueError):
    """A budget that cannot be stored: the message names the field and the valid values."""


def _loopback(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.hostname in ("127.0.0.1", "localhost", "::1")


def validate(body: dict, existing: dict | None = None) -> dict:
    """A checked, normalised budget (a new id unless ``existing`` is the one being updated)."""
    if not isinstance(body, dict):
        raise BudgetError("budget: got a non-object; valid: a JSON object with name, values, interval, spendLimit")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BudgetError("name: missing; valid: a non-empty string")
    values = body.get("values")
    if not isinstance(values, dict) or not values or not any(values.get(k) for k in values):
        raise BudgetError(f"budget {name!r} has no filter: values must name at least one of "
                          f"{', '.join(FILTER_KEYS)} (e.g. {{\"namespace\": [\"cloudmart\"]}})")
    for key, items in values.items():
        if key not in FILTER_KEYS:
            raise BudgetError(f"values.{key}: unknown; valid: {', '.join(FILTER_KEYS)}")
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise BudgetError(f"values.{key}: got {items!r}; valid: a list of names")
        if key == "label" and not all(":" in i for i in items):
            raise BudgetError(f"values.label: got {items!r}; valid: 'key:value' items")
    interval = body.get("interval")
    if interval not in INTERVALS:
        raise BudgetError(f"interval: got {interval!r}; valid: weekly or monthly")
    day = body.get("intervalDay", 0 if interval == "weekly" else 1)
    lo, hi = (0, 6) if interval == "weekly" else (1, 28)
    if isinstance(day, bool) or not isinstance(day, int) or not lo <= day <= hi:
        raise BudgetError(f"intervalDay: got {day!r}; valid: {lo}..{hi} for a {interval} budget")
    limit = body.get("spendLimit")
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit <= 0:
        raise BudgetError(f"spendLimit: got {limit!r}; valid: a number > 0 (USD)")
    actions = []
    for i, action in enumerate(body.get("actions") or []):
        if not isinstance(action, dict):
            raise BudgetError(f"actions[{i}]: got {action!r}; valid: an object with percentage")
        pct = action.get("percentage")
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 < pct <= 1000:
            raise BudgetError(f"actions[{i}].percentage: got {pct!r}; valid: a number in (0, 1000]")
        hooks = action.get("webhooks") or []
        if not isinstance(hooks, list) or not all(isinstance(h, str) and _loopback(h) for h in hooks):
            raise BudgetError(f"actions[{i}].webhooks: got {hooks!r}; valid: http URLs on 127.0.0.1 or localhost")
        old = next((a for a in (existing or {}).get("actions", []) if a.get("percentage") == pct), {})
        actions.append({"percentage": float(pct), "webhooks": hooks, "emails": action.get("emails") or [],
                        "slackWebhooks": action.get("slackWebhooks") or [],
                        "msTeamsWebhooks": action.get("msTeamsWebhooks") or [],
                        "lastFired": old.get("lastFired", "")})
    return {"name": name.strip(), "id": (existing or {}).get("id") or body.get("id") or secrets.token_hex(8),
            "values": {k: list(v) for k, v in values.items()}, "kind": body.get("kind", "soft"),
            "interval": interval, "intervalDay": day, "spendLimit": float(limit), "actions": actions}


def budget_window(budget: dict, now: float) -> tuple[float, float]:
    """Start (the last reset) and end (the next reset) of the budget's current window, UTC."""
    t = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if budget["interval"] == "weekly":
        weekday = (t.weekday() + 1) % 7          # Sunday = 0, as Kubecost's intervalDay
        start = midnight - dt.timedelta(days=(weekday - budget["intervalDay"]) % 7)
        end = start + dt.timedelta(days=7)
    else:
        start = midnight.replace(day=budget["intervalDay"])
        if start > t:
            start = (start.replace(day=1) - dt.timedelta(days=1)).replace(day=budget["intervalDay"])
        month = start.month % 12 + 1
        end = start.replace(year=start.year + (start.month == 12), month=month)
    return start.timestamp(), end.timestamp()


def matches(budget: dict, props: dict) -> bool:
    """Whether an allocation's properties fall under the budget's filter (any listed value)."""
    for key, items in budget["values"].items():
        if key == "label":
            labels = props.get("labels", {})
            if any(labels.get(i.split(":", 1)[0]) == i.split(":", 1)[1] for i in items):
                return True
        elif props.get(key) in items:
            return True
    return False


@dataclass
class BudgetStore:
    """Budgets kept in a JSON file (they survive a restart)."""

    path: Path
    budgets: dict = field(default_factory=dict)

    def __post_init__(self):
        try:
            self.budgets = {b["id"]: b for b in json.loads(self.path.read_text())}
        except (OSError, ValueError, KeyError, TypeError):
            self.budgets = {}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(list(self.budgets.values()), indent=1))
        tmp.replace(self.path)

    def put(self, body: dict) -> dict:
        existing = self.budgets.get(body.get("id")) if isinstance(body, dict) and body.get("id") else None
        if isinstance(body, dict) and body.get("id") and existing is None:
            raise BudgetError(f"id: got {body.get('id')!r}, which is no budget; valid: omit it to create one, "
                              f"or one of {sorted(self.budgets)}")
        budget = validate(body, existing)
        self.budgets[budget["id"]] = budget
        self._save()
        return budget

    def delete(self, budget_id: str) -> None:
        if budget_id not in self.budgets:
            raise BudgetError(f"id: got {budget_id!r}; valid: one of {sorted(self.budgets)}")
        del self.budgets[budget_id]
        self._save()

    def mark_fired(self, budget_id: str, percentage: float, when: str) -> None:
        for action in self.budgets[budget_id]["actions"]:
            if action["percentage"] == percentage:
                action["lastFired"] = when
        self._save()


def due_actions(budget: dict, spend: float, window_start: float) -> list[dict]:
    """Actions whose threshold the spend has passed and that have not fired in this window."""
    due = []
    for action in budget["actions"]:
        if spend < budget["spendLimit"] * action["percentage"] / 100.0:
            continue
        last = action.get("lastFired")
        if last:
            try:
                if dt.datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp() >= window_start:
                    continue
            except ValueError:
                pass
        due.append(action)
    return due
