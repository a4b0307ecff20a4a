"""Two editions of the book: the learner edition has no solution, no instructor note and no guide;
the instructor edition has all three. The facilitator guides keep the plan's times."""

from __future__ import annotations

import html
import json
import pathlib
import re
import subprocess
import sys
from html.parser import HTMLParser

import nbformat
import pytest

REPO_DIR = pathlib.Path(__file__).resolve().parents[2]
BOOK_DIR = REPO_DIR / "book"
sys.path.insert(0, str(BOOK_DIR / "_ext"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from cloudmart_book_editions import learner_notebook  # noqa: E402
from grading.notebooks import solution_lines  # noqa: E402

NOTEBOOKS = REPO_DIR / "notebooks"
DAY1 = sorted((NOTEBOOKS / "day1-microservices").glob("0*.ipynb"))
INSTRUCTOR_NOTE = "Instructor notes."


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def page_text(path: pathlib.Path) -> str:
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return re.sub(r"\s+", " ", html.unescape("".join(parser.parts)))


def _norm(line: str) -> str:
    return re.sub(r"\s+", " ", line).strip()


def _slot_minutes(path: pathlib.Path) -> int:
    for cell in nbformat.read(path, as_version=4).cells:
        found = re.search(r"slot_min=(\d+)", cell.source)
        if cell.cell_type == "code" and found:
            return int(found.group(1))
    raise AssertionError(f"{path.name} has no time budget")


# ----- without a build ---------------------------------------------------------------------------

def test_the_day1_guide_schedules_every_notebook_with_the_plans_minutes():
    guide = (BOOK_DIR / "instructor" / "day1.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d\d:\d\d) \| \[[^\]]+\]\(\.\./notebooks/([^)]+\.ipynb)\) \| (\d+) \|", guide, re.M)
    scheduled = {nb: int(minutes) for _, nb, minutes in rows}
    expected = {p.relative_to(NOTEBOOKS).as_posix(): _slot_minutes(p)
                for p in [NOTEBOOKS / "00-start-here.ipynb", *DAY1]}
    assert scheduled == expected
    clock = [int(h) * 60 + int(m) for h, m in re.findall(r"^\| (\d\d):(\d\d) \|", guide, re.M)]
    minutes = [int(m or 0) for m in re.findall(r"^\| \d\d:\d\d \| [^|]+ \| (\d*) \|", guide, re.M)]
    assert all(b - a == m for a, b, m in zip(clock, clock[1:], minutes)), "each row starts when the last ends"
    # Every notebook has its own section, and every exercise of the day its answer.
    import grading

    for p in DAY1:
        assert f"## {p.stem[:2]} · " in guide, p.stem
    for exercise in (e for e in grading.known_exercises() if e.startswith("day1.")):
        assert f"`{exercise}`" in guide or exercise.split(".")[1] in ("lab1_nodes", "challenge"), exercise
    assert "## When the live system misbehaves" in guide and "cloudmart reset" in guide


GUIDES = sorted((BOOK_DIR / "instructor").glob("day*.md"))


@pytest.mark.parametrize("guide_path", GUIDES, ids=lambda p: p.stem)
def test_every_guide_schedules_its_notebooks_with_their_slots(guide_path):
    guide = guide_path.read_text(encoding="utf-8")
    rows = re.findall(r"^\| \d\d:\d\d \| \[[^\]]+\]\(\.\./notebooks/([^)]+\.ipynb)\) \| (\d+) \|", guide, re.M)
    assert rows
    for notebook, minutes in rows:
        assert _slot_minutes(NOTEBOOKS / notebook) == int(minutes), notebook
    clock = [int(h) * 60 + int(m) for h, m in re.findall(r"^\| (\d\d):(\d\d) \|", guide, re.M)]
    minutes = [int(m or 0) for m in re.findall(r"^\| \d\d:\d\d \| [^|]+ \| (\d*) \|", guide, re.M)]
    assert all(b - a == m for a, b, m in zip(clock, clock[1:], minutes)), "each row starts when the last ends"
    day = guide_path.stem[3:]
    existing = sorted(p.relative_to(NOTEBOOKS).as_posix() for p in NOTEBOOKS.glob(f"day{day}-*/*.ipynb"))
    assert sorted(nb for nb, _ in rows if nb.startswith(f"day{day}-")) == existing, "every notebook of the day"


@pytest.mark.parametrize("guide_path", GUIDES, ids=lambda p: p.stem)
def test_the_guides_name_only_sections_that_exist(guide_path):
    guide = guide_path.read_text(encoding="utf-8")
    day = guide_path.stem[3:]
    headings = {_norm(c.source.splitlines()[0].lstrip("#")) for p in NOTEBOOKS.glob(f"day{day}-*/*.ipynb")
                for c in nbformat.read(p, as_version=4).cells
                if c.cell_type == "markdown" and c.source.startswith("#")}
    named = {_norm(n) for n in re.findall(r"(?<!\*)\*([A-Z][^*]+?)\*(?!\*)", guide)}
    sections = {n for n in named if n.startswith(("Predict", "Measure", "Compare", "Async"))}
    assert sections and sections <= headings, sections - headings


def test_the_learner_mirror_changes_no_code_cell_so_both_editions_share_the_execution_cache():
    from jupyter_cache.cache.main import JupyterCacheBase

    for path in [*DAY1, *sorted((NOTEBOOKS / "day3-security").glob("*.ipynb"))]:
        original = json.loads(path.read_text(encoding="utf-8"))
        learner = learner_notebook(original)
        cache = JupyterCacheBase.__new__(JupyterCacheBase)
        _, a = cache.create_hashed_notebook(nbformat.from_dict(original))
        _, b = cache.create_hashed_notebook(nbformat.from_dict(learner))
        assert a == b, path.name
        tags = [set(c.get("metadata", {}).get("tags", [])) for c in learner["cells"] if c["cell_type"] == "markdown"]
        assert not any(t & {"instructor", "hidden"} for t in tags)


# ----- the built sites ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def instructor_site() -> pathlib.Path:
    result = subprocess.run([sys.executable, str(BOOK_DIR / "build.py"), "--no-live", "--lang", "en",
                             "--edition", "instructor"], cwd=REPO_DIR, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"build failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert json.loads(result.stdout.strip().splitlines()[-1])["edition"] == "instructor"
    return BOOK_DIR / "_build" / "html-instructor" / "en"


def _solution_lines(path: pathlib.Path) -> set[str]:
    return {_norm(ln) for ln in solution_lines(nbformat.read(path, as_version=4)) if len(ln) > 25}


@pytest.mark.slow
def test_the_learner_edition_has_no_solution_no_note_and_no_guide(built_site):
    assert not (built_site / "instructor").exists()
    for path in DAY1:
        page = built_site / "notebooks" / path.relative_to(NOTEBOOKS).with_suffix(".html")
        text = page_text(page)
        leaks = [ln for ln in _solution_lines(path) if ln in text]
        assert not leaks, f"{page.name}: {leaks[:3]}"
        assert INSTRUCTOR_NOTE not in text
        assert "# YOUR CODE HERE" in text, "the exercise is still there, as its stub"
        download = built_site / "_sources" / "notebooks" / path.relative_to(NOTEBOOKS)
        if download.exists():
            nb = nbformat.read(download, as_version=4)
            assert not any("solution" in c.metadata.get("tags", []) for c in nb.cells)
            assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
def test_the_instructor_edition_has_solutions_notes_and_the_guides(instructor_site):
    guide = instructor_site / "instructor" / "day1.html"
    assert guide.is_file() and (instructor_site / "instructor" / "index.html").is_file()
    assert 'href="instructor/index.html"' in (instructor_site / "index.html").read_text()
    for path in DAY1:
        text = page_text(instructor_site / "notebooks" / path.relative_to(NOTEBOOKS).with_suffix(".html"))
        assert any(ln in text for ln in _solution_lines(path)), path.name
        if any("instructor" in c.metadata.get("tags", []) for c in nbformat.read(path, as_version=4).cells):
            assert INSTRUCTOR_NOTE in text, path.name


@pytest.mark.slow
def test_the_guide_renders_offline_in_chromium(instructor_site, chromium, artifacts_dir):
    import functools
    import http.server
    import threading

    from test_site import assert_rendered_offline, load

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(instructor_site))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        result = load(url, chromium, artifacts_dir, "instructor/day1.html", "instructor-day1")
        assert_rendered_offline(result, expected_h1="Day 1 facilitator guide")
        result = load(url, chromium, artifacts_dir, "index.html", "instructor-index")
        assert_rendered_offline(result, expected_h1="CloudMart Course")
    finally:
        server.shutdown()
        server.server_close()
