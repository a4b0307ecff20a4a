"""Fixtures for the grading tests: correct answers and a synthetic solution notebook."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from grading_fixtures import correct_answers, synthetic_solution_notebook


@pytest.fixture
def answers() -> dict[str, object]:
    """A full-marks answer per Day 1 exercise."""
    return correct_answers()


@pytest.fixture
def solution_notebook(tmp_path: Path) -> Path:
    """The synthetic solution notebook, written to ``solutions/day1/03-patterns.ipynb``."""
    src = tmp_path / "solutions" / "day1"
    src.mkdir(parents=True)
    path = src / "03-patterns.ipynb"
    nbformat.write(synthetic_solution_notebook(), path)
    return path


@pytest.fixture
def no_stamp(monkeypatch):
    """No roster stamp in the environment or the process: a test picks its variant itself."""
    from grading import variants

    monkeypatch.delenv(variants.STAMP_ENV, raising=False)
    variants.clear_stamp()
    yield
    variants.clear_stamp()
