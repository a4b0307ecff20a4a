"""A FinOps cost model: a price sheet, bin packing of pods onto nodes, OpenCost allocation.

* :data:`PRICE_SHEET` lists instance types with on-demand prices and the reserved and spot
  discounts (illustrative list prices in USD per hour, in the range of public cloud price pages;
  pass your own sheet for real numbers).
* :func:`bin_pack` places pod requests onto nodes of one instance type (first fit decreasing,
  by CPU then memory) — what a scheduler plus cluster autoscaler ends up with — within the node's
  **allocatable** resources: capacity minus the kubelet/system reservation (GKE's documented
  tiers by default, :func:`gke_reserved`) minus the requests of every node's daemonsets.
* :func:`allocate` follows OpenCost: a node's hourly cost is split into a CPU price per core-hour
  and a RAM price per GiB-hour (in the ratio of OpenCost's default resource prices); each
  container is charged for ``max(request, usage)`` of each resource **per usage sample**,
  averaged over the window (a container bursting above its request part of the time pays for the
  bursts); what nobody is charged for is the node's **idle** cost. Where the charges of one
  resource would exceed the node's cost of it (pods over their requests while others are under
  theirs) they are scaled down to it, so idle is never negative. Allocated + idle = total, to the
  cent. :meth:`CostAllocation.share` distributes shared namespaces, idle and external overhead
  over the other services as OpenCost's ``shareNamespaces``, ``shareIdle`` and ``shareCost`` with
  ``shareSplit`` ``weighted`` or ``even``.
* :func:`simulate_spot` runs spot nodes with Poisson interruptions (SimPy) at rates inside the
  published interruption-frequency bands (AWS Spot Instance Advisor: "< 5 %" and "5–10 %" of
  instances interrupted per month), each announced ``notice_s`` (2 minutes) ahead, and counts
  lost pod-time against the saving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import simpy

from ._validate import check_fraction, check_nonnegative, check_positive

__all__ = [
    "InstanceType",
    "PRICE_SHEET",
    "PURCHASE_OPTIONS",
    "Pod",
    "Node",
    "bin_pack",
    "allocate",
    "CostAllocation",
    "ClusterCostScenario",
    "SpotResult",
    "simulate_spot",
    "OPENCOST_CPU_USD_PER_CORE_H",
    "gke_reserved",
    "SPOT_BAND_UNDER_5_PERCENT_PER_H",
    "SPOT_BAND_5_TO_10_PERCENT_PER_H",
    "OPENCOST_RAM_USD_PER_GIB_H",
]

# OpenCost's default resource prices, used only for the CPU:RAM split of a node's price.
OPENCOST_CPU_USD_PER_CORE_H = 0.031611
OPENCOST_RAM_USD_PER_GIB_H = 0.004237

PURCHASE_OPTIONS = ("on_demand", "reserved", "spot")

HOURS_PER_MONTH = 730.0
# AWS Spot Instance Advisor bands: share of instances interrupted per month
SPOT_BAND_UNDER_5_PERCENT_PER_H = 0.05 / HOURS_PER_MONTH
SPOT_BAND_5_TO_10_PERCENT_PER_H = 0.10 / HOURS_PER_MONTH


@dataclass(frozen=True)
class InstanceType:
    """A node size and its prices. Discounts are fractions off the on-demand price."""

    name: str
    vcpu: float
    memory_gib: float
    on_demand_usd_per_h: float
    reserved_discount: float = 0.40
    spot_discount: float = 0.70
    spot_interruptions_per_h: float = SPOT_BAND_UNDER_5_PERCENT_PER_H

    def __post_init__(self):
        check_positive(f"vcpu[{self.name!r}]", self.vcpu)
        check_positive(f"memory_gib[{self.name!r}]", self.memory_gib)
        check_positive(f"on_demand_usd_per_h[{self.name!r}]", self.on_demand_usd_per_h)
        check_fraction(f"reserved_discount[{self.name!r}]", self.reserved_discount, closed_high=False)
        check_fraction(f"spot_discount[{self.name!r}]", self.spot_discount, closed_high=False)
        check_nonnegative(f"spot_interruptions_per_h[{self.name!r}]", self.spot_interruptions_per_h)

    def price_usd_per_h(self, purchase: str = "on_demand") -> float:
        """Hourly price for ``purchase`` in ``PURCHASE_OPTIONS``."""
        if purchase == "on_demand":
            return self.on_demand_usd_per_h
        if purchase == "reserved":
            return self.on_demand_usd_per_h * (1 - self.reserved_discount)
        if purchase == "spot":
            return self.on_demand_usd_per_h * (1 - self.spot_discount)
        raise ValueError(f"purchase: got {purchase!r}; valid: one of {list(PURCHASE_OPTIONS)}")


PRICE_SHEET: Mapping[str, InstanceType] = {
    t.name: t
    for t in (
        InstanceType("general.large", 2, 8, 0.096),
        InstanceType("general.xlarge", 4, 16, 0.192),
        InstanceType("general.2xlarge", 8, 32, 0.384),
        InstanceType("compute.large", 2, 4, 0.085, spot_interruptions_per_h=SPOT_BAND_5_TO_10_PERCENT_PER_H),
        InstanceType("compute.xlarge", 4, 8, 0.170, spot_interruptions_per_h=SPOT_BAND_5_TO_10_PERCENT_PER_H),
        InstanceType("memory.large", 2, 16, 0.126),
        InstanceType("memory.xlarge", 4, 32, 0.252),
    )
}


def _instance(instance, price_sheet=None) -> InstanceType:
    if isinstance(instance, InstanceType):
        return instance
    sheet = price_sheet or PRICE_SHEET
    try:
        return sheet[instance]
    except (KeyError, TypeError):
        raise ValueError(f"instance_type: got {instance!r}; valid: one of {sorted(sheet)}") from None


@dataclass(frozen=True)
class Pod:
    """A container's requests and (measured or modelled) usage: an average, or equally spaced
    ``*_usage_samples`` (as Prometheus scrapes them) that OpenCost allocation uses sample by sample."""

    name: str
    cpu_request_cores: float
    memory_request_gib: float
    cpu_usage_cores: float = 0.0
    memory_usage_gib: float = 0.0
    service: str = ""
    cpu_usage_samples: tuple | None = None
    memory_usage_samples: tuple | None = None

    def __post_init__(self):
        check_nonnegative(f"cpu_request_cores[{self.name!r}]", self.cpu_request_cores)
        check_nonnegative(f"memory_request_gib[{self.name!r}]", self.memory_request_gib)
        for key in ("cpu_usage_samples", "memory_usage_samples"):
            samples = getattr(self, key)
            if samples is None:
                continue
            samples = tuple(float(check_nonnegative(f"{key}[{self.name!r}][{i}]", v)) for i, v in enumerate(samples))
            if not samples:
                raise ValueError(f"{key}[{self.name!r}]: got (); valid: None or at least one sample")
            object.__setattr__(self, key, samples)
            mean_key = "cpu_usage_cores" if key.startswith("cpu") else "memory_usage_gib"
            object.__setattr__(self, mean_key, sum(samples) / len(samples))
        check_nonnegative(f"cpu_usage_cores[{self.name!r}]", self.cpu_usage_cores)
        check_nonnegative(f"memory_usage_gib[{self.name!r}]", self.memory_usage_gib)

    def cpu_allocation_cores(self) -> float:
        """OpenCost's CPU allocation: the time average of max(request, usage) per sample."""
        return _per_sample_max(self.cpu_request_cores, self.cpu_usage_samples, self.cpu_usage_cores)

    def memory_allocation_gib(self) -> float:
        """OpenCost's RAM allocation: the time average of max(request, usage) per sample."""
        return _per_sample_max(self.memory_request_gib, self.memory_usage_samples, self.memory_usage_gib)


