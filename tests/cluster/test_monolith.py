"""`cloudmart up --monolith`: one process serves the same public API behind the same gateway."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = [pytest.mark.live, pytest.mark.slow]


@pytest.fixture(scope="module")
def monolith(tmp_path_factory, request):
    start = request.getfixturevalue("start_cloudmart")
    with start(tmp_path_factory.mktemp("monolith"), monolith=True) as running:
        yield running


def test_status_shows_one_monolith_deployment(monolith):
    status = monolith.cm.status()
    assert status["mode"] == "monolith"
    assert list(status["deployments"]) == ["monolith"]
    assert status["deployments"]["monolith"]["ready"] == 1


def test_same_public_api_through_the_gateway(monolith, wait_for):
    cm = monolith.cm
    assert httpx.get(f"{cm.gateway_url}/api/orders").status_code == 401
    products = cm.get("/api/products")
    assert products.status_code == 200 and products.json()["items"]
    pid = products.json()["items"][0]["id"]
    resp = cm.post("/api/orders", json={"items": [{"product_id": pid, "quantity": 1}],
                                        "payment": {"card_number": "4242424242424242"}},
                   headers={"Idempotency-Key": str(uuid.uuid4())})
    assert resp.status_code == 202, resp.text
    order_id = resp.json()["id"]
    order = wait_for(lambda: (o := cm.get(f"/api/orders/{order_id}").json())["status"] != "pending" and o, 30)
    assert order["status"] == "confirmed"


def test_load_against_the_monolith(monolith):
    result = monolith.cm.load(rps=10, seconds=2, scenario="browse", seed=4)
    assert result.summary["sent"] > 5 and result.summary["error_rate"] == 0.0
