"""Benchmark of the Envoy data plane on its own: start-up, memory, hop latency, live reconfiguration.

    python tests/benchmarks/envoy_dataplane.py --json [--samples 2000]

Starts real Envoys (from `cluster.dataplane`) and minimal upstreams on loopback, measures, stops
everything and prints one JSON object as the last line. Latencies are p50 of sequential requests
on one keep-alive connection, with a bootstrap 95 % interval; the added latency of a hop is the
difference to the direct call measured in the same rounds. Timings are noisy on a shared machine:
they are figures to read, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp  # noqa: E402
import jwt as pyjwt  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from cluster.dataplane import build, kong  # noqa: E402
from cluster.dataplane import model as m  # noqa: E402
from cluster.dataplane.proxy import EnvoyProxy, validate_plane  # noqa: E402
from cluster.mesh import MeshCA  # noqa: E402
from services.common import auth as cm_auth  # noqa: E402

JWKS_PATH = "/api/auth/.well-known/jwks.json"
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class FixedServer(asyncio.Protocol):
    """Answers every HTTP/1.1 request with `{}` (or the JWKS on its path): the cheapest upstream."""

    jwks: bytes = b"{}"

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            if JWKS_PATH.encode() in head.split(b"\r\n", 1)[0]:
                body = FixedServer.jwks
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                                     + str(len(body)).encode() + b"\r\n\r\n" + body)
            else:
                self.transport.write(RESPONSE)


class Upstream:
    """A FixedServer on a kernel-picked port, served by an event loop in its own thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(self.loop.create_server(FixedServer, "127.0.0.1", 0))
            ready.set()
            self.loop.run_forever()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def stop(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def p50_interval(samples_ms: list[float], seed: int = 7) -> dict:
    a = np.asarray(samples_ms)
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(a, size=(1000, a.size), replace=True), axis=1)
    return {"p50_ms": round(float(np.median(a)), 3), "p50_ci95_ms": [round(float(x), 3) for x in np.percentile(boots, [2.5, 97.5])],
            "p99_ms": round(float(np.percentile(a, 99)), 3), "n": int(a.size)}


async def sequential(urls: dict[str, tuple[str, dict]], samples: int) -> dict[str, list[float]]:
    """Round-robin over the targets, one request each per round, so drift hits all alike."""
    out: dict[str, list[float]] = {k: [] for k in urls}
    sessions = {k: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for k in urls}
    try:
        for _ in range(50):          # warm-up: connections, JWKS, caches
            for k, (url, headers) in urls.items():
                async with sessions[k].get(url, headers=headers) as r:
                    await r.read()
        for _ in range(samples):
            for k, (url, headers) in urls.items():
                t0 = time.perf_counter()
                async with sessions[k].get(url, headers=headers) as r:
                    await r.read()
                    assert r.status == 200, (k, r.status)
                out[k].append((time.perf_counter() - t0) * 1000)
    finally:
        for s in sessions.values():
            await s.close()
    return out