def _per_sample_max(request: float, samples, mean_usage: float) -> float:
    if samples is None:
        return max(request, mean_usage)
    return sum(max(request, u) for u in samples) / len(samples)


def gke_reserved(vcpu: float, memory_gib: float) -> tuple[float, float]:
    """(cores, GiB) a node keeps for the kubelet and system, by GKE's documented tiers: CPU 6 % of
    the first core, 1 % of the second, 0.5 % of the next two, 0.25 % above four; memory 25 % of
    the first 4 GiB, 20 % of the next 4, 10 % of the next 8, 6 % of the next 112, 2 % above 128,
    plus the 100 MiB eviction threshold. Source: GKE docs, "Standard cluster architecture —
    node allocatable resources"."""
    cpu = 0.0
    for lo, hi, share in ((0, 1, 0.06), (1, 2, 0.01), (2, 4, 0.005), (4, float("inf"), 0.0025)):
        cpu += max(0.0, min(vcpu, hi) - lo) * share
    mem = 0.0
    for lo, hi, share in ((0, 4, 0.25), (4, 8, 0.20), (8, 16, 0.10), (16, 128, 0.06), (128, float("inf"), 0.02)):
        mem += max(0.0, min(memory_gib, hi) - lo) * share
    return cpu, mem + 100 / 1024


