"""Auth service and the shared JWT dependency: tokens, JWKS, forward-auth, negatives, rate limit."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import jwt
import pytest
from svc_stack import get_token
from cryptography.hazmat.primitives.asymmetric import rsa

GOOD = {"iss": "cloudmart-auth", "aud": "cloudmart", "sub": "alice", "roles": ["customer"]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_password_grant_gives_rs256_jwt_with_required_claims(stack):
    token = get_token(stack.url("auth"), "alice")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"]
    jwks = httpx.get(stack.url("auth") + "/api/auth/.well-known/jwks.json").json()
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]].key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="cloudmart", issuer="cloudmart-auth")
    assert claims["sub"] == "alice" and claims["roles"] == ["customer"] and claims["exp"] > time.time()


def test_client_credentials_grant(stack):
    response = httpx.post(stack.url("auth") + "/api/auth/token",
                          data={"grant_type": "client_credentials", "client_id": "loadgen", "client_secret": "cloudmart"})
    assert response.status_code == 200
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["customer"]
    basic = base64.b64encode(b"loadgen:wrong").decode()
    bad = httpx.post(stack.url("auth") + "/api/auth/token", data={"grant_type": "client_credentials"},
                     headers={"Authorization": f"Basic {basic}"})
    assert bad.status_code == 401


@pytest.mark.parametrize("form, code", [
    ({"grant_type": "password", "username": "alice", "password": "wrong"}, 401),
    ({"grant_type": "password", "username": "nobody", "password": "cloudmart"}, 401),
    ({"grant_type": "password", "username": "alice"}, 400),
    ({"grant_type": "implicit"}, 422),
    ({}, 422),
])
def test_bad_token_requests_get_4xx_with_message(stack, form, code):
    response = httpx.post(stack.url("auth") + "/api/auth/token", data=form)
    assert response.status_code == code
    assert response.json()["detail"]


def test_verify_anonymous_valid_and_invalid(stack, tokens):
    url = stack.url("auth") + "/api/auth/verify"
    anon = httpx.get(url)
    assert anon.status_code == 200 and anon.json()["authenticated"] is False and "x-user-id" not in anon.headers
    ok = httpx.get(url, headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert ok.status_code == 200
    assert ok.headers["x-user-id"] == "admin" and ok.headers["x-user-roles"] == "admin"
    assert httpx.get(url, headers={"Authorization": "Bearer not.a.jwt"}).status_code == 401


def _forged_tokens(tokens) -> dict[str, str]:
    now = int(time.time())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    real_kid = jwt.get_unverified_header(tokens["alice"])["kid"]
    header, payload, signature = tokens["alice"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["roles"] = ["admin"]
    tampered = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    none_token = ".".join([_b64(json.dumps({"alg": "none", "typ": "JWT", "kid": real_kid}).encode()),
                           _b64(json.dumps({**GOOD, "exp": now + 600}).encode()), ""])
    return {
        "alg_none": none_token,
        "wrong_key": jwt.encode({**GOOD, "exp": now + 600}, other_key, algorithm="RS256", headers={"kid": real_kid}),
        "hs256_with_public_key": jwt.encode({**GOOD, "exp": now + 600}, b"x" * 32, algorithm="HS256",
                                            headers={"kid": real_kid}),
        "tampered_payload": tampered,
    }


@pytest.mark.parametrize("case", ["alg_none", "wrong_key", "hs256_with_public_key", "tampered_payload"])
@pytest.mark.parametrize("service, path", [("order", "/api/orders"), ("payment", "/api/payments"),
                                           ("notification", "/api/notifications"), ("user", "/api/users/me"),
                                           ("auth", "/api/auth/verify")])
def test_forged_tokens_are_rejected_everywhere(stack, tokens, case, service, path):
    token = _forged_tokens(tokens)[case]
    response = httpx.get(stack.url(service) + path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert "invalid token" in response.json()["detail"]


def test_expired_and_wrong_audience_tokens_are_rejected(stack):
    """Signed with the real key (read from the state folder as the auth service does)."""
    from services.common.auth import key_id, load_or_create_signing_key

    key = load_or_create_signing_key(stack.infra.state_dir)
    kid = key_id(key.public_key())
    now = int(time.time())
    expired = jwt.encode({**GOOD, "exp": now - 60}, key, algorithm="RS256", headers={"kid": kid})
    wrong_aud = jwt.encode({**GOOD, "aud": "someone-else", "exp": now + 600}, key, algorithm="RS256", headers={"kid": kid})
    wrong_iss = jwt.encode({**GOOD, "iss": "evil", "exp": now + 600}, key, algorithm="RS256", headers={"kid": kid})
    no_exp = jwt.encode(GOOD, key, algorithm="RS256", headers={"kid": kid})
    valid = jwt.encode({**GOOD, "exp": now + 600}, key, algorithm="RS256", headers={"kid": kid})
    url = stack.url("order") + "/api/orders"
    for token in (expired, wrong_aud, wrong_iss, no_exp):
        assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {valid}"}).status_code == 200


def test_customer_on_admin_routes_gets_403(stack, headers):
    assert httpx.put(stack.url("inventory") + "/api/inventory/OLJCESPC7Z", headers=headers["alice"],
                     json={"available": 1}).status_code == 403
    assert httpx.post(stack.url("product") + "/api/products", headers=headers["alice"],
                      json={"name": "x", "price_cents": 1}).status_code == 403
    assert httpx.get(stack.url("order") + "/admin/fault", headers=headers["alice"]).status_code == 403
    assert httpx.get(stack.url("order") + "/admin/fault").status_code == 401


def test_rate_limit_returns_429_with_retry_after(stack):
    """A second auth replica with a tiny bucket (same Redis): burst 3, then 429.

    The refill rate is one token per 1000 s, so no token comes back while the test runs however
    slow the machine is, and Retry-After tells the refill time exactly."""
    rate = 0.001
    svc = stack.add("auth-limited", {"RATE_LIMIT_RPS": str(rate), "RATE_LIMIT_BURST": "3", "SERVICE_NAME": "auth"},
                    module="auth")
    svc.start()
    try:
        svc.wait_ready()
        url = svc.url + "/api/auth/verify"
        client_ip = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
        ip = {"X-Forwarded-For": client_ip}
        codes = [httpx.get(url, headers=ip).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        limited = httpx.get(url, headers=ip)
        assert limited.status_code == 429
        # An empty bucket waits (1 - tokens) / rate for its next token: 1000 s, rounded up.
        assert 990 <= int(limited.headers["retry-after"]) <= 1 / rate, limited.headers
        # Another client has its own bucket.
        other = ".".join(client_ip.split(".")[:3] + [str(int(client_ip.rsplit(".", 1)[1]) % 250 + 2)])
        assert httpx.get(url, headers={"X-Forwarded-For": other}).status_code == 200
    finally:
        svc.stop()
        del stack.services["auth-limited"]


def test_registered_user_can_log_in_and_sees_own_profile(stack):
    reg = httpx.post(stack.url("user") + "/api/users",
                     json={"username": "carol", "password": "s3cret-pass", "email": "carol@example.com"})
    assert reg.status_code == 201, reg.text
    assert httpx.post(stack.url("user") + "/api/users",
                      json={"username": "carol", "password": "another-pass"}).status_code == 409
    from svc_stack import wait_for

    def login():
        r = httpx.post(stack.url("auth") + "/api/auth/token",
                       data={"grant_type": "password", "username": "carol", "password": "s3cret-pass"})
        return r.json()["access_token"] if r.status_code == 200 else None
    token = wait_for(login, timeout_s=15)
    me = httpx.get(stack.url("user") + "/api/users/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["username"] == "carol" and me["email"] == "carol@example.com"
    patched = httpx.patch(stack.url("user") + "/api/users/me", headers={"Authorization": f"Bearer {token}"},
                          json={"full_name": "Carol C."})
    assert patched.status_code == 200 and patched.json()["full_name"] == "Carol C."
    wrong = httpx.post(stack.url("auth") + "/api/auth/token",
                       data={"grant_type": "password", "username": "carol", "password": "nope-nope"})
    assert wrong.status_code == 401


def test_unreachable_jwks_is_503_not_401(stack, tokens):
    """A valid token is not the caller's fault when the keys cannot be fetched."""
    from svc_stack import free_port

    replica = stack.add("payment-nojwks", {"AUTH_JWKS_URL": f"http://127.0.0.1:{free_port()}/jwks.json"},
                        module="payment")
    replica.start()
    try:
        replica.wait_ready()
        response = httpx.get(replica.url + "/api/payments", headers={"Authorization": f"Bearer {tokens['alice']}"})
        assert response.status_code == 503 and "signing keys" in response.json()["detail"]
        assert httpx.get(replica.url + "/api/payments").status_code == 401  # no token: still 401
    finally:
        replica.stop()
        del stack.services["payment-nojwks"]
