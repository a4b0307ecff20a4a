"""Fault injection for the chaos labs: added latency and an error rate, per replica.

The state lives in this process only (one replica); the admin endpoint changes it and a
middleware applies it to ``/api/*`` and ``/internal/*`` routes (never to health, metrics or admin routes).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import asdict, dataclass

from pydantic import BaseModel, Field


class FaultConfig(BaseModel):
    """Fault settings of one replica."""

    latency_ms: float = Field(0, ge=0, le=60_000, description="Added latency per /api request, in ms.")
    error_rate: float = Field(0.0, ge=0.0, le=1.0, description="Share of /api requests answered 503.")


@dataclass
class FaultState:
    latency_ms: float = 0.0
    error_rate: float = 0.0

    def set(self, config: FaultConfig) -> None:
        self.latency_ms = config.latency_ms
        self.error_rate = config.error_rate

    def reset(self) -> None:
        self.latency_ms = 0.0
        self.error_rate = 0.0

    def public(self) -> FaultConfig:
        return FaultConfig(**asdict(self))

    async def apply(self) -> bool:
        """Sleep the added latency; return True when this request should fail."""
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000.0)
        return self.error_rate > 0 and random.random() < self.error_rate


#: This replica's faults.
state = FaultState()
