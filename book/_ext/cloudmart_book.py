"""Sphinx glue for the CloudMart Course book.

- ``sync_notebooks``: mirrors the repository's ``notebooks/`` into ``book/notebooks/`` (git-ignored)
  before each build, keeping modification times, so that the course notebooks are pages of the
  book, relative links between them resolve, and Sphinx's incremental build still re-reads only
  what changed. (A symbolic link would not do: Sphinx resolves links through it to a path outside
  the book.)
- ``{notebook-toc}`` directive: a toctree of the notebooks that exist right now under a folder
  pattern of ``notebooks/`` (e.g. ``day1-*``), so the table of contents mirrors ``notebooks/``
  without a second list; a day with no notebook yet gets a clearly marked note instead.
- A "JupyterLab (local)" entry in the launch menu of every notebook page, and Binder links that
  open the notebook at its real place in the repository.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.directives.other import TocTree
from sphinx.util.docutils import SphinxDirective

NOTEBOOKS_LINK = "notebooks"  # book/notebooks: the mirror of ../notebooks
_NOT_MIRRORED = {".ipynb_checkpoints", "__pycache__", ".cloudmart", ".pytest_cache"}


def sync_notebooks(source: pathlib.Path, mirror: pathlib.Path) -> list[str]:
    """Make ``mirror`` a copy of ``source`` (files with their mtimes); return what was copied.

    In the learner edition a notebook's mirror is its learner version
    (``cloudmart_book_editions.mirror_bytes``), one second newer than the notebook, so that a
    Sphinx environment of either edition re-reads it when the edition changes."""
    import os

    from cloudmart_book_editions import edition, mirror_bytes

    shift = 1 if edition() == "learner" else 0
    copied = []
    wanted = set()
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if _NOT_MIRRORED.intersection(relative.parts) or not path.is_file():
            continue
        wanted.add(relative)
        target = mirror / relative
        stat = path.stat()
        shifted = shift if path.suffix == ".ipynb" else 0
        if target.is_file():
            mine = target.stat()
            if int(mine.st_mtime) == int(stat.st_mtime) + shifted and (shifted or mine.st_size == stat.st_size):
                continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if shifted:
            target.write_bytes(mirror_bytes(path, path.read_bytes()))
            os.utime(target, (stat.st_atime, int(stat.st_mtime) + shifted))
        else:
            shutil.copy2(path, target)
        copied.append(relative.as_posix())
    if mirror.is_dir():
        for path in sorted(mirror.rglob("*"), reverse=True):
            relative = path.relative_to(mirror)
            if path.is_file() and relative not in wanted:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return copied
_LIVE_CODE = re.compile(r"^\s*(from\s+cluster\b|import\s+cluster\b)", re.MULTILINE)


def find_notebooks(book_dir: pathlib.Path, folder_pattern: str) -> list[pathlib.Path]:
    """Notebooks under ``book_dir/notebooks/<folder_pattern>``, sorted, checkpoints left out."""
    root = book_dir / NOTEBOOKS_LINK
    found = []
    for path in sorted(root.glob(f"{folder_pattern}/**/*.ipynb") if folder_pattern else root.glob("*.ipynb")):
        if ".ipynb_checkpoints" not in path.parts:
            found.append(path)
    return found


def is_live_notebook(path: pathlib.Path) -> bool:
    """True when a notebook's code drives a running CloudMart (imports ``cluster``)."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return any(
        _LIVE_CODE.search("".join(cell.get("source", "")))
        for cell in notebook.get("cells", [])
        if cell.get("cell_type") == "code"
    )


def live_notebook_patterns(notebooks_dir: pathlib.Path) -> list[str]:
    """Glob patterns (relative to the book) of the notebooks that need a live CloudMart."""
    return [
        f"{NOTEBOOKS_LINK}/{path.relative_to(notebooks_dir).as_posix()}"
        for path in sorted(notebooks_dir.glob("**/*.ipynb"))
        if ".ipynb_checkpoints" not in path.parts and is_live_notebook(path)
    ]


class NotebookToc(SphinxDirective):
    """``{notebook-toc} day2-*``: toctree of the notebooks in the matching folders of notebooks/.

    Option ``:coming:`` gives the text shown while no notebook exists there yet.
    """

    required_arguments = 0
    optional_arguments = 1
    option_spec = {"coming": directives.unchanged, "caption": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        book_dir = pathlib.Path(self.env.srcdir)
        pattern = self.arguments[0] if self.arguments else ""
        notebooks_dir = book_dir / NOTEBOOKS_LINK
        # Re-read this page when notebooks appear or disappear.
        self.env.note_dependency(str(notebooks_dir.resolve()))
        for folder in sorted(notebooks_dir.glob(pattern)) if pattern else []:
            if folder.is_dir():
                self.env.note_dependency(str(folder.resolve()))
        found = find_notebooks(book_dir, pattern)
        if not found:
            note = nodes.admonition(classes=["note", "coming-soon"])
            note += nodes.title(text="Coming soon")
            text = self.options.get("coming", "The notebooks of this part are being written.")
            inline, messages = self.state.inline_text(text, self.lineno)
            note += nodes.paragraph("", "", *inline)
            return [note, *messages]
        entries = ["/" + path.relative_to(book_dir).with_suffix("").as_posix() for path in found]
        toctree = TocTree(
            name="toctree",
            arguments=[],
            options={"maxdepth": 1, **({"caption": self.options["caption"]} if "caption" in self.options else {})},
            content=entries,
            lineno=self.lineno,
            content_offset=self.content_offset,
            block_text=self.block_text,
            state=self.state,
            state_machine=self.state_machine,
        )
        return toctree.run()


def add_local_jupyterlab_button(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    """Put "JupyterLab (local)" first in the launch menu; point Binder at notebooks/ itself."""
    prefix = f"{NOTEBOOKS_LINK}/"
    if not pagename.startswith(prefix):
        return
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group["buttons"]:
            if button.get("text") == "Binder":
                button["url"] = button["url"].replace(f"/book/{prefix}", f"/{prefix}")
        relative = pagename[len(prefix):] + ".ipynb"
        group["buttons"].insert(
            0,
            {
                "type": "link",
                "text": "JupyterLab (local)",
                "tooltip": "Open in your own JupyterLab (started by `make lab`)",
                "icon": "fas fa-laptop-code",
                "url": f"{app.config.cloudmart_local_jupyterlab_url.rstrip('/')}/{relative}",
            },
        )


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directive, the config value and the launch-button hook."""
    app.add_config_value("cloudmart_local_jupyterlab_url", "http://localhost:8888/lab/tree", "html")
    app.add_directive("notebook-toc", NotebookToc)
    # Notebook code cells run in IPython (`!cmd`, `%magic`); a notebook saved before its first run
    # says only "python" as its language, so highlight "python" with the IPython lexer (a superset).
    from IPython.lib.lexers import IPython3Lexer

    app.add_lexer("python", IPython3Lexer)
    # After sphinx-book-theme has built its launch buttons (priority 501).
    app.connect("html-page-context", add_local_jupyterlab_button, priority=502)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
