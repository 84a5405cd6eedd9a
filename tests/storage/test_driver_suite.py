"""The contract every blob-store driver keeps; each driver runs this suite."""

import hashlib
import os

import anyio
import pytest

from dockyard.core.digest import Digest
from dockyard.core.errors import UploadInvalid, UploadOffsetMismatch, UploadUnknown
from dockyard.storage.filesystem import FilesystemBlobStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(params=["filesystem"])
def store(request, tmp_path):
    if request.param == "filesystem":
        return FilesystemBlobStore(tmp_path / "storage")
    raise AssertionError(request.param)


async def chunks(*parts):
    for part in parts:
        yield part


async def collect(stream):
    return b"".join([chunk async for chunk in stream])


async def stage(store, upload_id, data):
    await store.create_upload(upload_id)
    await store.append_upload(upload_id, 0, chunks(data))


async def test_missing_blob_has_no_size(store):
    assert await store.stat(Digest.of(b"absent")) is None


async def test_committed_upload_becomes_a_blob(store):
    data = os.urandom(3 * 1024 * 1024 + 7)
    digest = Digest.of(data)
    await stage(store, "u1", data)

    await store.commit_upload("u1", digest)

    assert await store.stat(digest) == len(data)
    assert await collect(await store.open(digest)) == data
    assert await store.upload_size("u1") is None


async def test_read_a_range(store):
    data = bytes(range(256)) * 10
    digest = Digest.of(data)
    await stage(store, "u1", data)
    await store.commit_upload("u1", digest)

    assert await collect(await store.open(digest, 100, 50)) == data[100:150]
    assert await collect(await store.open(digest, 2500)) == data[2500:]


async def test_appends_grow_the_staged_size(store):
    await store.create_upload("u1")
    assert await store.upload_size("u1") == 0

    assert await store.append_upload("u1", 0, chunks(b"abc", b"de")) == 5
    assert await store.append_upload("u1", 5, chunks(b"fgh")) == 8
    assert await collect(store.read_upload("u1")) == b"abcdefgh"


async def test_append_at_the_wrong_offset_writes_nothing(store):
    await stage(store, "u1", b"abc")

    with pytest.raises(UploadOffsetMismatch) as caught:
        await store.append_upload("u1", 1, chunks(b"zzz"))

    assert caught.value.size == 3
    assert await collect(store.read_upload("u1")) == b"abc"


async def test_cancel_frees_the_staged_bytes(store):
    await stage(store, "u1", b"abc")
    await store.cancel_upload("u1")
    assert await store.upload_size("u1") is None


async def test_an_uncommitted_upload_is_no_blob(store):
    data = b"partial"
    await stage(store, "u1", data)
    assert await store.stat(Digest.of(data)) is None


async def test_committing_the_same_content_twice_keeps_one_blob(store):
    data = b"same"
    digest = Digest.of(data)
    for upload_id in ("u1", "u2"):
        await stage(store, upload_id, data)
        await store.commit_upload(upload_id, digest)

    assert [d async for d in store.list()] == [digest]


async def test_delete_removes_the_blob(store):
    data = b"gone"
    digest = Digest.of(data)
    await stage(store, "u1", data)
    await store.commit_upload("u1", digest)

    await store.delete(digest)

    assert await store.stat(digest) is None


async def test_sha512_blobs(store):
    data = b"x" * 1000
    digest = Digest("sha512", hashlib.sha512(data).hexdigest())
    await stage(store, "u1", data)
    await store.commit_upload("u1", digest)
    assert await store.stat(digest) == 1000


async def test_many_tiny_chunks_are_written_in_order(store):
    parts = [bytes([i % 256]) for i in range(5000)]
    await store.create_upload("u1")

    assert await store.append_upload("u1", 0, chunks(*parts)) == 5000
    assert await collect(store.read_upload("u1")) == b"".join(parts)


async def test_opening_a_missing_blob_says_so_before_streaming(store):
    assert await store.open(Digest.of(b"absent")) is None


