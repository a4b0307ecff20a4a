"""Benchmark of grading: time of each Day 1 check, and batch grading seconds per submission.

    .venv/bin/python tests/benchmarks/grading_batch.py [--submissions 4] [--jobs 2]

Grades a temporary folder of small submissions (each answers two exercises) in subprocesses,
then prints one JSON object as the last line. Timings are noisy on a shared machine: they are
figures to read, not assertions.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "grading"))

import grading  # noqa: E402
from grading.batch import grade_folder  # noqa: E402
from grading_fixtures import (GOOD_PATTERNS_SOURCE, LAB1_CHEAPEST_PLAN, correct_answers,  # noqa: E402
                              write_notebook)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    if args.submissions < 1 or args.jobs < 1:
        parser.error("--submissions and --jobs must be >= 1")

    answers = correct_answers()
    check_ms = {}
    for exercise_id, answer in answers.items():
        grading.check(exercise_id, answer)  # warm imports and caches
        t0 = time.perf_counter()
        grading.check(exercise_id, answer)
        check_ms[exercise_id] = round(1000 * (time.perf_counter() - t0), 1)
        print(f"{exercise_id}: {check_ms[exercise_id]} ms", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(args.submissions):
            write_notebook(
                folder / f"student{i:02d}.ipynb", "import grading",
                f"grading.check('day1.patterns', {GOOD_PATTERNS_SOURCE})",
                f"grading.check('day1.lab1_cost', {json.dumps(LAB1_CHEAPEST_PLAN)})")
        t0 = time.perf_counter()
        grades = grade_folder(folder, timeout_s=args.timeout, jobs=args.jobs)
        elapsed_s = time.perf_counter() - t0
    statuses = grades["status"].value_counts().to_dict()
    print(grades[["submission", "status", "total"]].to_string(index=False), flush=True)
    print(json.dumps({
        "check_ms": check_ms,
        "submissions": args.submissions,
        "jobs": args.jobs,
        "statuses": statuses,
        "batch_s": round(elapsed_s, 1),
        "batch_s_per_submission": round(elapsed_s / args.submissions, 2),
    }))


if __name__ == "__main__":
    main()
