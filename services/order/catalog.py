"""Synchronous price lookup: order → product (``PRODUCT_URL``, the service or its sidecar), from
the product store through its internal ``/internal/prices`` route, never from the cache.

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

    async def prices(self, product_ids: list[str]) -> dict[str, int]:
        """Prices of ``product_ids`` from the product store itself (one request, never the
        cache: a value planted in the cache cannot price an order); unknown ids are missing."""
        url = f"{self.base_url}/internal/prices"
        params = [("ids", pid) for pid in product_ids]
        try:
            async with self.session.get(url, params=params, headers={"traceparent": tracing.traceparent()}) as response:
                if response.status == 422:
                    raise UnknownProduct(",".join(product_ids))
                if response.status != 200:
                    raise CatalogUnavailable(f"product service answered {response.status}")
                found = (await response.json())["prices"]
        except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError) as exc:
            raise CatalogUnavailable(f"product service unreachable: {exc!r}") from exc
        return {pid: int(price) for pid, price in found.items() if pid in product_ids}

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
