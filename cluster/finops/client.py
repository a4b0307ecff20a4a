"""Client of an OpenCost-compatible API: the local one (`cm.opencost`) or a real OpenCost
reached through a port-forward (same paths and parameters)."""

from __future__ import annotations

import httpx
import pandas as pd

from cluster.finops.allocation import to_cents
from cluster.local import error_message


class OpenCostClient:
    """`allocation()`, `allocation_frame()`, `showback()`, budgets and the exporter's metrics."""

    def __init__(self, base_url: str, timeout_s: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def __repr__(self) -> str:
        return f"OpenCostClient({self.base_url!r})"

    def _check(self, resp: httpx.Response) -> dict:
        if resp.status_code >= 400:
            raise ValueError(error_message(resp, "message"))
        return resp.json()

    def allocation(self, window: str, aggregate: str | None = None, step: str | None = None,
                   accumulate: bool | None = None, includeIdle: bool | None = None,
                   shareIdle: bool | None = None) -> dict:
        """The raw `/allocation` answer (`data`: one dict of allocations per step)."""
        params = {"window": window}
        for key, value in (("aggregate", aggregate), ("step", step), ("accumulate", accumulate),
                           ("includeIdle", includeIdle), ("shareIdle", shareIdle)):
            if value is not None:
                params[key] = str(value).lower() if isinstance(value, bool) else value
        return self._check(self._client.get("/allocation", params=params))

    def allocation_frame(self, window: str, **kw) -> pd.DataFrame:
        """One row per allocation and set: name, start, end, the cost and usage fields."""
        answer = self.allocation(window, **kw)
        rows = []
        for i, allocation_set in enumerate(answer["data"]):
            for name, line in allocation_set.items():
                row = {k: v for k, v in line.items() if not isinstance(v, dict)}
                row["set"] = i
                rows.append(row)
        return pd.DataFrame(rows)

    def showback(self, window: str, aggregate: str = "namespace", shareIdle: bool = False) -> pd.DataFrame:
        """One accumulated set in whole cents that adds up to the node's bill exactly (idle as a line
        unless shared): columns name, cost_usd, cents; `attrs["bill_usd"]`, `attrs["bill_cents"]`."""
        answer = self.allocation(window, aggregate=aggregate, accumulate=True, includeIdle=True, shareIdle=shareIdle)
        allocation_set, bill = answer["data"][0], answer["bills"][0]["totalCost"]
        cents = to_cents(allocation_set, bill)
        frame = pd.DataFrame({"name": list(allocation_set), "cost_usd": [v["totalCost"] for v in allocation_set.values()],
                              "cents": [cents[k] for k in allocation_set]})
        frame.attrs.update(bill_usd=bill, bill_cents=round(bill * 100), node=answer["node"])
        return frame

    def create_budget(self, budget: dict) -> dict:
        return self._check(self._client.post("/model/budget", json=budget))["data"][0]

    def budgets(self) -> list[dict]:
        return self._check(self._client.get("/model/budgets"))["data"]

    def delete_budget(self, budget_id: str) -> None:
        self._check(self._client.delete("/model/deleteBudget", params={"id": budget_id}))

    def metrics(self) -> str:
        resp = self._client.get("/metrics")
        resp.raise_for_status()
        return resp.text

    def close(self) -> None:
        self._client.close()
