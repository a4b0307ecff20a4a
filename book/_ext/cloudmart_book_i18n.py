"""The book in two languages: ``/en/`` from the English sources, ``/ko/`` from the same sources and
the catalogues in ``locale/ko/LC_MESSAGES``.

- :func:`prepare_source` writes the Korean source tree (``book/_build/src-ko``): the book's pages as
  they are (Sphinx translates them with ``locale/ko/LC_MESSAGES/<page>.po``), and the notebooks
  with their markdown cells from ``locale/ko/LC_MESSAGES/notebook-cells/`` (the same rendering as
  ``cloudmart student-notebooks --lang ko``). A notebook whose code prints through
  ``course_i18n`` gets a first, hidden cell setting ``COURSE_LANG=ko``: its code differs, so
  jupyter-cache executes it once for Korean; every other notebook has the English code and reuses
  the English execution from the same cache (its outputs are the same in both languages).
- A language switcher at the top of every page links to the same page in the other language.
- The Korean site serves NanumGothic (from the ``koreanize-matplotlib`` wheel) as a web font, so
  Hangul has glyphs in a browser without a Korean system font.
"""

from __future__ import annotations

import html
import json
import os
import pathlib
import shutil
from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

LANGUAGES = {"en": "English", "ko": "한국어"}
LANG_ENV = "CLOUDMART_BOOK_LANG"
HIDDEN_TAG = "remove-cell"
_SKIP = {"_build", "node_modules", "notebooks", "_ext", "_static", "__pycache__", ".ipynb_checkpoints"}
_NOT_MIRRORED = {".ipynb_checkpoints", "__pycache__", ".cloudmart", ".pytest_cache"}


def book_language() -> str:
    """The language this Sphinx run builds (``CLOUDMART_BOOK_LANG``, default ``en``)."""
    value = os.environ.get(LANG_ENV, "en")
    if value not in LANGUAGES:
        raise ValueError(f"{LANG_ENV}={value!r}: valid values are {', '.join(LANGUAGES)}")
    return value


def _write_if_changed(target: pathlib.Path, data: bytes, mtime: float | None = None) -> bool:
    if target.is_file() and target.read_bytes() == data:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    if mtime is not None:
        os.utime(target, (mtime, mtime))
    return True


def _uses_i18n(nb: dict) -> bool:
    return any("course_i18n" in "".join(c.get("source", "")) for c in nb.get("cells", []) if c["cell_type"] == "code")


def _localise(nb: dict, listed_key: str | None, language: str) -> dict:
    import course_i18n as i18n
    from course_i18n.notebooks import language_cell

    out = i18n.translate_notebook(nb, listed_key, language) if listed_key else json.loads(json.dumps(nb))
    if _uses_i18n(out):
        cell = dict(language_cell(language))
        cell["metadata"] = {"tags": [HIDDEN_TAG]}
        cell["id"] = f"course-lang-{language}"
        out["cells"].insert(0, cell)
    return out


