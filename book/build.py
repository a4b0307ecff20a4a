"""Build the CloudMart Course book site: `python book/build.py` (what `make book` runs).

1. Install the offline browser assets (MathJax, Mermaid, RequireJS, Jupyter widgets HTML manager)
   with `npm ci` from book/package-lock.json into book/_build/npm — only when the lock changed —
   and copy the files the site serves into book/_build/assets.
2. If a notebook that drives a live CloudMart has no cached execution yet, start CloudMart
   (`cloudmart up`) for the build and stop it afterwards (only if this build started it). With
   `--no-live`, or when the `cluster` package cannot run CloudMart, those notebooks keep their
   stored outputs.
3. Run `sphinx-build -W --keep-going -n` into book/_build/html/en (warnings fail the build), then
   the Korean site into book/_build/html/ko: the source tree book/_build/src-ko (pages as they are,
   notebooks with their markdown from locale/ko; book/_ext/cloudmart_book_i18n.py) translated by
   Sphinx with locale/ko/LC_MESSAGES/<page>.po, the same configuration and the same execution
   cache (only notebooks that print through course_i18n execute again, once, in Korean).
   book/_build/html/index.html sends a reader to /en/. `--lang en` builds English only.
4. `--edition learner` (the default, `make book`): solutions shown as the learners' stubs,
   instructor notes left out, downloads are the student notebooks; `--edition instructor`
   (`make book-instructor`) into book/_build/html-instructor: every solution, the instructor notes
   and the facilitator guides of book/instructor/ (book/_ext/cloudmart_book_editions.py).

Prints one JSON line at the end: build seconds and what was executed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

BOOK_DIR = pathlib.Path(__file__).resolve().parent
REPO_DIR = BOOK_DIR.parent
BUILD_DIR = BOOK_DIR / "_build"
NPM_DIR = BUILD_DIR / "npm"
ASSETS_DIR = BUILD_DIR / "assets"
HTML_DIR = BUILD_DIR / "html"
LANGUAGES = ("en", "ko")
CACHE_DIR = BUILD_DIR / ".jupyter_cache"

sys.path.insert(0, str(BOOK_DIR / "_ext"))
from cloudmart_book import live_notebook_patterns  # noqa: E402
from cloudmart_book_editions import EDITION_ENV, EDITIONS, learner_sources  # noqa: E402
from cloudmart_book_i18n import LANG_ENV, LANGUAGES as LANGUAGE_NAMES, prepare_source  # noqa: E402

# (package folder in node_modules, file or folder inside it, destination under assets/)
ASSET_COPIES = [
    ("mathjax", "es5", "mathjax"),
    ("mermaid", "dist/mermaid.esm.min.mjs", "mermaid/mermaid.esm.min.mjs"),
    ("mermaid", "dist/chunks/mermaid.esm.min", "mermaid/chunks/mermaid.esm.min"),
    ("requirejs", "require.js", "widgets/require.js"),
    ("@jupyter-widgets/html-manager", "dist", "widgets"),
]


def _lock_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((BOOK_DIR / name).read_bytes())
    return digest.hexdigest()


def install_assets() -> bool:
    """npm ci the pinned packages (if the lock changed) and copy the served files; True if npm ran."""
    stamp = ASSETS_DIR / ".lock-sha256"
    digest = _lock_digest()
    if stamp.is_file() and stamp.read_text() == digest:
        return False
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("error: npm not found; the book needs Node.js 20+ and npm to install its offline assets")
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(BOOK_DIR / name, NPM_DIR / name)
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
        cwd=NPM_DIR,
        check=True,
    )
    shutil.rmtree(ASSETS_DIR, ignore_errors=True)
    for package, inner, destination in ASSET_COPIES:
        source = NPM_DIR / "node_modules" / package / inner
        target = ASSETS_DIR / destination
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.map", "*.d.ts"), dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    stamp.write_text(digest)
    return True


def uncached_live_notebooks() -> list[str]:
    """Live notebooks (they import `cluster`) that jupyter-cache has no execution of yet."""
    import nbformat
    from jupyter_cache import get_cache

    patterns = live_notebook_patterns(REPO_DIR / "notebooks")  # relative paths "notebooks/…"
    if not patterns:
        return []
    cache = get_cache(str(CACHE_DIR))
    missing = []
    for relative in patterns:
        notebook = nbformat.read(REPO_DIR / relative, as_version=4)
        try:
            cache.match_cache_notebook(notebook)
        except KeyError:
            missing.append(relative)
    return missing


def cloudmart_running(env: dict[str, str]) -> bool:
    """True when `cloudmart status --json` reports a running local CloudMart."""
    result = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "status", "--json"], cwd=REPO_DIR, env=env, capture_output=True, text=True
    )
    try:
        status = json.loads(result.stdout)
    except json.JSONDecodeError:
        return False
    return isinstance(status, dict) and status.get("up") is True


def cloudmart_available() -> bool:
    """True when the `cluster` package provides the `cloudmart` CLI."""
    try:
        import cluster.cli  # noqa: F401
    except ImportError:
        return False
    return True



WIDGET_FONT_SUFFIXES = (".woff2", ".woff", ".ttf", ".eot", ".svg")


def widget_fonts_beside_pages(site_dir: pathlib.Path) -> list[pathlib.Path]:
    """Copy the widget manager's fonts to `@jupyter-widgets/` beside every page that embeds widgets.

    The html-manager bundle's CSS asks for its icon fonts at `@jupyter-widgets/<hash>.<ext>`
    relative to the page, not to the script, so a notebook page in `notebooks/<day>/` would get a
    404 for each font as soon as a widget draws an icon. Returns the folders written."""
    source = site_dir / "_static" / "widgets"
    fonts = [f for f in source.iterdir() if f.suffix in WIDGET_FONT_SUFFIXES] if source.is_dir() else []
    written = []
    for folder in sorted({page.parent for page in site_dir.rglob("*.html")
                          if "embed-amd.js" in page.read_text(errors="ignore")}):
        target = folder / "@jupyter-widgets"
        target.mkdir(exist_ok=True)
        for font in fonts:
            shutil.copy2(font, target / font.name)
        written.append(target)
    return written

def edition_html_dir(edition: str) -> pathlib.Path:
    """Where an edition's site goes: html/ (learner) or html-instructor/."""
    return HTML_DIR if edition == "learner" else BUILD_DIR / f"html-{edition}"