@dataclass
class Node:
    """One node of the packed cluster; pods fit into its allocatable CPU and memory."""

    name: str
    instance: InstanceType
    purchase: str = "on_demand"
    pods: list = field(default_factory=list)
    allocatable_cpu_cores: float | None = None
    allocatable_memory_gib: float | None = None

    @property
    def cpu_requested(self) -> float:
        return sum(p.cpu_request_cores for p in self.pods)

    @property
    def memory_requested(self) -> float:
        return sum(p.memory_request_gib for p in self.pods)

    def fits(self, pod: Pod) -> bool:
        cpu = self.instance.vcpu if self.allocatable_cpu_cores is None else self.allocatable_cpu_cores
        mem = self.instance.memory_gib if self.allocatable_memory_gib is None else self.allocatable_memory_gib
        return (self.cpu_requested + pod.cpu_request_cores <= cpu + 1e-9
                and self.memory_requested + pod.memory_request_gib <= mem + 1e-9)

    @property
    def cost_usd_per_h(self) -> float:
        return self.instance.price_usd_per_h(self.purchase)


def bin_pack(pods: Sequence[Pod], instance_type="general.xlarge", purchase: str = "on_demand",
             price_sheet: Mapping[str, InstanceType] | None = None, reserved="gke",
             daemonsets: Sequence[Pod] = ()) -> list[Node]:
    """First-fit-decreasing placement of ``pods`` onto as few nodes of one type as it finds.

    Pods fit into the node's allocatable resources: capacity minus ``reserved`` (``"gke"`` for
    :func:`gke_reserved`, ``None`` for nothing, or ``(cores, GiB)``) minus the ``daemonsets``,
    which run on every node (and are placed there, charged like any container)."""
    inst = _instance(instance_type, price_sheet)
    inst.price_usd_per_h(purchase)  # validates the purchase option
    if reserved == "gke":
        res_cpu, res_mem = gke_reserved(inst.vcpu, inst.memory_gib)
    elif reserved is None:
        res_cpu, res_mem = 0.0, 0.0
    elif isinstance(reserved, (tuple, list)) and len(reserved) == 2:
        res_cpu = check_nonnegative("reserved[0]", reserved[0])
        res_mem = check_nonnegative("reserved[1]", reserved[1])
    else:
        raise ValueError(f"reserved: got {reserved!r}; valid: 'gke', None or (cores, GiB)")
    daemonsets = tuple(daemonsets)
    if not all(isinstance(d, Pod) for d in daemonsets):
        raise ValueError(f"daemonsets: got {daemonsets!r}; valid: a sequence of sim.Pod")
    cpu_free = inst.vcpu - res_cpu - sum(d.cpu_request_cores for d in daemonsets)
    mem_free = inst.memory_gib - res_mem - sum(d.memory_request_gib for d in daemonsets)
    if cpu_free <= 0 or mem_free <= 0:
        raise ValueError(f"daemonsets: got requests that leave {cpu_free:.3g} cores / {mem_free:.3g} GiB "
                         f"on a {inst.name}; valid: requests below the allocatable resources")
    nodes: list[Node] = []

    def new_node() -> Node:
        i = len(nodes)
        ds = [Pod(f"{d.name}-{i}", d.cpu_request_cores, d.memory_request_gib, d.cpu_usage_cores,
                  d.memory_usage_gib, d.service or d.name, d.cpu_usage_samples, d.memory_usage_samples)
              for d in daemonsets]
        return Node(f"node-{i}", inst, purchase, ds, inst.vcpu - res_cpu, inst.memory_gib - res_mem)

    for pod in sorted(pods, key=lambda p: (p.cpu_request_cores, p.memory_request_gib), reverse=True):
        if pod.cpu_request_cores > cpu_free + 1e-9 or pod.memory_request_gib > mem_free + 1e-9:
            raise ValueError(
                f"pods[{pod.name!r}]: got requests {pod.cpu_request_cores} cores / "
                f"{pod.memory_request_gib} GiB; valid: at most {cpu_free:.4g} cores / {mem_free:.4g} GiB "
                f"(what one {inst.name} has allocatable for pods)"
            )
        for node in nodes:
            if node.fits(pod):
                node.pods.append(pod)
                break
        else:
            node = new_node()
            node.pods.append(pod)
            nodes.append(node)
    return nodes


