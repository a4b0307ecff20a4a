"""The Day 4 notebooks follow the lesson template, are stored executed, and grade their exercise."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

DAY4 = sorted((Path(__file__).resolve().parents[2] / "notebooks" / "day4-gitops").glob("0*.ipynb"))


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_day4_notebooks_exist():
    assert DAY4, "notebooks/day4-gitops has no lesson yet"


@pytest.mark.parametrize("path", DAY4, ids=lambda p: p.stem)
def test_lesson_template(path):
    nb = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for needed in ("**You will be able to**", "```mermaid", "## Predict", "## Measure", "## Compare", "## Decide", "## Summary"):
        assert needed in markdown, needed
    assert re.search(r"\| *section *\| *min *\|", markdown), "time per section"
    assert any("instructor" in c.metadata.get("tags", []) for c in nb.cells), "instructor notes"
    code = _code(nb)
    assert all(c.execution_count is not None for c in code), "store notebooks executed"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    solutions = [i for i, c in enumerate(code) if "solution" in c.metadata.get("tags", [])]
    assert solutions and "grading.check(" in "\n".join(c.source for c in code[solutions[-1] + 1:])
    assert any("@interact" in c.source and "NBVAL_IGNORE_OUTPUT" in c.source for c in code), "a widget"
    seeded = [c for c in code if "seed=" in c.source and "NBVAL_IGNORE_OUTPUT" not in c.source and c.outputs]
    assert seeded, "a seeded simulation whose output nbval compares"


@pytest.mark.parametrize("path", DAY4, ids=lambda p: p.stem)
def test_timed_cells_are_ignored_and_followed_by_asserts(path):
    code = _code(nbformat.read(path, as_version=4))
    for i, cell in enumerate(code):
        if "run_workflow(" in cell.source or "dry_run(" in cell.source:
            assert "# NBVAL_IGNORE_OUTPUT" in cell.source, cell.source[:120]
            following = code[i + 1].source if i + 1 < len(code) else ""
            assert re.search(r"^assert ", following, re.M), "a measured cell is followed by asserts"


@pytest.mark.parametrize("path", DAY4, ids=lambda p: p.stem)
def test_the_stored_solution_scored_full_marks(path):
    code = _code(nbformat.read(path, as_version=4))
    checks = [c for c in code if "grading.check(" in c.source]
    text = "".join(o.get("data", {}).get("text/plain", "") for c in checks for o in c.outputs)
    for score, total in re.findall(r": (\d+(?:\.\d+)?)/(\d+)", text):
        assert float(score) == float(total), text
