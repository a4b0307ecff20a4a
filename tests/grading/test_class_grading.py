"""Grading at class scale: 30 generated, stamped submissions graded in parallel, and the class
report (distribution per exercise, most common wrong answers, stamps, duplicate learners)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import grading
from grading.batch import class_report, default_jobs, grade_folder, write_class_report
from grading.notebooks import make_student_notebooks

from grading_fixtures import TRADEOFFS_P99_MS

REPO = Path(__file__).resolve().parents[2]
SECRET = "instructor-secret-for-the-class-test"
LEARNERS = [f"learner{i:02d}" for i in range(30)]
TIMEOUT_S = 120.0


def _good_decomposition(learner: str) -> list[set[str]]:
    """A full-marks decomposition for this learner's own variant (the extension's requirements
    differ per variant), from the instructor's references: what a learner who got it right wrote."""
    from grading import day1, variants
    from grading._instructor.day1 import decomposition_references

    variants.stamp(learner, variants.sign(learner, SECRET))
    try:
        v = variants.variant("day1.decomposition")
    finally:
        variants.clear_stamp()
    return [set(c) for c in decomposition_references(day1.scenario("day1.decomposition", v))[0]]


def _merged(good: list[set[str]]) -> list[set[str]]:
    """Two contexts merged (ordering with payment): a typical partial answer."""
    joined = [c for c in good if c & {"Order", "Payment"}]
    return [c for c in good if not c & {"Order", "Payment"}] + [set().union(*joined)]
# The worked example of variant 0, copied: right for variant 0 only.
COPIED_TRADEOFFS = {"architecture": "microservices", "p99_ms_at_load": TRADEOFFS_P99_MS, "max_hops_within_slo": 6}


def _solution_notebook() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        new_markdown_cell("# Day 1 exercises"),
        new_code_cell("decomposition = [{'Order'}]", metadata={"tags": ["solution"]}),
        new_code_cell("import grading\ngrading.check('day1.decomposition', decomposition)"),
        new_code_cell("tradeoffs = {}", metadata={"tags": ["solution"]}),
        new_code_cell("grading.check('day1.tradeoffs', tradeoffs)"),
    ])


def _answer(i: int) -> tuple[str, str]:
    """Learner i's two answer cells: a mix of right (for the learner's own variant), partial,
    wrong and unattempted."""
    good = _good_decomposition(LEARNERS[i])
    decomposition = [good, _merged(good), [set().union(*good)]][i % 3]
    tradeoffs = "raise NotImplementedError('not attempted')" if i % 10 == 9 else f"tradeoffs = {COPIED_TRADEOFFS!r}"
    return f"decomposition = {[sorted(c) for c in decomposition]!r}\ndecomposition = [set(c) for c in decomposition]", \
        tradeoffs


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    nbformat.write(_solution_notebook(), src / "day1.ipynb")
    out = tmp_path_factory.mktemp("class") / "submissions"
    written = make_student_notebooks(src, out, roster=LEARNERS, secret=SECRET)
    assert len(written) == 30
    for i, learner in enumerate(LEARNERS):
        path = out / learner / "day1.ipynb"
        nb = nbformat.read(path, as_version=4)
        stubs = [c for c in nb.cells if "exercise" in c.metadata.get("tags", [])]
        assert len(stubs) == 2 and all("# YOUR CODE HERE" in c.source for c in stubs)
        stubs[0].source, stubs[1].source = _answer(i)
        if learner == "learner28":   # edits the stamp's signature: forged
            nb.metadata["cloudmart"]["signature"] = "0" * 32
        nbformat.write(nb, path)
    # learner29 hands in learner00's notebook as their own: a moved stamp, and learner00 twice.
    (out / "learner29" / "day1.ipynb").write_bytes((out / "learner00" / "day1.ipynb").read_bytes())
    return out


@pytest.fixture(scope="module")
def graded(class_folder):
    return grade_folder(class_folder, timeout_s=TIMEOUT_S, jobs=8, secret=SECRET)


