"""Blobs as files in a content-addressed tree on a local filesystem.

The layout under the root::

    blobs/<algorithm>/<first two hex>/<hex>   verified blob bytes, read-only
    uploads/<upload id>                        bytes staged by an open upload
    fetches/<algorithm>-<hex>.lock             held while a cache fetches a blob

A blob file appears only by `rename` of a staged file that was flushed to disk
and whose digest was verified, so a crash at any moment leaves either no blob
file or a whole one. A staged file's size is the upload's offset: bytes that
reached it before a crash or a broken connection count as received.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread

from dockyard.core.digest import Digest
from dockyard.core.errors import UploadInvalid, UploadOffsetMismatch, UploadUnknown

# Bytes gathered before one write: large enough that a 256 MiB push is a few
# dozen writes, small enough that many concurrent transfers fit in memory.
BUFFER_SIZE = 4 * 1024 * 1024

# Bytes per read when streaming a blob out; two are in memory per stream.
READ_SIZE = 1024 * 1024

# Buffers one writev() may take; the kernel refuses more than IOV_MAX (1024).
MAX_VECTORS = 512


class FilesystemBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs"
        self._uploads = root / "uploads"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)
        # File reads and writes run here, off the event loop.
        self._io = ThreadPoolExecutor(thread_name_prefix="dockyard-io")

    def _blob_path(self, digest: Digest) -> Path:
        return self._blobs / digest.algorithm / digest.encoded[:2] / digest.encoded

    def _upload_path(self, upload_id: str) -> Path:
        # Upload ids are UUIDs generated here; refuse anything that could
        # escape the uploads folder even so.
        if not upload_id or "/" in upload_id or upload_id.startswith("."):
            raise UploadUnknown(f"upload {upload_id!r} is unknown")
        return self._uploads / upload_id

    # Blobs

    async def stat(self, digest: Digest) -> int | None:
        try:
            return self._blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    async def open(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes] | None:
        path = self._blob_path(digest)
        if not path.exists():
            return None
        return _stream(path, offset, length, self._io)

    def local_path(self, digest: Digest) -> Path | None:
        return self._blob_path(digest)

    async def delete(self, digest: Digest) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._blob_path(digest).unlink()

    async def list(self) -> AsyncIterator[Digest]:
        for algorithm_dir in sorted(self._blobs.iterdir()):
            for path in sorted(algorithm_dir.glob("*/*")):
                yield Digest(algorithm_dir.name, path.name)

    # Uploads

    async def create_upload(self, upload_id: str) -> None:
        self._upload_path(upload_id).touch(exist_ok=False)

    async def upload_size(self, upload_id: str) -> int | None:
        try:
            return self._upload_path(upload_id).stat().st_size
        except FileNotFoundError:
            return None

    async def append_upload(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        hasher: Any = None,
    ) -> int:
        fd = self._open_locked(upload_id, os.O_WRONLY)
        try:
            size = os.fstat(fd).st_size
            if size != offset:
                raise UploadOffsetMismatch(
                    f"upload holds {size} bytes, not {offset}", size
                )
            os.lseek(fd, offset, os.SEEK_SET)
            written = await _write_all(fd, chunks, hasher, self._io)
            # Cancelled while the bytes arrived: they went nowhere.
            _check_still_staged(fd, self._upload_path(upload_id), upload_id)
            return offset + written
        finally:
            os.close(fd)

    @asynccontextmanager
    async def sealed_upload(self, upload_id: str) -> AsyncIterator[None]:
        fd = self._open_locked(upload_id, os.O_RDONLY)
        try:
            yield
        finally:
            os.close(fd)

    def _open_locked(self, upload_id: str, flags: int) -> int:
        """The staged file, locked against other requests, or an upload error."""
        path = self._upload_path(upload_id)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise _gone(upload_id) from None
        try:
            _lock(fd, upload_id)
            # Finished (renamed into a blob) or cancelled while this request
            # opened the file: writing to it now would change a stored blob.
            _check_still_staged(fd, path, upload_id)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read_upload(self, upload_id: str) -> AsyncIterator[bytes]:
        return _stream(self._upload_path(upload_id), 0, None, self._io)

    async def open_upload(
        self, upload_id: str, offset: int, length: int
    ) -> AsyncIterator[bytes] | None:
        # Opened lazily, so that a stream never read holds no file open; a
        # file committed or cancelled after this check raises on first read.
        path = self._upload_path(upload_id)
        if not path.exists():
            return None
        return _stream(path, offset, length, self._io)

    async def commit_upload(self, upload_id: str, digest: Digest) -> None:
        source = self._upload_path(upload_id)
        target = self._blob_path(digest)
        try:
            await anyio.to_thread.run_sync(_durable_rename, source, target)
        except FileNotFoundError:
            raise _gone(upload_id) from None

    async def cancel_upload(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._upload_path(upload_id).unlink()

    @asynccontextmanager
    async def collection_guard(self, exclusive: bool) -> AsyncIterator[None]:
        # Each holder opens the file anew: flock belongs to an open file, and
        # one shared descriptor would let the first holder unlock for all.
        path = self.root / "collection.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            await anyio.to_thread.run_sync(fcntl.flock, fd, mode)
            yield
        finally:
            os.close(fd)

    @asynccontextmanager
    async def fetch_lock(self, digest: Digest) -> AsyncIterator[bool]:
        # A lock file per blob, rather than a lock on the staged file, which
        # `append_upload` locks for itself. The holder removes it when done,
        # stored or failed, so none are left behind; a process that locked a
        # removed file sees that it is no longer the one at the path and
        # answers as if another held it, and its caller tries again.
        path = self.root / "fetches" / f"{digest.algorithm}-{digest.encoded}.lock"
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            if not _still_at(fd, path):
                yield False
                return
            try:
                yield True
            finally:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        finally:
            os.close(fd)


def _still_at(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _gone(upload_id: str) -> UploadUnknown:
    return UploadUnknown(f"upload {upload_id} was finished or cancelled")


def _check_still_staged(fd: int, path: Path, upload_id: str) -> None:
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        same = False
    if not same:
        raise _gone(upload_id)


def _lock(fd: int, upload_id: str) -> None:
    # Two requests writing to, or finishing, one upload at once would mix
    # their bytes or store a blob that changes after it was verified.
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise UploadInvalid(
                f"upload {upload_id} is busy with another request; retry later"
            ) from None
        raise


async def _write_all(
    fd: int, chunks: AsyncIterable[bytes], hasher: Any, writer: Executor
) -> int:
    """Write the stream, hashing each batch in the same pass as its write.

    Batches are written and hashed on a worker thread (both release the GIL)
    while the event loop receives the next one, so receiving, hashing and
    writing overlap. One write is in flight at a time, which keeps order.
    """
    in_flight: Future[int] | None = None
    written = 0
    batch: list[bytes] = []
    batched = 0
    try:
        async for chunk in chunks:
            batch.append(chunk)
            batched += len(chunk)
            if batched >= BUFFER_SIZE:
                written += await _result(in_flight)
                in_flight = writer.submit(_write, fd, batch, hasher)
                batch, batched = [], 0
        written += await _result(in_flight)
        in_flight = writer.submit(_write, fd, batch, hasher)
        written += await _result(in_flight)
        in_flight = None
    finally:
        # The caller closes `fd` next: no write may still be running then,
        # even when this request was cancelled.
        if in_flight is not None:
            wait([in_flight])
    return written


async def _result(future: Future[int] | None) -> int:
    return 0 if future is None else await asyncio.wrap_future(future)


def _write(fd: int, batch: list[bytes], hasher: Any) -> int:
    """Hash and write a batch, and start its writeback."""
    views = [memoryview(chunk) for chunk in batch if chunk]
    if len(views) > MAX_VECTORS:
        views = [memoryview(b"".join(views))]
    total = sum(len(view) for view in views)
    if hasher is not None:
        for view in views:
            hasher.update(view)

    remaining = total
    while remaining:
        done = os.writev(fd, views)
        remaining -= done
        views = _skip(views, done)

    if total:
        # Start writing the batch back to disk now, without waiting for it:
        # the fsync at commit, which makes the blob durable, then has little
        # left to do and does not stall the request that finishes the push.
        end = os.lseek(fd, 0, os.SEEK_CUR)
        os.posix_fadvise(fd, end - total, total, os.POSIX_FADV_DONTNEED)
    return total


def _skip(views: list[memoryview], count: int) -> list[memoryview]:
    """The views left after the first `count` bytes were written."""
    while views and count >= len(views[0]):
        count -= len(views[0])
        views = views[1:]
    if views and count:
        views[0] = views[0][count:]
    return views


async def _stream(
    path: Path, offset: int, length: int | None, reader: Executor
) -> AsyncIterator[bytes]:
    """Bytes of a file from `offset`, the next read already running on a thread."""
    fd = os.open(path, os.O_RDONLY)
    in_flight: Future[bytes] | None = None
    try:
        end = os.fstat(fd).st_size if length is None else offset + length
        in_flight = _next_read(reader, fd, offset, end)
        while in_flight is not None:
            chunk = await asyncio.wrap_future(in_flight)
            offset += len(chunk)
            in_flight = _next_read(reader, fd, offset, end) if chunk else None
            if chunk:
                yield chunk
    finally:
        # A client that hangs up stops the stream; no read may still be using
        # `fd` when it closes.
        if in_flight is not None:
            wait([in_flight])
        os.close(fd)


def _next_read(
    reader: Executor, fd: int, offset: int, end: int
) -> Future[bytes] | None:
    size = min(READ_SIZE, end - offset)
    return reader.submit(os.pread, fd, size, offset) if size > 0 else None


def _durable_rename(source: Path, target: Path) -> None:
    """Flush `source` to disk, then rename it to `target` atomically."""
    with open(source, "rb") as file:
        os.fsync(file.fileno())

    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    _fsync_dir(target.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
