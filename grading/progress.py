"""Class progress: who reached which exercise, and where the class is stuck.

**Opt-in, learner side.** Only when both ``CLOUDMART_CLASS_URL`` and ``CLOUDMART_CLASS_TOKEN``
are set (the instructor gives them out) does :func:`grading.check` also post the learner id,
the exercise id and the score — nothing else, never the answer — to the class server. Without
them nothing is sent. A network failure never breaks a check: it is reported on stderr in one
line and the feedback is returned as usual.

**Instructor side.** ``cloudmart class serve`` runs :class:`ProgressServer`: it binds 127.0.0.1
unless ``--host`` says otherwise, refuses every request without the class token (401), answers
bad input with a 4xx and a message, and shows

- ``GET /`` — a live HTML table (refreshes itself): one row per learner, one column per exercise
  (best score, attempts), and per exercise how many attempted, how many passed and who is stuck;
- ``GET /api/progress`` — the same as JSON;
- ``POST /api/progress`` — ``{"learner", "exercise", "score", "max_score"}`` from ``grading.check``.

Records are kept in memory and, with ``--store FILE``, appended to a JSON-lines file that a
restarted server reads back.
"""

from __future__ import annotations

import html
import json
import math
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

__all__ = ["CLASS_TOKEN_ENV", "CLASS_URL_ENV", "ProgressServer", "learner_id", "report", "summary"]

CLASS_URL_ENV = "CLOUDMART_CLASS_URL"
CLASS_TOKEN_ENV = "CLOUDMART_CLASS_TOKEN"
LEARNER_ENV = "CLOUDMART_LEARNER_ID"
POST_TIMEOUT_S = 2.0
MAX_BODY_BYTES = 4096
# A learner who tried an exercise this many times without full marks counts as stuck on it.
STUCK_AFTER_ATTEMPTS = 2


# ----- learner side ------------------------------------------------------------------------------

def learner_id() -> str:
    """The learner's id: the notebook's learner stamp, else ``CLOUDMART_LEARNER_ID``, else the
    login name."""
    from grading import variants

    stamp = variants.current_stamp()
    if stamp is not None:
        return stamp.learner_id
    if os.environ.get(LEARNER_ENV):
        return os.environ[LEARNER_ENV]
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 — no login name (some containers)
        return "anonymous"


