"""The local target's supervisor: one detached process that owns every part of a local CloudMart.

It starts the embedded infrastructure (`services.infra`), one process per replica of each
Deployment read from the kustomize base, an Envoy sidecar per replica in mesh mode, and the Envoy
gateway (`cluster.dataplane.local`); it polls readiness, restarts crashed replicas with a
back-off (like a kubelet), and pushes the ready endpoints to Envoy (file-based xDS, validated
first) and to the sidecars, so scaling, kills and canary weights apply live. It takes commands on a small HTTP control channel on 127.0.0.1, guarded by a token
kept in the state folder (`supervisor.json`).

    python -m cluster.supervisor --state-dir .cloudmart --gateway-port 8080 [--mesh] [--monolith]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from cluster import topology
from cluster.topology import Deployment, Topology
from services.infra import free_port, port_is_free

log = logging.getLogger("cloudmart.supervisor")

STATE_FILE = "supervisor.json"
REPO_ROOT = Path(__file__).resolve().parent.parent
READY_POLL_S = 0.25
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
STOP_GRACE_S = 5.0
RELOAD_DEBOUNCE_S = 0.3
INFRA_POLL_S = 1.0
OWNER_POLL_S = 1.0


def kill_group(pid: int | None, sig: int = signal.SIGKILL) -> None:
    """Signal a process group (every child process is started in a session of its own)."""
    if not pid:
        return
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        try:   # a child forked a moment ago may not lead its own group yet
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    except PermissionError:
        pass


@dataclass
class Proc:
    """A child process the supervisor owns."""

    name: str
    kind: str                      # "replica"
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, cmd: list[str], env: dict[str, str]) -> None:
        if len(cmd) == 3 and cmd[0] == sys.executable and cmd[1] == "-m":
            # `python -m MODULE`: fork it from the warm fork server (see cluster/spawn.py).
            from cluster.spawn import ForkedProcess

            self.process = await asyncio.to_thread(ForkedProcess, cmd[2], env, str(REPO_ROOT), str(self.log_path))
            self.started_at = time.monotonic()
            return
        with open(self.log_path, "ab") as logf:
            self.process = await asyncio.create_subprocess_exec(
                *cmd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=logf,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True, cwd=str(REPO_ROOT))
        self.started_at = time.monotonic()

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        if not self.alive:
            return
        kill_group(self.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), grace_s)
        except asyncio.TimeoutError:
            kill_group(self.pid, signal.SIGKILL)
            await self.process.wait()


@dataclass
class Replica:
    """One replica of a Deployment, with its ports, its sidecar (mesh) and its health."""

    deployment: Deployment
    index: int
    app_port: int
    app: Proc
    sidecar: object | None = None        # dataplane.local.Sidecar (Envoy), in mesh mode
    inbound_port: int | None = None
    outbound_ports: dict[str, int] = field(default_factory=dict)   # peer k8s Service -> local port
    ready: bool = False
    probe_failures: int = 0
    restarts: int = 0
    stopping: bool = False
    last_exit: int | None = None
    last_reason: str | None = None       # why it last exited, in words (for `cloudmart status`)
    backoff_until: float | None = None   # wall clock time of the next start while backing off
    task: asyncio.Task | None = None
    sidecar_task: asyncio.Task | None = None
    template_hash: str = ""              # the pod template it runs (cluster.control.deployments)

    @property
    def id(self) -> str:
        return f"{self.deployment.name}-{self.index}"


class Supervisor:
    """Owns and reconciles every process of one local CloudMart."""

    def __init__(self, state_dir: Path, gateway_port: int, mesh: bool = False, monolith: bool = False,
                 replicas: dict[str, int] | None = None, manifests: Path = topology.BASE_DIR):
        self.state_dir = state_dir.resolve()
        self.gateway_port = gateway_port
        self.mesh = mesh
        self.monolith = monolith
        self.replica_overrides = replicas or {}
        self.manifests = manifests
        self.logs_dir = self.state_dir / "logs"
        self.run_dir = self.state_dir / "run"
        self.token = secrets.token_urlsafe(24)
        self.control_port = 0                  # set once the control channel is bound
        self.topology: Topology | None = None
        self.replicas: dict[str, list[Replica]] = {}       # deployment name -> replicas
        self.wanted: dict[str, int] = {}
        self.weights: dict[str, int] = {}                   # k8s Service -> weight override
        self.extra_objects: list[dict] = []                  # applied on top of the manifests
        self.cluster_ports: dict[str, int] = {}             # k8s Service -> in-cluster port (no mesh)
        self.gateway = None                                  # dataplane.local.Gateway (Envoy)
        self._gateway_task: asyncio.Task | None = None
        self._routed_endpoints: dict[str, list[str]] | None = None   # what the gateway last loaded
        self.infra = None
        self.infra_restarts: dict[str, int] = {}
        self.infra_error: str | None = None
        self.ca = None
        self.gateway_tls = None
        self._dirty = asyncio.Event()
        self._stopping = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self.started_at = time.time()
        self.all_ready_s: float | None = None

    # ----- set-up -------------------------------------------------------------------------
    def _deployments(self) -> list[Deployment]:
        if self.monolith:
            return [Deployment(name="monolith", service="monolith",
                               command=("python", "-m", "services.monolith"), replicas=1, version="v1",
                               env={"SERVICE_NAME": "monolith", "SERVICE_VERSION": "v1"},
                               labels={"app.kubernetes.io/name": "monolith"})]
        return list(self.topology.deployments.values())

    def _endpoint_deployment(self, k8s_service: str) -> str:
        """Which Deployment serves a k8s Service (in monolith mode, always the monolith)."""
        return "monolith" if self.monolith else self.topology.services[k8s_service]

    async def start(self) -> None:
        """Bring everything up; returns once the processes are started (readiness comes later)."""
        for folder in (self.logs_dir, self.run_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)   # logs and configs: the owner's
        # The desired state: the manifests plus what was applied since (cluster/control), kept in
        # the state folder, so a supervisor started again runs what was applied.
        control = getattr(self, "control", None)
        self.topology = control.topology() if control is not None else topology.load(self.manifests)
        for name, count in self.replica_overrides.items():
            if name not in {d.name for d in self._deployments()}:
                raise ValueError(f"--replicas: unknown deployment {name!r}")
        if self.mesh:
            from cluster.mesh import MeshCA

            self.ca = MeshCA(self.run_dir / "mesh")
            self.gateway_tls = self.ca.issue("gateway", "gateway")
        else:
            self.cluster_ports = {svc: free_port() for svc in self.topology.services}
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        from cluster.spawn import warm_up
        from services.infra import start_infra

        # The databases start while the fork server imports the services' libraries.
        apps = sorted({f"{d.module}.app" for d in self._deployments()} | {"services.common.app"})
        async def timed(label, func, *args):
            t0 = time.monotonic()
            result = await asyncio.to_thread(func, *args)
            log.info("%s in %.2f s", label, time.monotonic() - t0)
            return result

        self.infra, _ = await asyncio.gather(timed("infrastructure up", start_infra, self.state_dir),
                                             timed("fork server warm", warm_up, apps))
        from cluster.dataplane.local import Gateway

        self.gateway = Gateway(self.run_dir / "gateway")
        self._gateway_task = asyncio.create_task(self._keep_gateway())
        for dep in self._deployments():
            self.wanted[dep.name] = self.replica_overrides.get(dep.name, dep.replicas)
            self.replicas[dep.name] = []
        for name in self.wanted:
            await self._scale_to(name)
        self._write_state()

    # ----- replicas -----------------------------------------------------------------------
    def _peers_of(self, dep: Deployment) -> dict[str, str]:
        """Env keys whose manifest value is a URL of a k8s Service: key -> Service name."""
        peers = {}
        for key, value in dep.env.items():
            for svc in self.topology.services:
                if value == f"http://{svc}" or value.startswith((f"http://{svc}/", f"http://{svc}:80")):
                    peers[key] = svc
        return peers

    def _rewrite(self, value: str, svc: str, base: str) -> str:
        for prefix in (f"http://{svc}:80", f"http://{svc}"):
            if value.startswith(prefix):
                return base + value[len(prefix):]
        return value

    def _replica_env(self, rep: Replica) -> dict[str, str]:
        dep = rep.deployment
        env = dict(os.environ)
        env.pop("CLOUDMART_TARGET", None)
        try:
            env.update(self.infra.env_for(dep.service))
        except ValueError:
            pass
        env.update(dep.env)
        for key, svc in self._peers_of(dep).items():
            if self.mesh:
                base = f"http://127.0.0.1:{rep.outbound_ports[svc]}"
            elif self.monolith:
                base = f"http://127.0.0.1:{self.cluster_ports[svc]}"
            else:
                base = f"http://127.0.0.1:{self.cluster_ports[svc]}"
            env[key] = self._rewrite(dep.env[key], svc, base)
        if self.monolith:
            # One process serves every route: in-cluster calls go to the monolith's own port.
            env.setdefault("AUTH_JWKS_URL", f"http://127.0.0.1:{rep.app_port}/api/auth/.well-known/jwks.json")
            env.setdefault("PRODUCT_URL", f"http://127.0.0.1:{rep.app_port}")
        env.update({
            "HOST": "127.0.0.1", "PORT": str(rep.app_port), "SERVICE_NAME": dep.service,
            "SERVICE_VERSION": dep.version, "REPLICA_ID": rep.id,
            "CLOUDMART_STATE_DIR": str(self.state_dir), "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        })
        return env

    def _new_replica(self, dep: Deployment, index: int) -> Replica:
        rep = Replica(dep, index, free_port(),
                      Proc(f"{dep.name}-{index}", "replica", self.logs_dir / f"{dep.name}-{index}.log"))
        if self.mesh:
            from cluster.dataplane.local import Sidecar

            rep.inbound_port = free_port()
            rep.outbound_ports = {svc: free_port() for svc in set(self._peers_of(dep).values())}
            rep.sidecar = Sidecar(self.run_dir / f"sidecar-{rep.id}", node_id=rep.id)
        return rep

    def _sidecar_config(self, rep: Replica):
        """The Envoy config of a replica's sidecar (`dataplane.local.render_sidecar`)."""
        from cluster.dataplane.build import MeshIdentity
        from cluster.dataplane.local import render_sidecar

        tls = self.ca.issue(rep.id, rep.deployment.service)
        peers = {}
        for svc, port in rep.outbound_ports.items():
            target = self._endpoint_deployment(svc)
            peers[svc] = (port, [f"127.0.0.1:{r.inbound_port}" for r in self.replicas.get(target, []) if r.ready])
        return render_sidecar(self.topology, self.extra_objects, service=rep.deployment.service,
                              labels=rep.deployment.labels, app=f"127.0.0.1:{rep.app_port}",
                              inbound_port=rep.inbound_port, identity=MeshIdentity(tls.ca_file, tls.cert_file, tls.key_file),
                              peers=peers, app_port=rep.deployment.container_port)

    async def _keep_sidecar(self, rep: Replica) -> None:
        """Run a replica's Envoy sidecar; start it again if it dies (moving a port another process took)."""
        while not rep.stopping and not self._stopping.is_set():
            try:
                await rep.sidecar.start(self._sidecar_config(rep))
            except Exception as exc:
                moved = await self._reclaim_sidecar_ports(rep)
                log.warning("sidecar of %s did not start (%s)%s; trying again", rep.id, exc,
                            f" ({'; '.join(moved)})" if moved else "")
                rep.sidecar.kill()
                await asyncio.sleep(0.5)
                continue
            self._write_state()
            code = await rep.sidecar.wait()
            if rep.stopping or self._stopping.is_set():
                return
            moved = await self._reclaim_sidecar_ports(rep)
            log.warning("sidecar of %s exited with %s; starting it again%s", rep.id, code,
                        f" ({'; '.join(moved)})" if moved else "")
            await asyncio.sleep(0.2)

    def _moved(self, what: str, old: int) -> tuple[int, str]:
        new = free_port()
        return new, f"{what} 127.0.0.1:{old} is held by another process, moved to port {new}"

    async def _reclaim_gateway_ports(self) -> list[str]:
        moved = []
        if not port_is_free(self.gateway_port):
            log.error("the gateway port 127.0.0.1:%d is held by another process; the gateway cannot "
                      "start until it is free (or CloudMart is started with another port)", self.gateway_port)
        for svc, port in list(self.cluster_ports.items()):
            if not port_is_free(port):
                self.cluster_ports[svc], note = self._moved(f"in-cluster port of {svc}", port)
                moved.append(note)
                # Callers of that Service were given its old address: start them again.
                for reps in self.replicas.values():
                    for rep in reps:
                        if svc in self._peers_of(rep.deployment).values() and rep.app.alive:
                            kill_group(rep.app.pid, signal.SIGTERM)
        if moved:
            self._write_state()
        return moved

    async def _keep_gateway(self) -> None:
        """Run the gateway's Envoy from the current config; start it again if it dies (a port that
        another process took moves first, see `_reclaim_gateway_ports`)."""
        while not self._stopping.is_set():
            try:
                await self.gateway.start(self._gateway_config())
            except Exception as exc:   # e.g. a port another process holds: move it, try again
                moved = await self._reclaim_gateway_ports()
                log.warning("the gateway did not start (%s)%s; trying again", exc,
                            f" ({'; '.join(moved)})" if moved else "")
                self.gateway.kill()
                await asyncio.sleep(0.5)
                continue
            self._routed_endpoints = self._endpoints_of(self.gateway.plane)
            self._write_state()
            code = await self.gateway.wait()
            if self._stopping.is_set():
                return
            moved = await self._reclaim_gateway_ports()
            log.warning("the gateway exited with %s; starting it again%s", code,
                        f" ({'; '.join(moved)})" if moved else "")
            await asyncio.sleep(0.2)

    async def _reclaim_sidecar_ports(self, rep: Replica) -> list[str]:
        moved = []
        if not port_is_free(rep.inbound_port):
            rep.inbound_port, note = self._moved(f"{rep.id} sidecar inbound port", rep.inbound_port)
            moved.append(note)
            self._dirty.set()   # its endpoint moved: the gateway and the other sidecars follow
        restart_app = False
        for svc, port in list(rep.outbound_ports.items()):
            if not port_is_free(port):
                rep.outbound_ports[svc], note = self._moved(f"{rep.id} sidecar outbound port to {svc}", port)
                moved.append(note)
                restart_app = True
        if moved:
            self._write_state()
        if restart_app and rep.app.alive:
            kill_group(rep.app.pid, signal.SIGTERM)   # it was given the old outbound addresses
        return moved

    async def _restart_sidecar(self, rep: Replica) -> None:
        """The replica moved to a new port: point its sidecar's inbound listener at it."""
        if rep.sidecar and rep.sidecar.alive:
            try:
                await rep.sidecar.update(self._sidecar_config(rep))
            except Exception as exc:
                log.warning("sidecar of %s: %s", rep.id, exc)

    async def _run_replica(self, rep: Replica) -> None:
        """Keep one replica running: start it, wait for it to exit, restart with back-off."""
        if rep.sidecar:
            rep.sidecar_task = asyncio.create_task(self._keep_sidecar(rep))
        cmd = [sys.executable, *rep.deployment.command[1:]] if rep.deployment.command[0].startswith("python") \
            else list(rep.deployment.command)
        crash_streak = 0
        while not rep.stopping and not self._stopping.is_set():
            await rep.app.start(cmd, self._replica_env(rep))
            log.info("replica %s started, pid %s", rep.id, rep.app.pid)
            self._write_state()
            was_ready = False
            wait_exit = asyncio.create_task(rep.app.process.wait())
            while not wait_exit.done():
                await asyncio.wait({wait_exit}, timeout=READY_POLL_S)
                was_ready = was_ready or rep.ready
            code = wait_exit.result()
            rep.last_exit = code
            rep.probe_failures = 0
            if rep.ready:
                rep.ready = False
                self._dirty.set()
            if rep.stopping or self._stopping.is_set():
                break
            rep.restarts += 1
            if not was_ready and not port_is_free(rep.app_port):
                # It could not bind: another process took the port after it was chosen. Starting it
                # again on that port would only crash-loop; it gets a new one (endpoints follow).
                old_port, rep.app_port = rep.app_port, free_port()
                rep.last_reason = f"could not bind 127.0.0.1:{old_port} (held by another process)"
                log.warning("replica %s could not bind 127.0.0.1:%d, which another process holds; "
                            "starting it again on port %d", rep.id, old_port, rep.app_port)
                if rep.sidecar:
                    await self._restart_sidecar(rep)
                continue
            rep.last_reason = f"exited with code {code}: {_last_line(rep.app.log_path)}"
            # A replica that served before it died comes back at once; one that dies before it
            # ever got ready backs off more each time (Kubernetes' CrashLoopBackOff).
            crash_streak = 0 if was_ready else crash_streak + 1
            backoff = 0.0 if was_ready else RESTART_BACKOFF_S[min(crash_streak - 1, len(RESTART_BACKOFF_S) - 1)]
            log.warning("replica %s exited with %s; restart %d in %.1f s", rep.id, code, rep.restarts, backoff)
            if backoff:
                rep.backoff_until = time.time() + backoff
                self._write_state()
                try:
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                except asyncio.TimeoutError:
                    pass
                rep.backoff_until = None

    def _add_replica(self, name: str) -> Replica:
        """Start one more replica of a Deployment, from its current pod template."""
        reps = self.replicas[name]
        dep = next(d for d in self._deployments() if d.name == name)
        used = {r.index for r in reps}
        rep = self._new_replica(dep, next(i for i in range(len(reps) + 1) if i not in used))
        controller = getattr(self, "deployments", None)
        rep.template_hash = controller.hash_of(name) if controller is not None and not self.monolith else ""
        reps.append(rep)
        rep.task = asyncio.create_task(self._run_replica(rep))
        return rep

    async def _scale_to(self, name: str) -> None:
        reps = self.replicas[name]
        while len(reps) < self.wanted[name]:
            self._add_replica(name)
        victims = []
        while len(reps) > self.wanted[name]:
            victims.append(reps.pop())
        if victims:
            # Like Kubernetes: take the replicas out of the endpoints first, then stop them.
            for rep in victims:
                rep.stopping = True
                rep.ready = False
            await self._reconfigure()
            await asyncio.sleep(0.2)
            await asyncio.gather(*(self._stop_replica(r) for r in victims))
            await self._reconfigure()
        self._write_state()

    async def _stop_replica(self, rep: Replica) -> None:
        rep.stopping = True
        await rep.app.stop()
        if rep.task:
            await asyncio.gather(rep.task, return_exceptions=True)
        if rep.sidecar_task:
            rep.sidecar_task.cancel()
            await asyncio.gather(rep.sidecar_task, return_exceptions=True)
        if rep.sidecar:
            await rep.sidecar.stop()

    # ----- readiness and configuration ---------------------------------------------------------
    async def _probe(self, rep: Replica) -> bool:
        if not rep.app.alive:
            return False
        try:
            if self.mesh and rep.sidecar is not None:
                # Through the sidecar, over mTLS with the gateway's identity: a replica whose sidecar
                # cannot serve (dead, or a certificate expired) is not ready.
                url = f"https://127.0.0.1:{rep.inbound_port}{rep.deployment.readiness_path}"
                extra = {"ssl": self._probe_ssl()}
            else:
                url = f"http://127.0.0.1:{rep.app_port}{rep.deployment.readiness_path}"
                extra = {}
            async with self._http.get(url, **extra) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    def _probe_ssl(self):
        if getattr(self, "_probe_context", None) is None:
            import ssl

            context = ssl.create_default_context(cafile=self.gateway_tls.ca_file)
            context.load_cert_chain(self.gateway_tls.cert_file, self.gateway_tls.key_file)
            self._probe_context = context
        return self._probe_context

    async def _infra_loop(self) -> None:
        """Restart a dead PostgreSQL, Redis or NATS (like a kubelet restarts a crashed container).

        `start_infra` reuses the servers that are alive and starts the others on their previous
        port (with their data). A server that had to move to a new port means new URLs: the
        replicas that were given the old ones are started again.
        """
        from services.infra import _reap, pid_alive, start_infra

        while not self._stopping.is_set():
            await asyncio.sleep(INFRA_POLL_S)
            if self.infra is None or self._stopping.is_set():
                continue
            dead = [kind for kind, info in self.infra.servers.items() if not pid_alive(info.get("pid"))]
            if not dead:
                continue
            for kind in dead:
                _reap(self.infra.servers[kind]["pid"])   # no <defunct> server left behind
                self.infra_restarts[kind] = self.infra_restarts.get(kind, 0) + 1
            log.warning("infrastructure down: %s; starting it again", ", ".join(dead))
            before = {kind: info.get("port") for kind, info in self.infra.servers.items()}
            try:
                self.infra = await asyncio.to_thread(start_infra, self.state_dir)
            except Exception as exc:   # try again on the next round; status shows it down
                log.error("restarting %s failed: %s", ", ".join(dead), exc)
                self.infra_error = f"{', '.join(dead)}: {exc}"
                self._write_state()
                continue
            self.infra_error = None
            moved = [kind for kind, info in self.infra.servers.items() if info.get("port") != before.get(kind)]
            log.info("infrastructure back: %s%s", ", ".join(dead),
                     f" ({', '.join(moved)} on a new port: restarting the replicas)" if moved else "")
            if moved:
                for reps in self.replicas.values():
                    for rep in reps:
                        if rep.app.alive:
                            kill_group(rep.app.pid, signal.SIGTERM)
            self._write_state()

    async def _readiness_loop(self) -> None:
        while not self._stopping.is_set():
            reps = [r for rs in self.replicas.values() for r in rs if not r.stopping]
            results = await asyncio.gather(*(self._probe(r) for r in reps))
            for rep, ok in zip(reps, results):
                if rep.stopping:
                    continue
                # Like the kubelet: one success makes a replica ready; it leaves the endpoints after
                # `failureThreshold` failed probes in a row, or at once when its process is gone.
                rep.probe_failures = 0 if ok else rep.probe_failures + 1
                ready = ok or (rep.ready and rep.app.alive
                               and rep.probe_failures < rep.deployment.readiness_failure_threshold)
                if ready != rep.ready:
                    rep.ready = ready
                    self._dirty.set()
            if self.all_ready_s is None and reps and all(r.ready for r in reps):
                self.all_ready_s = time.time() - self.started_at
                log.info("every replica ready %.2f s after start", self.all_ready_s)
                self._write_state()
            await asyncio.sleep(READY_POLL_S)

    async def _reconfigure_loop(self) -> None:
        while not self._stopping.is_set():
            await self._dirty.wait()
            # Coalesce changes, and let requests that are retrying on the current config (after a
            # dial error to a replica that just died) finish: a reload cancels their retries.
            await asyncio.sleep(RELOAD_DEBOUNCE_S)
            self._dirty.clear()
            try:
                await self._reconfigure()
            except Exception:  # keep supervising even if one reload fails
                log.exception("reconfiguring the data plane failed")

    def _endpoints(self) -> dict[str, list[str]]:
        endpoints = {}
        for svc in self.topology.services:
            target = self._endpoint_deployment(svc)
            port_of = (lambda r: r.inbound_port) if self.mesh else (lambda r: r.app_port)
            endpoints[svc] = [f"127.0.0.1:{port_of(r)}" for r in self.replicas.get(target, []) if r.ready]
        return endpoints

    def _gateway_config(self):
        """The gateway's Envoy config (`dataplane.local.render`) for the endpoints ready now."""
        from cluster.dataplane.build import MeshIdentity
        from cluster.dataplane.local import render

        identity = None
        if self.gateway_tls is not None:
            identity = MeshIdentity(self.gateway_tls.ca_file, self.gateway_tls.cert_file, self.gateway_tls.key_file)
        return render(self.topology, self.extra_objects, endpoints=self._endpoints(), port=self.gateway_port,
                      cluster_ports=self.cluster_ports, weights=self.weights, identity=identity)

    def _endpoints_of(self, plane) -> dict[str, list[str]]:
        """What a gateway config routes to, in `_endpoints()`'s shape."""
        from cluster.dataplane.build import outbound

        by_name = {c.name: c for c in plane.clusters}
        return {svc: [f"{e.host}:{e.port}" if not e.pipe else f"unix:{e.pipe}"
                      for e in by_name[outbound(svc)].endpoints] if outbound(svc) in by_name else []
                for svc in self.topology.services}

    async def _reconfigure(self) -> None:
        config = self._gateway_config()
        jobs = [self.gateway.update(config)]
        if self.mesh:
            for reps in self.replicas.values():
                for rep in reps:
                    if rep.sidecar and rep.sidecar.alive and rep.outbound_ports:
                        jobs.append(rep.sidecar.update(self._sidecar_config(rep)))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("config reload: %s", result)
        if not isinstance(results[0], Exception) and self.gateway.alive:
            self._routed_endpoints = self._endpoints_of(config)
        self._write_state()

    # ----- state and control ---------------------------------------------------------------------
    def status(self) -> dict:
        """What runs: per Deployment the replicas wanted and ready, ports and pids."""
        deployments = {}
        for name, reps in self.replicas.items():
            deployments[name] = {
                "service": reps[0].deployment.service if reps else name,
                "wanted": self.wanted.get(name, 0),
                "ready": sum(r.ready for r in reps),
                "replicas": [{
                    "id": r.id, "pid": r.app.pid, "port": r.app_port, "ready": r.ready,
                    "restarts": r.restarts, "version": r.deployment.version, "template": r.template_hash,
                    "state": _replica_state(r), "last_exit": r.last_exit, "last_reason": r.last_reason,
                    "backoff_until": r.backoff_until,
                    "sidecar_pid": r.sidecar.pid if r.sidecar else None,
                    "sidecar_inbound_port": r.inbound_port,
                    "sidecar_admin_socket": r.sidecar.admin_socket if r.sidecar else None,
                    "sidecar_outbound_ports": r.outbound_ports,
                } for r in reps],
            }
        infra = self.infra.status() if self.infra else {}
        return {
            "target": "local", "mode": "monolith" if self.monolith else "microservices",
            "mesh": self.mesh, "gateway_url": f"http://127.0.0.1:{self.gateway_port}",
            "gateway_pid": self.gateway.pid if self.gateway else None,
            "gateway_admin_socket": self.gateway.admin_socket if self.gateway else None,
            "cluster_ports": self.cluster_ports,
            "supervisor_pid": os.getpid(), "control_port": self.control_port,
            "state_dir": str(self.state_dir), "weights": self.weights,
            "all_ready_s": self.all_ready_s,
            # Ready: every server and wanted replica is up AND the gateway routes to exactly those.
            "routed": self.topology is not None and self._routed_endpoints == self._endpoints()
            and self.gateway is not None and self.gateway.alive,
            "ready": bool(self.replicas) and all(d["ready"] >= d["wanted"] for d in deployments.values())
            and all(v.get("alive") for v in infra.get("servers", {}).values())
            and self.topology is not None and self._routed_endpoints == self._endpoints()
            and self.gateway is not None and self.gateway.alive,
            "deployments": deployments,
            "rollouts": dict(getattr(getattr(self, "deployments", None), "rollouts", {}) or {}),
            "infra": {k: {"pid": v.get("pid"), "port": v.get("port"), "alive": v.get("alive"),
                          "restarts": self.infra_restarts.get(k, 0)}
                      for k, v in infra.get("servers", {}).items()},
            "infra_error": self.infra_error,
        }

    def _write_state(self) -> None:
        if getattr(self, "observability", None) is not None:
            self.observability.write_targets()   # Prometheus' file_sd follows the replicas
        data = {"pid": os.getpid(), "control_port": self.control_port, "token": self.token,
                "gateway_port": self.gateway_port, "status": self.status()}
        path = self.state_dir / STATE_FILE
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, path)

    def _check_deployment(self, name: str) -> str:
        if name in self.replicas:
            return name
        raise web.HTTPBadRequest(text=json.dumps({"detail": f"unknown deployment {name!r}; valid: "
                                                  f"{', '.join(self.replicas)}"}), content_type="application/json")

    def _check_sidecar_budget(self, new_replicas: int, what: str) -> None:
        """In mesh mode each new replica brings an Envoy: 409 when this user's inotify instances
        would not hold it (`cluster.dataplane.limits`); nothing is changed."""
        if not self.mesh or new_replicas <= 0:
            return
        from cluster.dataplane import limits

        try:
            limits.check(new_replicas, what)
        except limits.InotifyBudgetError as exc:
            raise web.HTTPConflict(text=json.dumps({"detail": str(exc)}), content_type="application/json") from None

    def routes(self) -> web.RouteTableDef:
        r = web.RouteTableDef()

        @r.get("/status")
        async def _status(request):
            return web.json_response(self.status())

        @r.post("/scale")
        async def _scale(request):
            body = await request.json()
            name = self._check_deployment(body.get("deployment", ""))
            n = body.get("replicas")
            if not isinstance(n, int) or n < 0 or n > 20:
                raise web.HTTPBadRequest(text=json.dumps({"detail": f"replicas={n!r}: must be an integer 0..20"}),
                                         content_type="application/json")
            self._check_sidecar_budget(n - len(self.replicas[name]), f"scale {name} to {n}")
            self.wanted[name] = n
            await self._scale_to(name)
            return web.json_response(self.status()["deployments"][name])

        @r.post("/kill")
        async def _kill(request):
            body = await request.json()
            name = self._check_deployment(body.get("deployment", ""))
            live = [rep for rep in self.replicas[name] if rep.app.alive]
            if body.get("replica"):
                live = [rep for rep in live if rep.id == body["replica"]]
            if not live:
                raise web.HTTPConflict(text=json.dumps({"detail": f"no running replica of {name} to kill"}),
                                       content_type="application/json")
            victim = random.choice(live)
            kill_group(victim.app.pid, signal.SIGKILL)
            return web.json_response({"killed": victim.id, "pid": victim.app.pid})

        @r.post("/canary")
        async def _canary(request):
            body = await request.json()
            svc, weight = body.get("service"), body.get("weight")
            canaries = [s for s, d in self.topology.services.items()
                        if s != svc and self.topology.deployments[d].service == svc]
            if svc not in self.topology.services or not canaries:
                raise web.HTTPBadRequest(text=json.dumps({"detail": f"service {svc!r} has no canary backend"}),
                                         content_type="application/json")
            if not isinstance(weight, int) or not 0 <= weight <= 100:
                raise web.HTTPBadRequest(text=json.dumps({"detail": f"weight={weight!r}: must be 0..100"}),
                                         content_type="application/json")
            starting = sum(1 for c in canaries if weight > 0 and self.wanted.get(self.topology.services[c], 0) == 0)
            self._check_sidecar_budget(starting, f"canary {svc} {weight}")
            self.weights[svc] = 100 - weight
            for canary in canaries:
                self.weights[canary] = weight
                dep = self.topology.services[canary]
                if weight > 0 and self.wanted.get(dep, 0) == 0:
                    self.wanted[dep] = 1
                    await self._scale_to(dep)
                    await self._wait_ready(dep, 60)
            await self._reconfigure()
            return web.json_response({"service": svc, "weights": self.weights})

        @r.post("/shutdown")
        async def _shutdown(request):
            asyncio.get_running_loop().call_soon(self._stopping.set)
            return web.json_response({"stopping": True})

        return r

    async def _wait_ready(self, name: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sum(r.ready for r in self.replicas[name]) >= self.wanted[name]:
                return
            await asyncio.sleep(0.1)

    @web.middleware
    async def _auth(self, request, handler):
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"detail": "bad control token"}, status=401)
        return await handler(request)

    async def shutdown(self) -> None:
        """Stop every process this supervisor started, then the infrastructure."""
        self._stopping.set()
        if getattr(self, "observability", None) is not None:
            await self.observability.stop()
        everything = [r for rs in self.replicas.values() for r in rs]
        for rep in everything:
            rep.stopping = True
        await asyncio.gather(*(self._stop_replica(r) for r in everything), return_exceptions=True)
        if self._gateway_task:
            self._gateway_task.cancel()
            await asyncio.gather(self._gateway_task, return_exceptions=True)
        if self.gateway:
            await self.gateway.stop()
        from cluster.spawn import shutdown as stop_fork_server

        await asyncio.to_thread(stop_fork_server)
        if self.infra:
            await asyncio.to_thread(self.infra.stop)
        if self._http:
            await self._http.close()
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)


