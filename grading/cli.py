"""Command-line hooks: ``cloudmart grade`` and ``cloudmart student-notebooks``.

The ``cloudmart`` CLI adds these subcommands with :func:`add_subcommands`; ``python -m grading``
offers the same two on its own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_subcommands", "class_serve_command", "grade_command", "main", "student_notebooks_command"]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid; the timeout must be > 0 s")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid; it must be >= 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is out of range; valid: 0..65535")
    return value


def class_serve_command(args: argparse.Namespace) -> int:
    """Run ``class serve`` until Ctrl-C."""
    from grading.progress import serve_command

    return serve_command(args)


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``grade``, ``class serve`` and ``student-notebooks`` to ``subparsers`` (each sets ``func``)."""
    grade = subparsers.add_parser(
        "grade", help="execute every submission of a folder and score its exercises",
        description="Execute each submission in its own subprocess with a time limit and "
                    "write one row per submission (status, reason, score per exercise).")
    grade.add_argument("submissions", type=Path, help="folder of submitted notebooks")
    grade.add_argument("--out", type=Path, default=Path("grades.csv"),
                       help="CSV file to write (default: grades.csv)")
    grade.add_argument("--html", type=Path, default=None, help="also write an HTML report")
    grade.add_argument("--timeout", type=_positive_float, default=300.0,
                       help="time limit per submission in seconds (default: 300)")
    grade.add_argument("--jobs", type=_positive_int, default=None,
                       help="submissions graded at the same time (default and at most: the CPU cores)")
    grade.add_argument("--report", type=Path, default=None,
                       help="also write the class report: HTML at this path, JSON beside it (.json)")
    grade.add_argument("--secret-file", type=Path, default=None,
                       help="instructor secret that signed the learner stamps (default: "
                            "$CLOUDMART_INSTRUCTOR_SECRET); without one, stamps are not checked")
    grade.set_defaults(func=grade_command)

    klass = subparsers.add_parser(
        "class", help="class progress: a live table of who reached which exercise",
        description="Serve the class progress table; learners opt in with CLOUDMART_CLASS_URL and "
                    "CLOUDMART_CLASS_TOKEN.")
    klass_sub = klass.add_subparsers(dest="class_command", required=True, parser_class=subparsers._parser_class)
    serve = klass_sub.add_parser("serve", help="serve the live table (HTML at /, JSON at /api/progress)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0: any free port)")
    serve.add_argument("--token", default=None,
                       help="class token (default $CLOUDMART_CLASS_TOKEN, else a new one is printed)")
    serve.add_argument("--store", type=Path, default=None, help="JSON-lines file that keeps the results")
    serve.set_defaults(func=class_serve_command)

    students = subparsers.add_parser(
        "student-notebooks", help="write the notebooks with solutions stripped",
        description="Copy every notebook of --src to OUT, replacing each cell tagged "
                    "'solution' with a stub and clearing outputs.")
    students.add_argument("out", type=Path, help="folder to write the student notebooks to")
    students.add_argument("--src", type=Path, default=Path("notebooks"),
                          help="folder of solution notebooks (default: notebooks)")
    students.add_argument("--roster", type=Path, default=None,
                          help="CSV with a learner_id column: one stamped copy per learner, "
                               "OUT/<learner_id>/")
    students.add_argument("--secret-file", type=Path, default=None,
                          help="file holding the instructor secret that signs the stamps "
                               "(default: $CLOUDMART_INSTRUCTOR_SECRET)")
    students.add_argument("--lang", default="en", choices=["en", "ko"],
                          help="language of the notebooks' text (default: en; ko: from locale/ko)")
    students.set_defaults(func=student_notebooks_command)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def grade_command(args: argparse.Namespace) -> int:
    """Run ``grade``: CSV (and optional HTML) of every submission; exit code 0 on success."""
    from grading.batch import grade_folder, write_html_report

    if not args.submissions.is_dir():
        return _fail(f"submissions folder {str(args.submissions)!r} does not exist")
    for target in (args.out, args.html, getattr(args, "report", None)):
        if target is not None and not target.resolve().parent.is_dir():
            return _fail(f"cannot write {str(target)!r}: its folder does not exist")
    from grading.variants import instructor_secret

    try:
        secret_file = getattr(args, "secret_file", None)
        secret = instructor_secret(required=False,
                                   path=str(secret_file) if secret_file else None)
    except (OSError, ValueError) as err:
        return _fail(f"instructor secret: {err}")
    try:
        grades = grade_folder(args.submissions, timeout_s=args.timeout,
                              jobs=getattr(args, "jobs", None), secret=secret)
        grades.to_csv(args.out, index=False)
        if args.html is not None:
            write_html_report(grades, args.html, title=f"Grades: {args.submissions.name}")
        report_path = getattr(args, "report", None)
        if report_path is not None:
            import json

            from grading.batch import class_report, write_class_report

            report = class_report(grades)
            write_class_report(report, report_path, title=f"Class report: {args.submissions.name}")
            report_path.with_suffix(".json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    except (OSError, ValueError) as err:
        return _fail(str(err))
    report_path = getattr(args, "report", None)
    counts = grades["status"].value_counts().to_dict()
    print(f"graded {len(grades)} submission(s) "
          f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items())) or 'none'}), "
          f"{grades.attrs.get('jobs')} at a time in {grades.attrs.get('elapsed_s')} s -> {args.out}"
          + (f", {args.html}" if args.html is not None else "")
          + (f", {report_path}" if report_path is not None else ""))
    return 0


def student_notebooks_command(args: argparse.Namespace) -> int:
    """Run ``student-notebooks``: write learner versions of every notebook; exit code 0."""
    from grading.notebooks import make_student_notebooks, read_roster
    from grading.variants import instructor_secret

    if not args.src.is_dir():
        return _fail(f"source folder {str(args.src)!r} does not exist")
    roster = secret = None
    if getattr(args, "roster", None) is not None:
        try:
            roster = read_roster(args.roster)
        except (OSError, ValueError) as err:
            return _fail(str(err))
        try:
            secret_file = getattr(args, "secret_file", None)
            secret = instructor_secret(path=str(secret_file) if secret_file else None)
        except (OSError, ValueError) as err:
            return _fail(f"instructor secret: {err}")
    language = getattr(args, "lang", "en") or "en"
    untranslated: list[str] = []
    transform = None
    if language != "en":
        from course_i18n.notebooks import localiser

        transform = localiser(language, untranslated)
    try:
        written = make_student_notebooks(args.src, args.out, roster=roster, secret=secret, transform=transform)
    except (OSError, ValueError) as err:
        return _fail(str(err))
    except Exception as err:  # a malformed notebook: say which, in one line
        return _fail(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    per = f" for {len(roster)} learner(s)" if roster else ""
    print(f"wrote {len(written)} student notebook(s){per} to {args.out}"
          + (f" in {language}; {len(set(untranslated))} not translated yet stay in English" if language != "en" else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m grading grade …`` / ``python -m grading student-notebooks …``."""
    parser = argparse.ArgumentParser(prog="python -m grading",
                                     description="CloudMart Course grading tools")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subcommands(sub)
    args = parser.parse_args(argv)
    return args.func(args)