@pytest.mark.slow
@pytest.mark.timeout(2400)   # 30 kernels on a busy 2-core machine: about 10 minutes at a load of 25
def test_thirty_submissions_are_graded_in_parallel_bounded_by_the_cores(graded):
    assert len(graded) == 30 and set(graded["status"]) == {"ok"}, graded[["submission", "status", "reason"]]
    assert graded.attrs["jobs"] == min(8, default_jobs())
    if graded.attrs["jobs"] > 1:   # several kernels ran at once: their wall times overlap
        assert graded.attrs["busy_s"] / graded.attrs["elapsed_s"] > 1.3, graded.attrs
    print(f"30 submissions, {graded.attrs['jobs']} at a time: {graded.attrs['elapsed_s']} s "
          f"({graded.attrs['busy_s']} s of submissions)")


@pytest.mark.slow
def test_stamps_choose_the_variants_and_flag_forged_and_moved_copies(graded):
    stamps = graded.set_index("submission")["stamp"]
    assert stamps["learner28/day1.ipynb"] == "forged" and stamps["learner29/day1.ipynb"] == "moved"
    assert (stamps.drop(["learner28/day1.ipynb", "learner29/day1.ipynb"]) == "valid").all()
    # The copied variant-0 answer is full marks only where the learner's variant agrees with it.
    top = grading.max_score("day1.tradeoffs")
    valid = graded[graded["stamp"] == "valid"]
    attempted = valid[~valid["submission"].str.startswith(tuple(f"learner{i:02d}/" for i in (9, 19)))]
    assert (attempted["day1.tradeoffs"] < top).sum() >= len(attempted) * 0.8


@pytest.mark.slow
def test_class_report_gives_the_distribution_and_the_common_wrong_answers(graded, tmp_path):
    report = class_report(graded)
    dec = report["exercises"]["day1.decomposition"]
    top = grading.max_score("day1.decomposition")
    full = int((graded["day1.decomposition"] >= top).sum())
    assert dec["bands"]["100 %"] == full and sum(dec["bands"].values()) == 30
    assert full >= 9, "every third learner gave the full answer (and learner29 copied learner00's)"
    assert dec["attempted"] == 30 and dec["min"] < dec["median"] <= dec["max"] == top
    assert dec["common_wrong"] and dec["common_wrong"][0]["count"] >= 10
    assert dec["common_wrong"][0]["count"] >= dec["common_wrong"][-1]["count"]
    trade = report["exercises"]["day1.tradeoffs"]
    assert trade["attempted"] == 28, "learners 09 and 19 left it open (29 handed in 00's notebook)"
    assert report["duplicate_learners"] == ["learner00"]
    assert report["stamp"] == {"valid": 28, "forged": 1, "moved": 1}
    page = write_class_report(report, tmp_path / "class.html").read_text()
    assert "day1.decomposition" in page and "Most common wrong answers" in page and "<script" not in page


@pytest.mark.slow
def test_cli_writes_grades_and_the_class_report(class_folder, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "CLOUDMART_INSTRUCTOR_SECRET": SECRET}
    subset = tmp_path / "three"
    for learner in LEARNERS[:3]:
        (subset / learner).mkdir(parents=True)
        (subset / learner / "day1.ipynb").write_bytes((class_folder / learner / "day1.ipynb").read_bytes())
    done = subprocess.run([sys.executable, "-m", "cluster.cli", "grade", str(subset), "--out", str(tmp_path / "g.csv"),
                           "--report", str(tmp_path / "class.html"), "--timeout", str(TIMEOUT_S)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "graded 3 submission(s) (ok: 3)" in done.stdout and "at a time" in done.stdout
    report = json.loads((tmp_path / "class.json").read_text())
    assert report["submissions"] == 3 and report["stamp"] == {"valid": 3}
    assert (tmp_path / "class.html").is_file()
