"""The machine's CPUs as one shared resource: processor sharing across processes.

On a laptop (or a 2-core CI runner) every replica, proxy, database and the load generator run on
the same few cores. A model that gives each service a core of its own predicts latency well at
light load and far too low near capacity. :class:`SharedCPU` models what the kernel and an
event-loop service do together:

* the kernel shares ``cores`` among the *runnable processes*: with ``P`` processes that have work,
  each runs at ``min(per_process_cores, cores / P)`` cores (Linux's CFS is close to this fair
  share);
* inside one process the requests in progress share that process's speed equally — an asyncio
  service interleaves its requests at every ``await``, which is processor sharing (PS), and one
  Python process uses at most one core (``per_process_cores=1``: the GIL).

So a request of CPU work ``w`` in a process with ``n`` requests in progress, when ``P`` processes
are runnable, progresses at ``min(1, cores / P) / n`` cores (and never faster than one core: a
request is one thread of execution, even in a multi-threaded process). The checks against theory
(``tests/sim/test_sim_cpu.py``): one process is M/G/1-PS (mean sojourn ``E[S] / (1 − ρ)`` whatever
the service-time distribution); one job per process with exponential work is M/M/c (the number in
system is the same birth–death chain), so Erlang C gives its mean sojourn.

    import sim
    res = sim.run(sim.CallGraph(g, cpu=sim.SharedCPU(cores=2)), seed=1, rate_per_s=300)

Node attribute ``cpu_fraction`` (default 1) is the share of a visit's ``service_time`` that is CPU
work in the replica's process; the rest (a database round trip, say) is a plain delay.
``process_cores`` (default ``per_process_cores``) lets a multi-threaded process (a Go or C++
proxy) use more than one core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

import simpy

from ._validate import check_positive

__all__ = ["SharedCPU"]

_EPS_S = 1e-9      # a request with less than a nanosecond of work left is done


@dataclass(frozen=True)
class SharedCPU:
    """``cores`` shared fairly by the runnable processes, each at most ``per_process_cores``."""

    cores: float = 2.0
    per_process_cores: float = 1.0

    def __post_init__(self):
        check_positive("SharedCPU.cores", self.cores)
        check_positive("SharedCPU.per_process_cores", self.per_process_cores)

    def machine(self, env: simpy.Environment) -> "Machine":
        return Machine(env, self.cores, self.per_process_cores)


class Machine:
    """The running model: :meth:`run` returns an event that fires when ``work_s`` CPU-seconds of
    the process ``key`` are done."""

    __slots__ = ("env", "cores", "cap", "caps", "jobs", "per_process", "last", "version", "busy_core_s", "_seq")

    def __init__(self, env: simpy.Environment, cores: float, per_process_cores: float = 1.0):
        self.env = env
        self.cores = float(cores)
        self.cap = float(per_process_cores)
        self.caps: dict[Hashable, float] = {}       # processes with a cap of their own
        self.jobs: dict[int, list] = {}            # id -> [remaining_s, key, event]
        self.per_process: dict[Hashable, int] = {}  # process -> requests in progress
        self.last = env.now
        self.version = 0
        self.busy_core_s = 0.0
        self._seq = 0

    def _speed(self, key: Hashable) -> float:
        """Cores given to one request of process ``key`` now."""
        share = min(self.caps.get(key, self.cap), self.cores / len(self.per_process)) / self.per_process[key]
        return min(share, 1.0)           # one request is one thread of execution: at most one core

    def _advance(self) -> None:
        dt = self.env.now - self.last
        if dt > 0 and self.jobs:
            for job in self.jobs.values():
                job[0] -= dt * self._speed(job[1])
            self.busy_core_s += dt * sum(self._speed(job[1]) for job in self.jobs.values())
        self.last = self.env.now

    def _schedule(self) -> None:
        self.version += 1
        if not self.jobs:
            return
        wait = min(max(job[0], 0.0) / self._speed(job[1]) for job in self.jobs.values())
        version = self.version
        self.env.timeout(wait).callbacks.append(lambda _e: self._tick(version))

    def _tick(self, version: int) -> None:
        if version != self.version:      # superseded by a later arrival or departure
            return
        self._advance()
        done = [i for i, job in self.jobs.items() if job[0] <= _EPS_S * self._speed(job[1])]
        for i in done:
            _, key, event = self.jobs.pop(i)
            self.per_process[key] -= 1
            if not self.per_process[key]:
                del self.per_process[key]
            event.succeed()
        self._schedule()

    def run(self, key: Hashable, work_s: float, process_cores: float | None = None) -> simpy.Event:
        event = self.env.event()
        if process_cores is not None:
            self.caps[key] = float(process_cores)
        if work_s <= 0:
            return event.succeed()
        self._advance()
        self._seq += 1
        self.jobs[self._seq] = [float(work_s), key, event]
        self.per_process[key] = self.per_process.get(key, 0) + 1
        self._schedule()
        return event

    def utilisation(self, horizon_s: float) -> float:
        """Busy core-seconds over ``cores × horizon_s``."""
        return self.busy_core_s / (self.cores * horizon_s) if horizon_s > 0 else 0.0
