"""The Korean edition cannot fall behind silently: every markdown cell and user-visible string of
the sources listed in locale/translated.yaml has a current, non-fuzzy translation whose fields
match the English, and the catalogues hold nothing that no source uses any more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import course_i18n as i18n
from course_i18n import catalog

REPO = Path(__file__).resolve().parents[2]
LISTED = i18n.translated_sources()


def test_the_listed_sources_exist():
    assert LISTED["languages"] == ["ko"]
    for relative in (*LISTED["notebooks"], *LISTED["modules"]):
        assert (REPO / relative).is_file(), relative


@pytest.mark.parametrize("language", LISTED["languages"])
def test_every_listed_cell_and_string_has_a_current_translation(language):
    problems = catalog.problems(language)
    assert problems == [], "\n".join(problems) + "\n(run `python -m course_i18n update`, then translate)"


@pytest.mark.parametrize("relative", LISTED["notebooks"])
def test_a_notebook_catalogue_holds_no_entry_of_a_cell_that_is_gone(relative):
    nb = json.loads((REPO / relative).read_text(encoding="utf-8"))
    keys = {i18n.cell_key(c) for c in nb["cells"] if c["cell_type"] == "markdown" and i18n._source(c).strip()}
    entries = {m.context for m in i18n.read_catalogue(i18n.notebook_catalogue_path(relative)) if m.id}
    assert entries == keys, f"obsolete: {sorted(entries - keys)}; missing: {sorted(keys - entries)}"


def test_the_strings_catalogue_holds_no_string_that_no_source_uses():
    used = set(i18n.code_strings(catalog.source_paths(LISTED)))
    entries = {m.id for m in i18n.read_catalogue(catalog.strings_catalogue_path()) if m.id}
    assert entries == used, f"obsolete: {sorted(entries - used)}; missing: {sorted(used - entries)}"


# --- the check itself fails where it must ---------------------------------------------------------

def _listed_with(monkeypatch, tmp_path, notebook_edit=None, module_text=None):
    """problems() over a copy of the listed sources, one of them edited."""
    repo = tmp_path / "repo"
    for relative in (*LISTED["notebooks"], *LISTED["modules"]):
        target = repo / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO / relative).read_bytes())
    if notebook_edit is not None:
        path = repo / LISTED["notebooks"][0]
        nb = json.loads(path.read_text(encoding="utf-8"))
        notebook_edit(nb)
        path.write_text(json.dumps(nb), encoding="utf-8")
    if module_text is not None:
        path = repo / LISTED["modules"][0]
        path.write_text(path.read_text(encoding="utf-8") + module_text, encoding="utf-8")
    monkeypatch.setattr(catalog, "REPO_DIR", repo)
    return catalog.problems("ko")


def test_an_edited_english_cell_fails_the_check_as_stale(monkeypatch, tmp_path):
    def edit(nb):
        nb["cells"][0]["source"] = i18n._source(nb["cells"][0]) + "\nOne more sentence."

    problems = _listed_with(monkeypatch, tmp_path, notebook_edit=edit)
    assert len(problems) == 1 and "markdown cell 0 (dc2db1f0) is stale" in problems[0], problems


def test_a_new_markdown_cell_fails_the_check_as_missing(monkeypatch, tmp_path):
    def edit(nb):
        nb["cells"].insert(5, {"cell_type": "markdown", "id": "new-cell", "metadata": {}, "source": "New text."})

    problems = _listed_with(monkeypatch, tmp_path, notebook_edit=edit)
    assert problems == [f"{LISTED['notebooks'][0]}: markdown cell 5 (new-cell) is missing"], problems


def test_a_new_or_changed_user_visible_string_fails_the_check(monkeypatch, tmp_path):
    problems = _listed_with(monkeypatch, tmp_path, module_text='\n\ndef _extra(g):\n    g.miss(t("a brand-new message"))\n')
    assert problems == ["string 'a brand-new message' has no ko translation"], problems


def test_a_translation_that_drops_a_field_fails_the_check(monkeypatch, tmp_path):
    po = catalog.strings_catalogue_path()
    text = po.read_text(encoding="utf-8").replace('msgstr "act: {seconds:.1f}초 만에 성공"', 'msgstr "act: 성공"')
    locale = tmp_path / "locale"
    for source in i18n.LOCALE_DIR.rglob("*"):
        if source.is_file():
            target = locale / source.relative_to(i18n.LOCALE_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    (locale / po.relative_to(i18n.LOCALE_DIR)).write_text(text, encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALE_DIR", locale)
    monkeypatch.setattr(i18n, "TRANSLATED_LIST", locale / "translated.yaml")
    problems = catalog.problems("ko")
    assert len(problems) == 1 and "has the fields []" in problems[0], problems