def _cents(x: float) -> float:
    return round(x + 0.0, 2)


@dataclass(frozen=True)
class CostAllocation:
    """OpenCost-style allocation over ``hours``: per container, per node, idle and total (USD)."""

    hours: float
    containers: pd.DataFrame
    nodes: pd.DataFrame
    total_usd: float
    allocated_usd: float
    idle_usd: float

    def by_service(self) -> pd.DataFrame:
        """Allocated cost summed per service label."""
        return self.containers.groupby("service")[["cpu_usd", "memory_usd", "total_usd"]].sum()

    def share(self, shared_services: Sequence[str] = (), share_idle: bool = False, overhead_usd: float = 0.0,
              split: str = "weighted") -> pd.DataFrame:
        """Cost per service with shared costs distributed over the others, as OpenCost's
        allocation API does with ``shareNamespaces`` (here: services), ``shareIdle``,
        ``shareCost`` (an external overhead in USD) and ``shareSplit`` (``weighted`` by each
        service's own cost, or ``even``). Columns ``own_usd``, ``shared_usd``, ``total_usd``."""
        if split not in ("weighted", "even"):
            raise ValueError(f"split: got {split!r}; valid: 'weighted' or 'even'")
        check_nonnegative("overhead_usd", overhead_usd)
        per = self.by_service()["total_usd"]
        shared = set(shared_services)
        unknown = shared - set(per.index)
        if unknown:
            raise ValueError(f"shared_services: got {sorted(unknown)}; valid: services of {sorted(per.index)}")
        own = per[[s for s in per.index if s not in shared]]
        if own.empty:
            raise ValueError("shared_services: got every service; valid: leave at least one to share onto")
        pool = float(per[list(shared)].sum()) + overhead_usd + (self.idle_usd if share_idle else 0.0)
        weights = own / own.sum() if split == "weighted" and own.sum() > 0 else own * 0 + 1 / len(own)
        frame = pd.DataFrame({"own_usd": own, "shared_usd": weights * pool})
        frame["total_usd"] = frame.own_usd + frame.shared_usd
        return frame

    def to_frame(self) -> pd.DataFrame:
        """Container rows plus one ``__idle__`` row per node; ``total_usd`` sums to the bill."""
        idle = self.nodes[["idle_usd"]].rename(columns={"idle_usd": "total_usd"}).reset_index()
        idle["container"] = "__idle__"
        idle["service"] = "__idle__"
        return pd.concat([self.containers.reset_index(), idle], ignore_index=True)


