"""Registry tokens: JWTs that say who the caller is and what they may do.

The token endpoint signs them; every request under /v2/ with a Bearer token
is checked here. Only the configured algorithm is accepted: a token that
claims `none`, an HMAC algorithm or the other asymmetric one is refused, and so
is one for another audience, one not yet valid and one expired.

Refresh tokens are JWTs too, for the audience `<service>/refresh`, so that one
can never pass for an access token.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.core.errors import Unauthorized
from dockyard.services.auth.scopes import Scope

# jwt and cryptography are imported where used: about 9 MiB per server
# process that a registry without logins need not carry.

# Tokens are checked against the clock of another process or node.
CLOCK_SKEW = 30
_REQUIRED = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]
_VERIFIED_CACHE_SIZE = 4096
# Clients ask for a scope or two; a token far larger is checked every time
# rather than let a caller fill the cache with megabytes.
_CACHED_TOKEN_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    access: tuple[Scope, ...]
    issued_at: int
    expires_at: int
    # The access token a user logged in with, if any.
    token_id: str | None = None


class TokenSigner:
    def __init__(
        self,
        private_key: Any,
        algorithm: str,
        issuer: str,
        service: str,
    ) -> None:
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self.algorithm = algorithm
        self.issuer = issuer
        self.service = service
        self.key_id = _key_id(self._public_key)
        # Checking an ES256 signature takes about 0.3 ms, as long as serving a
        # cached manifest; clients reuse a token for many requests.
        self._verified: OrderedDict[tuple[str, bool], Claims] = OrderedDict()

    def issue(
        self,
        subject: str,
        access: list[Scope],
        lifetime: int,
        token_id: str | None = None,
        refresh: bool = False,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self._audience(refresh),
            "exp": now + lifetime,
            "nbf": now - CLOCK_SKEW,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "access": [scope.to_json() for scope in access],
        }
        if token_id is not None:
            claims["tid"] = token_id
        headers = {"kid": self.key_id}
        import jwt

        return jwt.encode(claims, self._private_key, self.algorithm, headers)

    def verify(self, token: str, refresh: bool = False) -> Claims:
        """The claims of a valid token; `Unauthorized` says why one is not."""
        key = (token, refresh)
        claims = self._verified.get(key)
        if claims is None:
            claims = self._decode(token, refresh)
            if len(token) <= _CACHED_TOKEN_BYTES:
                self._remember(key, claims)
        if claims.expires_at + CLOCK_SKEW <= time.time():
            self._verified.pop(key, None)
            raise Unauthorized("token expired; log in again", reason="invalid_token")
        return claims

    def _remember(self, key: tuple[str, bool], claims: Claims) -> None:
        self._verified[key] = claims
        if len(self._verified) > _VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)

    def _decode(self, token: str, refresh: bool) -> Claims:
        import jwt

        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=[self.algorithm],
                audience=self._audience(refresh),
                issuer=self.issuer,
                leeway=CLOCK_SKEW,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized(
                "token expired; log in again", reason="invalid_token"
            ) from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(
                f"token rejected: {exc}", reason="invalid_token"
            ) from None
        return _claims(claims)

    def _audience(self, refresh: bool) -> str:
        return f"{self.service}/refresh" if refresh else self.service


def _claims(claims: dict[str, Any]) -> Claims:
    try:
        access = tuple(
            Scope(entry["type"], entry["name"], frozenset(entry["actions"]))
            for entry in claims.get("access") or []
        )
        token_id = claims.get("tid")
        return Claims(
            str(claims["sub"]),
            access,
            int(claims["iat"]),
            int(claims["exp"]),
            str(token_id) if token_id is not None else None,
        )
    except (KeyError, TypeError, ValueError):
        raise Unauthorized(
            "token rejected: malformed claims", reason="invalid_token"
        ) from None


def _key_id(public_key: Any) -> str:
    """A short fingerprint of the public key, for the JWT `kid` header."""
    from cryptography.hazmat.primitives import hashes, serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()[:32]


def load_or_create_key(path: Path, algorithm: str) -> Any:
    """The signing key at `path`, created (readable by its owner only) if absent.

    Processes starting together agree on one key: the first link wins. A key
    of the wrong kind for `algorithm` is an error, not replaced.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if not path.exists():
        _create_key(path, algorithm)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    wanted = ec.EllipticCurvePrivateKey if algorithm == "ES256" else rsa.RSAPrivateKey
    if not isinstance(key, wanted):
        raise ValueError(f"the signing key in {path} is not a key for {algorithm}")
    return key


def _create_key(path: Path, algorithm: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key: Any
    if algorithm == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
        file.flush()
        os.fsync(file.fileno())
    try:
        # A link appears whole or not at all, and fails if another won.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
