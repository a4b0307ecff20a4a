"""Prometheus and Alertmanager for the local target (`cloudmart up --with observability`).

The real programs — Debian's `prometheus` (2.42) and `prometheus-alertmanager` (0.25), Homebrew's
on macOS — started by the supervisor on 127.0.0.1 at free ports, when `prometheus` is on PATH:

* Prometheus scrapes every replica's `/metrics` (with the state folder's scrape token), the
  gateway's Envoy stats (relayed from its admin socket) and the local OpenCost exporter, every `SCRAPE_INTERVAL_S` seconds; its
  targets are a `file_sd` file the supervisor rewrites as replicas come and go. It evaluates the
  rules of `rules/` here and of `<state>/observability/rules/` (learners' rules, added with
  `cm.prometheus.add_rules`, checked by `promtool check rules` first: a rule that does not parse
  is refused with promtool's own message) and sends alerts to Alertmanager.
* Alertmanager (`--cluster.listen-address=` empty: no gossip port) routes every alert to a webhook
  receiver in the supervisor, which appends each notification to
  `<state>/observability/notifications.jsonl` (`cm.prometheus.notifications()`).

Time is compressed: a scrape and an evaluation every 2 s, and the shipped burn-rate rule uses
windows of 1 min and 10 s for the SRE workbook's 1 h and 5 min (stated in the rule's annotations).
Where `prometheus` is not on PATH nothing is started, the supervisor logs why and the status says
so (`observability.enabled: false` with the reason) — never a stand-in.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml

log = logging.getLogger("cloudmart.observability")

HERE = Path(__file__).resolve().parent
SHIPPED_RULES = HERE / "rules"
SCRAPE_INTERVAL_S = 2
EVALUATION_INTERVAL_S = 2
INFO_FILE = "observability.json"


class ObservabilityError(RuntimeError):
    """Prometheus or Alertmanager could not start, or a rule was refused."""


def binaries() -> dict[str, str] | None:
    """Paths of prometheus, promtool and alertmanager, or None when prometheus is missing."""
    prom = shutil.which("prometheus")
    if not prom:
        return None
    am = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    tool = shutil.which("promtool")
    if not am or not tool:
        return None
    return {"prometheus": prom, "alertmanager": am, "promtool": tool}


def missing_reason() -> str:
    return ("prometheus, promtool and prometheus-alertmanager (or alertmanager) are not all on PATH: "
            "observability is skipped (Debian: apt-get install prometheus prometheus-alertmanager; "
            "macOS: brew install prometheus alertmanager)")


def check_rules(text: str, promtool: str | None = None) -> None:
    """`promtool check rules` on a rule file's text; ValueError with promtool's message if refused."""
    tool = promtool or (binaries() or {}).get("promtool")
    if not tool:
        raise ObservabilityError(missing_reason())
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as fh:
        fh.write(text)
        path = fh.name
    try:
        proc = subprocess.run([tool, "check", "rules", path], capture_output=True, text=True, timeout=30)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        message = " ".join((proc.stderr + proc.stdout).replace(path, "<rules>").split())
        raise ValueError(f"promtool check rules refused the rules: {message}")


def _die_with_parent() -> None:   # runs in the child before exec: SIGTERM when the supervisor dies
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setsid()


class Observability:
    """Prometheus, Alertmanager and the webhook receiver of one supervisor."""

    def __init__(self, sup):
        self.sup = sup
        self.state_dir = Path(sup.state_dir)
        self.dir = self.state_dir / "observability"
        self.run_dir = Path(sup.run_dir) / "observability"
        self.bins = binaries()
        self.enabled = self.bins is not None
        self.reason = None if self.enabled else missing_reason()
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.ports: dict[str, int] = {}
        self._runner = None
        self._targets_text = ""

    # ----- configuration -------------------------------------------------------------------------
    def _targets(self) -> dict[str, list[dict]]:
        sup = self.sup
        replicas = []
        for name, reps in sup.replicas.items():
            for rep in reps:
                if rep.app.alive:
                    replicas.append({"targets": [f"127.0.0.1:{rep.app_port}"],
                                     "labels": {"replica": rep.id, "deployment": name,
                                                "service": rep.deployment.service, "namespace": "cloudmart"}})
        # Envoy's admin is a Unix socket in the state folder, which Prometheus cannot scrape: the
        # receiver's /gateway-metrics relays its /stats/prometheus (as Istio's merged metrics port does).
        gateway = ([{"targets": [f"127.0.0.1:{self.ports['receiver']}"], "labels": {"component": "gateway"}}]
                   if "receiver" in self.ports and getattr(sup, "gateway", None) is not None else [])
        opencost = []
        try:
            port = json.loads((Path(sup.run_dir) / "opencost.json").read_text())["port"]
            opencost = [{"targets": [f"127.0.0.1:{port}"], "labels": {"component": "opencost"}}]
        except (OSError, ValueError, KeyError):
            pass
        return {"replicas": replicas, "gateway": gateway, "opencost": opencost}

    def write_targets(self) -> None:
        """Rewrite the file_sd files when the targets changed (Prometheus re-reads them itself)."""
        if not self.enabled:
            return
        targets = self._targets()
        text = json.dumps(targets, sort_keys=True)
        if text == self._targets_text:
            return
        self._targets_text = text
        for name, groups in targets.items():
            path = self.run_dir / f"targets-{name}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(groups))
            os.replace(tmp, path)

    def _prometheus_config(self) -> dict:
        from services.common.metrics import scrape_token_path

        def job(name, **extra):
            return {"job_name": name, "file_sd_configs": [{"files": [str(self.run_dir / f"targets-{name}.json")],
                                                           "refresh_interval": "5s"}], **extra}

        return {
            "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{EVALUATION_INTERVAL_S}s",
                       "scrape_timeout": f"{SCRAPE_INTERVAL_S}s"},
            "rule_files": [str(SHIPPED_RULES / "*.yml"), str(self.dir / "rules" / "*.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{self.ports['alertmanager']}"]}]}]},
            "scrape_configs": [
                job("replicas", authorization={"type": "Bearer",
                                               "credentials_file": str(scrape_token_path(self.state_dir))}),
                job("gateway", metrics_path="/gateway-metrics"), job("opencost", honor_labels=True),
            ],
        }

    def _alertmanager_config(self) -> dict:
        return {
            "route": {"receiver": "cloudmart-webhook", "group_by": ["alertname"], "group_wait": "1s",
                      "group_interval": "5s", "repeat_interval": "1h"},
            "receivers": [{"name": "cloudmart-webhook", "webhook_configs": [
                {"url": f"http://127.0.0.1:{self.ports['receiver']}/alertmanager", "send_resolved": True}]}],
        }

    # ----- processes ---------------------------------------------------------------------------
    async def _receiver(self) -> None:
        from aiohttp import web

        notes = self.dir / "notifications.jsonl"

        async def receive(request):
            body = await request.json()
            with open(notes, "a") as fh:
                fh.write(json.dumps({"received_at": time.time(), **body}) + "\n")
            return web.json_response({"ok": True})

        async def gateway_metrics(request):
            import aiohttp

            socket = getattr(self.sup.gateway, "admin_socket", None)
            if not socket:
                return web.Response(status=503, text="no gateway")
            try:
                async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket),
                                                 timeout=aiohttp.ClientTimeout(total=SCRAPE_INTERVAL_S)) as session:
                    async with session.get("http://envoy-admin/stats/prometheus") as resp:
                        text = await resp.text()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                return web.Response(status=503, text=f"gateway admin unreachable: {exc}")
            return web.Response(text=text, content_type="text/plain")

        app = web.Application()
        app.router.add_post("/alertmanager", receive)
        app.router.add_get("/gateway-metrics", gateway_metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.ports["receiver"]).start()

    async def _spawn(self, name: str, cmd: list[str]) -> None:
        logf = open(self.sup.logs_dir / f"{name}.log", "ab")
        try:
            self.procs[name] = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=asyncio.subprocess.STDOUT,
                preexec_fn=_die_with_parent, cwd=str(self.run_dir))
        finally:
            logf.close()

    async def start(self) -> None:
        if not self.enabled:
            log.warning("%s", self.reason)
            return
        from services.infra import free_port

        for folder in (self.dir / "rules", self.dir / "prometheus-data", self.dir / "alertmanager-data", self.run_dir):
            folder.mkdir(parents=True, exist_ok=True)
        from services.common.metrics import load_or_create_scrape_token

        load_or_create_scrape_token(self.state_dir)   # the replicas' /metrics want it; Prometheus reads the file
        self.ports = {name: free_port() for name in ("prometheus", "alertmanager", "receiver")}
        await self._receiver()
        (self.run_dir / "prometheus.yml").write_text(yaml.safe_dump(self._prometheus_config(), sort_keys=False))
        (self.run_dir / "alertmanager.yml").write_text(yaml.safe_dump(self._alertmanager_config(), sort_keys=False))
        self.write_targets()
        await self._spawn("alertmanager", [
            self.bins["alertmanager"], f"--config.file={self.run_dir / 'alertmanager.yml'}",
            f"--storage.path={self.dir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{self.ports['alertmanager']}", "--cluster.listen-address="])
        await self._spawn("prometheus", [
            self.bins["prometheus"], f"--config.file={self.run_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'prometheus-data'}", "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}", "--web.enable-lifecycle"])
        await self._wait_ready()
        info = {"prometheus_url": f"http://127.0.0.1:{self.ports['prometheus']}",
                "alertmanager_url": f"http://127.0.0.1:{self.ports['alertmanager']}",
                "receiver_url": f"http://127.0.0.1:{self.ports['receiver']}/alertmanager",
                "pids": {k: p.pid for k, p in self.procs.items()},
                "scrape_interval_s": SCRAPE_INTERVAL_S, "evaluation_interval_s": EVALUATION_INTERVAL_S}
        (self.sup.run_dir / INFO_FILE).write_text(json.dumps(info))
        log.info("Prometheus on %s, Alertmanager on %s", info["prometheus_url"], info["alertmanager_url"])

    async def _wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until both answer `/-/ready`; a process that exits first (a config it refused, a
        missing template) is logged with the last line of its log."""
        import aiohttp

        pending = {"prometheus": self.ports["prometheus"], "alertmanager": self.ports["alertmanager"]}
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while pending and time.monotonic() < deadline:
                for name, port in list(pending.items()):
                    if self.procs[name].returncode is not None:
                        from cluster.supervisor import _last_line

                        self.reason = f"{name} exited with {self.procs[name].returncode}: " \
                                      f"{_last_line(self.sup.logs_dir / f'{name}.log')}"
                        log.error("%s", self.reason)
                        pending.pop(name)
                        continue
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/-/ready") as resp:
                            if resp.status == 200:
                                pending.pop(name)
                    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                        pass
                await asyncio.sleep(0.2)
        for name in pending:
            log.error("%s did not get ready within %.0f s", name, timeout_s)

    def status(self) -> dict:
        return {"enabled": self.enabled, "reason": self.reason,
                "pids": {k: p.pid for k, p in self.procs.items() if p.returncode is None}}

    async def stop(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        if self._runner is not None:
            await self._runner.cleanup()
        (Path(self.sup.run_dir) / INFO_FILE).unlink(missing_ok=True)
