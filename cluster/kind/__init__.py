"""The kind target (see :mod:`cluster.kind_target`); this folder also holds the kind cluster config,
Helm values and the image's requirements list."""

from cluster.kind_target import (  # noqa: F401 - the kind target's public API
    KindCluster,
    KindError,
    add_up_arguments,
    connect,
    down,
    down_command,
    up,
    up_command,
)
