"""Synchronous price lookup: order → product (``PRODUCT_URL``, the service or its sidecar).

aiohttp's client costs about a third of httpx's CPU per request, and this call is on the
checkout's hot path.
"""

from __future__ import annotations

import asyncio

import aiohttp

from services.common import tracing
from services.order.domain import UnknownProduct


class CatalogUnavailable(Exception):
    """The product service did not answer usefully."""


class ProductClient:
    def __init__(self, base_url: str, timeout_s: float = 3.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=self.timeout,
                                             connector=aiohttp.TCPConnector(limit=50, ttl_dns_cache=300))

    async def price_cents(self, product_id: str) -> int:
        url = f"{self.base_url}/api/products/{product_id}"
        try:
            async with self.session.get(url, headers={"traceparent": tracing.traceparent()}) as response:
                if response.status == 404:
                    raise UnknownProduct(product_id)
                if response.status != 200:
                    raise CatalogUnavailable(f"product service answered {response.status}")
                return int((await response.json())["price_cents"])
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise CatalogUnavailable(f"product service unreachable: {exc!r}") from exc

    async def prices(self, product_ids: list[str]) -> dict[str, int]:
        """Prices of ``product_ids`` (looked up concurrently)."""
        values = await asyncio.gather(*(self.price_cents(pid) for pid in product_ids))
        return dict(zip(product_ids, values))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
