"""A headless Chromium driven over the DevTools protocol (CDP), with aiohttp's websocket client.

Just enough of CDP for the book's browser test: open a page, record every network request the
page makes, wait until the page has finished rendering (MathJax, widgets, Mermaid), measure what
rendered, and take a screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def find_chromium() -> str | None:
    """Path of the Chromium binary (Debian's `chromium`), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """A headless Chromium process in its own process group with a fresh profile."""

    def __init__(self, binary: str):
        self.binary = binary
        self.profile = tempfile.mkdtemp(prefix="cloudmart-book-chromium-")
        self.process: subprocess.Popen | None = None
        self.ws_url: str | None = None

    def start(self, timeout_s: float = 30.0) -> "Chromium":
        """Start Chromium and wait for its DevTools endpoint."""
        self.process = subprocess.Popen(
            [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        port_file = pathlib.Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.process.returncode} before DevTools was up")
            if port_file.is_file():
                lines = port_file.read_text().split()
                if len(lines) >= 2:
                    self.ws_url = f"ws://127.0.0.1:{lines[0]}{lines[1]}"
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"chromium DevTools endpoint not up within {timeout_s} s")

    def stop(self) -> None:
        """Kill Chromium's whole process group and remove the profile."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)


@dataclass
class PageVisit:
    """What one page load showed: every requested URL, the measured facts, the screenshot."""

    url: str
    requests: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    console_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # HTTP status >= 400 or network failure
    screenshot: pathlib.Path | None = None


# Measured in the page; "settled" says whether everything that should render has rendered.
MEASURE_JS = r"""
(() => {
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const images = [...document.querySelectorAll('.cell_output img, .output img')];
  const nonBlank = (img) => {
    if (!img.complete || img.naturalWidth === 0) return false;
    const canvas = document.createElement('canvas');
    canvas.width = Math.min(img.naturalWidth, 400);
    canvas.height = Math.min(img.naturalHeight, 400);
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set();
    let dark = 0;
    for (let i = 0; i < data.length; i += 4) {
      colours.add((data[i] >> 4) << 8 | (data[i + 1] >> 4) << 4 | (data[i + 2] >> 4));
      if (data[i + 3] > 0 && data[i] + data[i + 1] + data[i + 2] < 384) dark += 1;
    }
    return colours.size >= 4 && dark > 50;
  };
  const widgetViews = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
  // A view rendered from saved state: a visible widget area holding a widget (shown "disconnected",
  // since no kernel runs behind a static page).
  const widgetsRendered = [...document.querySelectorAll('.widget-subarea')]
      .filter((el) => visible(el) && el.querySelector('.jupyter-widgets')).length;
  const sliders = [...document.querySelectorAll('.widget-slider, .jupyter-widget-slider, .widget-hslider')]
      .filter(visible).length;
  const mathSources = document.querySelectorAll('.math').length;
  const mathRendered = document.querySelectorAll('mjx-container').length;
  // Prose only: code blocks may legitimately show TeX source.
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => node.parentElement.closest('pre, code, script, style, mjx-container, .mermaid, .highlight')
        ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  let text = '';
  while (walker.nextNode()) text += walker.currentNode.textContent;
  const rawTex = /\\(frac|lambda|rho|mu|left|right|begin\{|sum_|max|lceil|text)\b|\$\$/.test(text);
  const mermaidBlocks = document.querySelectorAll('pre.mermaid, div.mermaid').length;
  const mermaidSvgs = document.querySelectorAll('pre.mermaid svg, div.mermaid svg').length;
  const images_ok = images.map(nonBlank);
  const settled = document.readyState === 'complete'
      && images_ok.every(Boolean)
      && (widgetViews === 0 || widgetsRendered >= widgetViews)
      && (mathSources === 0 || (mathRendered >= mathSources && !rawTex))
      && mermaidSvgs >= mermaidBlocks;
  return {
    title: document.title,
    h1: (document.querySelector('h1') || {}).textContent || '',
    images: images.length,
    nonBlankImages: images_ok.filter(Boolean).length,
    widgetViews, widgetsRendered, sliders,
    mathSources, mathRendered, rawTex,
    mermaidBlocks, mermaidSvgs,
    comingSoon: document.querySelectorAll('.coming-soon').length,
    launchLinks: [...document.querySelectorAll('a[href]')]
        .filter((a) => /localhost:8888|mybinder/.test(a.href)).map((a) => a.href),
    settled,
  };
})()
"""


class CDPSession:
    """One browser-level websocket; commands to a page go through a flattened session id."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.listeners: list = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data and data["id"] in self.pending:
                future = self.pending.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            elif "method" in data:
                for listener in self.listeners:
                    listener(data)

    async def send(self, method: str, params: dict | None = None, session_id: str | None = None, timeout_s: float = 60):
        """Send one CDP command and wait for its result."""
        message_id = next(self.ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        future = asyncio.get_running_loop().create_future()
        self.pending[message_id] = future
        await self.ws.send_str(json.dumps(message))
        return await asyncio.wait_for(future, timeout_s)


async def visit(
    ws_url: str, url: str, screenshot_path: pathlib.Path, settle_timeout_s: float = 90.0, ready_js: str = "true"
) -> PageVisit:
    """Load `url` in a fresh tab, wait until it has rendered, measure it and screenshot it.

    `ready_js` is a further JavaScript condition to wait for; its last value lands in facts["ready"].
    """
    result = PageVisit(url=url)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url, max_msg_size=0) as ws:
            cdp = CDPSession(ws)
            target = await cdp.send("Target.createTarget", {"url": "about:blank"})
            attached = await cdp.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
            session = attached["sessionId"]
            loaded = asyncio.Event()

            def on_event(event: dict) -> None:
                if event.get("sessionId") != session:
                    return
                method, params = event["method"], event.get("params", {})
                if method == "Network.requestWillBeSent":
                    result.requests.append(params["request"]["url"])
                elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
                    result.failed.append(f"{params['response']['status']} {params['response']['url']}")
                elif method == "Network.loadingFailed" and not params.get("canceled"):
                    result.failed.append(f"{params.get('errorText')} (request {params['requestId']})")
                elif method == "Page.loadEventFired":
                    loaded.set()
                elif method == "Runtime.exceptionThrown":
                    result.console_errors.append((params.get("exceptionDetails", {}).get("exception", {}).get("description") or json.dumps(params.get("exceptionDetails", {})))[:500])

            cdp.listeners.append(on_event)
            for domain in ("Network", "Page", "Runtime"):
                await cdp.send(f"{domain}.enable", session_id=session)
            await cdp.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                session_id=session,
            )
            await cdp.send("Page.navigate", {"url": url}, session_id=session)
            await asyncio.wait_for(loaded.wait(), settle_timeout_s)
            deadline = time.monotonic() + settle_timeout_s
            while True:
                evaluated = await cdp.send(
                    "Runtime.evaluate", {"expression": MEASURE_JS, "returnByValue": True}, session_id=session
                )
                result.facts = evaluated["result"].get("value", {})
                ready = await cdp.send(
                    "Runtime.evaluate", {"expression": ready_js, "returnByValue": True}, session_id=session
                )
                result.facts["ready"] = ready["result"].get("value")
                if (result.facts.get("settled") and result.facts["ready"]) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
            # Let any request triggered by the last rendering step show up before judging.
            await asyncio.sleep(0.5)
            # Whole page in one image: grow the viewport to the page's height (bounded), then capture.
            height = await cdp.send(
                "Runtime.evaluate",
                {"expression": "document.documentElement.scrollHeight", "returnByValue": True},
                session_id=session,
            )
            await cdp.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1280, "height": max(900, min(int(height["result"]["value"]), 16000)), "deviceScaleFactor": 1, "mobile": False},
                session_id=session,
            )
            await asyncio.sleep(0.3)
            shot = await cdp.send("Page.captureScreenshot", {"format": "png"}, session_id=session)
            screenshot_path.parent.mkdir(parents=True, exist_ok=True)
            screenshot_path.write_bytes(base64.b64decode(shot["data"]))
            result.screenshot = screenshot_path
            await cdp.send("Target.closeTarget", {"targetId": target["targetId"]})
            cdp.reader.cancel()
    return result
