"""The supervisor's side of the control plane: its `/apply` routes and the deployment controller.

`attach(sup, app)` gives a Supervisor a `ControlPlane` (`sup.control`, desired state in
`<state>/control/`) and the control-channel routes:

    POST /apply   {"objects": [...], "dry_run": false}  → 200 ApplyResult | 400 malformed |
                  422 schema or reference | 403 Gatekeeper's denial
    POST /delete  {"objects": [...]}    POST /diff {"objects": [...]}  → {"diff": "..."}
    GET  /objects?kind=&name=           GET /audit
    GET  /rollout?deployment=           POST /rollout/undo {"deployment": "...", "to_revision": n}
    POST /objects/reset                 (back to the manifests: `cloudmart reset`)

After a stored change the deployment controller (`DeploymentController.reconcile`, after
Kubernetes' deployment controller) brings the running replicas to the new desired state:

- `spec.replicas` → the supervisor's scaling (a change of the applied value wins over an earlier
  `cloudmart scale`; an apply that leaves `spec.replicas` as it was keeps the current count).
- a changed pod template (env such as SERVICE_VERSION, the image, probes, labels) → a rolling
  update honouring `maxSurge` / `maxUnavailable` (rounded as Kubernetes does). A new replica
  counts as available once it is ready *and* the gateway's Envoy has applied endpoints that
  include it; an old replica leaves only while enough others are available. The leaving replica
  is drained: the gateway (and, in mesh mode, the sidecars) first apply endpoints without it,
  then `CLOUDMART_DRAIN_S` (default 1 s) passes for requests already routed to it, then it gets
  SIGTERM and its server finishes the requests in flight before exiting (uvicorn's graceful
  shutdown), like a pod's preStop sleep and terminationGracePeriodSeconds.
- `progressDeadlineSeconds` (default 600): a rollout that makes no progress (no new replica
  created or becoming available) for that long stops with `Failed` / `ProgressDeadlineExceeded`
  in `GET /rollout` and `cloudmart rollout status`; like Kubernetes it is not rolled back by itself
  (`cloudmart rollout undo`).
- Deployments the local target runs are those labelled `app.kubernetes.io/component: service`;
  other kinds are stored (and shown by `get`, checked by `audit`) but not run. Services and
  HTTPRoutes take effect at the next data-plane reload, which every reconcile triggers. Not
  honoured: `Recreate` strategy (treated as rolling), `minReadySeconds`, `paused`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from aiohttp import web

from cluster.control.objects import ApplyError, ApplyResult, canonical
from cluster.control.plane import ControlPlane, pod_template, rolling_parameters

log = logging.getLogger("cloudmart.control")

DEFAULT_DRAIN_S = 1.0
DEFAULT_PROGRESS_DEADLINE_S = 600
ROLLOUT_POLL_S = 0.1


def drain_s() -> float:
    raw = os.environ.get("CLOUDMART_DRAIN_S", str(DEFAULT_DRAIN_S))
    try:
        value = float(raw)
    except ValueError:
        log.warning("CLOUDMART_DRAIN_S=%r is not a number; using %.1f s", raw, DEFAULT_DRAIN_S)
        return DEFAULT_DRAIN_S
    return max(0.0, value)


def template_hash(obj: dict | None) -> str:
    """A short, stable name of a Deployment's pod template (like pod-template-hash)."""
    import hashlib

    return hashlib.sha256(canonical(pod_template(obj or {})).encode()).hexdigest()[:10]