async def paced(url: str, rps: float, seconds: float) -> list[int]:
    """Requests at a fixed rate (open loop), whatever the answers; returns the status codes (0 = none)."""
    codes: list[int] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async def one():
            try:
                async with session.get(url) as r:
                    await r.read()
                    codes.append(r.status)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                codes.append(0)
        start = time.perf_counter()
        tasks = []
        for i in range(int(rps * seconds)):
            delay = start + i / rps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return codes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--samples", type=int, default=2000, help="requests per target (>= 200)")
    args = parser.parse_args()
    if args.samples < 200:
        parser.error("--samples must be at least 200 (percentiles from fewer are not reported)")
    results: dict = {}
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    FixedServer.jwks = json.dumps(cm_auth.jwks_for(key.public_key())).encode()
    now = int(time.time())
    token = pyjwt.encode({"iss": "cloudmart-auth", "aud": "cloudmart", "sub": "alice", "scope": "customer",
                          "iat": now, "exp": now + 3600}, key, algorithm="RS256",
                         headers={"kid": cm_auth.key_id(key.public_key())})
    app, auth = Upstream(), Upstream()
    proxies: list[EnvoyProxy] = []
    folder = Path(tempfile.mkdtemp(prefix="envoy-bench-"))
    try:
        route = {"kind": "HTTPRoute", "metadata": {"name": "app"}, "spec": {"rules": [{"backendRefs": [{"name": "app"}]}]}}
        endpoints = {"app": [m.Endpoint(port=app.port)], "auth": [m.Endpoint(port=auth.port)]}
        plain = build.gateway([route], endpoints).plane
        t0 = time.perf_counter()
        validate_plane(plain)
        results["validate_s"] = round(time.perf_counter() - t0, 3)
        gw = EnvoyProxy(folder / "gw", "gw")
        proxies.append(gw)
        t0 = time.perf_counter()
        gw.start(plain)
        results["cold_start_s"] = round(time.perf_counter() - t0, 3)      # validate + spawn + listeners bound
        issuer = kong.JwtIssuer("cloudmart-auth", "auth", "http://auth" + JWKS_PATH)
        jwt_gw = EnvoyProxy(folder / "gw-jwt", "gw-jwt")
        proxies.append(jwt_gw)
        jwt_gw.start(build.gateway([route], endpoints, issuer=issuer).plane)
        ca = MeshCA(folder / "ca")

        def ident(name, service):
            t = ca.issue(name, service)
            return build.MeshIdentity(t.ca_file, t.cert_file, t.key_file)
        services = {"app", "client"}
        server_side = EnvoyProxy(folder / "app-0", "app-0")
        proxies.append(server_side)
        server_side.start(build.sidecar([], build.Workload("app", {}, m.Endpoint(port=app.port)), ident("app-0", "app"),
                                        {}, services))
        client_side = EnvoyProxy(folder / "client-0", "client-0")
        proxies.append(client_side)
        client_side.start(build.sidecar([], build.Workload("client", {}, m.Endpoint(port=1)), ident("client-0", "client"),
                                        {"app": (0, [m.Endpoint(port=server_side.ports()["inbound"])])}, services))
        targets = {
            "direct": (f"http://127.0.0.1:{app.port}/x", {}),
            "gateway": (f"http://127.0.0.1:{gw.ports()['gateway']}/x", {}),
            "gateway_jwt": (f"http://127.0.0.1:{jwt_gw.ports()['gateway']}/x", {"authorization": f"Bearer {token}"}),
            "two_sidecars_mtls": (f"http://127.0.0.1:{client_side.ports()['outbound-app']}/x", {}),
        }
        samples = asyncio.run(sequential(targets, args.samples))
        lat = {k: p50_interval(v) for k, v in samples.items()}
        direct = np.asarray(samples["direct"])
        for k in ("gateway", "gateway_jwt", "two_sidecars_mtls"):
            lat[k]["added_p50_ms"] = round(float(np.median(np.asarray(samples[k]) - direct)), 3)
        results["latency"] = lat
        for p in proxies:
            info = psutil.Process(p.process.pid).memory_full_info()
            results.setdefault("memory_mb", {})[p.node_id] = {"rss": round(info.rss / 2**20, 1),
                                                              "pss": round(info.pss / 2**20, 1)}
        # Weights changed 5 times while 200 requests/s flow through the gateway.
        canary = Upstream()

        def weighted(w):
            r = {"kind": "HTTPRoute", "metadata": {"name": "app"}, "spec": {"rules": [{"backendRefs": [
                {"name": "app", "weight": 100 - w}, {"name": "canary", "weight": w}]}]}}
            return build.gateway([r], {"app": [m.Endpoint(port=app.port)], "canary": [m.Endpoint(port=canary.port)]}).plane
        gw.apply(weighted(0))
        swaps: list[float] = []

        def reconfigure():
            for w in (10, 50, 90, 0, 100):
                time.sleep(0.6)
                t = time.perf_counter()
                gw.apply(weighted(w))
                swaps.append(time.perf_counter() - t)
        worker = threading.Thread(target=reconfigure)
        worker.start()
        codes = asyncio.run(paced(f"http://127.0.0.1:{gw.ports()['gateway']}/x", 200, 5))
        worker.join(30)
        canary.stop()
        results["reconfigure_under_200rps"] = {"requests": len(codes), "failed": sum(c != 200 for c in codes),
                                               "swaps": len(swaps), "swap_s_max": round(max(swaps), 3)}
    finally:
        for p in proxies:
            p.stop()
        app.stop()
        auth.stop()
    results["envoy_concurrency"] = 1
    print(json.dumps(results) if args.json else json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
