"""Passwords and access-token secrets, kept only as hashes.

Passwords are argon2id hashes, slow on purpose. Access-token secrets are 256
random bits, so a SHA-256 of the secret is enough to keep at rest, and the
token's id, printed in front of the secret, finds its row without a search.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "dky_"
_TOKEN_ID = re.compile(r"[0-9a-f]{12}")

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def spend_verification(password: str) -> None:
    """Take as long as `verify_password`, for a user that does not exist."""
    verify_password(_dummy_hash(), password)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def new_token_secret() -> tuple[str, str, str]:
    """A new access token: its id, the secret to show once, and the hash to keep."""
    token_id = secrets.token_hex(6)
    secret = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    return token_id, secret, hash_secret(secret)


def token_id_of(secret: str) -> str | None:
    """The id inside a presented access-token secret, or None if it is not one."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, rest = secret[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not rest or not _TOKEN_ID.fullmatch(token_id):
        return None
    return token_id


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), secret_hash)