class DeploymentController:
    """Rolls a Supervisor's replicas to the desired state of its ControlPlane."""

    def __init__(self, sup):
        self.sup = sup
        self.rollouts: dict[str, dict] = {}          # deployment -> rollout status
        self._tasks: dict[str, asyncio.Task] = {}
        self._lock = asyncio.Lock()

    # ----- desired objects ------------------------------------------------------------------
    def deployment_object(self, name: str) -> dict | None:
        for obj in self.sup.topology.objects:
            if obj.get("kind") == "Deployment" and obj["metadata"]["name"] == name:
                return obj
        return None

    def hash_of(self, name: str) -> str:
        return template_hash(self.deployment_object(name))

    # ----- reconcile ------------------------------------------------------------------------
    async def reconcile(self) -> None:
        """Take the new desired state: new topology, replicas, rollouts, a data-plane reload."""
        sup = self.sup
        async with self._lock:
            old_topology = sup.topology
            new_topology = await asyncio.to_thread(sup.control.topology)
            old_objects = {o["metadata"]["name"]: o for o in old_topology.objects if o.get("kind") == "Deployment"}
            sup.topology = new_topology
            if not sup.mesh:
                from services.infra import free_port

                for svc in new_topology.services:
                    sup.cluster_ports.setdefault(svc, free_port())
            for name in [n for n in sup.replicas if n not in new_topology.deployments]:
                self._cancel(name)
                sup.wanted[name] = 0
                await sup._scale_to(name)
                sup.replicas.pop(name, None)
                sup.wanted.pop(name, None)
                self.rollouts.pop(name, None)
            for name, dep in new_topology.deployments.items():
                new_obj = self.deployment_object(name)
                old_obj = old_objects.get(name)
                if name not in sup.replicas:
                    sup.replicas[name] = []
                    sup.wanted[name] = dep.replicas
                    await sup._scale_to(name)
                    continue
                old_dep = old_topology.deployments.get(name)
                if old_dep is not None and old_dep.replicas != dep.replicas:
                    sup.wanted[name] = dep.replicas
                if template_hash(old_obj) != template_hash(new_obj) or any(
                        r.template_hash != template_hash(new_obj) for r in sup.replicas[name]):
                    self.start_rollout(name)
                elif name not in self._tasks:
                    await sup._scale_to(name)
            await sup._reconfigure()

    def _cancel(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()

    def start_rollout(self, name: str) -> None:
        """(Re)start the rollout of a Deployment to its current template (a rollout under way is
        replaced: the new one treats every replica of another template as old)."""
        self._cancel(name)
        # Progressing from now on (a status asked for before the task first runs says so too).
        self.rollouts[name] = {"deployment": name, "revision": None, "template": self.hash_of(name),
                               "phase": "Progressing", "reason": "NewReplicaSetCreated", "message": "",
                               "started_at": time.time(), "finished_at": None, "updated": 0, "available": 0,
                               "wanted": self.sup.wanted.get(name, 0)}
        task = asyncio.create_task(self._rollout(name))
        self._tasks[name] = task
        task.add_done_callback(lambda t, n=name: self._tasks.pop(n, None) if self._tasks.get(n) is t else None)

    def _available(self, name: str, rep) -> bool:
        """Ready, and the gateway routes to it (every Service selecting the Deployment)."""
        sup = self.sup
        if not rep.ready or rep.stopping:
            return False
        routed = sup._routed_endpoints or {}
        address = f"127.0.0.1:{rep.inbound_port if sup.mesh else rep.app_port}"
        services = [svc for svc, dep in sup.topology.services.items() if dep == name]
        return all(address in routed.get(svc, []) for svc in services)

    async def _rollout(self, name: str) -> None:
        sup = self.sup
        obj = self.deployment_object(name) or {}
        target = template_hash(obj)
        spec = obj.get("spec") or {}
        deadline_s = float(spec.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_S))
        try:
            revision = sup.control.history(name, obj["metadata"].get("namespace", "cloudmart"))[-1]["revision"]
        except (ApplyError, KeyError, IndexError):
            revision = None
        status = {"deployment": name, "revision": revision, "template": target, "phase": "Progressing",
                  "reason": "NewReplicaSetCreated", "message": "", "started_at": time.time(),
                  "finished_at": None, "updated": 0, "available": 0, "wanted": sup.wanted.get(name, 0)}
        self.rollouts[name] = status
        last_progress = time.monotonic()
        seen_available: set[str] = set()
        log.info("rollout of %s to template %s (revision %s) started", name, target, revision)
        try:
            while True:
                reps = sup.replicas[name]
                wanted = sup.wanted[name]
                surge, unavailable = rolling_parameters({"spec": {**spec, "replicas": wanted}})
                new = [r for r in reps if r.template_hash == target]
                old = [r for r in reps if r.template_hash != target]
                available = [r for r in reps if self._available(name, r)]
                new_available = {r.id for r in new if r in available}
                status.update(updated=len(new), available=len(new_available), wanted=wanted)
                if new_available - seen_available:
                    seen_available |= new_available
                    last_progress = time.monotonic()
                if not old and len(new) == wanted and len(new_available) == wanted:
                    break
                progressed = False
                if len(new) < wanted and len(reps) < wanted + surge:
                    sup._add_replica(name)
                    progressed = True
                elif len(new) > wanted:
                    await sup._scale_to(name)
                # An old replica that is not available leaves first; an available one only while
                # the others keep at least `wanted - maxUnavailable` available.
                idle_old = [r for r in old if r not in available]
                if idle_old:
                    await self._drain(name, idle_old[0])
                    progressed = True
                elif old and len(available) - 1 >= wanted - unavailable:
                    await self._drain(name, old[0])
                    progressed = True
                if progressed:
                    last_progress = time.monotonic()
                    continue
                if time.monotonic() - last_progress > deadline_s:
                    status.update(phase="Failed", reason="ProgressDeadlineExceeded", finished_at=time.time(),
                                  message=f"deployment {name!r} exceeded its progress deadline "
                                          f"({deadline_s:g} s): {len(new_available)} of {wanted} new replicas "
                                          f"available")
                    log.warning("rollout of %s failed: %s", name, status["message"])
                    sup._write_state()
                    return
                await asyncio.sleep(ROLLOUT_POLL_S)
        except asyncio.CancelledError:
            status.update(phase="Superseded", reason="NewerRollout", finished_at=time.time())
            raise
        status.update(phase="Complete", reason="NewReplicaSetAvailable", finished_at=time.time(),
                      message=f"deployment {name!r} successfully rolled out", updated=wanted, available=wanted)
        log.info("rollout of %s complete in %.2f s", name, status["finished_at"] - status["started_at"])
        sup._write_state()

    async def _drain(self, name: str, rep) -> None:
        """Take one replica out of the endpoints, wait CLOUDMART_DRAIN_S, then stop it."""
        sup = self.sup
        if rep in sup.replicas[name]:
            sup.replicas[name].remove(rep)
        rep.stopping = True
        was_ready, rep.ready = rep.ready, False
        if was_ready:
            await sup._reconfigure()        # returns once Envoy has applied endpoints without it
            await asyncio.sleep(drain_s())
        await asyncio.shield(sup._stop_replica(rep))
        sup._write_state()

    def status(self, name: str) -> dict:
        if name not in self.sup.replicas:
            raise ApplyError(f'deployment "{name}" not found', status=404)
        current = self.hash_of(name)
        reps = self.sup.replicas[name]
        base = self.rollouts.get(name) or {"deployment": name, "revision": None, "template": current,
                                           "phase": "Complete", "reason": "NewReplicaSetAvailable", "message": ""}
        return {**base, "wanted": self.sup.wanted.get(name, 0),
                "updated": sum(r.template_hash == current for r in reps),
                "available": sum(self._available(name, r) for r in reps if r.template_hash == current),
                "replicas": [{"id": r.id, "template": r.template_hash, "version": r.deployment.version,
                              "ready": r.ready} for r in reps]}


    def object_status(self, name: str) -> dict | None:
        """The Deployment's `status` as the API server shows it (replica counts and the Available
        and Progressing conditions), for `cloudmart get -o yaml`; None when it does not run here."""
        if name not in self.sup.replicas:
            return None
        st = self.status(name)
        wanted = st["wanted"]
        reps = self.sup.replicas[name]
        available = sum(self._available(name, r) for r in reps)
        try:
            _, max_unavailable = rolling_parameters({"spec": {**((self.deployment_object(name) or {}).get("spec") or {}),
                                                              "replicas": wanted}})
        except ValueError:
            max_unavailable = 0
        enough = available >= wanted - max_unavailable
        failed = st["phase"] == "Failed"
        return {
            "observedGeneration": st.get("revision") or 1,
            "replicas": len(reps), "updatedReplicas": st["updated"],
            "readyReplicas": sum(r.ready for r in reps), "availableReplicas": available,
            "conditions": [
                {"type": "Available", "status": "True" if enough else "False",
                 "reason": "MinimumReplicasAvailable" if enough else "MinimumReplicasUnavailable",
                 "message": f"{available} of {wanted} replicas available"},
                {"type": "Progressing", "status": "False" if failed else "True", "reason": st["reason"],
                 "message": st.get("message") or f"deployment {name!r} {st['phase'].lower()}"},
            ],
        }


