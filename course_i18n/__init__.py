"""The course in two languages: English is the source, Korean comes from gettext catalogues.

- :func:`t` translates a string a learner sees in a code cell (plot titles and labels, printed
  findings, grader feedback and hints, banners)::

      from course_i18n import t
      ax.set_title(t("act-stage model within {gap:.0%} of the measured makespan", gap=gap))

  The English text is the message id; ``{name}`` fields are filled with :meth:`str.format` after
  translation, so a translation may reorder them. The catalogue is
  ``locale/<lang>/LC_MESSAGES/strings.po``.
- :func:`lang` is the language in force: ``COURSE_LANG`` (``en`` or ``ko``), else the locale
  (``LC_ALL``, ``LC_MESSAGES``, ``LANG`` starting with ``ko``), else English.
- :func:`translate_notebook` replaces a notebook's markdown cells with their translations from
  ``locale/<lang>/LC_MESSAGES/notebook-cells/<path>.po``, where each entry is keyed by the cell id and a
  hash of the English source (``msgctxt "<cell id> <sha256[:16]>"``), so an entry whose English
  changed no longer matches and reads as stale.
- :func:`use_korean_fonts` registers the Nanum fonts shipped in the ``koreanize-matplotlib``
  wheel with matplotlib (no download, no import of that package, which needs setuptools on
  Python >= 3.12), so Hangul in plots is drawn with real glyphs; :func:`t` calls it the first
  time it returns Korean.

Nothing is machine-translated: a string without a (non-fuzzy) translation stays English, and the
completeness test (``tests/i18n``) fails for it.
"""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Iterable

__all__ = [
    "LANGS",
    "LOCALE_DIR",
    "MessageState",
    "N_",
    "cell_key",
    "extract_strings",
    "glossary",
    "glossary_violations",
    "lang",
    "markdown_states",
    "notebook_catalogue_path",
    "read_catalogue",
    "t",
    "translate_notebook",
    "translated_sources",
    "use_korean_fonts",
]

LANGS = ("en", "ko")
SOURCE_LANG = "en"
LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"
STRINGS_DOMAIN = "strings"
TRANSLATED_LIST = LOCALE_DIR / "translated.yaml"
GLOSSARY_FILE = LOCALE_DIR / "glossary.yaml"
# Calls whose first argument is a user-visible string: t("…"), gettext's _("…") and N_("…"), which
# only marks a string for the catalogue (translated later, where it is shown, with t(variable)).
TRANSLATING_CALLS = ("t", "_", "N_")
_LOCALE_VARS = ("LC_ALL", "LC_MESSAGES", "LANG")


def _normalise(value: str) -> str:
    return value.strip().split(".")[0].split("_")[0].split("-")[0].lower()


def lang() -> str:
    """The course language: ``COURSE_LANG``, else the locale, else ``en``.

    Raises ``ValueError`` for a ``COURSE_LANG`` that is not one of :data:`LANGS`."""
    chosen = os.environ.get("COURSE_LANG", "").strip()
    if chosen:
        code = _normalise(chosen)
        if code not in LANGS:
            raise ValueError(f"COURSE_LANG={chosen!r}: valid values are {', '.join(LANGS)}")
        return code
    for var in _LOCALE_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return "ko" if _normalise(value) == "ko" else SOURCE_LANG
    return SOURCE_LANG


def _check_lang(language: str) -> str:
    if language not in LANGS:
        raise ValueError(f"lang={language!r}: valid values are {', '.join(LANGS)}")
    return language


@functools.lru_cache(maxsize=None)
def _read_po(path: str, mtime_ns: int):
    from babel.messages.pofile import read_po

    with open(path, "rb") as fh:
        return read_po(fh, abort_invalid=True)


def read_catalogue(path: str | Path):
    """The babel ``Catalog`` of a ``.po`` file (cached until the file changes); an empty catalogue
    if the file does not exist."""
    path = Path(path)
    if not path.is_file():
        from babel.messages.catalog import Catalog

        return Catalog()
    return _read_po(str(path), path.stat().st_mtime_ns)


def _translation(catalogue, msgid: str, context: str | None = None) -> str | None:
    message = catalogue.get(msgid, context=context)
    if message is None or message.fuzzy or not message.string:
        return None
    return message.string


_fonts_ready = False


def N_(text: str, /) -> str:
    """Mark ``text`` for the catalogue and return it unchanged (translate it where it is shown)."""
    return text


