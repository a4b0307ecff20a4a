"""Run CloudMart service processes for tests: real subprocesses on free ports, against real infra."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from services.infra import free_port  # outside the ephemeral range: no outgoing connection takes it

SERVICE_NAMES = ("auth", "user", "product", "inventory", "order", "payment", "notification")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", f"services.{self.name}"], env=self.env, cwd=REPO_ROOT,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Wait until /readyz answers 200; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); log:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout_s} s; log:\n{self.log_tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Stack:
    infra: object
    log_dir: Path
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    startup_s: dict[str, float] = field(default_factory=dict)

    def env_for(self, name: str, extra: dict | None = None, module: str | None = None) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "NATS_URL", "MONGO_URL")}
        env.update(self.infra.env_for(module or name))
        env.update(SERVICE_NAME=module or name, REPLICA_ID=f"{name}-0", LOG_LEVEL="INFO")
        if "auth" in self.services:
            env["AUTH_JWKS_URL"] = self.services["auth"].url + "/api/auth/.well-known/jwks.json"
        if "product" in self.services:
            env["PRODUCT_URL"] = self.services["product"].url
        if "user" in self.services:
            env["USER_URL"] = self.services["user"].url
        env.setdefault("CLOUDMART_API_DOCS", "1")  # the tests read /openapi.json
        env.update(extra or {})
        return env

    def add(self, name: str, extra_env: dict | None = None, module: str | None = None) -> ServiceProcess:
        port = free_port()
        env = self.env_for(name, extra_env, module)
        env["PORT"] = str(port)
        svc = ServiceProcess(module or name, port, env, self.log_dir / f"{name}.log")
        self.services[name] = svc
        return svc

    def start_all(self, names=SERVICE_NAMES) -> None:
        for name in names:  # auth and product first: others get their URLs
            self.add(name)
        if "auth" in self.services and "user" in self.services:  # auth checks passwords with user
            self.services["auth"].env["USER_URL"] = self.services["user"].url
        for name in names:
            self.services[name].start()
        for name in names:
            self.startup_s[name] = round(self.services[name].wait_ready(), 3)

    def url(self, name: str) -> str:
        return self.services[name].url

    def scrape_headers(self) -> dict:
        """What the metrics scraper sends: the scrape token of this state folder."""
        from services.common.metrics import scrape_token_path

        return {"Authorization": f"Bearer {scrape_token_path(self.infra.state_dir).read_text().strip()}"}

    def restart(self, name: str) -> None:
        svc = self.services[name]
        svc.kill()
        svc.start()
        svc.wait_ready()

    def stop_all(self) -> None:
        for svc in self.services.values():
            svc.stop()


DEMO_PASSWORD = "cloudmart"


def get_token(auth_url: str, username: str, password: str = DEMO_PASSWORD) -> str:
    response = httpx.post(auth_url + "/api/auth/token",
                          data={"grant_type": "password", "username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.1):
    """Poll ``predicate`` until it returns a truthy value (returned), or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s (last value: {last!r})")
