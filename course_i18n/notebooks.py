"""Notebooks in the course language: the transform ``cloudmart student-notebooks --lang`` applies,
and the folder ``COURSE_LANG=ko make lab`` opens (``python -m course_i18n.notebooks OUT --lang ko``).

A notebook listed in ``locale/translated.yaml`` gets its markdown cells from its catalogue (every
cell must have a current translation, else ``ValueError``); a notebook not listed yet stays
English and is reported. Code cells are never changed; a first cell tagged ``course-lang`` sets
``COURSE_LANG`` for the kernel, so the notebook speaks its language in any JupyterLab, under nbval
and in batch grading.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import course_i18n as i18n

LANG_TAG = "course-lang"
LAB_SETTINGS = {"ko": "ko_KR"}
_BANNER = {"ko": "# 이 노트북의 언어: 한국어. 이 셀은 그대로 두세요 (그래프, 출력, 채점 결과가 한국어로 나옵니다)."}


def language_cell(language: str) -> dict:
    """The first code cell of a notebook in ``language``: sets ``COURSE_LANG`` in the kernel."""
    import nbformat

    return nbformat.v4.new_code_cell(
        f"{_BANNER[language]}\nimport os\n\nos.environ[\"COURSE_LANG\"] = {language!r}\n"
        "import course_i18n  # noqa: E402,F401  (registers the Hangul fonts before any plot)",
        metadata={"tags": [LANG_TAG], "editable": False, "deletable": False})


def localiser(language: str, untranslated: list[str] | None = None) -> Callable:
    """``transform(nb, relative) -> nb`` for :func:`grading.notebooks.make_student_notebooks`.

    ``relative`` is the notebook's path under the source folder (``day4-gitops/02-….ipynb``).
    Notebooks without a catalogue are appended to ``untranslated`` and left English."""
    i18n._check_lang(language)
    listed = set(i18n.translated_sources()["notebooks"])

    def transform(nb, relative):
        import nbformat

        if language == i18n.SOURCE_LANG:
            return nb
        key = f"notebooks/{Path(relative).as_posix()}"
        if key not in listed:
            if untranslated is not None:
                untranslated.append(key)
            return nb
        out = nbformat.from_dict(i18n.translate_notebook(nb, key, language, strict=True))
        out.cells = [c for c in out.cells if LANG_TAG not in c.get("metadata", {}).get("tags", [])]
        out.cells.insert(0, language_cell(language))
        return out

    return transform


def write_lab_settings(settings_dir: Path, language: str) -> Path:
    """JupyterLab user settings that pick ``language``'s language pack; return the file."""
    path = Path(settings_dir) / "@jupyterlab" / "translation-extension" / "plugin.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"locale": LAB_SETTINGS[language]}, indent=2) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """Write the learner notebooks of ``notebooks/`` in a language, and JupyterLab settings for it."""
    from grading.notebooks import make_student_notebooks

    parser = argparse.ArgumentParser(prog="python -m course_i18n.notebooks", description=main.__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--lang", required=True, choices=[x for x in i18n.LANGS if x != i18n.SOURCE_LANG])
    parser.add_argument("--src", type=Path, default=i18n.LOCALE_DIR.parent / "notebooks")
    parser.add_argument("--settings-dir", type=Path, default=None,
                        help="also write JupyterLab settings choosing the language pack here")
    args = parser.parse_args(argv)
    untranslated: list[str] = []
    try:
        written = make_student_notebooks(args.src, args.out, transform=localiser(args.lang, untranslated))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.settings_dir is not None:
        write_lab_settings(args.settings_dir, args.lang)
    print(f"wrote {len(written)} notebook(s) to {args.out}; {len(untranslated)} not translated yet stay English")
    return 0


if __name__ == "__main__":
    sys.exit(main())
