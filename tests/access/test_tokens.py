"""Access tokens: every forged, stale or foreign token is refused with 401; rotation and refresh rules."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jose import jwt

from access.accounts.tokens import SIGNING_KEY, TokenService
from access.audit.actions import Role
from tests.support.auth import auth_headers, sign_in


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _compact(header: dict[str, object], claims: dict[str, object]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


@pytest.fixture
def tokens(components, settings) -> TokenService:
    return TokenService.from_settings(components.keys, settings)


@pytest.fixture
def researcher(staff_factory):
    return staff_factory(roles=[Role.researcher])


def _valid_claims(tokens: TokenService, account_id: str, **changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": tokens.issuer,
        "aud": tokens.audience,
        "sub": account_id,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "a" * 32,
        "sid": "00000000-0000-0000-0000-000000000000",
        "roles": ["researcher"],
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _me(client, token: str):
    return client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})


def _assert_refused(client, token: str) -> None:
    response = _me(client, token)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_issued_access_token_is_es256_with_kid_and_all_claims_and_lasts_at_most_15_minutes(
    client, researcher, tokens
):
    token = sign_in(client, researcher)["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["kid"].startswith(f"{SIGNING_KEY}:v")
    claims = jwt.get_unverified_claims(token)
    assert {"iss", "aud", "exp", "iat", "nbf", "jti", "sub", "roles", "sid"} <= set(claims)
    assert claims["sub"] == researcher.account_id
    assert claims["roles"] == ["researcher"]
    assert 0 < claims["exp"] - claims["iat"] <= 900
    assert _me(client, token).status_code == 200


def test_token_signed_by_our_key_with_valid_claims_is_accepted(client, researcher, tokens):
    token = tokens.sign_claims(_valid_claims(tokens, researcher.account_id))
    assert _me(client, token).status_code == 200


def test_missing_or_malformed_bearer_token_is_rejected_with_401(client):
    assert client.get("/api/auth/me").status_code == 401
    _assert_refused(client, "not-a-token")
    _assert_refused(client, "a.b.c")


def test_alg_none_token_is_rejected(client, researcher, tokens):
    claims = _valid_claims(tokens, researcher.account_id)
    for alg in ("none", "None", "NONE"):
        _assert_refused(client, _compact({"alg": alg, "typ": "JWT"}, claims) + ".")
        kid = tokens.keys.jws_key_id(SIGNING_KEY)
        _assert_refused(client, _compact({"alg": alg, "kid": kid}, claims) + ".")


def test_hs256_token_signed_with_the_public_key_as_hmac_secret_is_rejected(client, researcher, tokens):
    kid = tokens.keys.jws_key_id(SIGNING_KEY)
    public_pem = tokens.keys.jws_public_keys(SIGNING_KEY)[kid]
    signing_input = _compact(
        {"alg": "HS256", "typ": "JWT", "kid": kid}, _valid_claims(tokens, researcher.account_id)
    )
    mac = hmac.new(public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    _assert_refused(client, f"{signing_input}.{_b64(mac)}")


def test_expired_token_is_rejected(client, researcher, tokens):
    now = int(time.time())
    claims = _valid_claims(tokens, researcher.account_id, iat=now - 1000, nbf=now - 1000, exp=now - 60)
    _assert_refused(client, tokens.sign_claims(claims))


def test_not_yet_valid_token_is_rejected(client, researcher, tokens):
    now = int(time.time())
    claims = _valid_claims(tokens, researcher.account_id, nbf=now + 600, exp=now + 900)
    _assert_refused(client, tokens.sign_claims(claims))


def test_token_of_a_wrong_issuer_is_rejected(client, researcher, tokens):
    _assert_refused(
        client, tokens.sign_claims(_valid_claims(tokens, researcher.account_id, iss="https://evil"))
    )


def test_token_for_a_wrong_audience_is_rejected(client, researcher, tokens):
    _assert_refused(
        client, tokens.sign_claims(_valid_claims(tokens, researcher.account_id, aud="another-api"))
    )


@pytest.mark.parametrize("missing", ["exp", "iat", "nbf", "jti", "sub", "iss", "aud", "sid"])
def test_token_missing_a_required_claim_is_rejected(client, researcher, tokens, missing):
    claims = _valid_claims(tokens, researcher.account_id)
    del claims[missing]
    _assert_refused(client, tokens.sign_claims(claims))


def _sign_with(
    private: ec.EllipticCurvePrivateKey, header: dict[str, object], claims: dict[str, object]
) -> str:
    signing_input = _compact(header, claims)
    r, s = decode_dss_signature(private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def test_token_with_an_unknown_kid_is_rejected(client, researcher, tokens):
    attacker = ec.generate_private_key(ec.SECP256R1())
    claims = _valid_claims(tokens, researcher.account_id)
    for kid in (f"{SIGNING_KEY}:v99", "another-key:v1", "../../etc/passwd"):
        _assert_refused(client, _sign_with(attacker, {"alg": "ES256", "kid": kid}, claims))
    _assert_refused(client, _sign_with(attacker, {"alg": "ES256"}, claims))


def test_token_signed_by_another_key_under_our_kid_is_rejected(client, researcher, tokens):
    attacker = ec.generate_private_key(ec.SECP256R1())
    kid = tokens.keys.jws_key_id(SIGNING_KEY)
    _assert_refused(
        client,
        _sign_with(attacker, {"alg": "ES256", "kid": kid}, _valid_claims(tokens, researcher.account_id)),
    )


def test_token_with_a_tampered_payload_is_rejected(client, staff_factory, tokens):
    researcher = staff_factory(roles=[Role.researcher])
    token = sign_in(client, researcher)["access_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    claims["roles"] = ["admin"]
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    _assert_refused(client, forged)


def test_token_with_a_tampered_signature_is_rejected(client, researcher):
    token = sign_in(client, researcher)["access_token"]
    header, payload, signature = token.split(".")
    raw = bytearray(_unb64(signature))
    raw[10] ^= 0x01
    _assert_refused(client, f"{header}.{payload}.{_b64(bytes(raw))}")
    _assert_refused(client, f"{header}.{payload}.")


def test_token_of_a_deleted_account_is_rejected(client, staff_factory, researcher):
    admin = staff_factory(roles=[Role.admin])
    token = sign_in(client, researcher)["access_token"]
    assert _me(client, token).status_code == 200
    deleted = client.delete(
        f"/api/admin/accounts/{researcher.account_id}", headers=auth_headers(client, admin)
    )
    assert deleted.status_code == 204
    _assert_refused(client, token)


def test_token_of_a_suspended_account_is_rejected(client, staff_factory, researcher):
    admin = staff_factory(roles=[Role.admin])
    token = sign_in(client, researcher)["access_token"]
    answer = client.post(
        f"/api/admin/accounts/{researcher.account_id}/suspend", headers=auth_headers(client, admin)
    )
    assert answer.status_code == 200
    _assert_refused(client, token)


def test_key_rotation_signs_new_tokens_with_the_new_kid_and_old_tokens_stay_valid_until_retired(
    client, researcher, components
):
    old = sign_in(client, researcher)["access_token"]
    old_kid = jwt.get_unverified_header(old)["kid"]
    version = components.keys.rotate(SIGNING_KEY)
    new = sign_in(client, researcher)["access_token"]
    assert jwt.get_unverified_header(new)["kid"] == f"{SIGNING_KEY}:v{version}" != old_kid
    assert _me(client, new).status_code == 200
    assert _me(client, old).status_code == 200
    components.keys.retire(SIGNING_KEY, version)
    client.app.state.auth_environment.tokens.forget_keys()
    _assert_refused(client, old)
    assert _me(client, new).status_code == 200


def test_refresh_rotates_the_refresh_token_and_reuse_revokes_the_whole_family(client, researcher):
    first = sign_in(client, researcher)
    second = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert _me(client, second["access_token"]).status_code == 200

    reused = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    # The thief's reuse ends the legitimate session too: its newest refresh and access tokens.
    assert (
        client.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]}).status_code == 401
    )
    _assert_refused(client, second["access_token"])
    _assert_refused(client, first["access_token"])


def test_unknown_refresh_token_is_rejected(client):
    answer = client.post("/api/auth/refresh", json={"refresh_token": "made-up"})
    assert answer.status_code == 401
    assert client.post("/api/auth/refresh", json={}).status_code == 422


def test_logout_revokes_the_refresh_token_and_the_access_token(client, researcher):
    tokens = sign_in(client, researcher)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    _assert_refused(client, tokens["access_token"])
    assert (
        client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    )


def test_logout_ends_only_that_sign_in(client, researcher):
    one = sign_in(client, researcher)
    two = sign_in(client, researcher)
    client.post("/api/auth/logout", headers={"Authorization": f"Bearer {one['access_token']}"})
    assert _me(client, two["access_token"]).status_code == 200


def test_refresh_of_a_suspended_account_is_rejected(client, staff_factory, researcher):
    admin = staff_factory(roles=[Role.admin])
    tokens = sign_in(client, researcher)
    client.post(f"/api/admin/accounts/{researcher.account_id}/suspend", headers=auth_headers(client, admin))
    assert (
        client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"roles": "admin"},
        {"roles": [5]},
        {"sub": 42},
        {"exp": "tomorrow"},
        {"sid": None},
        {"roles": ["root"]},
    ],
)
def test_signed_token_with_malformed_claims_is_rejected_not_a_500(client, researcher, tokens, changes):
    claims = _valid_claims(tokens, researcher.account_id, **changes)
    _assert_refused(client, tokens.sign_claims(claims))


def test_odd_authorization_headers_are_401_problems(client):
    for value in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer " + "x" * 5000, "Bearer a.b", "Bearer W10.W10.W10"):
        answer = client.get("/api/auth/me", headers={"Authorization": value})
        assert answer.status_code == 401, value
        assert answer.headers["content-type"].startswith("application/problem+json")