def _replica_state(rep: Replica) -> str:
    if rep.backoff_until is not None:
        return "back-off"
    if rep.ready:
        return "ready"
    return "starting" if rep.app.alive else "stopped"


def _last_line(log_path: Path, limit: int = 200) -> str:
    """The last line of a log that names an error (else the last line), shortened."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 8192))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if "rror" in line:
            return line[-limit:]
    return lines[-1][-limit:] if lines else "no output"


def owner_alive(pid: int, started_at: float | None) -> bool:
    """Whether the owner process is still the one that started us (a reused pid or a zombie is gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or abs(proc.create_time() - started_at) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


async def watch_owner(pid: int, stopping: asyncio.Event, interval_s: float = OWNER_POLL_S) -> None:
    """Set `stopping` once the owner process (`--owner-pid`, e.g. a notebook's kernel) is gone, so a
    CloudMart started by a kernel that was killed does not outlive it."""
    import psutil

    try:
        started_at = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        started_at = None
    while not stopping.is_set():
        if not owner_alive(pid, started_at):
            log.warning("owner process %d is gone: stopping", pid)
            stopping.set()
            return
        await asyncio.sleep(interval_s)


async def _main(args: argparse.Namespace) -> int:
    replicas = {}
    for item in filter(None, (args.replicas or "").split(",")):
        name, _, n = item.partition("=")
        replicas[name.strip()] = int(n)
    sup = Supervisor(Path(args.state_dir), args.gateway_port, mesh=args.mesh, monolith=args.monolith,
                     replicas=replicas, manifests=Path(args.manifests))
    app = web.Application(middlewares=[sup._auth])
    app.add_routes(sup.routes())
    from cluster import usage
    from cluster.finops import server as finops_server

    usage.attach(sup, app)   # sup.usage: CPU and PSS per replica, GET /usage
    from cluster.control import deployments as control

    control.attach(sup, app)   # sup.control: POST /apply, the deployment controller
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # Port 0: the kernel picks the port as the socket is bound, so no other process can take it first.
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    sup.control_port = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sup._stopping.set)
    tasks = []
    if args.owner_pid:   # from the start: an owner killed while CloudMart comes up stops it too
        tasks.append(asyncio.create_task(watch_owner(args.owner_pid, sup._stopping)))
    try:
        await sup.start()
        if "observability" in args.with_components.split(","):
            from cluster.observability import Observability

            sup.observability = Observability(sup)   # Prometheus + Alertmanager, when installed
            await sup.observability.start()
        tasks += [asyncio.create_task(sup._readiness_loop()), asyncio.create_task(sup._reconfigure_loop()),
                 asyncio.create_task(sup._infra_loop()), asyncio.create_task(sup.usage.run(sup._stopping)),
                 asyncio.create_task(finops_server.serve(sup))]   # OpenCost-compatible API, budgets
        await sup._stopping.wait()
    except Exception:
        log.exception("supervisor failed")
        return_code = 1
    else:
        return_code = 0
    finally:
        for task in tasks:
            task.cancel()
        await sup.shutdown()
        await runner.cleanup()
    return return_code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the detached supervisor process."""
    parser = argparse.ArgumentParser(prog="python -m cluster.supervisor")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--gateway-port", type=int, required=True)
    parser.add_argument("--mesh", action="store_true")
    parser.add_argument("--monolith", action="store_true")
    parser.add_argument("--replicas", default="")
    parser.add_argument("--with", dest="with_components", default="", help="observability")
    parser.add_argument("--manifests", default=str(topology.BASE_DIR), help="kustomization to read")
    parser.add_argument("--owner-pid", type=int, default=None,
                        help="stop everything when this process (e.g. a notebook's kernel) is gone")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)   # not a line per admin request to Envoy
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
