"""Start replicas from a warm fork server instead of a fresh interpreter each time.

Every service imports the same heavy libraries (FastAPI, pydantic, SQLAlchemy, nats, redis, …):
on a 2-core machine that import costs each new replica seconds of CPU. The standard library's
`multiprocessing` "forkserver" imports them once, then forks a child per replica, which then runs
`python -m services.<name>` in-process (`runpy`) with its own environment, session and log file.
The forked children also share those libraries' memory pages until they write to them.

The services read their settings when they start (`Settings.from_env` in `__main__`), never at
import time, so their modules can be preloaded too; each child gets its own copy of module state
(metrics registry, fault settings) when it forks, before it has served anything.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import runpy
import signal
import sys

PRELOAD = [
    "fastapi", "fastapi.routing", "fastapi.security", "pydantic", "starlette.middleware.base",
    "uvicorn", "uvicorn.config", "uvicorn.server", "uvicorn.protocols.http.httptools_impl",
    "uvicorn.loops.uvloop", "uvloop", "httptools",
    "sqlalchemy", "sqlalchemy.orm", "sqlalchemy.ext.asyncio", "sqlalchemy.dialects.postgresql",
    "psycopg", "nats", "nats.js", "redis", "redis.asyncio", "prometheus_client", "jwt",
    "cryptography.hazmat.primitives.asymmetric.rsa", "httpx", "pymongo", "montydb",
]

_context = None


def _preload(extra: list[str]) -> list[str]:
    """Modules of PRELOAD + `extra` that exist here (a missing optional one is skipped)."""
    import importlib.util

    found = []
    for name in PRELOAD + extra:
        try:
            if importlib.util.find_spec(name) is not None:
                found.append(name)
        except (ImportError, ValueError):
            continue
    return found


def context(modules: list[str] | None = None) -> multiprocessing.context.ForkServerContext:
    """The fork server context, preloading PRELOAD and `modules` (set up once per process)."""
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_preload(list(modules or [])))
        _context = ctx
    return _context


def run_module(module: str, env: dict[str, str], cwd: str, log_path: str) -> None:
    """Child side: become a session leader, take the replica's env and log, run the module."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for path in reversed(env.get("PYTHONPATH", "").split(os.pathsep)):
        if path and path not in sys.path:
            sys.path.insert(0, path)
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


class ForkedProcess:
    """The part of `asyncio.subprocess.Process` the supervisor uses, for a fork-server child."""

    def __init__(self, module: str, env: dict[str, str], cwd: str, log_path: str):
        self._proc = context().Process(target=run_module, args=(module, env, cwd, log_path), daemon=False)
        self._proc.start()
        self.pid = self._proc.pid
        self._done: asyncio.Future | None = None

    @property
    def returncode(self) -> int | None:
        return self._proc.exitcode

    async def wait(self) -> int:
        """Wait for the child to end (its sentinel becomes readable) and return its exit code."""
        if self._proc.exitcode is None:
            loop = asyncio.get_running_loop()
            if self._done is None:
                self._done = loop.create_future()
                sentinel = self._proc.sentinel

                def ready() -> None:
                    loop.remove_reader(sentinel)
                    if not self._done.done():
                        self._done.set_result(None)

                loop.add_reader(sentinel, ready)
            await asyncio.shield(self._done)
            self._proc.join(1)
        return self._proc.exitcode


def warm_up(modules: list[str] | None = None) -> None:
    """Start the fork server now (it imports PRELOAD and `modules`), e.g. while the databases start."""
    from multiprocessing import forkserver

    context(modules)
    forkserver.ensure_running()


def shutdown() -> None:
    """Stop the fork server and its resource tracker, and wait until they have exited."""
    if _context is None:
        return
    from multiprocessing import forkserver, resource_tracker

    for helper in (forkserver._forkserver, resource_tracker._resource_tracker):
        try:
            helper._stop()   # the standard library's own way to stop them (closes their pipe, waits)
        except (AttributeError, OSError, ChildProcessError):
            pass
