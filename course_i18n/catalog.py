"""Keep the catalogues in step with the English sources: ``python -m course_i18n update|check``.

``update`` adds an empty entry for every markdown cell and user-visible string of the sources
listed in ``locale/translated.yaml`` that has none, turns an entry whose English changed into a
fuzzy one (its old translation kept as a starting point for the translator), and
drops entries nothing uses any more. It never writes a translation. ``check`` lists what is
missing, stale or fuzzy and exits 1 if anything is.

The book's own pages are Sphinx documents: their catalogues (``locale/ko/LC_MESSAGES/<page>.po``)
are made by ``sphinx-build -b gettext`` and ``sphinx-intl update`` (see ``book/README.md``).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

import course_i18n as i18n

REPO_DIR = i18n.LOCALE_DIR.parent


def _new_catalogue(language: str, domain: str) -> Catalog:
    return Catalog(locale=language, domain=domain, project="CloudMart Course", version="0.1.0",
                   copyright_holder="CloudMart Course authors", charset="utf-8", fuzzy=False)


def _without_dates(data: bytes) -> bytes:
    return re.sub(rb'"(POT-Creation|PO-Revision)-Date: [^"]*"\n', b"", data)


def _write(catalogue: Catalog, path: Path) -> None:
    """Write ``catalogue`` unless only its header's dates would change."""
    buffer = io.BytesIO()
    write_po(buffer, catalogue, width=0, omit_header=False, sort_output=False)
    data = buffer.getvalue()
    if path.is_file() and _without_dates(path.read_bytes()) == _without_dates(data):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    i18n._read_po.cache_clear()


def update_notebook(relative: str, language: str = "ko") -> Path:
    """Bring the catalogue of one notebook (``notebooks/…ipynb``) up to date; return its path."""
    nb = json.loads((REPO_DIR / relative).read_text(encoding="utf-8"))
    path = i18n.notebook_catalogue_path(relative, language)
    old = i18n.read_catalogue(path)
    old_by_cell = {m.context.split(" ")[0]: m for m in old if m.id and m.context}
    new = _new_catalogue(language, Path(relative).stem)
    for index, cell in enumerate(nb["cells"]):
        source = i18n._source(cell)
        if cell["cell_type"] != "markdown" or not source.strip():
            continue
        key = i18n.cell_key(cell)
        current = old.get(source, context=key)
        if current is not None:
            new.add(source, current.string, context=key, flags=current.flags,
                    auto_comments=[f"cell {index}"])
            continue
        before = old_by_cell.get(cell.get("id", ""))
        if before is not None and before.string:
            new.add(source, before.string, context=key, flags={"fuzzy"}, auto_comments=[f"cell {index}"])
        else:
            new.add(source, "", context=key, auto_comments=[f"cell {index}"])
    _write(new, path)
    return path


def strings_catalogue_path(language: str = "ko") -> Path:
    return i18n.LOCALE_DIR / language / "LC_MESSAGES" / f"{i18n.STRINGS_DOMAIN}.po"


def source_paths(listed: dict[str, list[str]]) -> list[Path]:
    return [REPO_DIR / p for p in (*listed["notebooks"], *listed["modules"])]


def update_strings(language: str = "ko") -> Path:
    """Bring ``strings.po`` up to date with the ``t("…")`` strings of the listed sources."""
    listed = i18n.translated_sources()
    path = strings_catalogue_path(language)
    old = i18n.read_catalogue(path)
    new = _new_catalogue(language, i18n.STRINGS_DOMAIN)
    for text in i18n.code_strings(source_paths(listed)):
        current = old.get(text)
        new.add(text, current.string if current is not None else "",
                flags=current.flags if current is not None else ())
    _write(new, path)
    return path


def problems(language: str = "ko") -> list[str]:
    """Every markdown cell and user-visible string of the listed sources that has no current
    translation, and every translation whose ``{fields}`` differ from its English."""
    listed = i18n.translated_sources()
    out = []
    for relative in listed["notebooks"]:
        nb = json.loads((REPO_DIR / relative).read_text(encoding="utf-8"))
        for index, cell_id, state in i18n.markdown_states(nb, relative, language):
            if state != i18n.MessageState.OK:
                out.append(f"{relative}: markdown cell {index} ({cell_id}) is {state}")
    catalogue = i18n.read_catalogue(strings_catalogue_path(language))
    for text in i18n.code_strings(source_paths(listed)):
        message = catalogue.get(text)
        if message is None or not message.string:
            out.append(f"string {text!r} has no {language} translation")
        elif message.fuzzy:
            out.append(f"string {text!r}: the {language} translation is fuzzy")
        elif i18n.placeholders(message.string) != i18n.placeholders(text):
            out.append(f"string {text!r}: the {language} translation has the fields "
                       f"{sorted(i18n.placeholders(message.string))}, the English {sorted(i18n.placeholders(text))}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_i18n", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["update", "check"])
    parser.add_argument("--lang", default="ko", choices=[x for x in i18n.LANGS if x != i18n.SOURCE_LANG])
    args = parser.parse_args(argv)
    if args.action == "update":
        for relative in i18n.translated_sources()["notebooks"]:
            print(update_notebook(relative, args.lang).relative_to(REPO_DIR))
        print(update_strings(args.lang).relative_to(REPO_DIR))
        return 0
    found = problems(args.lang)
    for line in found:
        print(line)
    print(f"{len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
