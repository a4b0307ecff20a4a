"""Fixtures for the book tests: the built site, a local HTTP server for it, headless Chromium."""

from __future__ import annotations

import functools
import http.server
import pathlib
import subprocess
import sys
import threading

import pytest
from ci_env import skip_or_fail

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from book_browser import Chromium, find_chromium  # noqa: E402

REPO_DIR = pathlib.Path(__file__).resolve().parents[2]
BOOK_DIR = REPO_DIR / "book"
HTML_DIR = BOOK_DIR / "_build" / "html"
ARTIFACTS_DIR = REPO_DIR / "test-artifacts" / "book"


@pytest.fixture(scope="session")
def built_site() -> pathlib.Path:
    """The book built by `book/build.py` (incremental: an up-to-date site is reused).

    Notebooks that drive a live CloudMart keep their stored outputs here (`--no-live`), the
    outputs nbval checks; `make book` executes them against a running CloudMart.
    """
    result = subprocess.run(
        [sys.executable, str(BOOK_DIR / "build.py"), "--no-live"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, f"book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    assert (HTML_DIR / "index.html").is_file() and (HTML_DIR / "ko" / "index.html").is_file()
    return HTML_DIR / "en"


@pytest.fixture(scope="session")
def korean_site(built_site: pathlib.Path) -> pathlib.Path:
    """The Korean site, built beside the English one (book/_build/html/ko)."""
    return built_site.parent / "ko"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@pytest.fixture(scope="session")
def server_url(built_site: pathlib.Path):
    """Base URL of book/_build/html (every language) served on 127.0.0.1 at a free port."""
    handler = functools.partial(_QuietHandler, directory=str(built_site.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def site_url(server_url: str) -> str:
    """Base URL of the English site."""
    return server_url + "en/"


@pytest.fixture(scope="session")
def korean_site_url(server_url: str) -> str:
    """Base URL of the Korean site."""
    return server_url + "ko/"


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium; skipped (outside CI only) when the `chromium` package is missing."""
    binary = find_chromium()
    if binary is None:
        skip_or_fail("chromium not installed: install the Debian package `chromium` (apt-get install chromium; "
                     ".ci/run does)")
    browser = Chromium(binary).start()
    try:
        yield browser
    finally:
        browser.stop()


@pytest.fixture(scope="session")
def artifacts_dir() -> pathlib.Path:
    """Where screenshots go (test-artifacts/book/, git-ignored)."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR
