"""Batch grading: every kind of broken submission is a row with its reason, never a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import os
import time

import psutil
import pytest

from grading import check
from grading.batch import grade_folder, grade_submission, write_html_report

from grading_fixtures import GOOD_PATTERNS_SOURCE, WRONG_PATTERNS, write_notebook, write_submissions

TIMEOUT_S = 45.0  # generous: kernel start and imports are slow on a busy 2-core machine


# Grading's runners and kernels inherit the environment: this run's own carry this mark, so
# another test run on the same machine (another checkout's CI) is not mistaken for a leftover.
_RUN_MARK = f"{os.getpid()}-{time.time_ns()}"
os.environ["CLOUDMART_TEST_RUN"] = _RUN_MARK


def _grading_processes() -> list[psutil.Process]:
    """Live processes started by this run's batch grading (runner or kernel)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if "cloudmart-grade-" in env.get("CLOUDMART_GRADING_RESULTS", "") and \
                env.get("CLOUDMART_TEST_RUN") == _RUN_MARK:
            found.append(proc)
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> pd.DataFrame:
    """One batch run over every kind of submission, shared by the tests below."""
    folder = write_submissions(tmp_path_factory.mktemp("batch") / "submissions")
    return grade_folder(folder, timeout_s=TIMEOUT_S).set_index("submission")


@pytest.mark.slow
def test_one_row_per_submission_with_its_status(graded):
    assert graded["status"].to_dict() == {
        "corrupt.ipynb": "corrupt",
        "exits.ipynb": "error",
        "good.ipynb": "ok",
        "notes.txt": "not-a-notebook",
        "partial.ipynb": "ok",
        "spins.ipynb": "timeout",
    }
    assert list(graded.columns) == ["status", "reason", "stamp", "learner_id", "day1.lab1_cost",
                                    "day1.patterns", "total", "max_total"]
    reasons = graded["reason"]
    assert "not JSON" in reasons["corrupt.ipynb"] or "cannot read" in reasons["corrupt.ipynb"]
    assert "kernel died" in reasons["exits.ipynb"]
    assert f"{TIMEOUT_S:g} s" in reasons["spins.ipynb"]
    assert "NotImplementedError" in reasons["partial.ipynb"]
    assert reasons["good.ipynb"] == ""


@pytest.mark.slow
def test_scores_are_those_the_learner_saw(graded):
    # the plan is a plain dict: the learner's own scenario only, 6 of 10 (a function earns 10)
    assert graded.loc["good.ipynb", ["day1.patterns", "day1.lab1_cost", "total"]].tolist() == [
        10, 6, 16]
    wrong = check("day1.patterns", WRONG_PATTERNS).score
    assert 0 < wrong < 10
    assert graded.loc["partial.ipynb", "day1.patterns"] == wrong
    assert graded.loc["partial.ipynb", "total"] == wrong + 6
    # what ran before a crash or a timeout still counts; nothing else does
    assert graded.loc["exits.ipynb", "total"] == 6
    assert graded.loc["spins.ipynb", "total"] == 10
    assert graded.loc["corrupt.ipynb", "total"] == graded.loc["notes.txt", "total"] == 0
    assert (graded["max_total"] == 20).all()


@pytest.mark.slow
def test_no_process_is_left_behind(graded):
    assert _grading_processes() == []


@pytest.mark.slow
def test_the_leftover_check_sees_a_grading_kernel_while_it_runs(tmp_path: Path):
    """Positive control for the check above: while a submission is being graded, its runner and
    kernel are found; once grading returns (here by its timeout), none is."""
    import threading
    import time

    nb = tmp_path / "sleeps.ipynb"
    write_notebook(nb, "import time", "time.sleep(600)")
    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(row=grade_submission(nb, timeout_s=TIMEOUT_S)))
    worker.start()
    seen: list = []
    deadline = time.monotonic() + TIMEOUT_S
    while worker.is_alive() and not seen and time.monotonic() < deadline:
        seen = _grading_processes()
        time.sleep(0.2)
    worker.join(TIMEOUT_S + 60)
    assert not worker.is_alive()
    assert seen, "a running grading kernel is visible to _grading_processes()"
    assert box["row"]["status"] == "timeout", box["row"]
    # SIGKILLed processes take a moment to be gone (a big kernel frees its memory first)
    deadline = time.monotonic() + 5
    while (left := _grading_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], [(p.pid, p.status()) for p in left]