async def test_a_stream_longer_than_one_buffer_reads_whole(store):
    data = os.urandom(9 * 1024 * 1024 + 3)
    digest = Digest.of(data)
    await stage(store, "u1", data)
    await store.commit_upload("u1", digest)

    assert await collect(await store.open(digest)) == data
    assert (
        await collect(await store.open(digest, 5, 8 * 1024 * 1024))
        == data[5 : 5 + 8 * 1024 * 1024]
    )


async def test_a_stream_closed_early_releases_its_file(store):
    data = os.urandom(9 * 1024 * 1024)
    digest = Digest.of(data)
    await stage(store, "u1", data)
    await store.commit_upload("u1", digest)
    open_files = len(os.listdir("/proc/self/fd"))

    stream = await store.open(digest)
    await stream.__anext__()
    await stream.aclose()

    assert len(os.listdir("/proc/self/fd")) == open_files


async def test_a_sealed_upload_takes_no_more_bytes(store):
    await stage(store, "u1", b"abc")

    async with store.sealed_upload("u1"):
        with pytest.raises(UploadInvalid):
            await store.append_upload("u1", 3, chunks(b"late"))

    assert await collect(store.read_upload("u1")) == b"abc"


async def test_an_upload_is_sealed_by_one_request_at_a_time(store):
    await stage(store, "u1", b"abc")
    async with store.sealed_upload("u1"):
        with pytest.raises(UploadInvalid):
            async with store.sealed_upload("u1"):
                pass


async def test_a_request_waits_for_one_that_lets_go_of_the_upload(store):
    await stage(store, "u1", b"abc")
    released = anyio.Event()

    async def hold_briefly():
        async with store.sealed_upload("u1"):
            released.set()
            await anyio.sleep(0.2)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(hold_briefly)
        await released.wait()
        size = await store.append_upload("u1", 3, chunks(b"de"))

    assert size == 5
    assert await collect(store.read_upload("u1")) == b"abcde"


async def test_bytes_for_an_upload_cancelled_meanwhile_are_refused(store):
    await stage(store, "u1", b"abc")

    async def cancelled_midway():
        yield b"de"
        await store.cancel_upload("u1")
        yield b"fg"

    with pytest.raises(UploadUnknown):
        await store.append_upload("u1", 3, cancelled_midway())


async def test_a_committed_upload_cannot_be_appended_to(store):
    data = b"final"
    digest = Digest.of(data)
    await stage(store, "u1", data)
    await store.commit_upload("u1", digest)

    with pytest.raises(UploadUnknown):
        await store.append_upload("u1", 5, chunks(b"evil"))
    assert await collect(await store.open(digest)) == data


async def test_committing_a_cancelled_upload_is_an_upload_error(store):
    await stage(store, "u1", b"x")
    await store.cancel_upload("u1")
    with pytest.raises(UploadUnknown):
        await store.commit_upload("u1", Digest.of(b"x"))


async def test_open_upload_streams_staged_bytes_and_none_once_gone(store):
    data = os.urandom(3000)
    await stage(store, "staged", data)

    assert (
        await collect(await store.open_upload("staged", 1000, 500)) == data[1000:1500]
    )

    await store.commit_upload("staged", Digest.of(data))
    assert await store.open_upload("staged", 0, 10) is None


async def test_fetch_lock_has_one_holder_at_a_time(store):
    digest = Digest.of(b"fetched")

    async with store.fetch_lock(digest) as first, store.fetch_lock(digest) as second:
        assert (first, second) == (True, False)

    async with store.fetch_lock(digest) as again:
        assert again is True


async def test_fetch_lock_leaves_no_lock_file_after_a_failed_fetch(store, tmp_path):
    digest = Digest.of(b"never fetched")

    with pytest.raises(RuntimeError):
        async with store.fetch_lock(digest) as leading:
            assert leading
            raise RuntimeError("the upstream broke off")

    assert not list(tmp_path.rglob("*.lock"))
    async with store.fetch_lock(digest) as again:
        assert again is True


async def test_fetch_lock_holder_finds_the_blob_another_stored(store):
    data = b"stored meanwhile"
    digest = Digest.of(data)

    async with store.fetch_lock(digest) as leading:
        assert leading
        await stage(store, "fetch", data)
        await store.commit_upload("fetch", digest)

    async with store.fetch_lock(digest) as leading:
        assert leading
        assert await store.stat(digest) == len(data)
