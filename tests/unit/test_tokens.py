import base64
import hashlib
import hmac
import json
import stat
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dockyard.core.errors import Unauthorized
from dockyard.services.auth.scopes import Scope
from dockyard.services.auth.tokens import TokenSigner, load_or_create_key

ISSUER, SERVICE = "dockyard-test", "registry.test"
APP_PUSH = Scope("repository", "team/app", frozenset({"pull", "push"}))


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Any]:
    """One key per algorithm: RSA keys take a while to make."""
    directory = tmp_path_factory.mktemp("keys")
    return {
        algorithm: load_or_create_key(directory / f"{algorithm}.pem", algorithm)
        for algorithm in ("ES256", "RS256")
    }


@pytest.fixture(params=["ES256", "RS256"])
def signer(request, keys) -> TokenSigner:
    return TokenSigner(keys[request.param], request.param, ISSUER, SERVICE)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims(**changes: Any) -> dict[str, Any]:
    """Valid access-token claims, changed (a value of None removes a claim)."""
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 30,
        "iat": now,
        "jti": "abc",
        "access": [APP_PUSH.to_json()],
    }
    values.update(changes)
    return {key: value for key, value in values.items() if value is not None}


def sign(signer: TokenSigner, keys: dict[str, Any], **changes: Any) -> str:
    """A token signed with the signer's own key, with the given claims."""
    key = keys[signer.algorithm]
    return jwt.encode(claims(**changes), key, signer.algorithm)


def rejected(signer: TokenSigner, token: str, refresh: bool = False) -> str:
    with pytest.raises(Unauthorized) as raised:
        signer.verify(token, refresh=refresh)
    assert raised.value.reason == "invalid_token"
    assert raised.value.message
    return raised.value.message


def test_round_trip(signer):
    token = signer.issue("alice", [APP_PUSH], 300, token_id="0123456789ab")

    verified = signer.verify(token)

    assert verified.subject == "alice"
    assert verified.access == (APP_PUSH,)
    assert verified.token_id == "0123456789ab"
    assert verified.expires_at - verified.issued_at == 300
    assert abs(verified.issued_at - time.time()) < 5


def test_header_names_the_key_and_the_algorithm(signer):
    header = jwt.get_unverified_header(signer.issue("alice", [], 300))

    assert header["alg"] == signer.algorithm
    assert header["kid"] == signer.key_id


def test_without_token_id(signer):
    assert signer.verify(signer.issue("", [], 300)).token_id is None


def test_claims_signed_elsewhere_with_the_same_key_verify(signer, keys):
    assert signer.verify(sign(signer, keys)).access == (APP_PUSH,)


def test_alg_none_is_rejected(signer):
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims()).encode())

    rejected(signer, f"{header}.{payload}.")


def test_hmac_with_the_public_key_is_rejected(signer, keys):
    # The classic confusion: HS256 keyed with the PEM a verifier holds.
    public_key = keys[signer.algorithm].public_key()
    public_pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims()).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256)

    rejected(signer, f"{header}.{payload}.{b64(mac.digest())}")


def test_the_other_asymmetric_algorithm_is_rejected(keys):
    es256 = TokenSigner(keys["ES256"], "ES256", ISSUER, SERVICE)
    rs256 = TokenSigner(keys["RS256"], "RS256", ISSUER, SERVICE)

    rejected(es256, rs256.issue("alice", [], 300))
    rejected(rs256, es256.issue("alice", [], 300))


def test_another_key_signature_is_rejected(signer):
    other_key: Any
    if signer.algorithm == "ES256":
        other_key = ec.generate_private_key(ec.SECP256R1())
    else:
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = TokenSigner(other_key, signer.algorithm, ISSUER, SERVICE)

    rejected(signer, other.issue("alice", [APP_PUSH], 300))


def test_tampered_payload_is_rejected(signer):
    header, payload, signature = signer.issue("bob", [], 300).split(".")
    body = json.loads(unb64(payload))
    body["access"] = [{"type": "repository", "name": "*", "actions": ["*"]}]

    rejected(signer, f"{header}.{b64(json.dumps(body).encode())}.{signature}")


def test_wrong_audience_is_rejected(signer, keys):
    rejected(signer, sign(signer, keys, aud="another-registry"))


def test_wrong_issuer_is_rejected(signer, keys):
    rejected(signer, sign(signer, keys, iss="someone-else"))


def test_expired_beyond_the_leeway_is_rejected(signer, keys):
    now = int(time.time())
    token = sign(signer, keys, iat=now - 600, nbf=now - 600, exp=now - 31)

    assert "expired" in rejected(signer, token)


def test_expired_within_the_leeway_is_accepted(signer, keys):
    now = int(time.time())
    token = sign(signer, keys, iat=now - 600, nbf=now - 600, exp=now - 20)

    assert signer.verify(token).subject == "alice"


def test_not_yet_valid_is_rejected(signer, keys):
    now = int(time.time())

    rejected(signer, sign(signer, keys, nbf=now + 120, exp=now + 600))


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"])
def test_missing_required_claim_is_rejected(signer, keys, claim):
    assert claim in rejected(signer, sign(signer, keys, **{claim: None}))


def test_refresh_token_is_not_an_access_token(signer):
    refresh = signer.issue("alice", [], 300, refresh=True)

    rejected(signer, refresh)
    assert signer.verify(refresh, refresh=True).subject == "alice"


def test_access_token_is_not_a_refresh_token(signer):
    rejected(signer, signer.issue("alice", [APP_PUSH], 300), refresh=True)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "a.b"])
def test_garbage_is_rejected(signer, token):
    rejected(signer, token)


def test_malformed_access_claim_is_rejected(signer, keys):
    rejected(signer, sign(signer, keys, access=[{"type": "repository"}]))


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_key_is_created_owner_only_and_then_reused(tmp_path, algorithm):
    path = tmp_path / "keys" / "signing.pem"

    first = load_or_create_key(path, algorithm)
    second = load_or_create_key(path, algorithm)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.private_numbers() == second.private_numbers()
    assert [p.name for p in path.parent.iterdir()] == ["signing.pem"]
    signer = TokenSigner(second, algorithm, ISSUER, SERVICE)
    assert signer.verify(signer.issue("alice", [], 60)).subject == "alice"


def test_key_of_the_wrong_kind_is_an_error(tmp_path, keys):
    path = tmp_path / "signing.pem"
    path.write_bytes(
        keys["ES256"].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    with pytest.raises(ValueError, match="not a key for RS256"):
        load_or_create_key(path, "RS256")
    assert isinstance(load_or_create_key(path, "ES256"), ec.EllipticCurvePrivateKey)
