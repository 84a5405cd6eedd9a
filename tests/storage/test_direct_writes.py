"""Staged uploads written with O_DIRECT where the filesystem takes it.

Whatever the offsets and chunk sizes, the staged file must hold exactly the
bytes sent, in order, and the hasher must have seen exactly those bytes:
with direct writes, without them (a filesystem that refuses O_DIRECT), and
when direct writes are refused halfway.
"""

import errno
import fcntl
import hashlib
import os
import random
from pathlib import Path

import pytest

from dockyard.storage import filesystem
from dockyard.storage.filesystem import FilesystemBlobStore

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024


@pytest.fixture
def anyio_backend():
    return "asyncio"


def takes_direct(folder: Path) -> bool:
    probe = folder / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError:
        return False
    os.close(fd)
    probe.unlink()
    return True


@pytest.fixture(params=["direct", "page cache"])
def store(request, tmp_path, monkeypatch):
    if request.param == "direct" and not takes_direct(tmp_path):
        pytest.skip("this filesystem takes no direct writes")
    if request.param == "page cache":
        monkeypatch.setattr(filesystem, "_supports_direct", lambda fd: False)
    return FilesystemBlobStore(tmp_path / "storage")


def staged(store: FilesystemBlobStore) -> bytes:
    return (store.root / "uploads" / "u1").read_bytes()


async def chunks(parts):
    for part in parts:
        yield part


def pieces(data: bytes, rng: random.Random, largest: int) -> list[bytes]:
    """`data` cut at random points into pieces of at most `largest` bytes."""
    parts, start = [], 0
    while start < len(data):
        size = rng.randint(1, largest)
        parts.append(data[start : start + size])
        start += size
    return parts


# Appends as clients make them: an unaligned first PATCH, pieces from one
# byte to more than a whole buffer, and a tail short of a block.
APPENDS = [1000, 9 * MIB + 17, 5, 4096, 10 * MIB, 3]


async def append_all(store: FilesystemBlobStore, data: list[bytes], hasher) -> int:
    rng = random.Random(7)
    await store.create_upload("u1")
    size = 0
    for part in data:
        largest = len(part) if rng.random() < 0.3 else 3 * MIB
        size = await store.append_upload(
            "u1", size, chunks(pieces(part, rng, max(largest, 1))), hasher
        )
    return size


async def test_every_byte_lands_in_order_and_is_hashed_once(store):
    data = [os.urandom(length) for length in APPENDS]
    whole = b"".join(data)
    hasher = hashlib.sha256()

    size = await append_all(store, data, hasher)

    assert size == len(whole)
    assert staged(store) == whole
    assert hasher.hexdigest() == hashlib.sha256(whole).hexdigest()


async def test_direct_writes_are_used_where_the_filesystem_takes_them(tmp_path):
    store = FilesystemBlobStore(tmp_path / "storage")
    await store.create_upload("u1")
    path = tmp_path / "storage" / "uploads" / "u1"
    fd = os.open(path, os.O_WRONLY)
    try:
        appender = filesystem._Appender(fd, 0)
        # The descriptor is left as it was found, without O_DIRECT.
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    finally:
        os.close(fd)

    assert appender._direct is takes_direct(path.parent)
    assert not flags & os.O_DIRECT


async def test_direct_writes_refused_halfway_go_through_the_page_cache(
    tmp_path, monkeypatch
):
    if not takes_direct(tmp_path):
        pytest.skip("this filesystem takes no direct writes")
    store = FilesystemBlobStore(tmp_path / "storage")
    calls = {"direct": 0}
    real_pwrite = os.pwrite

    def refusing_pwrite(fd, data, position):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            calls["direct"] += 1
            if calls["direct"] > 2:
                raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, position)

    monkeypatch.setattr(filesystem.os, "pwrite", refusing_pwrite)
    data = [os.urandom(length) for length in APPENDS]
    whole = b"".join(data)
    hasher = hashlib.sha256()

    size = await append_all(store, data, hasher)

    assert calls["direct"] > 2
    assert size == len(whole)
    assert staged(store) == whole
    assert hasher.hexdigest() == hashlib.sha256(whole).hexdigest()
