"""The local control plane: Kubernetes objects applied to a running local CloudMart.

parse (`objects.load_objects`) → validate (`schemas`, the Kubernetes and CRD schemas) → admit
(Gatekeeper Constraints, `cluster.policies.gatekeeper`) → store (`store`, the state folder) →
reconcile (`deployments`, in the supervisor). See `plane.ControlPlane`.
"""

from cluster.control.objects import ApplyError, ApplyResult, Key, load_objects
from cluster.control.plane import GATEKEEPER_MESSAGE, ControlPlane

__all__ = ["ApplyError", "ApplyResult", "ControlPlane", "GATEKEEPER_MESSAGE", "Key", "load_objects"]
