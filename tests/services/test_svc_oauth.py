"""OAuth2 per RFC 9700 on the real auth service: client_credentials with scopes, authorization code
+ PKCE for a browser client, require_scope, the jti deny list, key rotation with current + next
keys, the authz_decisions_total metric, and bad input (malformed tokens, a JWKS with a duplicate
kid) answered with clear 4xx."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from svc_stack import get_token, wait_for

from services.common import auth as common_auth

REDIRECT = "http://localhost:3000/callback"


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _metric(stack, service: str, name: str, **labels) -> float:
    text = httpx.get(stack.url(service) + "/metrics", headers=stack.scrape_headers()).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- client_credentials and scopes -------------------------------------------------------------

def test_client_credentials_grants_the_scopes_asked_and_refuses_others(stack):
    url = stack.url("auth") + "/api/auth/token"
    form = {"grant_type": "client_credentials", "client_id": "loadgen", "client_secret": "cloudmart"}
    narrow = httpx.post(url, data={**form, "scope": "catalog:read"})
    assert narrow.status_code == 200, narrow.text
    assert narrow.json()["scope"] == "catalog:read"
    assert _claims(narrow.json()["access_token"])["scope"] == "catalog:read"
    default = httpx.post(url, data=form).json()
    assert set(default["scope"].split()) == {"catalog:read", "orders:read", "orders:write", "profile"}
    beyond = httpx.post(url, data={**form, "scope": "catalog:read keys:rotate"})
    assert beyond.status_code == 400
    assert beyond.json()["error"] == "invalid_scope" and "keys:rotate" in beyond.json()["detail"]


def test_require_scope_refuses_a_token_without_the_scope(stack):
    """The admin may rotate keys, but not with a token asked for catalog:read only (least privilege)."""
    url = stack.url("auth") + "/api/auth/keys"
    narrow = httpx.post(stack.url("auth") + "/api/auth/token", data={
        "grant_type": "password", "username": "admin", "password": "cloudmart", "scope": "catalog:read"}).json()
    refused = httpx.get(url, headers=_bearer(narrow["access_token"]))
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert "keys:rotate" in refused.json()["detail"]
    assert httpx.get(url, headers=_bearer(get_token(stack.url("auth"), "alice"))).status_code == 403
    full = httpx.get(url, headers=_bearer(get_token(stack.url("auth"), "admin")))
    assert full.status_code == 200, full.text
    assert full.json()["current_kid"] in full.json()["published_kids"]


# -- authorization code + PKCE ------------------------------------------------------------------

def _pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _authorize(stack, challenge: str, **extra) -> httpx.Response:
    form = {"response_type": "code", "client_id": "storefront", "redirect_uri": REDIRECT,
            "code_challenge": challenge, "code_challenge_method": "S256", "state": "xyz-state",
            "username": "alice", "password": "cloudmart", **extra}
    return httpx.post(stack.url("auth") + "/api/auth/authorize", data=form)


def _exchange(stack, code: str, verifier: str, **extra) -> httpx.Response:
    return httpx.post(stack.url("auth") + "/api/auth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": "storefront",
        "code_verifier": verifier, **extra})


def test_authorization_code_with_pkce_gives_a_token_once(stack):
    params = {"response_type": "code", "client_id": "storefront", "redirect_uri": REDIRECT,
              "code_challenge": _pkce_pair()[1], "code_challenge_method": "S256", "state": "s1"}
    form = httpx.get(stack.url("auth") + "/api/auth/authorize", params=params)
    assert form.status_code == 200 and 'name="code_challenge"' in form.text and "password" in form.text

    verifier, challenge = _pkce_pair()
    answer = _authorize(stack, challenge, scope="orders:read")
    assert answer.status_code == 303                      # never 307: the password is not re-posted
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["xyz-state"] and query["iss"] == ["cloudmart-auth"]
    code = query["code"][0]

    token = _exchange(stack, code, verifier)
    assert token.status_code == 200, token.text
    access = token.json()["access_token"]
    claims = _claims(access)
    assert claims["sub"] == "alice" and claims["scope"] == "orders:read"
    assert httpx.get(stack.url("order") + "/api/orders", headers=_bearer(access)).status_code == 200
    verify = stack.url("auth") + "/api/auth/verify"
    assert httpx.get(verify, headers=_bearer(access)).status_code == 200

    # A second use of the code: refused, and the token the first use got is revoked (the code leaked).
    replay = _exchange(stack, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert "revoked" in replay.json()["detail"]
    refused = httpx.get(verify, headers=_bearer(access))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_pkce_verifier_must_match_and_code_is_spent_by_a_wrong_one(stack):
    verifier, challenge = _pkce_pair()
    code = parse_qs(urlsplit(_authorize(stack, challenge).headers["location"]).query)["code"][0]
    wrong = _exchange(stack, code, _pkce_pair()[0])
    assert wrong.status_code == 400 and "does not match" in wrong.json()["detail"]
    # The code was consumed by the failed attempt: the right verifier no longer helps a thief who guessed.
    assert _exchange(stack, code, verifier).status_code == 400

    verifier, challenge = _pkce_pair()
    code = parse_qs(urlsplit(_authorize(stack, challenge).headers["location"]).query)["code"][0]
    other_redirect = _exchange(stack, code, verifier, redirect_uri="http://127.0.0.1:3000/callback")
    assert other_redirect.status_code == 400 and "redirect_uri" in other_redirect.json()["detail"]

    verifier, challenge = _pkce_pair()
    code = parse_qs(urlsplit(_authorize(stack, challenge).headers["location"]).query)["code"][0]
    short = _exchange(stack, code, "too-short")
    assert short.status_code == 400 and "43-128" in short.json()["detail"]


@pytest.mark.parametrize("change, status, where", [
    ({"client_id": "nobody"}, 400, "body"),
    ({"redirect_uri": "http://localhost:3000/callback/../evil"}, 400, "body"),
    ({"redirect_uri": "https://evil.example/callback"}, 400, "body"),
    ({"code_challenge_method": "plain"}, 303, "redirect"),
    ({"code_challenge": ""}, 303, "redirect"),
    ({"response_type": "token"}, 303, "redirect"),
    ({"password": "wrong"}, 401, "body"),
    ({"scope": "keys:rotate"}, 303, "redirect"),
])
def test_bad_authorization_requests(stack, change, status, where):
    answer = _authorize(stack, _pkce_pair()[1], **change)
    assert answer.status_code == status, answer.text
    if where == "body":
        assert "location" not in answer.headers and answer.json()["detail"]
    else:
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        assert query["error"][0] in {"invalid_request", "unsupported_response_type", "invalid_scope"}
        assert "code" not in query and query["state"] == ["xyz-state"]


def test_authorization_code_grant_missing_fields_and_unknown_code(stack):
    url = stack.url("auth") + "/api/auth/token"
    missing = httpx.post(url, data={"grant_type": "authorization_code", "code": "x"})
    assert missing.status_code == 400
    assert "redirect_uri" in missing.json()["detail"] and "code_verifier" in missing.json()["detail"]
    unknown = _exchange(stack, "no-such-code", _pkce_pair()[0])
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"


# -- revocation ---------------------------------------------------------------------------------

def test_revoked_token_is_refused_at_the_edge_check(stack):
    auth_url = stack.url("auth")
    token = get_token(auth_url, "alice")
    verify = auth_url + "/api/auth/verify"
    assert httpx.get(verify, headers=_bearer(token)).status_code == 200
    bob = get_token(auth_url, "bob")
    assert httpx.post(auth_url + "/api/auth/revoke", data={"token": token}, headers=_bearer(bob)).status_code == 403
    assert httpx.get(verify, headers=_bearer(token)).status_code == 200        # bob could not revoke it
    done = httpx.post(auth_url + "/api/auth/revoke", data={"token": token}, headers=_bearer(token))
    assert done.status_code == 200 and done.json()["revoked"] is True
    assert 3500 <= done.json()["listed_for_s"] <= 3601                        # until the token's exp
    refused = httpx.get(verify, headers=_bearer(token))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    # Another of alice's tokens is untouched; an invalid token is "revoked" trivially (RFC 7009 §2.2).
    other = get_token(auth_url, "alice")
    assert httpx.get(verify, headers=_bearer(other)).status_code == 200
    junk = httpx.post(auth_url + "/api/auth/revoke", data={"token": "not.a.jwt"}, headers=_bearer(other))
    assert junk.status_code == 200 and junk.json()["revoked"] is False


def test_authz_decisions_are_counted(stack):
    auth_url = stack.url("auth")
    verify = auth_url + "/api/auth/verify"
    before = {d: _metric(stack, "auth", "authz_decisions_total", decision=d[0], reason=d[1])
              for d in (("allow", "token"), ("deny", "invalid_token"), ("allow", "anonymous"))}
    token = get_token(auth_url, "alice")
    for _ in range(3):
        httpx.get(verify, headers=_bearer(token))
    for _ in range(2):
        httpx.get(verify, headers=_bearer("not.a.jwt"))
    httpx.get(verify)
    after = {d: _metric(stack, "auth", "authz_decisions_total", decision=d[0], reason=d[1]) for d in before}
    assert after[("allow", "token")] - before[("allow", "token")] == 3
    assert after[("deny", "invalid_token")] - before[("deny", "invalid_token")] == 2
    assert after[("allow", "anonymous")] - before[("allow", "anonymous")] == 1
    # Other services count their own checks (a forged token at order is a deny there).
    o_before = _metric(stack, "order", "authz_decisions_total", decision="deny", reason="invalid_token")
    httpx.get(stack.url("order") + "/api/orders", headers=_bearer("not.a.jwt"))
    assert _metric(stack, "order", "authz_decisions_total", decision="deny", reason="invalid_token") == o_before + 1


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["x", "a.b", "a.b.c", "....", "%C3.%A9.x", "eyJhbGciOiJSUzI1NiJ9.e30.",
                                   "Bearer Bearer", "a" * 4000])
@pytest.mark.parametrize("service, path", [("auth", "/api/auth/verify"), ("order", "/api/orders")])
def test_malformed_tokens_are_a_401_with_a_message(stack, token, service, path):
    response = httpx.get(stack.url(service) + path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.json()["detail"]


def test_jwks_with_a_duplicate_kid_trusts_no_key_under_that_kid():
    from cryptography.hazmat.primitives.asymmetric import rsa

    good, evil, other = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3))
    kid = common_auth.key_id(good.public_key())
    dup = common_auth.jwks_for(evil.public_key())["keys"][0] | {"kid": kid}
    doc = {"keys": [common_auth.jwks_for(good.public_key())["keys"][0], dup,
                    common_auth.jwks_for(other.public_key())["keys"][0], {"kty": "oct", "kid": "x"}]}
    keys, ambiguous = common_auth.parse_jwks(doc)
    assert ambiguous == {kid} and kid not in keys
    assert list(keys) == [common_auth.key_id(other.public_key())]
    with pytest.raises(ValueError, match="'keys' list"):
        common_auth.parse_jwks({"keys": "nope"})


def test_a_token_whose_kid_is_published_twice_gets_401_not_500(stack, tmp_path):
    """A verifier fed a JWKS with a duplicate kid (served by a stand-in issuer) answers 401 naming why."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from local_http import JSONHandler, serve

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = common_auth.key_id(key.public_key())
    jwk = common_auth.jwks_for(key.public_key())["keys"][0]

    class Handler(JSONHandler):
        def do_GET(self):
            self.send_json({"keys": [jwk, dict(jwk)]})

    with serve(Handler) as issuer:
        svc = stack.add("order-dupkid", {"AUTH_JWKS_URL": f"{issuer}/jwks.json", "SERVICE_NAME": "order"},
                        module="order")
        try:
            svc.start()
            svc.wait_ready()
            now = int(time.time())
            token = jwt.encode({"iss": "cloudmart-auth", "aud": "cloudmart", "sub": "alice", "roles": ["customer"],
                                "exp": now + 60, "jti": "j"}, key, algorithm="RS256", headers={"kid": kid})
            answer = httpx.get(svc.url + "/api/orders", headers=_bearer(token))
            assert answer.status_code == 401 and "more than once" in answer.json()["detail"], answer.text
        finally:
            svc.stop()
            del stack.services["order-dupkid"]


