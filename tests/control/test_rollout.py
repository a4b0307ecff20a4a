"""The deployment controller's rolling update against a stand-in supervisor: replicas that get ready
after a while, endpoints that the "gateway" applies later still. The bounds of maxSurge and
maxUnavailable hold at every moment, old replicas leave only once new ones are routed, and a
rollout that cannot progress stops as Failed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from cluster.control.deployments import DeploymentController
from control_helpers import base_object, set_env


@dataclass(eq=False)
class Rep:
    id: str
    template_hash: str
    app_port: int
    deployment: object
    ready: bool = False
    stopping: bool = False
    inbound_port: int | None = None
    stopped: bool = False
    events: list = field(default_factory=list)


class StandIn:
    """The parts of `cluster.supervisor.Supervisor` the controller uses."""

    mesh = False

    def __init__(self, plane, ready_after_s: float, never_ready: bool = False):
        self.control = plane
        self.topology = plane.topology()
        self.replicas: dict[str, list[Rep]] = {n: [] for n in self.topology.deployments}
        self.wanted = {n: d.replicas for n, d in self.topology.deployments.items()}
        self._routed_endpoints: dict[str, list[str]] = {}
        self.ready_after_s = ready_after_s
        self.never_ready = never_ready
        self.deployments = DeploymentController(self)
        self._port = 20000
        self.samples: list[tuple[int, int, int]] = []      # (available, total running, new available)
        self.tasks: list[asyncio.Task] = []

    def _add_replica(self, name: str) -> Rep:
        self._port += 1
        rep = Rep(f"{name}-{self._port}", self.deployments.hash_of(name), self._port,
                  self.topology.deployments[name])
        self.replicas[name].append(rep)
        self.tasks.append(asyncio.create_task(self._get_ready(rep)))
        return rep

    async def _get_ready(self, rep: Rep) -> None:
        if self.never_ready and rep.deployment.version != "v1":
            return
        await asyncio.sleep(self.ready_after_s)
        if not rep.stopping:
            rep.ready = True
            await asyncio.sleep(0.05)          # the reload is debounced, like the real one
            await self._reconfigure()

    async def _scale_to(self, name: str) -> None:
        while len(self.replicas[name]) < self.wanted[name]:
            self._add_replica(name)
        while len(self.replicas[name]) > self.wanted[name]:
            rep = self.replicas[name].pop()
            rep.stopping = True
            await self._reconfigure()
            await self._stop_replica(rep)

    async def _reconfigure(self) -> None:
        await asyncio.sleep(0.01)                # Envoy applies it a moment later
        self._routed_endpoints = {svc: [f"127.0.0.1:{r.app_port}" for r in self.replicas.get(dep, []) if r.ready]
                                  for svc, dep in self.topology.services.items()}

    async def _stop_replica(self, rep: Rep) -> None:
        assert not rep.ready, "a replica was stopped while still in the endpoints"
        address = f"127.0.0.1:{rep.app_port}"
        assert all(address not in eps for eps in self._routed_endpoints.values()), "stopped while routed"
        rep.stopped = True

    def _write_state(self) -> None:
        pass

    async def sample(self, name: str, target: str) -> None:
        while True:
            reps = self.replicas[name]
            available = [r for r in reps if self.deployments._available(name, r)]
            self.samples.append((len(available), len([r for r in reps if not r.stopped]),
                                 sum(r.template_hash == target for r in available)))
            await asyncio.sleep(0.005)


def _deploy(plane, base_objects, replicas: int, surge, unavailable, deadline: int | None = None) -> dict:
    obj = base_object(base_objects, "Deployment", "product")
    obj["spec"]["replicas"] = replicas
    obj["spec"]["strategy"] = {"type": "RollingUpdate",
                               "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    if deadline is not None:
        obj["spec"]["progressDeadlineSeconds"] = deadline
    plane.apply(obj)
    return obj


async def _rolled(plane, base_objects, replicas, surge, unavailable, *, never_ready=False, deadline=None):
    obj = _deploy(plane, base_objects, replicas, surge, unavailable, deadline)
    sup = StandIn(plane, ready_after_s=0.05, never_ready=never_ready)
    await sup._scale_to("product")
    for _ in range(100):
        await asyncio.sleep(0.02)
        if all(sup.deployments._available("product", r) for r in sup.replicas["product"]):
            break
    old = list(sup.replicas["product"])
    plane.apply(set_env(obj, "SERVICE_VERSION", "v2"))
    sup.topology = plane.topology()
    target = sup.deployments.hash_of("product")
    sampler = asyncio.create_task(sup.sample("product", target))
    sup.deployments.start_rollout("product")
    task = sup.deployments._tasks["product"]
    await asyncio.wait_for(task, 20)
    sampler.cancel()
    for t in sup.tasks:
        t.cancel()
    return sup, old, target


@pytest.mark.parametrize("replicas, surge, unavailable, max_surge, max_unavailable", [
    (3, 1, 0, 1, 0),
    (3, 0, 1, 0, 1),
    (4, "25%", "25%", 1, 1),
    (1, "25%", "25%", 1, 0),     # 25 % of 1: surge rounds up to 1, unavailable down to 0
    (2, 2, 0, 2, 0),
])
def test_rolling_update_stays_within_surge_and_unavailable(plane, base_objects, monkeypatch, replicas, surge,
                                                           unavailable, max_surge, max_unavailable):
    monkeypatch.setenv("CLOUDMART_DRAIN_S", "0")
    sup, old, target = asyncio.run(_rolled(plane, base_objects, replicas, surge, unavailable))
    status = sup.deployments.rollouts["product"]
    assert status["phase"] == "Complete"
    reps = sup.replicas["product"]
    assert len(reps) == replicas and all(r.template_hash == target and r.ready for r in reps)
    assert all(r.stopped for r in old) and not set(old) & set(reps)
    assert min(s[0] for s in sup.samples) >= replicas - max_unavailable
    assert max(s[1] for s in sup.samples) <= replicas + max_surge
    assert max(s[1] for s in sup.samples) == replicas + max_surge or max_surge == 0
    shown = sup.deployments.object_status("product")
    assert (shown["replicas"], shown["updatedReplicas"], shown["availableReplicas"]) == (replicas,) * 3
    assert [(c["type"], c["status"], c["reason"]) for c in shown["conditions"]] == [
        ("Available", "True", "MinimumReplicasAvailable"), ("Progressing", "True", "NewReplicaSetAvailable")]


def test_a_rollout_without_progress_fails_and_keeps_the_old_replicas(plane, base_objects, monkeypatch):
    monkeypatch.setenv("CLOUDMART_DRAIN_S", "0")
    monkeypatch.setattr("cluster.control.deployments.ROLLOUT_POLL_S", 0.02)
    sup, old, target = asyncio.run(_rolled(plane, base_objects, 2, 1, 0, never_ready=True, deadline=1))
    status = sup.deployments.rollouts["product"]
    assert (status["phase"], status["reason"]) == ("Failed", "ProgressDeadlineExceeded")
    assert "0 of 2 new replicas available" in status["message"]
    assert all(not r.stopped for r in old) and all(r in sup.replicas["product"] for r in old)
    assert min(s[0] for s in sup.samples) == 2
    progressing = sup.deployments.object_status("product")["conditions"][1]
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert sup.deployments.object_status("product")["updatedReplicas"] == 1    # maxSurge 1: one new, never ready
