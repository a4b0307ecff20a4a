"""Batch grading: execute every submission in its own subprocess and tabulate the checks.

:func:`grade_folder` runs each ``*.ipynb`` of a folder with nbclient in a fresh subprocess (and
kernel) under a wall-clock limit. The kernel inherits ``CLOUDMART_GRADING_RESULTS``, so every
``grading.check`` the notebook calls is recorded; the last result per exercise counts. A
submission that is not a notebook, is corrupt, times out or crashes its kernel becomes a row
with its status and reason; the batch itself never fails because of a submission.

Each submission runs in a fresh temporary folder. Live cells (``cluster.connect()``) reach the
CloudMart of the grader's state folder (``CLOUDMART_STATE_DIR``, else ``./.cloudmart``): start
it with ``cloudmart up`` before grading notebooks that use it.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from string import Template

import nbformat
import pandas as pd

from grading import RESULTS_ENV, known_exercises, max_score, variants

__all__ = ["STATUSES", "class_report", "default_jobs", "grade_folder", "grade_submission", "write_class_report",
           "write_html_report"]

STATUSES = ("ok", "timeout", "error", "corrupt", "not-a-notebook")
# What batch grading found of a submission's learner stamp (column ``stamp``).
STAMPS = ("valid", "unchecked", "missing", "forged", "moved", "none")
DEFAULT_TIMEOUT_S = 300.0
STATE_DIR_ENV = "CLOUDMART_STATE_DIR"

_CHECK_CALL = re.compile(r"""check\(\s*["']([\w.]+)["']""")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_results(path: Path, wrong: dict[str, list[str]] | None = None) -> dict[str, float]:
    """Last recorded score per exercise id; malformed lines are ignored. With ``wrong``, it is
    filled with the last feedback's "wrong" messages per exercise id."""
    scores: dict[str, float] = {}
    if not path.exists():
        return scores
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            scores[str(rec["exercise_id"])] = float(rec["score"])
            if wrong is not None:
                wrong[str(rec["exercise_id"])] = [str(m) for m in rec.get("wrong") or []]
        except (ValueError, KeyError, TypeError):
            continue
    return scores


def _stamp_of(nb: nbformat.NotebookNode, path: Path, secret: str | None,
              folder: Path | None) -> tuple[str, str, variants.Stamp | None]:
    """(stamp status, learner id, stamp to grade with) of a submission.

    ``valid``: signed with ``secret`` (and, in a per-learner folder, the folder's learner);
    ``unchecked``: stamped but no secret to check it with; ``missing``: no stamp although a
    secret is set; ``forged``: the signature does not match the id; ``moved``: a valid stamp of
    another learner than the folder it was submitted in (a copied notebook). Only valid and
    unchecked stamps choose the variants; the others are graded as variant 0.
    """
    from grading.notebooks import read_stamp

    try:
        stamp = read_stamp(nb)
    except ValueError:
        return "forged", "", None
    if stamp is None:
        return ("missing" if secret else "none"), "", None
    if secret is None:
        return "unchecked", stamp.learner_id, stamp
    if not variants.verify(stamp.learner_id, stamp.signature, secret):
        return "forged", stamp.learner_id, None
    if folder is not None:
        parts = path.resolve().relative_to(folder.resolve()).parts
        if len(parts) > 1 and parts[0] != stamp.learner_id:
            return "moved", stamp.learner_id, None
    return "valid", stamp.learner_id, stamp


def grade_submission(path: str | Path, timeout_s: float = DEFAULT_TIMEOUT_S,
                     secret: str | None = None, folder: str | Path | None = None) -> dict:
    """Execute one submission and return ``{"submission", "status", "reason", "scores",
    "stamp", "learner_id"}``.

    ``timeout_s`` bounds the whole run (kernel start included); on expiry the runner's and the
    kernel's process groups are killed. With the instructor ``secret`` the learner stamp is
    verified (see :func:`_stamp_of`; ``folder`` is the submissions folder, whose first-level
    subfolders name learners); the kernel is given the verified stamp, so the variants graded
    are the learner's whatever the notebook's stamp cell says.
    """
    path = Path(path)
    row = {"submission": path.name, "status": "ok", "reason": "", "scores": {},
           "stamp": "none", "learner_id": "", "wrong": {}}
    if path.suffix != ".ipynb" or not path.is_file():
        row.update(status="not-a-notebook", reason=f"not a .ipynb file ({path.suffix or 'no suffix'})")
        return row
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # any parse/validation failure means the file is unusable
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        row.update(status="corrupt", reason=f"cannot read notebook: {first[:200]}")
        return row
    stamp_status, learner_id, stamp = _stamp_of(nb, path, secret,
                                                Path(folder) if folder else None)
    row.update(stamp=stamp_status, learner_id=learner_id)

    with tempfile.TemporaryDirectory(prefix="cloudmart-grade-") as tmp:
        tmpdir = Path(tmp)
        results, status_file, pid_file = (tmpdir / "results.jsonl", tmpdir / "status.json",
                                          tmpdir / "kernel.pid")
        workdir = tmpdir / "work"
        workdir.mkdir()
        env = dict(os.environ, **{
            RESULTS_ENV: str(results),
            "MPLBACKEND": "Agg",
            "CLOUDMART_CLASS_URL": "",   # grading a submission is not the learner's progress
            # Live cells reach the grader's own CloudMart (the one `cloudmart up` started here),
            # not a new one per submission in a folder that is deleted afterwards.
            STATE_DIR_ENV: str(Path(os.environ.get(STATE_DIR_ENV) or ".cloudmart").resolve()),
            # The verified stamp, or an empty one (variant 0): never the notebook's own cell.
            variants.STAMP_ENV: stamp.to_env() if stamp else "",
        })
        cmd = [sys.executable, "-m", "grading._runner", str(path.resolve()), str(workdir),
               str(status_file), str(pid_file), str(timeout_s)]
        proc = subprocess.Popen(cmd, env=env, cwd=workdir, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started = time.monotonic()
        try:
            _, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            stderr = b""
            row.update(status="timeout", reason=f"did not finish within {timeout_s:g} s")
            proc.communicate()
        finally:
            # The kernel runs in a session of its own: kill it too, whatever happened.
            if pid_file.exists():
                try:
                    _kill_group(int(pid_file.read_text().strip()))
                except ValueError:
                    pass
            _kill_group(proc.pid)
        if row["status"] != "timeout":
            try:
                outcome = json.loads(status_file.read_text())
                row.update(status=outcome["status"], reason=outcome.get("reason", ""))
            except (OSError, ValueError, KeyError):
                tail = (stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
                row.update(status="error", reason=f"runner exited with code {proc.returncode}"
                           + (f": {tail[0][:200]}" if tail else ""))
        row["elapsed_s"] = round(time.monotonic() - started, 1)
        row["scores"] = _read_results(results, row["wrong"])
    return row


def _referenced_exercises(path: Path) -> set[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return set(_CHECK_CALL.findall(text))


def default_jobs() -> int:
    """Submissions graded at once by default: one per CPU core (each is a kernel of its own)."""
    return max(1, os.cpu_count() or 1)


def grade_folder(
    folder: str | Path,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    exercises: list[str] | None = None,
    jobs: int | None = 1,
    secret: str | None = None,
) -> pd.DataFrame:
    """Grade every file in ``folder`` and its subfolders (one row per file, named by its path
    relative to ``folder``, sorted), ``jobs`` at a time (``None``: :func:`default_jobs`; never
    more than the CPU cores, since each submission is a busy kernel of its own).

    ``grades.attrs`` holds ``wrong`` (per submission, per exercise, the last feedback's wrong
    messages: :func:`class_report` counts them), ``jobs`` (used), ``elapsed_s`` (the batch's wall
    time) and ``busy_s`` (the submissions' wall times added up: over ``elapsed_s``, how many ran
    at once on average).

    With the instructor ``secret``, learner stamps are verified (column ``stamp``, one of
    :data:`STAMPS`, and ``learner_id``).

    Columns: ``submission``, ``status`` (one of :data:`STATUSES`), ``reason``, ``stamp``,
    ``learner_id``, one column per
    exercise (score; 0 when not attempted), ``total`` and ``max_total``. Exercises are
    ``exercises`` if given, else every known exercise that any submission checks or mentions.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder={str(folder)!r} is not a folder of submissions")
    if jobs is None:
        jobs = default_jobs()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} is invalid; it must be an integer >= 1")
    jobs = min(jobs, default_jobs())
    started = time.monotonic()
    # Every file, also in per-learner subfolders; hidden files and folders are skipped.
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    # Each submission is its own subprocess: threads only wait for them.
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(lambda p: grade_submission(p, timeout_s=timeout_s, secret=secret,
                                                        folder=folder), files))
    for p, r in zip(files, rows):
        r["submission"] = p.relative_to(folder).as_posix()
    known = set(known_exercises())
    if exercises is None:
        seen = set()
        for p, r in zip(files, rows):
            seen |= set(r["scores"])
            if r["status"] not in ("not-a-notebook", "corrupt"):
                seen |= _referenced_exercises(p)
        exercises = sorted(seen & known)
    else:
        unknown = sorted(set(exercises) - known)
        if unknown:
            raise ValueError(f"unknown exercise id(s) {', '.join(unknown)}; known ids: "
                             f"{', '.join(sorted(known))}")
    max_total = sum(max_score(e) for e in exercises)
    table = []
    for r in rows:
        rec = {"submission": r["submission"], "status": r["status"], "reason": r["reason"],
               "stamp": r.get("stamp", "none"), "learner_id": r.get("learner_id", "")}
        for e in exercises:
            rec[e] = float(r["scores"].get(e, 0.0))
        rec["total"] = float(sum(rec[e] for e in exercises))
        rec["max_total"] = float(max_total)
        table.append(rec)
    columns = ["submission", "status", "reason", "stamp", "learner_id", *exercises, "total",
               "max_total"]
    grades = pd.DataFrame(table, columns=columns)
    grades.attrs.update(wrong={r["submission"]: r.get("wrong", {}) for r in rows}, jobs=jobs,
                        elapsed_s=round(time.monotonic() - started, 1),
                        busy_s=round(sum(r.get("elapsed_s", 0.0) for r in rows), 1))
    return grades


_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
SCORE_BINS = ((0.0, "0 %"), (0.5, "under 50 %"), (1.0, "50 % to under 100 %"))


def _share_bin(share: float) -> str:
    if share >= 1.0:
        return "100 %"
    if share <= 0.0:
        return "0 %"
    return "under 50 %" if share < 0.5 else "50 % to under 100 %"


def class_report(grades: pd.DataFrame, top: int = 3) -> dict:
    """The class at a glance, from :func:`grade_folder`'s table: per exercise the distribution of
    scores (mean, median, min, max, count per band of the maximum) and the most common wrong
    answers (the feedback's wrong messages, numbers folded to ``#`` so that variants of one
    mistake count together); the submissions' statuses and stamps, and learner ids that
    submitted more than once."""
    from collections import Counter

    exercises = [c for c in grades.columns
                 if c not in ("submission", "status", "reason", "stamp", "learner_id", "total", "max_total")]
    wrong = grades.attrs.get("wrong", {})
    ran = grades[grades["status"].isin(["ok", "timeout", "error"])]
    out = {"submissions": int(len(grades)), "status": grades["status"].value_counts().to_dict(),
           "stamp": grades["stamp"].value_counts().to_dict(), "jobs": grades.attrs.get("jobs"),
           "elapsed_s": grades.attrs.get("elapsed_s"), "exercises": {}}
    ids = grades.loc[grades["learner_id"] != "", "learner_id"]
    out["duplicate_learners"] = sorted(ids[ids.duplicated()].unique().tolist())
    for ex in exercises:
        top_score = max_score(ex)
        scores = ran[ex].astype(float)
        bands = Counter(_share_bin(v / top_score) for v in scores)
        mistakes = Counter(_NUMBER.sub("#", m) for sub in ran["submission"]
                           for m in (wrong.get(sub, {}).get(ex) or []))
        attempted = int(sum(1 for sub in ran["submission"] if ex in wrong.get(sub, {})))
        out["exercises"][ex] = {
            "max_score": top_score, "attempted": attempted,
            "mean": round(float(scores.mean()), 2) if len(scores) else 0.0,
            "median": float(scores.median()) if len(scores) else 0.0,
            "min": float(scores.min()) if len(scores) else 0.0,
            "max": float(scores.max()) if len(scores) else 0.0,
            "bands": {label: int(bands.get(label, 0)) for label in ("0 %", "under 50 %", "50 % to under 100 %", "100 %")},
            "common_wrong": [{"message": m, "count": n} for m, n in mistakes.most_common(top)],
        }
    return out


def write_class_report(report: dict, path: str | Path, title: str = "Class report") -> Path:
    """Write :func:`class_report` as a self-contained HTML page (no script, no CDN)."""
    esc = html.escape
    parts = [f"<p>{report['submissions']} submission(s): "
             + ", ".join(f"{esc(str(k))} {v}" for k, v in sorted(report["status"].items()))
             + "; stamps: " + ", ".join(f"{esc(str(k))} {v}" for k, v in sorted(report["stamp"].items()))
             + (f"; graded {report['jobs']} at a time in {report['elapsed_s']} s" if report.get("jobs") else "")
             + "</p>"]
    if report["duplicate_learners"]:
        parts.append(f"<p><b>Submitted more than once:</b> {esc(', '.join(report['duplicate_learners']))}</p>")
    for ex, r in report["exercises"].items():
        bands = "".join(f"<tr><td>{esc(b)}</td><td>{n}</td><td><div style=\"background:#5b8def;height:10px;"
                        f"width:{6 * n}px\"></div></td></tr>" for b, n in r["bands"].items())
        mistakes = "".join(f"<li>{m['count']} &times; {esc(m['message'])}</li>" for m in r["common_wrong"]) \
            or "<li>none</li>"
        parts.append(f"<h2>{esc(ex)}</h2><p>attempted by {r['attempted']}; mean {r['mean']:g}, median "
                     f"{r['median']:g}, min {r['min']:g}, max {r['max']:g} of {r['max_score']:g}</p>"
                     f"<table><tr><th>score band</th><th>submissions</th><th></th></tr>{bands}</table>"
                     f"<p>Most common wrong answers:</p><ul>{mistakes}</ul>")
    path = Path(path)
    path.write_text(_HTML.substitute(title=esc(title), summary="", table="".join(parts)), encoding="utf-8")
    return path


_HTML = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>$title</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}
</style></head>
<body><h1>$title</h1>
<p>$summary</p>
$table
</body></html>
""")


def write_html_report(grades: pd.DataFrame, path: str | Path, title: str = "Grades") -> Path:
    """Write ``grades`` (from :func:`grade_folder`) as a self-contained HTML page (no CDN)."""
    n = len(grades)
    ok = int((grades["status"] == "ok").sum()) if n else 0
    mean = float(grades["total"].mean()) if n else 0.0
    max_total = float(grades["max_total"].iloc[0]) if n else 0.0
    summary = (f"{n} submission(s), {ok} ran to the end; mean total {mean:.1f} of "
               f"{max_total:g}.")
    table = grades.to_html(index=False, escape=True, na_rep="", float_format="{:g}".format,
                           classes="grades", border=0)
    path = Path(path)
    path.write_text(_HTML.substitute(title=html.escape(title), summary=html.escape(summary),
                                     table=table), encoding="utf-8")
    return path
