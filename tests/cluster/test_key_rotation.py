"""`cm.rotate_signing_key(overlap=True)` on the live local target, under load through the gateway:
the published next key starts signing and not one request is refused."""

from __future__ import annotations

import threading

import httpx
import jwt
import pytest


def test_planned_rotation_under_load_refuses_nothing(cloudmart):
    cm = cloudmart.cm
    before = httpx.get(cm.gateway_url + "/api/auth/.well-known/jwks.json").json()
    old_token = cm.token
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    assert [k["kid"] for k in before["keys"]][0] == old_kid and len(before["keys"]) == 2
    results = {}

    def load():
        results["load"] = cm.load(rps=20, seconds=4, scenario="browse", user="alice", seed=11)

    runner = threading.Thread(target=load)
    runner.start()
    ring = cm.rotate_signing_key(overlap=True)
    runner.join(timeout=60)
    assert ring["current_kid"] == before["keys"][1]["kid"] and old_kid in ring["retired_kids"]
    fresh = cm.token_for("alice")
    assert jwt.get_unverified_header(fresh)["kid"] == ring["current_kid"]
    for token in (old_token, fresh):
        answer = httpx.get(cm.gateway_url + "/api/orders", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
    requests = results["load"].requests
    assert len(requests) >= 40 and set(requests["status"]) == {200}, requests["status"].value_counts()


def test_rotation_argument_is_checked(cloudmart):
    with pytest.raises(ValueError, match="overlap"):
        cloudmart.cm.rotate_signing_key(overlap="yes")