def prepare_source(book_dir: pathlib.Path, notebooks_dir: pathlib.Path, target: pathlib.Path,
                   language: str = "ko") -> list[str]:
    """Write the source tree of the ``language`` build into ``target``; return what changed.

    Files are rewritten only when their content changes, so Sphinx's incremental build re-reads
    only what changed."""
    import course_i18n as i18n

    listed = set(i18n.translated_sources()["notebooks"])
    changed, wanted = [], set()
    for path in sorted(book_dir.rglob("*")):
        relative = path.relative_to(book_dir)
        if not path.is_file() or _SKIP.intersection(relative.parts[:1]) or _NOT_MIRRORED.intersection(relative.parts):
            continue
        data = path.read_bytes()
        if path.suffix == ".ipynb":
            data = (json.dumps(_localise(json.loads(data), None, language), indent=1, ensure_ascii=False) + "\n").encode()
        wanted.add(relative)
        if _write_if_changed(target / relative, data):
            changed.append(relative.as_posix())
    for path in sorted(notebooks_dir.rglob("*")):
        relative = pathlib.Path("notebooks") / path.relative_to(notebooks_dir)
        if not path.is_file() or _NOT_MIRRORED.intersection(relative.parts):
            continue
        data = path.read_bytes()
        if path.suffix == ".ipynb":
            from cloudmart_book_editions import edition, learner_notebook

            key = relative.as_posix()
            nb = _localise(json.loads(data), key if key in listed else None, language)
            if edition() == "learner":
                nb = learner_notebook(nb)
            data = (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode()
        wanted.add(relative)
        if _write_if_changed(target / relative, data):
            changed.append(relative.as_posix())
    for path in sorted(target.rglob("*"), reverse=True):
        relative = path.relative_to(target)
        if path.is_file() and relative not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return changed


WEB_FONT_DROPPED_TABLES = ["TSI0", "TSI1", "TSI2", "TSI3", "TSI5", "kern"]


def web_font(source: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """``source`` re-saved for browsers with fontTools: every glyph and code point kept, hinting and
    the VTT source tables (TSI*) dropped. Chrome's font sanitizer rejects the wheel's files as they
    are (the font reports status "error" and Hangul falls back to tofu)."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    options = subset.Options()
    options.hinting = False
    options.drop_tables += WEB_FONT_DROPPED_TABLES
    options.name_IDs = ["*"]
    options.layout_features = ["*"]
    options.notdef_outline = True
    font = TTFont(str(source))
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=font.getBestCmap().keys())
    subsetter.subset(font)
    partial = target.with_suffix(".partial")
    font.save(str(partial))
    partial.replace(target)
    return target


def korean_web_fonts(folder: pathlib.Path) -> pathlib.Path:
    """NanumGothic (regular, bold) from the installed wheel as web fonts in ``folder`` (made once,
    remade when the wheel's file changes); return the folder."""
    import course_i18n as i18n

    folder.mkdir(parents=True, exist_ok=True)
    files = {f.name: f for f in i18n.korean_font_files()}
    for name in ("NanumGothic.ttf", "NanumGothicBold.ttf"):
        if name not in files:
            raise RuntimeError(f"{name} not found: install the course (koreanize-matplotlib ships the Nanum fonts)")
        stamp = folder.parent / f".{folder.name}-{name}.source"
        key = f"{files[name].stat().st_size} {len(WEB_FONT_DROPPED_TABLES)}"
        if not (folder / name).is_file() or not stamp.is_file() or stamp.read_text() != key:
            web_font(files[name], folder / name)
            stamp.write_text(key)
    return folder


def switcher_html(pagename: str, language: str) -> str:
    """Links to this page in every language; the current one is marked."""
    depth = pagename.count("/")
    up = "../" * (depth + 1)
    items = []
    for code, label in LANGUAGES.items():
        if code == language:
            items.append(f'<span class="current" lang="{code}" aria-current="true">{html.escape(label)}</span>')
        else:
            items.append(f'<a lang="{code}" hreflang="{code}" href="{up}{code}/{pagename}.html">{html.escape(label)}</a>')
    return f'<nav class="language-switcher" aria-label="Language">{" · ".join(items)}</nav>'


def add_language_switcher(app, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    """Prepend the switcher to every page's body."""
    if "body" in context:
        context["body"] = switcher_html(pagename, app.config.language or "en") + context["body"]


class GlossaryTerms(SphinxDirective):
    """``{glossary-terms}``: the table of ``locale/glossary.yaml``, English -> Korean on the English
    site (sorted by the English term), Korean -> English on the Korean one (sorted by the Korean)."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        import course_i18n as i18n

        self.env.note_dependency(str(i18n.GLOSSARY_FILE))
        language = self.env.config.language or "en"
        first, second = ("ko", "en") if language == "ko" else ("en", "ko")
        entries = sorted(i18n.glossary(), key=lambda e: e[first].lower())
        table = nodes.table(classes=["glossary-terms"])
        group = nodes.tgroup(cols=2)
        table += group
        for _ in range(2):
            group += nodes.colspec(colwidth=1)
        head = nodes.thead()
        group += head
        body = nodes.tbody()
        group += body

        def row(cells, parent, lang_codes=(None, None)):
            line = nodes.row()
            for text, code in zip(cells, lang_codes):
                entry = nodes.entry()
                paragraph = nodes.paragraph(text=text)
                if code:
                    paragraph["classes"].append(f"lang-{code}")
                entry += paragraph
                line += entry
            parent += line

        row([LANGUAGES[first], LANGUAGES[second]], head)
        for entry in entries:
            row([entry[first], entry[second]], body, (first, second))
        return [table]


def setup(app) -> dict[str, Any]:
    app.add_directive("glossary-terms", GlossaryTerms)
    app.connect("html-page-context", add_language_switcher)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
