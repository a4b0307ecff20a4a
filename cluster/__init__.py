"""Running CloudMart: the local target (supervisor, Envoy gateway and sidecars), the manifests,
the `connect()` handle, the load generator and the `cloudmart` CLI."""


def connect(*args, **kwargs):
    """Connect to CloudMart, starting the local target if needed (see :func:`cluster.handle.connect`)."""
    from cluster.handle import connect as _connect

    return _connect(*args, **kwargs)


__all__ = ["connect"]