def t(text: str, /, **fields: Any) -> str:
    """``text`` in the course language, its ``{fields}`` filled in.

    English, or a string the catalogue has no translation of, returns ``text`` itself."""
    language = lang()
    out = text
    if language != SOURCE_LANG:
        found = _translation(read_catalogue(LOCALE_DIR / language / "LC_MESSAGES" / f"{STRINGS_DOMAIN}.po"), text)
        if found is not None:
            out = found
            global _fonts_ready
            if not _fonts_ready:
                _fonts_ready = True
                use_korean_fonts()
    return out.format(**fields) if fields else out


# --- fonts ---------------------------------------------------------------------------------------

KOREAN_FONT_FAMILY = "NanumGothic"


def korean_font_files() -> list[Path]:
    """The Nanum TrueType fonts of the ``koreanize-matplotlib`` wheel (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(list(spec.submodule_search_locations)[0]) / "fonts"
    return sorted(folder.glob("*.ttf"))


def use_korean_fonts() -> str | None:
    """Register the Nanum fonts with matplotlib and put NanumGothic after DejaVu Sans in the
    fallback list (Latin stays DejaVu, Hangul comes from Nanum); return the family, or ``None``
    when matplotlib or the fonts are missing."""
    try:
        import matplotlib as mpl
        from matplotlib import font_manager
    except ImportError:
        return None
    files = korean_font_files()
    if not files:
        return None
    known = {f.fname for f in font_manager.fontManager.ttflist}
    for path in files:
        if str(path) not in known:
            font_manager.fontManager.addfont(str(path))
    # A list of families is a per-glyph fallback chain (matplotlib >= 3.6); the generic
    # "sans-serif" would resolve to its first installed family only.
    mpl.rcParams["font.family"] = ["DejaVu Sans", KOREAN_FONT_FAMILY]
    mpl.rcParams["axes.unicode_minus"] = False  # NanumGothic has no U+2212
    return KOREAN_FONT_FAMILY


# --- notebooks -----------------------------------------------------------------------------------

def cell_key(cell: dict) -> str:
    """The catalogue context of a markdown cell: its id and the first 16 hex digits of the sha256
    of its English source."""
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    return f"{cell.get('id', '')} {hashlib.sha256(source.encode('utf-8')).hexdigest()[:16]}"


def notebook_catalogue_path(relative: str | Path, language: str = "ko") -> Path:
    """``locale/<lang>/LC_MESSAGES/notebook-cells/<dir>/<name>.po`` for ``notebooks/<dir>/<name>.ipynb``."""
    relative = Path(relative)
    if relative.parts and relative.parts[0] == "notebooks":
        relative = Path(*relative.parts[1:])
    return LOCALE_DIR / _check_lang(language) / "LC_MESSAGES" / "notebook-cells" / relative.with_suffix(".po")


class MessageState:
    """States of a source text against its catalogue."""

    OK = "ok"
    MISSING = "missing"
    STALE = "stale"   # an entry for this cell exists, made from another English text
    FUZZY = "fuzzy"


def _source(cell) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def markdown_states(nb: dict, relative: str | Path, language: str = "ko") -> list[tuple[int, str, str]]:
    """(cell index, cell id, state) of every non-empty markdown cell of ``nb``."""
    catalogue = read_catalogue(notebook_catalogue_path(relative, language))
    by_cell: dict[str, str] = {}
    for message in catalogue:
        if message.id and message.context:
            by_cell[message.context.split(" ")[0]] = message.context
    out = []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown" or not _source(cell).strip():
            continue
        key = cell_key(cell)
        message = catalogue.get(_source(cell), context=key)
        if message is not None and message.string and not message.fuzzy:
            state = MessageState.OK
        elif message is not None and message.fuzzy:
            state = MessageState.FUZZY
        elif cell.get("id", "") in by_cell:
            state = MessageState.STALE
        else:
            state = MessageState.MISSING
        out.append((index, cell.get("id", ""), state))
    return out


def translate_notebook(nb: dict, relative: str | Path, language: str = "ko", *, strict: bool = True) -> dict:
    """A copy of ``nb`` whose markdown cells are in ``language`` (``metadata.language`` says which).

    Code cells are unchanged. ``strict``: ``ValueError`` listing every cell without a current
    translation; otherwise such cells stay English."""
    _check_lang(language)
    out = copy.deepcopy(nb)
    if language == SOURCE_LANG:
        return out
    catalogue = read_catalogue(notebook_catalogue_path(relative, language))
    missing = []
    for index, cell in enumerate(out["cells"]):
        if cell["cell_type"] != "markdown" or not _source(cell).strip():
            continue
        found = _translation(catalogue, _source(cell), context=cell_key(cell))
        if found is None:
            missing.append(f"cell {index} ({cell.get('id', '?')})")
            continue
        cell["source"] = found
    if missing and strict:
        raise ValueError(f"{relative}: no current {language} translation for {', '.join(missing)}; "
                         f"update {notebook_catalogue_path(relative, language)}")
    metadata = out.setdefault("metadata", {})
    metadata["language"] = language
    return out


# --- extraction ----------------------------------------------------------------------------------

def extract_strings(code: str) -> list[str]:
    """First arguments of ``t("…")`` / ``_("…")`` calls in ``code`` that are string literals
    (IPython lines starting with ``!`` or ``%`` are skipped)."""
    lines = [line if not line.lstrip().startswith(("!", "%")) else "" for line in code.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in TRANSLATING_CALLS
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.col_offset, node.args[0].value))
    return [text for _, _, text in sorted(found)]


def translated_sources() -> dict[str, list[str]]:
    """``locale/translated.yaml``: the notebooks, Python modules and book pages that must be
    complete in every language (``{"notebooks": [...], "modules": [...], "pages": [...]}``)."""
    import yaml

    data = yaml.safe_load(TRANSLATED_LIST.read_text(encoding="utf-8")) or {}
    return {key: list(data.get(key) or []) for key in ("languages", "notebooks", "modules", "pages")}


def glossary() -> list[dict[str, str]]:
    """``locale/glossary.yaml``: one ``{"en": term, "ko": term}`` per glossary term."""
    import yaml

    entries = yaml.safe_load(GLOSSARY_FILE.read_text(encoding="utf-8")) or []
    for entry in entries:
        if not entry.get("en") or not entry.get("ko"):
            raise ValueError(f"{GLOSSARY_FILE}: every entry needs 'en' and 'ko', got {entry!r}")
    return entries


def code_strings(paths: Iterable[Path]) -> list[str]:
    """User-visible strings of Python files and notebooks' code cells, in order, unique."""
    import json

    seen: dict[str, None] = {}
    for path in paths:
        path = Path(path)
        if path.suffix == ".ipynb":
            nb = json.loads(path.read_text(encoding="utf-8"))
            codes = [_source(c) for c in nb["cells"] if c["cell_type"] == "code"]
        else:
            codes = [path.read_text(encoding="utf-8")]
        for code in codes:
            for text in extract_strings(code):
                seen.setdefault(text)
    return list(seen)