# -- key rotation -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rot(stack, tmp_path_factory):
    """Two auth replicas sharing one private state folder (their own key ring) and an order replica
    that verifies through their JWKS, so that rotating here touches no other test's tokens."""
    state = tmp_path_factory.mktemp("rotation-state")
    env = {"CLOUDMART_STATE_DIR": str(state), "SERVICE_NAME": "auth"}
    a = stack.add("auth-rot-a", env, module="auth")
    b = stack.add("auth-rot-b", env, module="auth")
    try:
        a.start()
        a.wait_ready()
        b.start()
        b.wait_ready()
        order = stack.add("order-rot", {"CLOUDMART_STATE_DIR": str(state), "SERVICE_NAME": "order",
                                        "AUTH_JWKS_URL": a.url + "/api/auth/.well-known/jwks.json"}, module="order")
        order.start()
        order.wait_ready()
        yield a, b, order
    finally:
        for name in ("auth-rot-a", "auth-rot-b", "order-rot"):
            if name in stack.services:
                stack.services[name].stop()
                del stack.services[name]


def _kid(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def _rotate(url: str, admin: str, overlap: bool) -> dict:
    answer = httpx.post(url + "/api/auth/keys/rotate", json={"overlap": overlap}, headers=_bearer(admin))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_rotation_with_overlap_and_without(rot):
    a, b, order = rot
    jwks = httpx.get(a.url + "/api/auth/.well-known/jwks.json").json()
    ring = httpx.get(a.url + "/api/auth/keys", headers=_bearer(get_token(a.url, "admin"))).json()
    assert [k["kid"] for k in jwks["keys"]] == [ring["current_kid"], ring["next_kid"]]
    t0 = get_token(b.url, "alice")
    assert _kid(t0) == ring["current_kid"]                        # both replicas sign with the one ring
    assert httpx.get(order.url + "/api/orders", headers=_bearer(t0)).status_code == 200   # order fetched the JWKS

    # Planned: the published next key signs; the old key stays published for its tokens.
    admin = get_token(a.url, "admin")
    after = _rotate(a.url, admin, overlap=True)
    assert after["current_kid"] == ring["next_kid"] and ring["current_kid"] in after["retired_kids"]
    t1 = get_token(b.url, "alice")                                # the other replica re-reads the ring
    assert _kid(t1) == ring["next_kid"]
    for token in (t0, t1):
        assert httpx.get(order.url + "/api/orders", headers=_bearer(token)).status_code == 200
        assert httpx.get(b.url + "/api/auth/verify", headers=_bearer(token)).status_code == 200

    # Emergency: a never-published key signs at once; the old current key leaves the JWKS.
    admin = get_token(a.url, "admin")
    emergency = _rotate(b.url, admin, overlap=False)
    assert emergency["current_kid"] not in (ring["current_kid"], ring["next_kid"], after["next_kid"])
    assert after["current_kid"] not in emergency["published_kids"]
    refused = httpx.get(a.url + "/api/auth/verify", headers=_bearer(t1))      # auth: at once
    assert refused.status_code == 401 and "unknown key" in refused.json()["detail"]
    t2 = get_token(a.url, "alice")
    assert _kid(t2) == emergency["current_kid"]
    # order learns the new key at its next allowed refetch (at most every 5 s on a miss) ...
    wait_for(lambda: httpx.get(order.url + "/api/orders", headers=_bearer(t2)).status_code == 200, timeout_s=15)
    # ... and that refetch dropped the withdrawn key: t1 is refused there too; t0's key is still retired-published.
    assert httpx.get(order.url + "/api/orders", headers=_bearer(t1)).status_code == 401
    assert httpx.get(order.url + "/api/orders", headers=_bearer(t0)).status_code == 200


class _Clock:
    """Stands in for the ``time`` module inside services.common.auth: a settable monotonic clock."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def time(self):
        return time.time()


@pytest.mark.parametrize("overlap", [True, False])
def test_verifier_refresh_rule_against_the_live_jwks(rot, monkeypatch, overlap):
    """The KeySource rule the sim mirrors: a token from a key the verifier has not seen is refused
    until 5 s after its last fetch, then accepted; with overlap the key was seen before it signed."""
    import asyncio

    a, _, _ = rot
    clock = _Clock()
    monkeypatch.setattr(common_auth, "time", clock)
    source = common_auth.KeySource(a.url + "/api/auth/.well-known/jwks.json", "/nonexistent")
    asyncio.run(source.get(_kid(get_token(a.url, "alice"))))         # first fetch at t=1000
    _rotate(a.url, get_token(a.url, "admin"), overlap=overlap)
    new_kid = _kid(get_token(a.url, "alice"))
    clock.now += 4.9
    if overlap:
        assert asyncio.run(source.get(new_kid)) is not None            # known before it signed
    else:
        with pytest.raises(common_auth.InvalidToken, match="unknown key"):
            asyncio.run(source.get(new_kid))                           # within 5 s of the last fetch: no refetch
        clock.now += 0.2
        assert asyncio.run(source.get(new_kid)) is not None            # 5.1 s: refetched, accepted


def test_rotation_needs_admin_and_a_boolean(rot):
    a, _, _ = rot
    assert httpx.post(a.url + "/api/auth/keys/rotate", json={"overlap": True}).status_code == 401
    alice = get_token(a.url, "alice")
    assert httpx.post(a.url + "/api/auth/keys/rotate", json={"overlap": True}, headers=_bearer(alice)).status_code == 403
    bad = httpx.post(a.url + "/api/auth/keys/rotate", json={"overlap": "sometimes"},
                     headers=_bearer(get_token(a.url, "admin")))
    assert bad.status_code == 422 and bad.json()["detail"]


def test_read_only_state_folder_gives_one_key_and_a_409(tmp_path, monkeypatch):
    """On Kubernetes the key is a read-only Secret mount (EROFS on any write): the ring holds that
    key alone. (The tests run as root, whom file modes do not stop, so the write fails by stand-in.)"""
    import errno
    from contextlib import contextmanager

    from services.auth import keyring

    key = common_auth.load_or_create_signing_key(tmp_path)

    @contextmanager
    def read_only_fs(self):
        raise OSError(errno.EROFS, "Read-only file system", str(self.dir / "keyring.lock"))
        yield

    monkeypatch.setattr(keyring.KeyRing, "_locked", read_only_fs)
    ring = keyring.KeyRing(tmp_path, retire_after_s=60)
    assert ring.read_only and [k["kid"] for k in ring.jwks()["keys"]] == [common_auth.key_id(key.public_key())]
    assert ring.signing()[1] == common_auth.key_id(key.public_key())
    with pytest.raises(keyring.RingReadOnly, match="Secret"):
        ring.rotate(overlap=True)
    assert not (tmp_path / "auth" / "keyring.json").exists()


def test_keyring_rejects_a_nonpositive_retirement(tmp_path):
    from services.auth.keyring import KeyRing

    with pytest.raises(ValueError, match="retire_after_s"):
        KeyRing(tmp_path, retire_after_s=0)


# -- the attack suite ---------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _attacks(state_dir, alice_token: str) -> dict[str, str]:
    """Every forged token of the lesson's attack suite, each built the way an attacker would."""
    import hmac as _hmac

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = common_auth.load_or_create_signing_key(state_dir)     # the real key: only for the claim-level attacks
    kid = common_auth.key_id(key.public_key())
    now = int(time.time())
    good = {"iss": "cloudmart-auth", "aud": "cloudmart", "sub": "alice", "roles": ["customer"], "iat": now,
            "exp": now + 600, "jti": secrets.token_hex(8), "scope": "orders:read"}

    def signed(claims: dict) -> str:
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})

    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps({**good, "roles": ["admin"]}).encode())
    mac = _hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    h, p, sig = alice_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=="))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "alg_none": ".".join([_b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode()),
                              _b64(json.dumps({**good, "roles": ["admin"]}).encode()), ""]),
        "hs256_signed_with_the_public_key": f"{head}.{body}.{_b64(mac)}",
        "expired": signed({**good, "iat": now - 7200, "exp": now - 3600}),
        "wrong_aud": signed({**good, "aud": "cloudmart-internal-evil"}),
        "wrong_iss": signed({**good, "iss": "https://evil.example"}),
        "tampered_roles": ".".join([h, _b64(json.dumps({**claims, "roles": ["admin"]}).encode()), sig]),
        "unknown_kid": jwt.encode(good, stranger, algorithm="RS256",
                                  headers={"kid": common_auth.key_id(stranger.public_key())}),
        "real_kid_other_key": jwt.encode(good, stranger, algorithm="RS256", headers={"kid": kid}),
    }