def allocate(nodes: Sequence[Node], hours: float = 730.0) -> CostAllocation:
    """OpenCost allocation of the nodes' cost over ``hours`` to their containers, plus idle.

    Each node's price is split into CPU and RAM prices in the ratio of OpenCost's default
    resource prices; a container pays the time average of ``max(request, usage)`` per usage
    sample for each. Charges of a resource above the node's capacity of it are scaled down to it
    (idle never negative). Idle is the node's cost not charged to any container. Money is rounded
    to the cent per line; idle is the node's rounded cost minus its rounded container charges, so
    the lines add up to the bill exactly.
    """
    check_positive("hours", hours)
    rows, node_rows = [], []
    for node in nodes:
        inst = node.instance
        cost_h = node.cost_usd_per_h
        weight_cpu = inst.vcpu * OPENCOST_CPU_USD_PER_CORE_H
        weight_ram = inst.memory_gib * OPENCOST_RAM_USD_PER_GIB_H
        cpu_price = cost_h * weight_cpu / (weight_cpu + weight_ram) / inst.vcpu  # USD per core-hour
        ram_price = cost_h * weight_ram / (weight_cpu + weight_ram) / inst.memory_gib  # per GiB-hour
        node_cents = round(cost_h * hours * 100)
        charged_cents = 0
        cpu_total = sum(p.cpu_allocation_cores() for p in node.pods)
        mem_total = sum(p.memory_allocation_gib() for p in node.pods)
        cpu_scale = min(1.0, inst.vcpu / cpu_total) if cpu_total > 0 else 1.0
        mem_scale = min(1.0, inst.memory_gib / mem_total) if mem_total > 0 else 1.0
        for pod in node.pods:
            cpu_alloc = pod.cpu_allocation_cores() * cpu_scale
            mem_alloc = pod.memory_allocation_gib() * mem_scale
            cpu_cents = round(cpu_alloc * cpu_price * hours * 100)
            mem_cents = round(mem_alloc * ram_price * hours * 100)
            charged_cents += cpu_cents + mem_cents
            rows.append({
                "container": pod.name, "service": pod.service or pod.name, "node": node.name,
                "cpu_alloc_cores": cpu_alloc, "memory_alloc_gib": mem_alloc,
                "cpu_usd": cpu_cents / 100, "memory_usd": mem_cents / 100,
                "total_usd": (cpu_cents + mem_cents) / 100,
                "cpu_efficiency": pod.cpu_usage_cores / cpu_alloc if cpu_alloc else float("nan"),
            })
        excess = charged_cents - node_cents
        if excess > 0 and node.pods:  # per-line rounding of a fully charged node: take it off the largest line
            row = max(rows[len(rows) - len(node.pods):], key=lambda r: r["total_usd"])
            row["total_usd"] = round(row["total_usd"] - excess / 100, 2)
            row["cpu_usd"] = round(row["cpu_usd"] - excess / 100, 2)
            charged_cents = node_cents
        node_rows.append({
            "node": node.name, "instance_type": inst.name, "purchase": node.purchase,
            "cost_usd": node_cents / 100, "allocated_usd": charged_cents / 100,
            "idle_usd": (node_cents - charged_cents) / 100,
            "cpu_requested_cores": node.cpu_requested, "cpu_capacity_cores": inst.vcpu,
        })
    containers = pd.DataFrame(rows, columns=["container", "service", "node", "cpu_alloc_cores",
                                             "memory_alloc_gib", "cpu_usd", "memory_usd", "total_usd",
                                             "cpu_efficiency"]).set_index("container")
    node_df = pd.DataFrame(node_rows).set_index("node") if node_rows else pd.DataFrame(
        columns=["cost_usd", "allocated_usd", "idle_usd"])
    total_cents = int(round(node_df["cost_usd"].sum() * 100)) if node_rows else 0
    allocated_cents = int(round(containers["total_usd"].sum() * 100)) if rows else 0
    return CostAllocation(
        hours=hours,
        containers=containers,
        nodes=node_df,
        total_usd=total_cents / 100,
        allocated_usd=allocated_cents / 100,
        idle_usd=(total_cents - allocated_cents) / 100,
    )


