"""`cloudmart ci run|dry-run WORKFLOW`: a GitHub workflow run by act on this host (cluster.ci).

    cloudmart ci run .github/workflows/ci.yml --event push --payload event.json [--json]
    cloudmart ci dry-run .github/workflows/ci.yml --event pull_request --payload pr.json

Errors (a YAML error, a missing file, an unreadable payload) are one line and exit code 1; a run
whose jobs fail exits 1 too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_parser(sub) -> None:
    """Add `ci` with its `run` and `dry-run` subcommands to the `cloudmart` parser."""
    ci = sub.add_parser("ci", help="run a GitHub workflow with act on this host")
    actions = ci.add_subparsers(dest="ci_command", required=True)
    for name, help_text in (("run", "run the workflow; per-job and per-step timings"),
                            ("dry-run", "which jobs an event starts (no step runs)")):
        p = actions.add_parser(name, help=help_text)
        p.add_argument("workflow", help="the workflow file")
        p.add_argument("--event", default="push", help="event name (default push)")
        p.add_argument("--payload", default=None, help="event payload JSON file (GitHub's webhook payload)")
        p.add_argument("--repo", default=None, help="repository folder (default: the one holding .github/)")
        p.add_argument("--timeout", type=float, default=300.0, help="seconds before act is stopped")
        p.add_argument("--json", action="store_true")
    ci.set_defaults(func=run)


def _payload(path: str | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the payload: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: the payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the payload must be a JSON object")
    return data


def run(args) -> int:
    from cluster import ci

    try:
        payload = _payload(args.payload)
        if args.ci_command == "dry-run":
            jobs = ci.dry_run(args.workflow, args.event, payload, repo=args.repo, timeout_s=args.timeout)
            print(json.dumps(jobs) if args.json else ("\n".join(f"{j}\t{r}" for j, r in jobs.items()) or "no job starts"))
            return 0
        result = ci.run_workflow(args.workflow, args.event, payload, repo=args.repo, timeout_s=args.timeout, env=ci.tools_env())
    except (ValueError, TimeoutError, RuntimeError, OSError) as exc:
        print(f"cloudmart: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    if not result.triggered:
        print(f"the workflow does not run for this {args.event} event (its `on` filters)")
        return 0
    if args.json:
        print(json.dumps({"ok": result.ok, "wall_s": result.wall_s, "jobs": json.loads(result.jobs.to_json(orient="records")),
                          "steps": json.loads(result.steps.to_json(orient="records"))}))
    else:
        for _, job in result.jobs.iterrows():
            print(f"{job['job']:<40} {job['result'] or '-':<8} {job['duration_s']:7.2f} s")
        print(f"{'success' if result.ok else 'failure'} in {result.wall_s:.2f} s")
    return 0 if result.ok else 1
