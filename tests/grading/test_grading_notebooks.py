"""Student notebooks: solutions stripped, nothing leaks, the rest intact, the CLI works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from ci_env import skip_or_fail
from nbclient import NotebookClient

from grading.notebooks import (
    STUB_MARKER,
    find_leaks,
    make_student_notebook,
    make_student_notebooks,
    solution_lines,
)

from grading_fixtures import REPO, SOLUTION_CODE, SOLUTION_PLOT, SOLUTION_PROSE


def test_solution_cells_become_stubs(solution_notebook: Path, tmp_path: Path):
    day = solution_notebook.parent
    (day / "domain.yaml").write_text("entities: {}\n")
    (day / "conftest.py").write_text("# notebook test hooks\n")
    (day / ".ipynb_checkpoints").mkdir()
    (day / ".ipynb_checkpoints" / "03-patterns-checkpoint.ipynb").write_text("{}")
    (day / "__pycache__").mkdir()
    (day / "__pycache__" / "x.pyc").write_bytes(b"\0")
    out = tmp_path / "students"
    written = make_student_notebooks(solution_notebook.parents[1], out)
    assert written == [out / "day1" / "03-patterns.ipynb"]
    # the data a notebook reads comes along; test hooks, caches and checkpoints do not
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "day1/03-patterns.ipynb", "day1/domain.yaml"]
    student = nbformat.read(written[0], as_version=4)
    sources = [c.source for c in student.cells]
    # the names later cells use survive as placeholders, so the check cell still runs
    assert sources[2] == f"{STUB_MARKER}\nanswer = ..."
    assert sources[3] == f"{STUB_MARKER}\nraise NotImplementedError"
    assert sources[4] == "*Your answer here.*"
    # hidden and solution-output cells are gone; the others are untouched
    assert len(student.cells) == 6
    assert sources[0].startswith("# Patterns") and sources[1] == "import math\nprint(math.pi)"
    assert sources[5] == 'import grading\ngrading.check("day1.patterns", answer)'
    assert all(c.outputs == [] and c.execution_count is None
               for c in student.cells if c.cell_type == "code")
    assert "widgets" not in student.metadata
    assert "exercise" in student.cells[2].metadata["tags"]
    assert not any("solution" in c.metadata.get("tags", []) for c in student.cells)
    nbformat.validate(student)


def test_no_solution_line_leaks(solution_notebook: Path, tmp_path: Path):
    nb = nbformat.read(solution_notebook, as_version=4)
    secret = solution_lines(nb)
    # the leak detector looks for the right lines: every significant solution line, minus
    # text shared with non-solution cells
    assert 'answer = {"patterns": {"problem_a": "saga"},' in secret
    assert SOLUTION_PLOT in secret and SOLUTION_PROSE in secret
    assert "import math" not in secret  # also in a non-solution cell: no secret
    out = tmp_path / "students"
    (path,) = make_student_notebooks(solution_notebook.parent, out)
    assert find_leaks(nb, path) == []
    text = path.read_text()
    for line in SOLUTION_CODE.splitlines()[1:]:
        assert line.strip() not in text
    for phrase in ("secret figure", "0.07693", "3/10", "instructor only", "7.7 percent"):
        assert phrase not in text


def test_the_leak_detector_can_fail(solution_notebook: Path, tmp_path: Path):
    """A student file that keeps a solution line, or its output, is caught."""
    nb = nbformat.read(solution_notebook, as_version=4)
    student = make_student_notebook(nb)
    student.cells[3].source = "x = 1\n" + SOLUTION_PLOT
    path = tmp_path / "leaky.ipynb"
    nbformat.write(student, path)
    assert find_leaks(nb, path) == [SOLUTION_PLOT]


def test_student_notebook_runs_and_the_check_explains_the_missing_answer(
        solution_notebook: Path, tmp_path: Path):
    student = make_student_notebook(nbformat.read(solution_notebook, as_version=4))
    student.cells = [c for c in student.cells if STUB_MARKER not in c.source
                     or "answer = ..." in c.source]  # keep the assignment stub only
    client = NotebookClient(student, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    out = student.cells[-1].outputs[0]["data"]["text/plain"]
    assert out.startswith("day1.patterns: 0/10")
    assert "expected a dict" in out and "ellipsis" in out


def test_every_course_notebook_strips_cleanly(tmp_path: Path):
    src = REPO / "notebooks"
    notebooks = [p for p in src.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
    if not notebooks:
        skip_or_fail("no course notebooks yet")
    out = tmp_path / "students"
    written = make_student_notebooks(src, out)
    assert len(written) == len(notebooks)
    leaks = {}
    for original in notebooks:
        nb = nbformat.read(original, as_version=4)
        found = find_leaks(nb, out / original.relative_to(src))
        if found:
            leaks[str(original.relative_to(src))] = found
    assert leaks == {}


def test_out_dir_inside_src_is_refused(solution_notebook: Path):
    src = solution_notebook.parents[1]
    with pytest.raises(ValueError, match="must not lie inside"):
        make_student_notebooks(src, src / "students")
    with pytest.raises(ValueError, match="is not a folder"):
        make_student_notebooks(src / "nope", src.parent / "out")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grading", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_student_notebooks(solution_notebook: Path, tmp_path: Path):
    src = solution_notebook.parents[1]
    done = _cli("student-notebooks", str(tmp_path / "out"), "--src", str(src), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote 1 student notebook(s)" in done.stdout
    assert (tmp_path / "out" / "day1" / "03-patterns.ipynb").is_file()


def test_cli_errors_are_one_line(tmp_path: Path):
    done = _cli("student-notebooks", str(tmp_path / "out"), "--src", str(tmp_path / "nope"),
                cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"error: source folder {str(tmp_path / 'nope')!r} does not exist"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.ipynb").write_text("{oops")
    done = _cli("student-notebooks", str(tmp_path / "out2"), "--src", str(broken), cwd=tmp_path)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
