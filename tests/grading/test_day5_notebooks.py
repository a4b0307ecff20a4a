"""The Day 5 notebooks follow the lesson template and are stored executed, ready for nbval; the
exercise cells they show are starting points that score low, never the answer."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "notebooks"))
from test_notebook_structure import _asserted_names, _bound_names, _is_widget  # noqa: E402

DAY5 = sorted((ROOT / "notebooks" / "day5-finops").glob("0*.ipynb"))
EXPECTED = ["01-finops-framework", "02-cost-models", "03-cost-alerts", "04-lab-cost-monitoring",
            "05-challenge-cost-optimisation"]
SLOTS = {"01": 50, "02": 50, "03": 50, "04": 75, "05": 75}


def _read(path):
    return nbformat.read(path, as_version=4)


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_day5_has_its_notebooks():
    assert [p.stem for p in DAY5] == EXPECTED


@pytest.mark.parametrize("path", DAY5, ids=lambda p: p.stem)
def test_lesson_template(path):
    nb = _read(path)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for needle in ("**You will be able to**", "```mermaid", "## Summary", "## Predict", "## Measure", "## Compare",
                   "## Decide", "Why they differ"):
        assert needle in markdown, needle
    assert any("instructor" in c.metadata.get("tags", []) for c in nb.cells), "instructor notes"
    code = _code(nb)
    assert f"slot_min={SLOTS[path.stem[:2]]}" in code[0].source and "classroom.reset(cm)" in code[0].source
    assert any("@interact" in c.source for c in code), "a widget"
    assert any("grading.check(" in c.source for c in code), "an exercise"
    assert not any("solution" in c.metadata.get("tags", []) for c in nb.cells), "the answer is in the tests, not here"
    assert all("set_title(\"" not in c.source and "set_title('" not in c.source for c in code), "titles are computed"


@pytest.mark.parametrize("path", DAY5, ids=lambda p: p.stem)
def test_stored_executed_without_errors(path):
    code = _code(_read(path))
    assert code and all(c.execution_count is not None for c in code), "store notebooks executed"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]


@pytest.mark.parametrize("path", DAY5, ids=lambda p: p.stem)
def test_live_and_widget_cells_are_not_compared_and_live_cells_are_asserted(path):
    code = _code(_read(path))
    problems = []
    for i, cell in enumerate(code):
        src = cell.source
        live = any(k in src for k in (".load(", "capture_cost(", "capture_usage(", "cm.usage(", "prometheus", "@interact"))
        if live and cell.outputs and "# NBVAL_IGNORE_OUTPUT" not in src:
            problems.append(f"cell {i} needs # NBVAL_IGNORE_OUTPUT:\n{src[:160]}")
        if "NBVAL_IGNORE_OUTPUT" in src and not _is_widget(src):
            asserted = set().union(*(_asserted_names(c.source) for c in code[i:]))
            if not _bound_names(src) & asserted:
                problems.append(f"cell {i}: binds {sorted(_bound_names(src))}, none asserted:\n{src[:160]}")
    assert not problems, "\n\n".join(problems)
