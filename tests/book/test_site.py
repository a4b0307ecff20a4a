"""The book site as a reader sees it: built offline, served on 127.0.0.1, loaded in headless Chromium.

Screenshots of every visited page are saved to test-artifacts/book/.
"""

from __future__ import annotations

import asyncio
import html.parser
import pathlib
import re
import sys
from urllib.parse import urlsplit

import nbformat
import pytest
from ci_env import skip_or_fail

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from book_browser import visit  # noqa: E402

REPO_DIR = pathlib.Path(__file__).resolve().parents[2]
BOOK_DIR = REPO_DIR / "book"
NOTEBOOKS_DIR = REPO_DIR / "notebooks"
SITE_TITLE = "CloudMart Course"
# The session's first test builds the site (minutes cold, seconds when up to date): allow for it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
DAYS = [1, 2, 3, 4, 5]

sys.path.insert(0, str(BOOK_DIR / "_ext"))
from cloudmart_book import is_live_notebook  # noqa: E402


def day_notebooks(day: int) -> list[pathlib.Path]:
    """The notebooks of one day that exist now (e.g. notebooks/day1-*/…ipynb)."""
    return sorted(p for p in NOTEBOOKS_DIR.glob(f"day{day}-*/**/*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def page_of(notebook: pathlib.Path) -> str:
    """Site-relative URL of a notebook's page."""
    return "notebooks/" + notebook.relative_to(NOTEBOOKS_DIR).with_suffix(".html").as_posix()


def is_local(url: str) -> bool:
    """True for URLs that do not leave the machine: 127.0.0.1/localhost, data:, blob:, about:."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws") and parts.hostname in ("127.0.0.1", "localhost")


def load(site_url: str, chromium, artifacts_dir: pathlib.Path, page: str, name: str, ready_js: str = "true"):
    """Visit one page of the site and return what it showed."""
    return asyncio.run(visit(chromium.ws_url, site_url + page, artifacts_dir / f"{name}.png", ready_js=ready_js))


def assert_rendered_offline(result, expected_h1: str | None = None) -> None:
    """Checks every page must pass: title, only local requests, everything rendered, no JS error."""
    facts = result.facts
    outside = [url for url in result.requests if not is_local(url)]
    assert not outside, f"{result.url} requested URLs outside 127.0.0.1: {outside}"
    assert result.requests and result.requests[0] == result.url
    assert not result.failed, f"requests that failed on {result.url}: {result.failed}"
    assert facts["title"].endswith(SITE_TITLE), facts["title"]
    if expected_h1 is not None:
        assert expected_h1 in facts["h1"], facts
        assert facts["title"].startswith(expected_h1), facts["title"]
    assert facts["nonBlankImages"] == facts["images"], f"blank or broken output image on {result.url}: {facts}"
    assert facts["widgetsRendered"] >= facts["widgetViews"], f"widget not rendered on {result.url}: {facts}"
    assert facts["mathRendered"] >= facts["mathSources"], f"math not typeset on {result.url}: {facts}"
    assert not facts["rawTex"], f"raw TeX visible on {result.url}"
    assert facts["mermaidSvgs"] >= facts["mermaidBlocks"], f"Mermaid diagram not drawn on {result.url}: {facts}"
    assert facts["settled"], facts
    assert not result.console_errors, f"JavaScript errors on {result.url}: {result.console_errors}"
    assert result.screenshot is not None and result.screenshot.stat().st_size > 10_000


def test_landing_page(site_url, chromium, artifacts_dir):
    result = load(site_url, chromium, artifacts_dir, "index.html", "landing")
    assert_rendered_offline(result, expected_h1="CloudMart Course")
    assert result.facts["title"] == SITE_TITLE or result.facts["title"].startswith(SITE_TITLE)
    # Loaded the theme's own CSS and JS from the site itself.
    assert any(url.endswith(".css") or ".css?" in url for url in result.requests)
    assert any("/_static/" in url and ".js" in url for url in result.requests)


def test_example_notebook_renders_plot_widget_and_math(site_url, chromium, artifacts_dir):
    result = load(site_url, chromium, artifacts_dir, "how-to-read.html", "how-to-read")
    assert_rendered_offline(result, expected_h1="How to read this book")
    facts = result.facts
    assert facts["images"] >= 1 and facts["nonBlankImages"] >= 1, facts
    assert facts["widgetViews"] >= 1 and facts["widgetsRendered"] >= 1 and facts["sliders"] >= 1, facts
    assert facts["mathSources"] >= 3 and facts["mathRendered"] >= 3, facts
    # The widget and MathJax code came from the site, not from a CDN.
    assert any("/_static/widgets/embed-amd.js" in url for url in result.requests)
    assert any("/_static/mathjax/" in url for url in result.requests)


def test_architecture_page_draws_mermaid_offline(site_url, chromium, artifacts_dir):
    result = load(site_url, chromium, artifacts_dir, "architecture.html", "architecture")
    assert_rendered_offline(result, expected_h1="CloudMart architecture")
    assert result.facts["mermaidBlocks"] == 2 and result.facts["mermaidSvgs"] == 2, result.facts
    assert any("/_static/mermaid/" in url for url in result.requests)


def test_glossary_typesets_its_formulas(site_url, chromium, artifacts_dir):
    result = load(site_url, chromium, artifacts_dir, "glossary.html", "glossary")
    assert_rendered_offline(result, expected_h1="Glossary")
    assert result.facts["mathRendered"] >= 4, result.facts


def test_search_works_offline(site_url, chromium, artifacts_dir):
    # Sphinx's search appends results one by one, then says "Search finished, found N pages …".
    finished_js = "(document.querySelector('#search-results .search-summary') || {}).textContent || ''"
    results_js = "[...document.querySelectorAll('#search-results li a')].map((a) => a.textContent)"
    result = load(
        site_url, chromium, artifacts_dir, "search.html?q=saga", "search",
        ready_js=f"({finished_js}).includes('Search finished') && {results_js}",
    )
    assert_rendered_offline(result)
    assert result.facts["title"] == f"Search - {SITE_TITLE}"
    titles = result.facts["ready"]
    assert titles, "search for 'saga' found nothing"
    assert any("Glossary" in title for title in titles) and any("architecture" in title for title in titles), titles


@pytest.mark.parametrize("day", DAYS)
def test_one_page_per_day(site_url, chromium, artifacts_dir, day):
    """Day N: its first notebook page if the day has notebooks, else its clearly marked placeholder."""
    notebooks = day_notebooks(day)
    if notebooks:
        result = load(site_url, chromium, artifacts_dir, page_of(notebooks[0]), f"day{day}")
        assert_rendered_offline(result)
        title = nbformat.read(notebooks[0], as_version=4)
        assert result.facts["h1"], f"notebook page without a heading: {notebooks[0]}"
        assert any(cell.cell_type == "code" for cell in title.cells)
    else:
        result = load(site_url, chromium, artifacts_dir, f"days/day{day}.html", f"day{day}")
        assert_rendered_offline(result, expected_h1=f"Day {day}")
        assert result.facts["comingSoon"] >= 1, "a day without notebooks must say they are coming"


def test_day1_notebooks_show_a_plot_and_a_widget(site_url, chromium, artifacts_dir):
    """Across Day 1's notebook pages, at least one plot and one widget render from saved state."""
    notebooks = day_notebooks(1)
    if not notebooks:
        skip_or_fail("no Day 1 notebook in notebooks/ yet")
    images = widgets = 0
    for index, notebook in enumerate(notebooks):
        result = load(site_url, chromium, artifacts_dir, page_of(notebook), f"day1-{index:02d}-{notebook.stem}")
        assert_rendered_offline(result)
        images += result.facts["nonBlankImages"]
        widgets += result.facts["widgetsRendered"]
    assert images >= 1, "no Day 1 notebook page shows a plot"
    assert widgets >= 1, "no Day 1 notebook page shows a widget (notebooks must be saved with widget state)"


class _ResourceCollector(html.parser.HTMLParser):
    """Every URL a browser would fetch on its own when rendering the page (not plain links)."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False
        self.inline_scripts: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed") and attributes.get("src"):
            self.urls.append(attributes["src"])
        if tag == "link" and attributes.get("href"):
            rel = (attributes.get("rel") or "").lower()
            if any(kind in rel for kind in ("stylesheet", "preload", "modulepreload", "icon", "prefetch", "preconnect")):
                self.urls.append(attributes["href"])
        if tag == "script" and not attributes.get("src"):
            self._in_script = True

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.inline_scripts.append(data)


def test_built_html_references_no_remote_resource(built_site):
    offenders = []
    pages = sorted(built_site.rglob("*.html"))
    assert len(pages) >= 10
    for page in pages:
        collector = _ResourceCollector()
        collector.feed(page.read_text(encoding="utf-8"))
        offenders += [(page.name, url) for url in collector.urls if re.match(r"^(https?:)?//", url)]
        for script in collector.inline_scripts:
            offenders += [(page.name, m) for m in re.findall(r"""(?:import|from)\s*\(?\s*["'](?:https?:)?//[^"']+""", script)]
    for css in sorted((built_site / "_static").rglob("*.css")):
        offenders += [(css.name, m) for m in re.findall(r"""url\(\s*["']?(?:https?:)?//[^)]+\)|@import\s+["']?(?:https?:)?//[^;]+""", css.read_text(errors="replace"))]
    assert not offenders, offenders


def test_every_notebook_is_a_page_linked_from_its_day(built_site):
    for day in DAYS:
        day_page = (built_site / "days" / f"day{day}.html").read_text(encoding="utf-8")
        for notebook in day_notebooks(day):
            assert (built_site / page_of(notebook)).is_file(), notebook
            assert page_of(notebook).split("/", 1)[1] in day_page, f"{notebook.name} missing from the Day {day} page"
        if not day_notebooks(day):
            assert "coming-soon" in day_page
    toc = (built_site / "index.html").read_text(encoding="utf-8")
    for link in ("how-to-read.html", "architecture.html", "glossary.html", *(f"days/day{d}.html" for d in DAYS)):
        assert f'href="{link}' in toc, link


def test_notebook_pages_have_launch_buttons(built_site):
    example = (built_site / "how-to-read.html").read_text(encoding="utf-8")
    assert "https://mybinder.org/v2/gh/cloudmart-course/cloudmart-course/main?urlpath=lab/tree/book/how-to-read.ipynb" in example
    course = sorted(p for p in NOTEBOOKS_DIR.glob("**/*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not course:
        skip_or_fail("no notebook in notebooks/ yet")
    page = (built_site / page_of(course[0])).read_text(encoding="utf-8")
    relative = course[0].relative_to(NOTEBOOKS_DIR).as_posix()
    assert f"http://localhost:8888/lab/tree/{relative}" in page
    assert f"mybinder.org/v2/gh/cloudmart-course/cloudmart-course/main?urlpath=lab/tree/notebooks/{relative}" in page


def test_executed_notebooks_are_cached(built_site):
    """Every notebook the build executed has a jupyter-cache record: a rebuild will not run it again."""
    from jupyter_cache import get_cache

    cache = get_cache(str(BOOK_DIR / "_build" / ".jupyter_cache"))
    executed = [BOOK_DIR / "how-to-read.ipynb"] + [
        p for p in NOTEBOOKS_DIR.glob("**/*.ipynb") if ".ipynb_checkpoints" not in p.parts and not is_live_notebook(p)
    ]
    for notebook in executed:
        record = cache.match_cache_notebook(nbformat.read(notebook, as_version=4))
        assert record.uri.endswith(notebook.name)


def test_changing_a_notebooks_code_invalidates_only_its_cache_entry(built_site):
    """The cache is keyed on code: an edited notebook misses (re-executes), an unchanged one hits."""
    from jupyter_cache import get_cache

    cache = get_cache(str(BOOK_DIR / "_build" / ".jupyter_cache"))
    notebook = nbformat.read(BOOK_DIR / "how-to-read.ipynb", as_version=4)
    assert cache.match_cache_notebook(notebook).uri.endswith("how-to-read.ipynb")
    # Outputs and markdown are not part of the key: a re-saved notebook still hits the cache.
    prose_edit = nbformat.from_dict(notebook)
    prose_edit.cells[0].source += "\n\nOne more sentence."
    for cell in prose_edit.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    assert cache.match_cache_notebook(prose_edit).uri.endswith("how-to-read.ipynb")
    code_edit = nbformat.from_dict(notebook)
    next(cell for cell in code_edit.cells if cell.cell_type == "code").source += "\nSERVICE_RATE_PER_S = 50.0"
    with pytest.raises(KeyError):
        cache.match_cache_notebook(code_edit)
