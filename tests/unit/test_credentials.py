import hashlib

import pytest

from dockyard.services.auth.credentials import (
    TOKEN_PREFIX,
    hash_password,
    hash_secret,
    new_token_secret,
    secret_matches,
    spend_verification,
    token_id_of,
    verify_password,
)


def test_password_hash_is_argon2id_and_salted():
    first, second = hash_password("correct horse"), hash_password("correct horse")

    assert first.startswith("$argon2id$")
    assert "correct horse" not in first
    assert first != second


def test_verify_password():
    stored = hash_password("correct horse")

    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "correct hors")
    assert not verify_password(stored, "")


@pytest.mark.parametrize("stored", ["", "not a hash", "$argon2id$v=19$broken"])
def test_a_damaged_hash_verifies_nothing(stored):
    assert not verify_password(stored, "anything")


def test_spending_a_verification_raises_nothing():
    spend_verification("anything")


def test_token_secret_format():
    token_id, secret, secret_hash = new_token_secret()

    assert len(token_id) == 12
    int(token_id, 16)
    assert secret.startswith(f"{TOKEN_PREFIX}{token_id}_")
    # 256 random bits after the id.
    assert len(secret) >= len(f"{TOKEN_PREFIX}{token_id}_") + 43
    assert secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert token_id_of(secret) == token_id


def test_token_secrets_differ():
    assert new_token_secret()[1] != new_token_secret()[1]


def test_token_id_of_a_secret_whose_random_part_has_underscores():
    assert token_id_of("dky_0123456789ab_a_b_c") == "0123456789ab"


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "correct horse battery",
        "dky_",
        "dky_0123456789ab",
        "dky_0123456789ab_",
        "dky_0123456789a_secret",
        "dky_0123456789abc_secret",
        "DKY_0123456789ab_secret",
        "xdky_0123456789ab_secret",
        "dky_zzzzzzzzzzzz_secret",
        "dky_0123-56789ab_secret",
    ],
)
def test_token_id_of_anything_else_is_none(secret):
    assert token_id_of(secret) is None


def test_secret_matches():
    _, secret, secret_hash = new_token_secret()

    assert secret_matches(secret, secret_hash)
    assert not secret_matches(secret + "x", secret_hash)
    assert not secret_matches(secret[:-1], secret_hash)
    assert not secret_matches(secret, hash_secret("something else"))
    assert not secret_matches(secret, "")