@pytest.mark.slow
def test_html_report_is_self_contained(graded, tmp_path: Path):
    page = write_html_report(graded.reset_index(), tmp_path / "report.html").read_text()
    assert "<table" in page and "spins.ipynb" in page and "timeout" in page
    assert "http://" not in page and "https://" not in page  # no CDN
    assert "6 submission(s), 2 ran to the end" in page


def test_last_check_counts_and_live_cells_see_the_graders_state_dir(
        tmp_path: Path, answers, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("CLOUDMART_STATE_DIR", str(state))
    nb = tmp_path / "retry.ipynb"
    write_notebook(nb, "import grading, os, pathlib",
                   f"grading.check('day1.patterns', {GOOD_PATTERNS_SOURCE})",
                   f"grading.check('day1.patterns', {json.dumps(WRONG_PATTERNS)})",
                   "pathlib.Path(os.environ['CLOUDMART_STATE_DIR'], 'seen').write_text(os.getcwd())")
    row = grade_submission(nb, timeout_s=120)
    assert row["status"] == "ok", row
    assert row["scores"] == {"day1.patterns": check("day1.patterns", WRONG_PATTERNS).score}
    workdir = (state / "seen").read_text()
    assert "cloudmart-grade-" in workdir and not Path(workdir).exists()  # a fresh, removed folder


def test_bad_arguments_are_clear(tmp_path: Path):
    with pytest.raises(ValueError, match="not a folder"):
        grade_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown exercise id"):
        grade_folder(tmp_path, exercises=["day9.nothing"])
    with pytest.raises(ValueError, match="jobs=0"):
        grade_folder(tmp_path, jobs=0)
    empty = grade_folder(tmp_path)
    assert empty.empty and "total" in empty.columns
    (tmp_path / "notes.txt").write_text("no notebook here")
    chosen = grade_folder(tmp_path, exercises=["day1.patterns", "day1.challenge"])
    assert list(chosen.columns) == ["submission", "status", "reason", "stamp", "learner_id",
                                    "day1.patterns", "day1.challenge", "total", "max_total"]
    assert chosen["status"].tolist() == ["not-a-notebook"] and chosen["max_total"][0] == 20


@pytest.mark.slow
def test_cli_writes_csv_and_html(tmp_path: Path, answers):
    folder = tmp_path / "subs"
    folder.mkdir()
    write_notebook(folder / "a.ipynb", "import grading",
                   f"grading.check('day1.patterns', {GOOD_PATTERNS_SOURCE})")
    write_notebook(folder / "c.ipynb", "import grading",
                   f"grading.check('day1.patterns', {json.dumps(WRONG_PATTERNS)})")
    (folder / "b.ipynb").write_text("garbage")
    (folder / "dave").mkdir()
    (folder / "dave" / "d.ipynb").write_text("{}")
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / ".ipynb_checkpoints" / "a-checkpoint.ipynb").write_text("{}")
    done = subprocess.run(
        [sys.executable, "-m", "grading", "grade", str(folder), "--out", str(tmp_path / "g.csv"),
         "--html", str(tmp_path / "g.html"), "--timeout", "90", "--jobs", "2"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "graded 4 submission(s)" in done.stdout
    table = pd.read_csv(tmp_path / "g.csv")
    # sorted, subfolders included, hidden folders skipped
    assert table["submission"].tolist() == ["a.ipynb", "b.ipynb", "c.ipynb", "dave/d.ipynb"]
    table = table.set_index("submission")
    assert table.loc["a.ipynb", "day1.patterns"] == 10
    assert table.loc["c.ipynb", "day1.patterns"] == check("day1.patterns", WRONG_PATTERNS).score
    assert table.loc["b.ipynb", "status"] == "corrupt"
    assert table.loc["dave/d.ipynb", "status"] == "corrupt"
    assert (tmp_path / "g.html").read_text().count("<tr") == 5


def test_cli_errors_are_one_line(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "grading", "grade", str(tmp_path / "none"), "--out",
         str(tmp_path / "g.csv")], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "does not exist" in done.stderr
    assert not (tmp_path / "g.csv").exists()
    done = subprocess.run(
        [sys.executable, "-m", "grading", "grade", str(tmp_path), "--out",
         str(tmp_path / "no" / "g.csv")], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "its folder does not exist" in done.stderr
