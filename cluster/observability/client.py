"""`cm.prometheus`: queries, targets, alerts and rules of the local Prometheus, and the
notifications Alertmanager delivered to the supervisor's webhook receiver."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx

from cluster.observability import check_rules

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class PrometheusClient:
    def __init__(self, info: dict, state_dir: Path):
        self.info = info
        self.url = info["prometheus_url"]
        self.alertmanager_url = info["alertmanager_url"]
        self.state_dir = Path(state_dir)
        self._client = httpx.Client(base_url=self.url, timeout=15)

    def __repr__(self) -> str:
        return f"PrometheusClient({self.url!r})"

    def _api(self, path: str, **params) -> dict | list:
        resp = self._client.get(f"/api/v1/{path}", params=params)
        body = resp.json()
        if body.get("status") != "success":
            raise ValueError(f"Prometheus: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        """An instant query; Prometheus's own message (ValueError) when the PromQL does not parse."""
        return self._api("query", query=promql)["result"]

    def targets(self) -> list[dict]:
        return self._api("targets")["activeTargets"]

    def alerts(self) -> list[dict]:
        return self._api("alerts")["alerts"]

    def rule_groups(self) -> list[dict]:
        return self._api("rules")["groups"]

    def add_rules(self, name: str, text: str, timeout_s: float = 20.0) -> list[str]:
        """Check a rule file with promtool, install it as `<state>/observability/rules/<name>.yml`,
        reload Prometheus and wait until its groups are loaded; returns their names."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"name: got {name!r}; valid: 1-63 of a-z 0-9 _ - (a file name)")
        check_rules(text)
        groups = [g["name"] for g in (__import__("yaml").safe_load(text) or {}).get("groups", [])]
        path = self.state_dir / "observability" / "rules" / f"{name}.yml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        self.reload()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if set(groups) <= {g["name"] for g in self.rule_groups()}:
                return groups
            time.sleep(0.2)
        raise TimeoutError(f"Prometheus did not load rule groups {groups} within {timeout_s:g} s")

    def remove_rules(self, name: str) -> None:
        (self.state_dir / "observability" / "rules" / f"{name}.yml").unlink(missing_ok=True)
        self.reload()

    def reload(self) -> None:
        resp = self._client.post("/-/reload")
        if resp.status_code != 200:
            raise ValueError(f"Prometheus refused the reload: {resp.text.strip()}")

    def notifications(self) -> list[dict]:
        """Every webhook notification Alertmanager sent (oldest first), with `received_at`."""
        path = self.state_dir / "observability" / "notifications.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
