"""nbval runs the Korean rendering of the pilot notebook: markdown from the catalogue, code cells
as they are, COURSE_LANG=ko set by its first cell. Outputs differ from the stored English ones by
design, so nbval runs it in lax mode (every cell must run, every assert must hold), and a last cell
checks that the grader's feedback and the plot's labels came out in Korean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import course_i18n as i18n
from course_i18n import notebooks as i18n_notebooks

REPO = Path(__file__).resolve().parents[2]
PILOT = "notebooks/day4-gitops/02-actions-basics.ipynb"

CHECK_CELL = '''\
import course_i18n

def hangul(text):
    return any("\\uac00" <= ch <= "\\ud7a3" for ch in str(text))

assert course_i18n.lang() == "ko"
feedback = [v for v in Out.values() if isinstance(v, grading.Feedback)][-1]
assert feedback.score == feedback.max_score and feedback.right and all(map(hangul, feedback.right)), feedback
assert hangul(ax.get_title()) and hangul(ax.get_xlabel()), (ax.get_title(), ax.get_xlabel())
assert all(map(hangul, [t.get_text() for t in ax.get_legend().get_texts()]))
'''


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_nbval_runs_the_korean_rendering(tmp_path):
    nb = nbformat.read(REPO / PILOT, as_version=4)
    korean = i18n_notebooks.localiser("ko")(nb, Path(PILOT).relative_to("notebooks"))
    assert korean.cells[0].metadata["tags"] == [i18n_notebooks.LANG_TAG]
    korean.cells.append(nbformat.v4.new_code_cell(CHECK_CELL))
    target = tmp_path / "02-actions-basics.ko.ipynb"
    nbformat.write(korean, target)
    env = {k: v for k, v in __import__("os").environ.items() if k != "COURSE_LANG"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", str(target), "-p", "no:cacheprovider", "-q",
         "--rootdir", str(tmp_path), "-c", "/dev/null"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=380)
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    code_cells = sum(c.cell_type == "code" for c in korean.cells)      # nbval: one test per code cell
    assert f"{code_cells} passed" in result.stdout, tail
