"""Digests: an algorithm and its hex encoding, as a value type."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from dockyard.core.errors import DigestInvalid

# The spec's grammar for any digest, then the encodings of the two algorithms
# Dockyard verifies. Other registered algorithms parse but are not supported.
_DIGEST = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_ENCODED = {
    "sha256": re.compile(r"^[a-f0-9]{64}$"),
    "sha512": re.compile(r"^[a-f0-9]{128}$"),
}
ALGORITHMS = tuple(_ENCODED)


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse `algorithm:encoded`, raising `DigestInvalid` with the reason."""
        match = _DIGEST.fullmatch(text)
        if match is None:
            raise DigestInvalid(f"invalid digest {text!r}: expected algorithm:hex")

        algorithm, encoded = match.groups()
        pattern = _ENCODED.get(algorithm)
        if pattern is None:
            supported = ", ".join(ALGORITHMS)
            raise DigestInvalid(
                f"unsupported digest algorithm {algorithm!r} (supported: {supported})"
            )
        if not pattern.fullmatch(encoded):
            raise DigestInvalid(
                f"invalid digest {text!r}: {algorithm} needs "
                f"{len(hashlib.new(algorithm).hexdigest())} lowercase hex characters"
            )
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @classmethod
    def from_hasher(cls, hasher: Any) -> Digest:
        return cls(hasher.name, hasher.hexdigest())

    def hasher(self) -> Any:
        return new_hasher(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


def new_hasher(algorithm: str) -> Any:
    if algorithm not in _ENCODED:
        supported = ", ".join(ALGORITHMS)
        raise DigestInvalid(
            f"unsupported digest algorithm {algorithm!r} (supported: {supported})"
        )
    return hashlib.new(algorithm)
