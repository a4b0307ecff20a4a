"""Sphinx configuration of the CloudMart Course book (MyST-NB + sphinx-book-theme).

Build it with `make book` (which runs `book/build.py`): the site lands in `book/_build/html/`.
Pages are MyST markdown; every notebook under `notebooks/` becomes a page with its executed outputs
(`notebooks/` is mirrored into `book/notebooks/`, git-ignored, at the start of every build). Execution is cached with jupyter-cache in
`book/_build/.jupyter_cache`, so a rebuild re-executes only the notebooks whose code changed.

The site is served offline: MathJax, Mermaid, RequireJS and the Jupyter widgets HTML manager come
from the npm packages pinned in `book/package.json`, copied into `book/_build/assets` by
`book/build.py` and published under `_static/`.
"""

import os
import pathlib
import sys

BOOK_DIR = pathlib.Path(__file__).resolve().parent
ASSETS_DIR = BOOK_DIR / "_build" / "assets"
sys.path.insert(0, str(BOOK_DIR / "_ext"))

from cloudmart_book import live_notebook_patterns, sync_notebooks  # noqa: E402
from cloudmart_book_editions import edition  # noqa: E402
from cloudmart_book_i18n import book_language, korean_web_fonts  # noqa: E402

# CLOUDMART_BOOK_LANG=ko (book/build.py): the Korean site, from the source tree build.py prepared
# in book/_build/src-ko with this folder as the configuration directory (-c book).
BOOK_LANG = book_language()
if BOOK_LANG == "en":
    sync_notebooks(BOOK_DIR.parent / "notebooks", BOOK_DIR / "notebooks")

project = "CloudMart Course"
author = "CloudMart Course authors"
copyright = "2026, CloudMart Course authors"
release = "0.1.0"

extensions = [
    "myst_nb",
    "sphinx_book_theme",
    "sphinxcontrib.mermaid",
    "cloudmart_book",
    "cloudmart_book_i18n",
    "cloudmart_book_editions",
]

# --- languages: English is the source; translations in locale/<lang>/LC_MESSAGES/<page>.po ----
language = BOOK_LANG
locale_dirs = [str(BOOK_DIR.parent / "locale")]
gettext_compact = False
gettext_uuid = False
gettext_location = False

root_doc = "index"
exclude_patterns = [
    "_build",
    "node_modules",
    "package.json",
    "package-lock.json",
    "README.md",
    "**/.ipynb_checkpoints",
    # Only notebooks are pages under notebooks/; data files and notes beside them are not.
    "notebooks/**.md",
    "notebooks/*.md",
    "notebooks/**/student/**",
]
# The facilitator guides are part of the instructor edition only (book/_ext/cloudmart_book_editions.py).
BOOK_EDITION = edition()
if BOOK_EDITION == "learner":
    exclude_patterns.append("instructor/**")
nitpicky = True

# --- MyST -----------------------------------------------------------------------------------
myst_enable_extensions = ["amsmath", "colon_fence", "deflist", "dollarmath", "substitution"]
myst_heading_anchors = 3
myst_fence_as_directive = ["mermaid"]

# --- notebook execution (cached) -----------------------------------------------------------
nb_execution_mode = os.environ.get("CLOUDMART_BOOK_EXECUTION", "cache")
nb_execution_cache_path = str(BOOK_DIR / "_build" / ".jupyter_cache")
nb_execution_timeout = 600
nb_execution_raise_on_error = False  # a failing notebook is a warning: -W fails the build at the end
nb_execution_show_tb = True
# CLOUDMART_BOOK_LIVE=0: notebooks that drive a live CloudMart keep their stored outputs (the
# ones nbval checks) instead of being executed; book/build.py sets it when no CloudMart can run.
nb_execution_excludepatterns = (
    live_notebook_patterns(BOOK_DIR / "notebooks") if os.environ.get("CLOUDMART_BOOK_LIVE") == "0" else []
)
nb_merge_streams = True

# --- offline assets --------------------------------------------------------------------------
if not (ASSETS_DIR / "mathjax" / "tex-mml-chtml.js").is_file():
    raise RuntimeError(
        f"offline browser assets missing in {ASSETS_DIR}: build the book with `make book` "
        "(it installs them from book/package.json with npm ci)"
    )
html_static_path = ["_static", str(ASSETS_DIR)]
mathjax_path = "mathjax/tex-mml-chtml.js"
mermaid_use_local = "mermaid/mermaid.esm.min.mjs"
mermaid_d3_zoom = False
# The HTML manager bundles ipywidgets' own widgets (base, controls, output), the only ones used.
nb_ipywidgets_js = {
    "widgets/require.js": {},
    "widgets-setup.js": {},
    "widgets/embed-amd.js": {},
}

# --- HTML theme ------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = {"en": "CloudMart Course", "ko": "CloudMart 코스"}[BOOK_LANG]
html_favicon = "_static/favicon.svg"
html_last_updated_fmt = None
html_css_files = ["cloudmart.css", "language-switcher.css"]
if BOOK_LANG == "ko":
    # Hangul glyphs for browsers without a Korean system font: NanumGothic as a web font.
    html_static_path.append(str(korean_web_fonts(BOOK_DIR / "_build" / "fonts-ko")))
    html_css_files.append("cloudmart-ko.css")
html_theme_options = {
    "repository_url": "https://github.com/cloudmart-course/cloudmart-course",
    "repository_branch": "main",
    "path_to_docs": "book",
    "use_repository_button": True,
    "use_download_button": True,
    "use_fullscreen_button": True,
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "launch_buttons": {
        "binderhub_url": "https://mybinder.org",
        "notebook_interface": "jupyterlab",
    },
}
# cloudmart_book adds a "JupyterLab (local)" launch button pointing here (`make lab` serves notebooks/).
cloudmart_local_jupyterlab_url = "http://localhost:8888/lab/tree"
