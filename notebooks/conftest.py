"""pytest hooks for running the notebooks under nbval: a per-notebook run-time summary."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

_seconds_per_notebook: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    """Add every phase of every cell to its notebook's total."""
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _seconds_per_notebook[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    """Print how long each notebook took, and the total."""
    if not _seconds_per_notebook:
        return
    terminalreporter.section("notebook run times")
    for path, seconds in sorted(_seconds_per_notebook.items()):
        terminalreporter.write_line(f"{seconds:7.1f} s  {Path(path).as_posix()}")
    terminalreporter.write_line(f"{sum(_seconds_per_notebook.values()):7.1f} s  total")