ATTACKS = ["alg_none", "hs256_signed_with_the_public_key", "expired", "wrong_aud", "wrong_iss", "tampered_roles",
           "unknown_kid", "real_kid_other_key"]


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("service, path", [("auth", "/api/auth/verify"), ("order", "/api/orders"),
                                           ("user", "/api/users/me")])
def test_attack_suite_is_refused_with_401(stack, tokens, attack, service, path):
    token = _attacks(stack.infra.state_dir, tokens["alice"])[attack]
    answer = httpx.get(stack.url(service) + path, headers=_bearer(token))
    assert answer.status_code == 401, (attack, answer.text)
    assert answer.json()["detail"].startswith("invalid token")


def test_the_attack_builder_makes_tokens_that_would_pass_a_careless_verifier(stack, tokens):
    """The suite proves something only if each forgery is refused for the right reason: decoded
    without the checks it targets, each one carries the claims it claims."""
    attacks = _attacks(stack.infra.state_dir, tokens["alice"])
    assert _claims(attacks["alg_none"])["roles"] == ["admin"]
    assert _claims(attacks["tampered_roles"])["roles"] == ["admin"]
    assert _claims(attacks["expired"])["exp"] < time.time()
    # The HS256 forgery really is keyed with the public key (the classic algorithm-confusion attack).
    import hmac as _hmac

    from cryptography.hazmat.primitives import serialization

    pem = common_auth.load_or_create_signing_key(stack.infra.state_dir).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    head, body, sig = attacks["hs256_signed_with_the_public_key"].split(".")
    assert _hmac.compare_digest(_b64(_hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()), sig)
    # A genuine token from the same builder's key is accepted: the refusals are not "everything fails".
    key = common_auth.load_or_create_signing_key(stack.infra.state_dir)
    now = int(time.time())
    genuine = jwt.encode({"iss": "cloudmart-auth", "aud": "cloudmart", "sub": "alice", "roles": ["customer"],
                          "exp": now + 60, "jti": secrets.token_hex(8)}, key, algorithm="RS256",
                         headers={"kid": common_auth.key_id(key.public_key())})
    assert httpx.get(stack.url("order") + "/api/orders", headers=_bearer(genuine)).status_code == 200
