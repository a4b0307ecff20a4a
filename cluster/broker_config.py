"""The kind target's NATS users and Redis ACL users, made from the local target's rules.

The local target gives every service its own NATS user (allowed to publish only its own stream's
subjects) and its own Redis ACL user, with no anonymous client (`services.infra`). The cluster
manifests do the same with three generated files in `cluster/manifests/base/config/broker/`:

- `nats.conf` (Secret `nats-config`, mounted by the NATS StatefulSet): users, passwords and the
  permissions of `services.infra._nats_permissions`, so both targets enforce one rule set;
- `users.acl` and `probe-password` (Secret `redis-acl`, mounted by Redis): `user default off`, one
  user per client, and a `probe` user that may only PING (the readiness probe);
- `broker.env` (Secret `cloudmart-broker`): each service's `NATS_URL_<SERVICE>` and
  `REDIS_URL_<SERVICE>`, which the config patches hand to that service only.

The passwords are the course's published demo values, like those of `cloudmart-db`: replace them
before any real use. Regenerate the files with `python -m cluster.broker_config --write`; a test
fails while they differ from what this module makes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import quote

from services.infra import NATS_EVENT_SUBJECTS, _nats_permissions

BROKER_DIR = Path(__file__).resolve().parent / "manifests" / "base" / "config" / "broker"

#: The services of the cluster (no monolith there), and who uses which broker.
NATS_SERVICES = ("user", "order", "payment", "inventory", "notification")
REDIS_SERVICES = ("auth", "product")
#: `course` reads the streams for the notebooks (`cm.events()` through a port-forward).
NATS_CLIENTS = (*NATS_SERVICES, "course")
REDIS_CLIENTS = REDIS_SERVICES

NATS_HOST, NATS_PORT, NATS_MONITOR_PORT = "nats", 4222, 8222
REDIS_HOST, REDIS_PORT = "redis", 6379


def demo_password(kind: str, client: str) -> str:
    """The published demo password of `client` on `kind` ("nats", "redis")."""
    if kind not in ("nats", "redis"):
        raise ValueError(f"kind={kind!r} is unknown; valid: nats, redis")
    return f"cloudmart-{kind}-{client}"


def nats_conf() -> str:
    """NATS server configuration (JSON is valid NATS configuration)."""
    for service in NATS_SERVICES:
        if service not in NATS_EVENT_SUBJECTS:
            raise ValueError(f"{service} has no NATS subjects in services.infra")
    config = {
        "listen": f"0.0.0.0:{NATS_PORT}", "http_port": NATS_MONITOR_PORT, "server_name": "cloudmart",
        "jetstream": {"store_dir": "/data"},
        "authorization": {"users": [{"user": client, "password": demo_password("nats", client),
                                     "permissions": _nats_permissions(client)} for client in NATS_CLIENTS]},
    }
    return json.dumps(config, indent=1) + "\n"


def redis_acl() -> str:
    """Redis ACL file: no anonymous client, one user per service, a PING-only probe user."""
    lines = ["user default off", f"user probe on >{demo_password('redis', 'probe')} -@all +ping"]
    lines += [f"user {client} on >{demo_password('redis', client)} ~* &* +@all" for client in REDIS_CLIENTS]
    return "\n".join(lines) + "\n"


def broker_env() -> str:
    """Each service's broker URLs, as a secretGenerator `envs` file."""
    lines = [f"NATS_URL_{s.upper()}=nats://{s}:{quote(demo_password('nats', s), safe='')}@{NATS_HOST}:{NATS_PORT}"
             for s in NATS_SERVICES]
    lines += [f"REDIS_URL_{s.upper()}=redis://{s}:{quote(demo_password('redis', s), safe='')}@{REDIS_HOST}:{REDIS_PORT}/0"
              for s in REDIS_SERVICES]
    return "\n".join(lines) + "\n"


def course_nats_url(host: str, port: int) -> str:
    """The `course` user's NATS URL at `host:port` (a port-forward to the cluster's NATS)."""
    return f"nats://course:{quote(demo_password('nats', 'course'), safe='')}@{host}:{port}"


def files() -> dict[str, str]:
    """file name (in BROKER_DIR) -> its content."""
    return {"nats.conf": nats_conf(), "users.acl": redis_acl(), "probe-password": demo_password("redis", "probe"),
            "broker.env": broker_env()}


def stale(directory: Path = BROKER_DIR) -> list[str]:
    """Names of the files in `directory` that differ from what this module makes."""
    out = []
    for name, text in files().items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.broker_config", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write the files into {BROKER_DIR}")
    args = parser.parse_args(argv)
    if not args.write:
        bad = stale()
        print("broker files up to date" if not bad else f"stale: {', '.join(bad)} (run with --write)")
        return 1 if bad else 0
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in files().items():
        (BROKER_DIR / name).write_text(text)
    print(f"wrote {', '.join(files())} into {BROKER_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