def sphinx_build(env: dict[str, str], language: str = "en", html_dir: pathlib.Path = HTML_DIR) -> None:
    """The warning-free HTML build of one language (-W --keep-going -n) into html/<language>;
    raises CalledProcessError on a warning."""
    site_dir = html_dir / language
    source = BOOK_DIR
    env = dict(env, **{LANG_ENV: language})
    if language != "en":
        source = BUILD_DIR / f"src-{language}"
        prepare_source(BOOK_DIR, REPO_DIR / "notebooks", source, language)
    try:
        subprocess.run(
            [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", "-c", str(BOOK_DIR),
             str(source), str(site_dir)],
            cwd=REPO_DIR,
            env=env,
            check=True,
        )
        widget_fonts_beside_pages(site_dir)
        if env.get(EDITION_ENV, "learner") == "learner":
            learner_sources(site_dir, (source / "notebooks") if language != "en" else REPO_DIR / "notebooks")
    except subprocess.CalledProcessError:
        # Sphinx saved its environment anyway; an incremental rebuild would not re-read the pages
        # that warned and would pass silently. Forget it (the execution cache stays).
        shutil.rmtree(site_dir / ".doctrees", ignore_errors=True)
        raise


def write_language_index(html_dir: pathlib.Path = HTML_DIR) -> pathlib.Path:
    """html/index.html: sends a reader to the English site and links every language."""
    links = " · ".join(f'<a href="{code}/index.html" hreflang="{code}">{name}</a>' for code, name in LANGUAGE_NAMES.items())
    page = html_dir / "index.html"
    page.write_text(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>CloudMart Course</title>'
        '<meta http-equiv="refresh" content="0; url=en/index.html"></head>'
        f"<body><p>{links}</p></body></html>\n",
        encoding="utf-8",
    )
    return page


def main(argv: list[str] | None = None) -> int:
    """Build the site; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-live", action="store_true", help="keep stored outputs of notebooks that need a live CloudMart")
    parser.add_argument("--clean", action="store_true", help="remove the HTML output and the execution cache first")
    parser.add_argument("--lang", default=",".join(LANGUAGES),
                        help=f"languages to build, comma-separated (default: {','.join(LANGUAGES)})")
    parser.add_argument("--edition", default="learner", choices=EDITIONS,
                        help="learner (default: no solutions, no instructor notes) or instructor "
                             "(solutions, notes, facilitator guides) into book/_build/html-instructor")
    args = parser.parse_args(argv)
    html_dir = edition_html_dir(args.edition)
    languages = [code.strip() for code in args.lang.split(",") if code.strip()]
    if not languages or set(languages) - set(LANGUAGES):
        parser.error(f"--lang {args.lang!r}: valid languages are {', '.join(LANGUAGES)}")

    started = time.perf_counter()
    if args.clean:
        shutil.rmtree(html_dir, ignore_errors=True)
        shutil.rmtree(HTML_DIR, ignore_errors=True)
        shutil.rmtree(HTML_DIR / ".doctrees", ignore_errors=True)
        shutil.rmtree(BUILD_DIR / "jupyter_execute", ignore_errors=True)
        shutil.rmtree(CACHE_DIR, ignore_errors=True)
        shutil.rmtree(BUILD_DIR / "src-ko", ignore_errors=True)
    npm_ran = install_assets()
    if (HTML_DIR / ".buildinfo").is_file():  # a site of the one-language layout: html/ itself
        shutil.rmtree(HTML_DIR)

    env = dict(os.environ, **{EDITION_ENV: args.edition})
    # One CloudMart for this build and the notebooks' kernels, which run in their own folders.
    env.setdefault("CLOUDMART_STATE_DIR", str(REPO_DIR / ".cloudmart"))
    started_cloudmart = False
    to_execute_live = [] if args.no_live else uncached_live_notebooks()
    if args.no_live:
        env["CLOUDMART_BOOK_LIVE"] = "0"
    elif to_execute_live:
        if not cloudmart_available():
            print(
                f"note: {len(to_execute_live)} live notebook(s) keep their stored outputs: "
                "the cluster package cannot run CloudMart yet",
                file=sys.stderr,
            )
            env["CLOUDMART_BOOK_LIVE"] = "0"
            to_execute_live = []
        elif not cloudmart_running(env):
            subprocess.run([sys.executable, "-m", "cluster.cli", "up"], cwd=REPO_DIR, env=env, check=True)
            started_cloudmart = True
    seconds = {}
    try:
        for language in languages:
            began = time.perf_counter()
            sphinx_build(env, language, html_dir)
            seconds[language] = round(time.perf_counter() - began, 2)
        write_language_index(html_dir)
    finally:
        if started_cloudmart:
            subprocess.run([sys.executable, "-m", "cluster.cli", "down"], cwd=REPO_DIR, env=env, check=False)
    print(
        json.dumps(
            {
                "book_build_s": round(time.perf_counter() - started, 2),
                "npm_ci": npm_ran,
                "sphinx_s": seconds,
                "live_notebooks_executed": to_execute_live,
                "edition": args.edition,
                "html": str(html_dir.relative_to(REPO_DIR)),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
