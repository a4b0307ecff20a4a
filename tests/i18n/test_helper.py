"""course_i18n: language selection, t(), notebook translation keyed by a hash of the English, fonts."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import course_i18n as i18n
from course_i18n import catalog

REPO = Path(__file__).resolve().parents[2]
PILOT = "notebooks/day4-gitops/02-actions-basics.ipynb"


@pytest.fixture
def no_lang(monkeypatch):
    for var in ("COURSE_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_language_comes_from_course_lang_then_the_locale(no_lang):
    assert i18n.lang() == "en"
    no_lang.setenv("LANG", "ko_KR.UTF-8")
    assert i18n.lang() == "ko"
    no_lang.setenv("LC_ALL", "C.UTF-8")          # LC_ALL wins over LANG, as in POSIX
    assert i18n.lang() == "en"
    no_lang.setenv("COURSE_LANG", "ko")
    assert i18n.lang() == "ko"
    no_lang.setenv("COURSE_LANG", "en")
    no_lang.setenv("LANG", "ko_KR.UTF-8")
    assert i18n.lang() == "en"


def test_an_unknown_course_lang_is_a_clear_error(no_lang):
    no_lang.setenv("COURSE_LANG", "fr")
    with pytest.raises(ValueError, match="valid values are en, ko"):
        i18n.lang()


def test_t_is_the_identity_in_english_and_translates_in_korean(no_lang):
    text = "act: success in {seconds:.1f} s"
    assert i18n.t(text, seconds=3.21) == "act: success in 3.2 s"
    no_lang.setenv("COURSE_LANG", "ko")
    assert i18n.t(text, seconds=3.21) == "act: 3.2초 만에 성공"       # fields reordered by the translation
    assert i18n.t("a string nobody translated") == "a string nobody translated"


def test_fuzzy_and_empty_translations_are_not_used(no_lang, tmp_path, monkeypatch):
    locale = tmp_path / "locale"
    (locale / "ko" / "LC_MESSAGES").mkdir(parents=True)
    (locale / "ko" / "LC_MESSAGES" / "strings.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
        '#, fuzzy\nmsgid "old"\nmsgstr "옛날"\n\nmsgid "empty"\nmsgstr ""\n\nmsgid "good"\nmsgstr "좋음"\n',
        encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALE_DIR", locale)
    no_lang.setenv("COURSE_LANG", "ko")
    assert (i18n.t("old"), i18n.t("empty"), i18n.t("good")) == ("old", "empty", "좋음")


def test_extract_strings_finds_t_underscore_and_n_marks_only():
    code = ('print(t("shown {x}", x=1))\nlabel = N_("marked")\n_("gettext")\nprint("plain")\n'
            't(variable)\n!ls\n%time t("magic line is skipped")\n')
    assert i18n.extract_strings(code) == ["shown {x}", "marked", "gettext"]


def test_translate_notebook_replaces_markdown_and_leaves_code_alone():
    nb = json.loads((REPO / PILOT).read_text(encoding="utf-8"))
    ko = i18n.translate_notebook(nb, PILOT, "ko")
    assert ko["metadata"]["language"] == "ko"
    for before, after in zip(nb["cells"], ko["cells"]):
        if before["cell_type"] == "code":
            assert after == before
        else:
            assert i18n._source(after) != i18n._source(before)
            assert any("\uac00" <= ch <= "\ud7a3" for ch in i18n._source(after))
    assert i18n._source(ko["cells"][0]).startswith("# 02 · GitHub Actions 기초")


def test_a_changed_english_cell_reads_stale_and_a_new_cell_missing():
    nb = json.loads((REPO / PILOT).read_text(encoding="utf-8"))
    assert {state for _, _, state in i18n.markdown_states(nb, PILOT)} == {"ok"}
    changed = copy.deepcopy(nb)
    changed["cells"][3]["source"] = i18n._source(changed["cells"][3]).replace("seconds on a laptop", "seconds")
    changed["cells"].append({"cell_type": "markdown", "id": "brand-new", "metadata": {}, "source": "A new cell."})
    states = {index: state for index, _, state in i18n.markdown_states(changed, PILOT)}
    assert states[3] == "stale" and states[len(changed["cells"]) - 1] == "missing"
    assert [s for i, s in states.items() if i not in (3, len(changed["cells"]) - 1)] == ["ok"] * (len(states) - 2)
    with pytest.raises(ValueError, match=r"cell 3 \(c045c226\)"):
        i18n.translate_notebook(changed, PILOT, "ko")
    lenient = i18n.translate_notebook(changed, PILOT, "ko", strict=False)
    assert i18n._source(lenient["cells"][3]) == i18n._source(changed["cells"][3])   # stays English


def test_update_keeps_a_stale_translation_as_fuzzy(tmp_path, monkeypatch):
    """`python -m course_i18n update` after an English edit: the old Korean is kept but fuzzy, so
    it is not shown and the check reports it until a translator confirms it."""
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    nb = json.loads((REPO / PILOT).read_text(encoding="utf-8"))
    nb["cells"][3]["source"] = "## Predict: the pipeline as a DAG\n\nShorter now."
    (repo / "notebooks" / "x.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    locale = repo / "locale"
    source = i18n.notebook_catalogue_path(PILOT).read_bytes()
    monkeypatch.setattr(i18n, "LOCALE_DIR", locale)
    target = i18n.notebook_catalogue_path("notebooks/x.ipynb")
    target.parent.mkdir(parents=True)
    target.write_bytes(source)
    monkeypatch.setattr(catalog, "REPO_DIR", repo)
    catalog.update_notebook("notebooks/x.ipynb")
    states = {index: state for index, _, state in i18n.markdown_states(nb, "notebooks/x.ipynb")}
    assert states[3] == "fuzzy" and list(states.values()).count("ok") == len(states) - 1
    entry = [m for m in i18n.read_catalogue(target) if m.context and m.context.startswith("c045c226 ")][0]
    assert entry.fuzzy and entry.string.startswith("## 예측") and entry.id == nb["cells"][3]["source"]


def test_korean_fonts_come_from_the_installed_wheel_and_draw_hangul():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    files = i18n.korean_font_files()
    assert any(f.name == "NanumGothic.ttf" for f in files), files
    assert i18n.use_korean_fonts() == "NanumGothic"
    found = font_manager.findfont(font_manager.FontProperties(family="NanumGothic"), fallback_to_default=False)
    assert Path(found).name == "NanumGothic.ttf"
    import warnings

    with matplotlib.rc_context({"font.family": ["DejaVu Sans"]}):   # the control: no Hangul font, tofu
        fig, ax = plt.subplots()
        ax.set_title("임계 경로 9.0초")
        with pytest.warns(UserWarning, match="missing from font"):
            fig.canvas.draw()
        plt.close(fig)
    fig, ax = plt.subplots()
    ax.set_title("임계 경로 9.0초")

    with warnings.catch_warnings():
        warnings.simplefilter("error")          # "Glyph … missing from font(s)" would raise here
        fig.canvas.draw()
    plt.close(fig)