def _error(exc: ApplyError) -> web.Response:
    body = {"detail": " ".join(str(exc).split()), "reasons": exc.reasons,
            "result": exc.result.to_dict() if exc.result else None}
    return web.json_response(body, status=exc.status)


async def _body(request) -> dict:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApplyError("the request body is not JSON", status=400) from None
    if not isinstance(body, dict):
        raise ApplyError("the request body must be a JSON object", status=400)
    return body


def attach(sup, app) -> ControlPlane:
    """Give a Supervisor its control plane (`sup.control`, `sup.deployments`) and routes."""
    from cluster import topology

    sup.control = ControlPlane(sup.state_dir / "control", topology.load(sup.manifests).objects)
    sup.deployments = DeploymentController(sup)
    apply_lock = asyncio.Lock()

    def guarded(handler):
        async def wrapped(request):
            try:
                if sup.monolith and request.method == "POST":
                    raise ApplyError("apply works in the microservices mode only (CloudMart runs as a monolith)",
                                     status=409)
                return await handler(request)
            except ApplyError as exc:
                return _error(exc)
        return wrapped

    async def change(request, what: str):
        body = await _body(request)
        objects = body.get("objects")
        dry_run = body.get("dry_run", False)
        if not isinstance(objects, list) or not isinstance(dry_run, bool):
            raise ApplyError("expected {\"objects\": [...], \"dry_run\": false}", status=400)
        async with apply_lock:
            method = sup.control.apply if what == "apply" else sup.control.delete
            result: ApplyResult = await asyncio.to_thread(method, objects, dry_run)
            if result.changed and not dry_run:
                await sup.deployments.reconcile()
        return web.json_response(result.to_dict())

    async def apply_route(request):
        return await change(request, "apply")

    async def delete_route(request):
        return await change(request, "delete")

    async def diff_route(request):
        body = await _body(request)
        if not isinstance(body.get("objects"), list):
            raise ApplyError("expected {\"objects\": [...]}", status=400)
        return web.json_response({"diff": await asyncio.to_thread(sup.control.diff, body["objects"])})

    async def objects_route(request):
        kind = request.query.get("kind")
        if not kind:
            raise ApplyError("kind: required (e.g. deployment, service, httproute)", status=400)
        found = await asyncio.to_thread(sup.control.get, kind, request.query.get("name") or None)
        for obj in found:   # what the controller observed, as the API server reports it
            if obj.get("kind") == "Deployment" and (status := sup.deployments.object_status(obj["metadata"]["name"])):
                obj["status"] = status
        return web.json_response({"items": found})

    async def audit_route(request):
        violations = await asyncio.to_thread(sup.control.audit)
        return web.json_response({"violations": [
            {"constraint": v.constraint, "kind": v.kind, "name": v.name, "namespace": v.namespace,
             "message": v.msg, "enforcementAction": v.action} for v in violations]})

    async def rollout_route(request):
        name = request.query.get("deployment", "")
        status = sup.deployments.status(name)
        status["history"] = [{k: v for k, v in r.items() if k != "template"}
                             for r in await asyncio.to_thread(sup.control.history, name)]
        return web.json_response(status)

    async def undo_route(request):
        body = await _body(request)
        name, to_revision = body.get("deployment", ""), body.get("to_revision")
        if to_revision is not None and (isinstance(to_revision, bool) or not isinstance(to_revision, int)):
            raise ApplyError(f"to_revision={to_revision!r}: must be a revision number", status=400)
        async with apply_lock:
            result = await asyncio.to_thread(sup.control.undo, name, to_revision)
            if result.changed:
                await sup.deployments.reconcile()
        return web.json_response(result.to_dict())

    async def reset_route(request):
        async with apply_lock:
            changed = await asyncio.to_thread(sup.control.reset)
            if changed:
                await sup.deployments.reconcile()
        return web.json_response({"changed": changed})

    app.router.add_post("/objects/reset", guarded(reset_route))
    app.router.add_post("/apply", guarded(apply_route))
    app.router.add_post("/delete", guarded(delete_route))
    app.router.add_post("/diff", guarded(diff_route))
    app.router.add_get("/objects", guarded(objects_route))
    app.router.add_get("/audit", guarded(audit_route))
    app.router.add_get("/rollout", guarded(rollout_route))
    app.router.add_post("/rollout/undo", guarded(undo_route))
    return sup.control


