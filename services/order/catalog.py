"""Synchronous price lookup: order → product (``PRODUCT_URL``, the service or its sidecar)."""

from __future__ import annotations

import asyncio

import httpx

from services.common import tracing
from services.order.domain import UnknownProduct


class CatalogUnavailable(Exception):
    """The product service did not answer usefully."""


class ProductClient:
    def __init__(self, base_url: str, timeout_s: float = 3.0):
        self.client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s,
                                        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20))

    async def price_cents(self, product_id: str) -> int:
        try:
            response = await self.client.get(f"/api/products/{product_id}",
                                              headers={"traceparent": tracing.traceparent()})
        except httpx.HTTPError as exc:
            raise CatalogUnavailable(f"product service unreachable: {exc}") from exc
        if response.status_code == 404:
            raise UnknownProduct(product_id)
        if response.status_code != 200:
            raise CatalogUnavailable(f"product service answered {response.status_code}")
        return int(response.json()["price_cents"])

    async def prices(self, product_ids: list[str]) -> dict[str, int]:
        """Prices of ``product_ids`` (looked up concurrently)."""
        values = await asyncio.gather(*(self.price_cents(pid) for pid in product_ids))
        return dict(zip(product_ids, values))

    async def close(self) -> None:
        await self.client.aclose()
