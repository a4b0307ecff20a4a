"""Korean learner notebooks (`cloudmart student-notebooks OUT --lang ko`) and Korean grader feedback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import course_i18n as i18n
import grading
from course_i18n import notebooks as i18n_notebooks
from grading import variants

REPO = Path(__file__).resolve().parents[2]
PILOT = "day4-gitops/02-actions-basics.ipynb"
HANGUL = ("\uac00", "\ud7a3")


def has_hangul(text: str) -> bool:
    return any(HANGUL[0] <= ch <= HANGUL[1] for ch in text)


def test_student_notebooks_in_korean(tmp_path):
    out = tmp_path / "ko"
    result = subprocess.run([sys.executable, "-m", "cluster.cli", "student-notebooks", str(out), "--lang", "ko",
                             "--src", str(REPO / "notebooks")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "in ko;" in result.stdout
    english = json.loads((REPO / "notebooks" / PILOT).read_text(encoding="utf-8"))
    korean = json.loads((out / PILOT).read_text(encoding="utf-8"))
    first = korean["cells"][0]
    assert first["cell_type"] == "code" and i18n_notebooks.LANG_TAG in first["metadata"]["tags"]
    assert 'os.environ["COURSE_LANG"] = \'ko\'' in i18n._source(first)
    kept = [c for c in english["cells"] if "instructor" not in c["metadata"].get("tags", [])]
    assert len(korean["cells"]) == len(kept) + 1
    for before, after in zip(kept, korean["cells"][1:]):
        if before["cell_type"] == "markdown":
            assert has_hangul(i18n._source(after)), after["id"]
        elif "solution" not in before["metadata"].get("tags", []):
            assert i18n._source(after) == i18n._source(before)        # code cells unchanged
            assert after["outputs"] == []
    assert not any("강사 노트" in i18n._source(c) for c in korean["cells"])   # instructor cell removed


def test_an_unknown_language_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cluster.cli", "student-notebooks", str(tmp_path / "x"),
                             "--lang", "fr"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "invalid choice: 'fr'" in result.stderr


def test_the_lab_settings_choose_the_korean_language_pack(tmp_path):
    path = i18n_notebooks.write_lab_settings(tmp_path, "ko")
    assert json.loads(path.read_text()) == {"locale": "ko_KR"}
    from importlib.metadata import entry_points

    packs = {ep.name for ep in entry_points(group="jupyterlab.languagepack")}
    assert "ko_KR" in packs, packs


@pytest.fixture
def korean(monkeypatch):
    monkeypatch.setenv("COURSE_LANG", "ko")
    monkeypatch.delenv(variants.STAMP_ENV, raising=False)
    variants.clear_stamp()
    yield
    variants.clear_stamp()


def test_grader_feedback_and_hints_are_korean(korean):
    empty = grading.check("day4.workflow", "  ")
    assert empty.score == 0 and has_hangul(" ".join(empty.wrong)), empty
    broken = grading.check("day4.workflow", "on: [push\n")
    assert broken.score == 0
    assert broken.wrong[0].startswith("워크플로를 읽을 수 없습니다"), broken.wrong
    assert broken.hint.startswith("먼저 YAML을 검증하세요"), broken.hint
    assert "힌트: " in str(broken) and "<b>힌트:</b>" in broken._repr_html_()