_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)(?:[:!][^{}]*)?\}(?!\})")


def placeholders(text: str) -> set[str]:
    """Names of the ``{fields}`` of a format string."""
    return set(_PLACEHOLDER.findall(text))


# --- glossary ------------------------------------------------------------------------------------

_CODE = re.compile(r"```.*?```|`[^`\n]*`|\$\$.*?\$\$|\$[^$\n]*\$|\]\([^)]*\)|<[^>\n]*>|https?://\S+", re.DOTALL)


def _prose(text: str) -> str:
    """``text`` without code (fenced and inline), math, link targets, HTML tags and URLs."""
    return _CODE.sub(" ", text)


def glossary_violations(english: str, translated: str, language: str = "ko",
                        entries: list[dict] | None = None) -> list[str]:
    """The glossary terms that ``english`` uses in its prose (outside code and math) whose
    ``language`` term ``translated`` lacks, as ``"en term -> ko term"``."""
    entries = glossary() if entries is None else entries
    prose_en, prose_tr = _prose(english), _prose(translated)
    missing = []
    for entry in entries:
        forms = sorted({entry["en"], *entry.get("match", [])}, key=len, reverse=True)
        pattern = r"(?<![\w-])(?:" + "|".join(re.escape(f) for f in forms) + r")(?![\w-])"
        if re.search(pattern, prose_en, flags=re.IGNORECASE) and entry[language] not in prose_tr:
            missing.append(f"{entry['en']} -> {entry[language]}")
    return missing


def _fonts_at_import() -> None:
    """In Korean, register the Hangul fonts before any figure exists: a figure's title and axis
    labels take their font when the axes are made, before the first t() call may run."""
    global _fonts_ready
    try:
        korean = lang() == "ko"
    except ValueError:
        return          # a bad COURSE_LANG is reported by the first lang() / t() call
    if korean and not _fonts_ready:
        _fonts_ready = True
        use_korean_fonts()


_fonts_at_import()
