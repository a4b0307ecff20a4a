"""The declared virtual node and its price sheet: what the local machine is billed as.

The local machine is not a billed cloud node, so cost lessons declare one: an instance type of
`sim.cost.PRICE_SHEET` (default `general.large`, 2 vCPU / 8 GiB at 0.096 USD/h on demand) or an
explicit size and price. Its hourly price is split into a price per core-hour and per GiB-hour in
the ratio of OpenCost's default resource prices (as `sim.cost.allocate` does), so that
node cost = vcpu × cpu price + memory × ram price exactly. Every banner and plot title states it
(:meth:`VirtualNode.describe`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.cost import OPENCOST_CPU_USD_PER_CORE_H, OPENCOST_RAM_USD_PER_GIB_H, PRICE_SHEET, PURCHASE_OPTIONS

DEFAULT_INSTANCE = "general.large"


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: got {value!r}; valid: a finite number > 0")
    return float(value)


@dataclass(frozen=True)
class VirtualNode:
    """A declared node: name, size, hourly price (USD) and purchase option."""

    name: str = "cloudmart-local"
    instance_type: str = DEFAULT_INSTANCE
    vcpu: float = 2.0
    memory_gib: float = 8.0
    usd_per_h: float = 0.096
    purchase: str = "on_demand"
    cluster: str = "cloudmart-local"
    region: str = "local"

    def __post_init__(self):
        _positive("vcpu", self.vcpu)
        _positive("memory_gib", self.memory_gib)
        _positive("usd_per_h", self.usd_per_h)
        if self.purchase not in PURCHASE_OPTIONS:
            raise ValueError(f"purchase: got {self.purchase!r}; valid: one of {list(PURCHASE_OPTIONS)}")

    @classmethod
    def of(cls, instance_type: str = DEFAULT_INSTANCE, purchase: str = "on_demand", **kw) -> "VirtualNode":
        """A node of a `sim.cost.PRICE_SHEET` instance type at that purchase option's price."""
        if instance_type not in PRICE_SHEET:
            raise ValueError(f"instance_type: got {instance_type!r}; valid: one of {sorted(PRICE_SHEET)}")
        inst = PRICE_SHEET[instance_type]
        return cls(instance_type=inst.name, vcpu=inst.vcpu, memory_gib=inst.memory_gib,
                   usd_per_h=inst.price_usd_per_h(purchase), purchase=purchase, **kw)

    @property
    def cpu_usd_per_core_h(self) -> float:
        w_cpu = self.vcpu * OPENCOST_CPU_USD_PER_CORE_H
        w_ram = self.memory_gib * OPENCOST_RAM_USD_PER_GIB_H
        return self.usd_per_h * w_cpu / (w_cpu + w_ram) / self.vcpu

    @property
    def ram_usd_per_gib_h(self) -> float:
        w_cpu = self.vcpu * OPENCOST_CPU_USD_PER_CORE_H
        w_ram = self.memory_gib * OPENCOST_RAM_USD_PER_GIB_H
        return self.usd_per_h * w_ram / (w_cpu + w_ram) / self.memory_gib

    def describe(self) -> str:
        return (f"virtual node {self.name}: {self.instance_type} {self.vcpu:g} vCPU / {self.memory_gib:g} GiB "
                f"at {self.usd_per_h:.4f} USD/h ({self.purchase.replace('_', '-')}; "
                f"{self.cpu_usd_per_core_h:.5f} USD per core-hour, {self.ram_usd_per_gib_h:.5f} USD per GiB-hour)")

    def to_dict(self) -> dict:
        return {"name": self.name, "instanceType": self.instance_type, "vcpu": self.vcpu, "memoryGiB": self.memory_gib,
                "hourlyCost": self.usd_per_h, "purchase": self.purchase, "cluster": self.cluster,
                "region": self.region, "cpuHourlyCost": self.cpu_usd_per_core_h,
                "ramHourlyCostPerGiB": self.ram_usd_per_gib_h}

    @classmethod
    def from_dict(cls, data: dict) -> "VirtualNode":
        if not isinstance(data, dict):
            raise ValueError(f"node: got {data!r}; valid: a mapping with instanceType or vcpu/memoryGiB/hourlyCost")
        extra = {k: data[k] for k in ("name", "cluster", "region") if k in data}
        if set(data) & {"vcpu", "memoryGiB", "hourlyCost"}:
            return cls(instance_type=str(data.get("instanceType", "custom")), vcpu=data.get("vcpu"),
                       memory_gib=data.get("memoryGiB"), usd_per_h=data.get("hourlyCost"),
                       purchase=data.get("purchase", "on_demand"), **extra)
        return cls.of(data.get("instanceType", DEFAULT_INSTANCE), data.get("purchase", "on_demand"), **extra)
