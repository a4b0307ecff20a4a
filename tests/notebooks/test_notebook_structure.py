"""Every Day 1 notebook follows the lesson template and is stored executed, ready for nbval."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
DAY1 = sorted((NOTEBOOKS / "day1-microservices").glob("0*.ipynb"))
ALL = [NOTEBOOKS / "00-start-here.ipynb", *DAY1]
EXPECTED_DAY1 = ["01-monolith-vs-microservices", "02-service-decomposition", "03-microservice-patterns",
                 "04-lab1-capacity-and-cost", "05-communication-patterns", "06-challenge-architecture-design"]


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_day1_has_its_six_notebooks():
    assert [p.stem for p in DAY1] == EXPECTED_DAY1


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_stored_executed_without_errors(path):
    code = _code(_read(path))
    assert code and all(c.execution_count is not None for c in code), "store notebooks executed"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_widgets_and_live_timings_are_not_compared(path):
    for cell in _code(_read(path)):
        src = cell.source
        if cell.outputs and ("@interact" in src or re.search(r"\.load\(", src)):
            assert "# NBVAL_IGNORE_OUTPUT" in src, f"cell needs # NBVAL_IGNORE_OUTPUT:\n{src[:200]}"


@pytest.mark.parametrize("path", DAY1, ids=lambda p: p.stem)
def test_lesson_template(path):
    nb = _read(path)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "**You will be able to**" in markdown, "learning objectives"
    assert "```mermaid" in markdown, "a Mermaid diagram"
    assert "## Summary" in markdown
    code = _code(nb)
    solutions = [i for i, c in enumerate(code) if "solution" in c.metadata.get("tags", [])]
    assert solutions, "an exercise with a solution cell tagged `solution`"
    after = "\n".join(c.source for c in code[solutions[-1] + 1:])
    assert "grading.check(" in after, "the solution is checked by grading.check"
    seeded = [c for c in code if ("seed=" in c.source or "simulate_" in c.source)
              and "NBVAL_IGNORE_OUTPUT" not in c.source and c.outputs]
    assert seeded, "at least one seeded simulation whose output nbval compares"
    assert any("@interact" in c.source for c in code), "a widget to drive the simulation"


@pytest.mark.parametrize("path", [p for p in DAY1 if not p.stem.startswith("06")], ids=lambda p: p.stem)
def test_live_cells_assert_what_must_hold(path):
    code = _code(_read(path))
    assert any("connect(" in c.source for c in code), "the lesson measures the live CloudMart"
    live = [i for i, c in enumerate(code) if "connect(" in c.source]
    assert any(c.source.lstrip().startswith("assert") or "\nassert " in c.source for c in code[live[0]:]), \
        "live measurements are followed by asserts"
