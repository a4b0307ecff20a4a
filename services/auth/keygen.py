"""``python -m services.auth.keygen``: create the Secret with auth's RS256 signing key, once per cluster.

Every auth replica mounts the Secret ``auth-signing-key`` (so that any replica's JWKS verifies any
replica's token). A private key does not belong in git, so the manifests carry a Job that runs this
module instead: it creates the Secret with a new 2048-bit RSA key only if the Secret does not exist,
and treats a concurrent creator's 409 Conflict as success (the winner's key is kept). Running it
again never replaces a key, so tokens already issued stay valid.

Exit status: 0 when the Secret exists afterwards (created or already there), 1 on any other error,
with one line on stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

SECRET_NAME = "auth-signing-key"
KEY_FILE = "jwt-signing-key.pem"                  # services.common.auth.key_path's file name
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
LABELS = {"app.kubernetes.io/name": "auth", "app.kubernetes.io/part-of": "cloudmart"}


class KeygenError(RuntimeError):
    """The Secret could not be ensured (the message says why)."""


def new_private_key_pem(key_size: int = 2048) -> str:
    """A new RSA private key as unencrypted PKCS#8 PEM (what the auth service loads)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    if key_size < 2048:
        raise ValueError(f"key_size must be >= 2048 bits for RS256, got {key_size}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def signing_key_secret(namespace: str, pem: str | None = None) -> dict[str, Any]:
    """The Secret manifest every auth replica reads its signing key from (a new key by default)."""
    return {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "namespace": namespace, "labels": dict(LABELS)},
        "type": "Opaque",
        "stringData": {KEY_FILE: pem if pem is not None else new_private_key_pem()},
    }


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


def _reason(exc: BaseException) -> str:
    """One line: ApiException's str() spans several lines (reason, headers, body)."""
    reason = getattr(exc, "reason", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"HTTP {_status(exc)} {reason}" if _status(exc) is not None else str(reason)


def _has_key(secret: Any) -> bool:
    data = secret.get("data") if isinstance(secret, dict) else getattr(secret, "data", None)
    return bool(data) and KEY_FILE in data


def ensure_signing_key(api: Any, namespace: str) -> str:
    """Make sure ``namespace`` has the Secret; returns "created", "exists" or "created-concurrently".

    ``api`` is a ``kubernetes.client.CoreV1Api`` (or anything with its ``read_namespaced_secret``
    and ``create_namespaced_secret``, raising exceptions with an HTTP ``status``). The read is a
    ``get`` on the one Secret name (RBAC can limit it by resourceNames); the key is generated only
    when the read says 404. A Secret that exists without the key file is an error, never overwritten.
    """
    if not namespace:
        raise ValueError("namespace must be a non-empty Kubernetes namespace name")
    try:
        existing = api.read_namespaced_secret(SECRET_NAME, namespace)
    except Exception as exc:                                  # kubernetes.client.ApiException
        if _status(exc) != 404:
            raise KeygenError(f"cannot read Secret {namespace}/{SECRET_NAME}: {_reason(exc)}") from exc
    else:
        if not _has_key(existing):
            raise KeygenError(f"Secret {namespace}/{SECRET_NAME} exists without {KEY_FILE}; "
                              "delete it to have a new key generated")
        return "exists"
    try:
        api.create_namespaced_secret(namespace, signing_key_secret(namespace))
    except Exception as exc:
        if _status(exc) == 409:                                # another creator won the race: keep its key
            return "created-concurrently"
        raise KeygenError(f"cannot create Secret {namespace}/{SECRET_NAME}: {_reason(exc)}") from exc
    return "created"


def current_namespace() -> str:
    """POD_NAMESPACE (the downward API), else the service account's namespace file."""
    namespace = os.environ.get("POD_NAMESPACE", "").strip()
    if not namespace and NAMESPACE_FILE.exists():
        namespace = NAMESPACE_FILE.read_text().strip()
    if not namespace:
        raise KeygenError("no namespace: set POD_NAMESPACE or run in a pod with a service account token")
    return namespace


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        print(f"usage: python -m services.auth.keygen (takes no arguments, got {' '.join(args)})", file=sys.stderr)
        return 2
    try:
        from kubernetes import client, config

        config.load_incluster_config()
        namespace = current_namespace()
        outcome = ensure_signing_key(client.CoreV1Api(), namespace)
    except (KeygenError, ValueError) as exc:
        print(f"keygen: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:                                   # config errors, connection refused, ...
        print(f"keygen: {type(exc).__name__}: {_reason(exc)}", file=sys.stderr)
        return 1
    print(f"keygen: Secret {namespace}/{SECRET_NAME}: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