@dataclass(frozen=True)
class ClusterCostScenario:
    """Pods on nodes of one instance type and purchase option, billed over ``hours``."""

    pods: tuple
    instance_type: str | InstanceType = "general.xlarge"
    purchase: str = "on_demand"
    hours: float = 730.0
    reserved: object = "gke"
    daemonsets: tuple = ()

    def __post_init__(self):
        pods = tuple(self.pods)
        if not all(isinstance(p, Pod) for p in pods):
            raise ValueError(f"pods: got {self.pods!r}; valid: a sequence of sim.Pod")
        object.__setattr__(self, "pods", pods)
        _instance(self.instance_type).price_usd_per_h(self.purchase)
        check_positive("hours", self.hours)

    def _run(self, seed: int = 0) -> CostAllocation:
        return allocate(bin_pack(self.pods, self.instance_type, self.purchase, reserved=self.reserved,
                                 daemonsets=self.daemonsets), self.hours)


@dataclass(frozen=True)
class SpotResult:
    """What spot interruptions cost over a run: interruptions, lost pod-hours, the bill."""

    interruptions: int
    expected_interruptions: float
    lost_pod_hours: float
    availability: float
    cost_usd: float
    on_demand_cost_usd: float

    @property
    def saving_fraction(self) -> float:
        return 1 - self.cost_usd / self.on_demand_cost_usd


def simulate_spot(nodes: int, pods_per_node: int, instance_type="general.xlarge", hours: float = 720.0,
                  reschedule_s: float = 120.0, seed: int = 0, notice_s: float = 120.0) -> SpotResult:
    """Spot nodes interrupted as a Poisson process at the type's rate. Each interruption is
    announced ``notice_s`` ahead (EC2's two-minute interruption notice; the node is cordoned and
    drained at once); its pods need ``reschedule_s`` to run elsewhere (replacement node and pod
    start), so they are down for ``max(0, reschedule_s − notice_s)``."""
    inst = _instance(instance_type)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"nodes: got {nodes!r}; valid: an integer >= 1")
    if isinstance(pods_per_node, bool) or not isinstance(pods_per_node, int) or pods_per_node < 1:
        raise ValueError(f"pods_per_node: got {pods_per_node!r}; valid: an integer >= 1")
    check_positive("hours", hours)
    check_nonnegative("reschedule_s", reschedule_s)
    check_nonnegative("notice_s", notice_s)
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    horizon_s = hours * 3600.0
    rate_per_s = inst.spot_interruptions_per_h / 3600.0
    tally = {"interruptions": 0, "lost_pod_s": 0.0}

    def node(env):
        """One spot node: runs until interrupted, then is replaced after ``reschedule_s``."""
        while rate_per_s > 0:
            yield env.timeout(rng.exponential(1.0 / rate_per_s))
            tally["interruptions"] += 1
            down = min(max(0.0, reschedule_s - notice_s), horizon_s - env.now)
            tally["lost_pod_s"] += down * pods_per_node
            yield env.timeout(reschedule_s)

    for _ in range(nodes):
        env.process(node(env))
    env.run(until=horizon_s)
    pod_s = nodes * pods_per_node * horizon_s
    return SpotResult(
        interruptions=tally["interruptions"],
        expected_interruptions=nodes * inst.spot_interruptions_per_h * hours,
        lost_pod_hours=tally["lost_pod_s"] / 3600.0,
        availability=1 - tally["lost_pod_s"] / pod_s,
        cost_usd=nodes * inst.price_usd_per_h("spot") * hours,
        on_demand_cost_usd=nodes * inst.price_usd_per_h("on_demand") * hours,
    )


# Right-sizing, purchase plans, unit cost and diurnal load live in sim.finops; here too, as sim.cost.*.
from .finops import diurnal_load, hpa_node_hours, optimal_reserved, purchase_plan, rightsize, unit_cost  # noqa: E402
