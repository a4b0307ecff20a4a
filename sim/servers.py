"""``Server``: a ``simpy.Resource`` whose release takes effect at once.

Used exactly like a SimPy resource (``with server.request() as req: yield req``). The only
difference: ``release`` frees the slot and hands it to the next waiting request immediately,
instead of scheduling a separate ``Release`` event that SimPy would process a moment later at
the same simulated time. Semantics (FIFO, times) are unchanged; one event per customer fewer.
"""

from __future__ import annotations

import simpy

__all__ = ["Server", "start"]


class Server(simpy.Resource):
    """``capacity`` identical servers in front of one FIFO queue."""

    def release(self, request):  # type: ignore[override]
        """Free ``request``'s slot now and grant it to the next request in the queue."""
        try:
            self.users.remove(request)
        except ValueError:  # never granted (cancelled while waiting)
            pass
        self._trigger_put(None)
        return None


class _Started(simpy.events.Process):
    """A process whose generator was already advanced to its first event (see :func:`start`)."""

    def __init__(self, env, generator, first_event):  # noqa: D107 - mirrors Process.__init__
        self.env = env
        self.callbacks = []
        self._generator = generator
        self._target = first_event
        first_event.callbacks.append(self._resume)


def start(env: simpy.Environment, generator) -> simpy.events.Event:
    """Like ``env.process(generator)``, but runs the generator up to its first ``yield`` now
    instead of scheduling an ``Initialize`` event for the same instant — one event fewer per
    process. Use only for generators that do not need ``env.active_process`` before their first
    ``yield``. Returns an event that fires with the generator's return value.
    """
    try:
        first = generator.send(None)
    except StopIteration as done:  # finished without waiting
        event = env.event()
        event.succeed(done.value)
        return event
    return _Started(env, generator, first)
