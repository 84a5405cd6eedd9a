import hashlib

import pytest

from dockyard.core.digest import Digest
from dockyard.core.errors import DigestInvalid

SHA256_EMPTY = "sha256:" + hashlib.sha256(b"").hexdigest()


def test_parse_round_trips():
    assert str(Digest.parse(SHA256_EMPTY)) == SHA256_EMPTY


def test_sha512_is_supported():
    text = "sha512:" + hashlib.sha512(b"x").hexdigest()
    assert Digest.parse(text).algorithm == "sha512"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        "sha256:",
        ":abc",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha512:" + "a" * 64,
        "SHA256:" + "a" * 64,
        "sha256:" + "a" * 64 + "\n",
    ],
)
def test_malformed_digests_are_refused(text):
    with pytest.raises(DigestInvalid):
        Digest.parse(text)


def test_unknown_algorithm_is_named_in_the_error():
    with pytest.raises(DigestInvalid, match="md5"):
        Digest.parse("md5:" + "a" * 32)


def test_of_hashes_with_the_named_algorithm():
    assert Digest.of(b"", "sha256") == Digest.parse(SHA256_EMPTY)
    assert Digest.of(b"x", "sha512").encoded == hashlib.sha512(b"x").hexdigest()
