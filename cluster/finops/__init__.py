"""FinOps on the local target: an OpenCost-compatible allocation API over the measured usage,
OpenCost's exporter metrics, budgets after Kubecost's Budget API, a webhook receiver.

See `cluster/README.md` ("Cost: the OpenCost-compatible API").
"""

from cluster.finops.allocation import AllocationError, compute, to_cents
from cluster.finops.client import OpenCostClient
from cluster.finops.pricing import VirtualNode
from cluster.finops.receiver import WebhookReceiver

__all__ = ["AllocationError", "compute", "to_cents", "OpenCostClient", "VirtualNode", "WebhookReceiver"]
