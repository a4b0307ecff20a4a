"""Class progress: opt-in posting from grading.check, and the token-guarded live table."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import grading
from grading import progress
from grading.day1 import DECOMPOSITION_ITEMS

REPO = Path(__file__).resolve().parents[2]
TOKEN = "class-token-for-tests"
EXERCISE = "day1.decomposition"
POOR_ANSWER = [set(DECOMPOSITION_ITEMS)]   # one context for everything: a low score


@pytest.fixture
def server(tmp_path):
    srv = progress.ProgressServer(TOKEN, store=tmp_path / "progress.jsonl").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def opted_in(server, monkeypatch):
    monkeypatch.setenv(progress.CLASS_URL_ENV, server.url)
    monkeypatch.setenv(progress.CLASS_TOKEN_ENV, TOKEN)
    monkeypatch.setenv(progress.LEARNER_ENV, "learner-7")
    return server


def _auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_nothing_is_sent_without_the_opt_in(server, monkeypatch, capsys):
    monkeypatch.delenv(progress.CLASS_URL_ENV, raising=False)
    monkeypatch.setenv(progress.CLASS_TOKEN_ENV, TOKEN)   # a token alone is no opt-in
    fb = grading.check(EXERCISE, POOR_ANSWER)
    assert fb.score < fb.max_score
    assert server.records == [] and capsys.readouterr().err == ""


def test_a_url_without_the_token_sends_nothing_and_says_why(server, monkeypatch, capsys):
    monkeypatch.setenv(progress.CLASS_URL_ENV, server.url)
    monkeypatch.delenv(progress.CLASS_TOKEN_ENV, raising=False)
    grading.check(EXERCISE, POOR_ANSWER)
    assert server.records == []
    assert progress.CLASS_TOKEN_ENV in capsys.readouterr().err


def test_check_posts_learner_exercise_and_score_only(opted_in):
    fb = grading.check(EXERCISE, POOR_ANSWER)
    assert len(opted_in.records) == 1
    rec = opted_in.records[0]
    assert {k: rec[k] for k in ("learner", "exercise", "score", "max_score")} == \
        {"learner": "learner-7", "exercise": EXERCISE, "score": fb.score, "max_score": fb.max_score}
    assert set(rec) == {"learner", "exercise", "score", "max_score", "at"}, "never the answer"


def test_a_network_failure_is_reported_not_raised(monkeypatch, capsys):
    with socket.socket() as sock:   # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv(progress.CLASS_URL_ENV, f"http://127.0.0.1:{closed}")
    monkeypatch.setenv(progress.CLASS_TOKEN_ENV, TOKEN)
    fb = grading.check(EXERCISE, POOR_ANSWER)
    assert fb.exercise_id == EXERCISE and fb.max_score > 0
    err = capsys.readouterr().err
    assert err.startswith("class progress not sent:") and err.count("\n") == 1


def test_every_request_without_the_right_token_is_refused(server):
    for method, path in (("GET", "/"), ("GET", "/api/progress"), ("POST", "/api/progress")):
        for headers in ({}, _auth("wrong-token-value")):
            resp = httpx.request(method, server.url + path, headers=headers,
                                 json={"learner": "x", "exercise": EXERCISE, "score": 1})
            assert resp.status_code == 401, (method, path, headers)
            assert "token" in resp.json()["detail"]
    assert server.records == []


@pytest.mark.parametrize("body, status, words", [
    ("not json", 400, "not JSON"),
    ({"learner": "a", "exercise": "day9.nothing", "score": 1}, 422, "unknown"),
    ({"learner": "a", "exercise": EXERCISE, "score": 1e9}, 422, "within 0.."),
    ({"learner": "a", "exercise": EXERCISE, "score": True}, 422, "within 0.."),
    ({"learner": "bad id!", "exercise": EXERCISE, "score": 1}, 422, "learner id"),
    ({"learner": "a", "exercise": EXERCISE, "score": 1, "answer": [1]}, 422, "unknown field"),
    ({"learner": "a", "exercise": EXERCISE, "score": 1, "max_score": 1000}, 422, "worth"),
])
def test_bad_input_is_a_4xx_with_a_message_and_records_nothing(server, body, status, words):
    content = body if isinstance(body, str) else json.dumps(body)
    resp = httpx.post(server.url + "/api/progress", content=content, headers=_auth())
    assert resp.status_code == status and words in resp.json()["detail"]
    assert server.records == []
    big = httpx.post(server.url + "/api/progress", content="x" * 10_000, headers=_auth())
    assert big.status_code == 413


def test_the_table_shows_who_reached_what_and_where_the_class_is_stuck(server):
    top = grading.max_score(EXERCISE)
    second = "day1.patterns"
    posts = [("ana", EXERCISE, top), ("ana", second, 2.0), ("ana", second, 3.0),
             ("ben", EXERCISE, 1.0), ("ben", EXERCISE, 2.0), ("cho", EXERCISE, top)]
    for learner, ex, score in posts:
        resp = httpx.post(server.url + "/api/progress", headers=_auth(),
                          json={"learner": learner, "exercise": ex, "score": score})
        assert resp.status_code == 201
    state = httpx.get(server.url + "/api/progress", headers=_auth()).json()
    assert state["records"] == len(posts)
    assert state["learners"]["ana"]["reached"] == max((EXERCISE, second), key=state["order"].index)
    dec = state["exercises"][EXERCISE]
    assert (dec["attempted"], dec["passed"], dec["stuck"]) == (3, 2, ["ben"])
    assert state["exercises"][second]["stuck"] == ["ana"]
    assert state["learners"]["ben"]["exercises"][EXERCISE]["best"] == 2.0
    page = httpx.get(server.url + "/", params={"token": TOKEN})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "the class is stuck on" in page.text and "ben" in page.text and 'http-equiv="refresh"' in page.text
    assert "<script" not in page.text and "http" not in page.text.split("<body>")[1].replace("http-equiv", "")


def test_a_restarted_server_reads_back_its_store(tmp_path):
    store = tmp_path / "progress.jsonl"
    first = progress.ProgressServer(TOKEN, store=store).start()
    try:
        assert httpx.post(first.url + "/api/progress", headers=_auth(),
                          json={"learner": "ana", "exercise": EXERCISE, "score": 1}).status_code == 201
    finally:
        first.stop()
    second = progress.ProgressServer(TOKEN, store=store)
    assert [r["learner"] for r in second.records] == ["ana"]
    second.httpd.server_close()


def test_the_server_binds_loopback_unless_told_and_refuses_a_short_token():
    srv = progress.ProgressServer(TOKEN)
    try:
        assert srv.httpd.server_address[0] == "127.0.0.1"
    finally:
        srv.httpd.server_close()
    with pytest.raises(ValueError, match="at least 8"):
        progress.ProgressServer("short")


def test_cli_serve_prints_the_learners_opt_in_and_serves(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", "class", "serve", "--port", "0", "--token", TOKEN],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        assert first.startswith("class progress: http://127.0.0.1:")
        url = second.split(f"{progress.CLASS_URL_ENV}=")[1].split()[0]
        assert f"{progress.CLASS_TOKEN_ENV}={TOKEN}" in second
        assert httpx.get(url + "/api/progress", headers=_auth()).json()["records"] == 0
    finally:
        proc.terminate()
        proc.wait(10)
    bad = subprocess.run([sys.executable, "-m", "cluster.cli", "class", "serve", "--port", "70000"],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert bad.returncode == 2 and "0..65535" in bad.stderr
