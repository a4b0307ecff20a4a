"""The Day 3 notebooks follow the lesson template, are stored executed, keep no solution, and end
their exercise with a grading.check whose stored score is the starting point's (not full marks)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

DAY3 = sorted((Path(__file__).resolve().parents[2] / "notebooks" / "day3-security").glob("0*.ipynb"))
EXERCISES = {"01": "day3.authz_policy", "02": "day3.rego_authz", "03": "day3.control_stages"}
LIVE_CALLS = ("connect(", "rotation_run(", "subprocess.run(", "perf_counter()")


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_day3_has_notebooks_01_to_03():
    assert [p.name[:2] for p in DAY3][:3] == ["01", "02", "03"]


@pytest.mark.parametrize("path", DAY3, ids=lambda p: p.stem)
def test_lesson_template(path):
    nb = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for needed in ("**You will be able to**", "```mermaid", "## Theory", "## Predict", "## Measure", "## Compare",
                   "## Decide", "## Summary", "### Why they differ"):
        assert needed in markdown, needed
    assert re.search(r"\| *section *\| *min *\|", markdown), "time per section"
    code = _code(nb)
    assert "classroom.reset(" in code[0].source and "time_budget(" in code[0].source and "slot_min=50" in code[0].source
    assert any("instructor" in c.metadata.get("tags", []) for c in nb.cells), "instructor notes"
    assert all(c.execution_count is not None for c in code), "store notebooks executed"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert any("@interact" in c.source and "NBVAL_IGNORE_OUTPUT" in c.source for c in code), "a widget"
    seeded = [c for c in code if "seed=" in c.source and "NBVAL_IGNORE_OUTPUT" not in c.source and c.outputs]
    assert seeded, "a seeded simulation whose output nbval compares"


@pytest.mark.parametrize("path", DAY3, ids=lambda p: p.stem)
def test_the_exercise_is_checked_and_no_solution_is_stored(path):
    code = _code(nbformat.read(path, as_version=4))
    eid = EXERCISES[path.name[:2]]
    solutions = [i for i, c in enumerate(code) if "solution" in c.metadata.get("tags", [])]
    assert solutions, "the answer cell is tagged solution"
    following = code[solutions[-1] + 1]
    assert f'grading.check("{eid}", answer)' in following.source
    text = "".join(o.get("data", {}).get("text/plain", "") for o in following.outputs)
    (score, total), = re.findall(rf"{re.escape(eid)}: (\d+(?:\.\d+)?)/(\d+)", text)
    assert float(score) <= 0.3 * float(total), f"the stored answer is the starting point, not a solution: {text}"


@pytest.mark.parametrize("path", DAY3, ids=lambda p: p.stem)
def test_measured_cells_are_ignored_by_nbval_and_followed_by_asserts(path):
    code = _code(nbformat.read(path, as_version=4))
    for i, cell in enumerate(code):
        timed = "perf_counter()" in cell.source or "rotation_run(" in cell.source or "--only" in cell.source
        if timed and "def " not in cell.source.split("\n", 1)[0]:
            assert "# NBVAL_IGNORE_OUTPUT" in cell.source, cell.source[:120]
            following = code[i + 1].source if i + 1 < len(code) else ""
            assert re.search(r"^assert ", following, re.M), "a measured cell is followed by asserts"


def test_the_attack_suite_is_complete_and_asserted():
    nb = nbformat.read(next(p for p in DAY3 if p.name.startswith("02")), as_version=4)
    src = "\n".join(c.source for c in _code(nb))
    for attack in ("alg=none", "HS256 signed with the public key", "expired", "wrong aud", "wrong iss",
                   "tampered claims", "unknown kid"):
        assert f'"{attack}' in src, attack
    assert "assert (attack_table.status == 401).all()" in src
    assert "as_alice.status_code == 404" in src