def report(exercise_id: str, score: float, max_score: float) -> str | None:
    """Post one result if the learner opted in. Returns None when it was sent or nothing was to
    be sent, else the one-line reason it was not (also written to stderr)."""
    url = os.environ.get(CLASS_URL_ENV, "").strip()
    if not url:
        return None   # no opt-in: nothing leaves the machine
    token = os.environ.get(CLASS_TOKEN_ENV, "").strip()
    if not token:
        return _warn(f"{CLASS_URL_ENV} is set but {CLASS_TOKEN_ENV} is not: ask the instructor for the class token")
    import httpx

    body = {"learner": learner_id(), "exercise": exercise_id, "score": score, "max_score": max_score}
    try:
        resp = httpx.post(url.rstrip("/") + "/api/progress", json=body, timeout=POST_TIMEOUT_S,
                          headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        return _warn(f"the class server at {url} does not answer ({type(exc).__name__})")
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        return _warn(f"the class server refused it: HTTP {resp.status_code} {str(detail)[:200]}")
    return None


def _warn(message: str) -> str:
    line = f"class progress not sent: {message}"
    print(line, file=sys.stderr)
    return line


# ----- the table ---------------------------------------------------------------------------------

def summary(records: list[dict], exercises: list[str] | None = None) -> dict:
    """Per learner the best score and attempts per exercise and the furthest exercise reached;
    per exercise how many attempted and passed, and who is stuck (attempted at least
    :data:`STUCK_AFTER_ATTEMPTS` times without full marks)."""
    learners: dict[str, dict] = {}
    order = list(exercises or [])
    for rec in records:
        if rec["exercise"] not in order:
            order.append(rec["exercise"])
        cell = learners.setdefault(rec["learner"], {}).setdefault(
            rec["exercise"], {"best": 0.0, "max_score": rec["max_score"], "attempts": 0, "last_at": 0.0})
        cell["best"] = max(cell["best"], rec["score"])
        cell["attempts"] += 1
        cell["last_at"] = max(cell["last_at"], rec["at"])
    seen = [e for e in order if any(e in row for row in learners.values())]
    per_exercise = {}
    for ex in seen:
        cells = {lid: row[ex] for lid, row in learners.items() if ex in row}
        passed = sorted(lid for lid, c in cells.items() if c["best"] >= c["max_score"])
        stuck = sorted(lid for lid, c in cells.items()
                       if c["best"] < c["max_score"] and c["attempts"] >= STUCK_AFTER_ATTEMPTS)
        per_exercise[ex] = {"attempted": len(cells), "passed": len(passed), "stuck": stuck,
                            "mean_share": round(sum(c["best"] / c["max_score"] for c in cells.values())
                                                / len(cells), 3)}
    table = {lid: {"exercises": row, "reached": max(row, key=lambda e: seen.index(e))}
             for lid, row in sorted(learners.items())}
    most_stuck = max(per_exercise, key=lambda e: (len(per_exercise[e]["stuck"]),
                                                  per_exercise[e]["attempted"] - per_exercise[e]["passed"]),
                     default=None)
    if most_stuck is not None and not (per_exercise[most_stuck]["stuck"]
                                       or per_exercise[most_stuck]["attempted"] > per_exercise[most_stuck]["passed"]):
        most_stuck = None
    return {"learners": table, "exercises": per_exercise, "order": seen, "stuck_on": most_stuck,
            "records": len(records)}


def _validate(body: object, known: set[str]) -> dict:
    from grading import max_score
    from grading.variants import check_learner_id

    if not isinstance(body, dict):
        raise ValueError("body: expected a JSON object with learner, exercise, score, max_score")
    extra = sorted(set(body) - {"learner", "exercise", "score", "max_score"})
    if extra:
        raise ValueError(f"unknown field(s) {', '.join(extra)}; valid: learner, exercise, score, max_score")
    check_learner_id(body.get("learner"))
    ex = body.get("exercise")
    if ex not in known:
        raise ValueError(f"exercise {ex!r} is unknown; valid: one of the {len(known)} ids of grading.known_exercises()")
    top = max_score(ex)
    score = body.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score) \
            or not 0 <= score <= top:
        raise ValueError(f"score={score!r}: valid is a number within 0..{top:g} for {ex}")
    if body.get("max_score") not in (None, top):
        raise ValueError(f"max_score={body.get('max_score')!r}: {ex} is worth {top:g}")
    return {"learner": body["learner"], "exercise": ex, "score": float(score), "max_score": top}


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{refresh}">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:3px 8px;text-align:center}}th{{background:#f3f3f3}}
td.pass{{background:#e3f2e1}}td.part{{background:#fff4e0}}td.stuck{{background:#fde0e0}}td.name{{text-align:left}}</style>
</head><body><h1>{title}</h1><p>{headline}</p>{table}<p style="color:#666">updated {updated}; refreshes every {refresh} s</p>
</body></html>
"""


def render_html(state: dict, title: str = "Class progress") -> str:
    """The live table as a self-contained page (no script, no CDN)."""
    esc = html.escape
    order, per = state["order"], state["exercises"]
    n = len(state["learners"])
    if state["stuck_on"]:
        s = per[state["stuck_on"]]
        headline = (f"{n} learner(s); the class is stuck on <b>{esc(state['stuck_on'])}</b>: {s['attempted']} tried it, "
                    f"{s['passed']} passed" + (f", stuck: {esc(', '.join(s['stuck']))}" if s["stuck"] else "") + ".")
    else:
        headline = f"{n} learner(s); {state['records']} result(s) so far" + ("; nobody is stuck." if n else ".")
    head = "".join(f"<th>{esc(e)}</th>" for e in order)
    rows = []
    for lid, row in state["learners"].items():
        tds = []
        for e in order:
            c = row["exercises"].get(e)
            if c is None:
                tds.append("<td></td>")
                continue
            kind = "pass" if c["best"] >= c["max_score"] else ("stuck" if lid in per[e]["stuck"] else "part")
            tds.append(f'<td class="{kind}">{c["best"]:g}/{c["max_score"]:g} <small>×{c["attempts"]}</small></td>')
        rows.append(f'<tr><td class="name">{esc(lid)}</td><td>{esc(row["reached"])}</td>{"".join(tds)}</tr>')
    foot = "".join(f"<td>{per[e]['passed']}/{per[e]['attempted']} passed</td>" for e in order)
    table = (f"<table><tr><th>learner</th><th>reached</th>{head}</tr>{''.join(rows)}"
             f"<tr><th>class</th><td></td>{foot}</tr></table>")
    return _PAGE.format(title=esc(title), headline=headline, table=table, refresh=5,
                        updated=time.strftime("%H:%M:%S"))


# ----- instructor side ---------------------------------------------------------------------------

class ProgressServer:
    """The class progress server (see the module docstring). ``port=0`` lets the kernel choose."""

    def __init__(self, token: str, host: str = "127.0.0.1", port: int = 0, store: Path | None = None):
        if not isinstance(token, str) or len(token) < 8:
            raise ValueError("the class token must be at least 8 characters")
        from grading import known_exercises

        self.token = token
        self.known = known_exercises()
        self.store = Path(store) if store else None
        self.records: list[dict] = []
        self._lock = threading.Lock()
        if self.store and self.store.exists():
            for line in self.store.read_text(encoding="utf-8").splitlines():
                try:
                    self.records.append(json.loads(line))
                except ValueError:
                    continue
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def state(self) -> dict:
        with self._lock:
            return summary(list(self.records), self.known)

    def add(self, body: object) -> dict:
        rec = {**_validate(body, set(self.known)), "at": time.time()}
        with self._lock:
            self.records.append(rec)
            if self.store:
                with open(self.store, "a", encoding="utf-8") as out:
                    out.write(json.dumps(rec) + "\n")
        return rec

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):   # quiet: the table is the log
                pass

            def _send(self, code: int, body: str, ctype: str = "application/json") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", f"{ctype}; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                if code == 401:
                    self.send_header("WWW-Authenticate", "Bearer")
                self.end_headers()
                self.wfile.write(data)

            def _error(self, code: int, detail: str) -> None:
                self._send(code, json.dumps({"detail": detail}))

            def _authorised(self, query: dict) -> bool:
                import hmac

                given = self.headers.get("Authorization", "")
                given = given[7:] if given.startswith("Bearer ") else (query.get("token") or [""])[0]
                if hmac.compare_digest(given.encode(), server.token.encode()):
                    return True
                self._error(401, "missing or wrong class token (Authorization: Bearer TOKEN, or ?token= on the page)")
                return False

            def do_GET(self):
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                if parts.path not in ("/", "/api/progress"):
                    return self._error(404, f"no page {parts.path}; valid: / and /api/progress")
                if not self._authorised(query):
                    return None
                state = server.state()
                if parts.path == "/":
                    return self._send(200, render_html(state), "text/html")
                return self._send(200, json.dumps(state))

            def do_POST(self):
                parts = urlsplit(self.path)
                if parts.path != "/api/progress":
                    return self._error(404, f"no endpoint {parts.path}; valid: POST /api/progress")
                if not self._authorised(parse_qs(parts.query)):
                    return None
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    return self._error(400, "Content-Length is not a number")
                if length > MAX_BODY_BYTES:
                    return self._error(413, f"body of {length} bytes; valid: at most {MAX_BODY_BYTES}")
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    return self._error(400, "body is not JSON")
                try:
                    rec = server.add(body)
                except ValueError as exc:
                    return self._error(422, str(exc))
                return self._send(201, json.dumps(rec))

        return Handler

    def start(self) -> "ProgressServer":
        """Serve in a background thread (tests, a notebook); :meth:`stop` ends it."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join(5)


def serve_command(args) -> int:
    """``cloudmart class serve``: serve until Ctrl-C."""
    token = args.token or os.environ.get(CLASS_TOKEN_ENV) or secrets.token_urlsafe(12)
    try:
        server = ProgressServer(token, host=args.host, port=args.port, store=args.store)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"class progress: {server.url}/?token={token}")
    print(f"learners: export {CLASS_URL_ENV}={server.url} {CLASS_TOKEN_ENV}={token}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0
