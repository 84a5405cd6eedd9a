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
import mmap
import os
import time
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

# Seconds a request waits for another one to let go of an upload.
LOCK_WAIT = 2.0

# Direct writes (O_DIRECT) need buffers, offsets and lengths in whole blocks
# of the device; 4 KiB is a multiple of every common block size.
ALIGNMENT = 4096


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
        fd = await self._open_locked(upload_id, os.O_WRONLY)
        try:
            size = os.fstat(fd).st_size
            if size != offset:
                raise UploadOffsetMismatch(
                    f"upload holds {size} bytes, not {offset}", size
                )
            appender = _Appender(fd, offset)
            written = await _write_all(appender, chunks, hasher, self._io)
            # Cancelled while the bytes arrived: they went nowhere.
            _check_still_staged(fd, self._upload_path(upload_id), upload_id)
            return offset + written
        finally:
            os.close(fd)

    @asynccontextmanager
    async def sealed_upload(self, upload_id: str) -> AsyncIterator[None]:
        fd = await self._open_locked(upload_id, os.O_RDONLY)
        try:
            yield
        finally:
            os.close(fd)

    async def _open_locked(self, upload_id: str, flags: int) -> int:
        """The staged file, locked against other requests, or an upload error."""
        path = self._upload_path(upload_id)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise _gone(upload_id) from None
        try:
            await _lock(fd, upload_id)
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


async def _lock(fd: int, upload_id: str) -> None:
    """Lock the staged file, waiting up to LOCK_WAIT for another request.

    Two requests writing to, or finishing, one upload at once would mix
    their bytes or store a blob that changes after it was verified. A
    request whose client hung up holds the lock until its last write ends
    (10-45 ms measured), so a client resuming at once waits, not refused.
    """
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            raise UploadInvalid(
                f"upload {upload_id} is busy with another request; retry later"
            )
        await asyncio.sleep(0.01)


async def _write_all(
    appender: _Appender, chunks: AsyncIterable[bytes], hasher: Any, pool: Executor
) -> int:
    """Write the stream, and hash it in the same pass.

    Each batch is hashed on one worker thread while another writes it (both
    release the GIL), and the event loop receives the next batch meanwhile.
    One batch is in flight at a time, which keeps the bytes in order.
    """
    in_flight: list[Future[int]] = []
    written = 0
    batch: list[bytes] = []
    batched = 0
    try:
        async for chunk in chunks:
            batch.append(chunk)
            batched += len(chunk)
            if batched >= BUFFER_SIZE:
                written += await _results(in_flight)
                in_flight = _submit(pool, appender, batch, hasher, last=False)
                batch, batched = [], 0
        written += await _results(in_flight)
        in_flight = _submit(pool, appender, batch, hasher, last=True)
        written += await _results(in_flight)
        in_flight = []
    finally:
        # The caller closes the file next: no write may still be running
        # then, even when this request was cancelled.
        wait(in_flight)
    return written


def _submit(
    pool: Executor, appender: _Appender, batch: list[bytes], hasher: Any, last: bool
) -> list[Future[int]]:
    futures = [pool.submit(appender.write, batch, last)]
    if hasher is not None:
        futures.append(pool.submit(_hash, hasher, batch))
    return futures


def _hash(hasher: Any, batch: list[bytes]) -> int:
    for chunk in batch:
        hasher.update(chunk)
    return 0  # bytes written: none, the writer counts them


async def _results(futures: list[Future[int]]) -> int:
    """The bytes the futures wrote, once all have finished."""
    done = [await asyncio.wrap_future(future) for future in futures]
    return sum(done)


class _Appender:
    """Writes a stream's bytes in order from `offset` in a staged file.

    Whole aligned blocks go straight to the disk (O_DIRECT) where the
    filesystem allows it: on the benchmark's virtual machine, allocating
    page-cache pages was most of a push's time (256 MiB written and synced
    in 0.7-0.8 s through the page cache, 0.12-0.20 s direct). Bytes before
    the first aligned offset, and those short of a whole block when the
    stream ends, go through the page cache.
    """

    def __init__(self, fd: int, offset: int) -> None:
        self._fd = fd
        self._position = offset
        self._direct = _supports_direct(fd)
        # Anonymous maps are page-aligned, as direct writes need. Dropped,
        # not closed, with the appender: a view of it may outlive a failure.
        self._buffer = mmap.mmap(-1, BUFFER_SIZE + ALIGNMENT) if self._direct else None
        self._pending = 0  # bytes at the start of the buffer not yet written

    def write(self, batch: list[bytes], last: bool = False) -> int:
        """Write a batch; the bytes it added to the file."""
        views = [memoryview(chunk) for chunk in batch if chunk]
        before = self._position
        if self._direct:
            self._write_direct(views)
        else:
            self._write_buffered(views)
        if last:
            self._flush_pending()
        return self._position - before

    def _write_buffered(self, views: list[memoryview]) -> None:
        """Through the page cache, with writeback started at once."""
        if len(views) > MAX_VECTORS:
            views = [memoryview(b"".join(views))]
        total = sum(len(view) for view in views)
        remaining = total
        while remaining:
            done = os.pwritev(self._fd, views, self._position)
            self._position += done
            remaining -= done
            views = _skip(views, done)
        if total:
            # The fsync at commit, which makes the blob durable, then has
            # little left to do and does not stall the request finishing it.
            start = self._position - total
            os.posix_fadvise(self._fd, start, total, os.POSIX_FADV_DONTNEED)

    def _write_direct(self, views: list[memoryview]) -> None:
        head = -self._position % ALIGNMENT
        if head and not self._pending:
            views = self._write_head(views, head)
        for index, view in enumerate(views):
            while view:
                view = self._fill(view)
                if self._full() and not self._drain():
                    self._fall_back([view, *views[index + 1 :]])
                    return
        if not self._drain():
            self._fall_back([])

    def _fill(self, view: memoryview) -> memoryview:
        """Copy as much of `view` as fits after the pending bytes; the rest."""
        assert self._buffer is not None
        piece = view[: len(self._buffer) - self._pending]
        self._buffer[self._pending : self._pending + len(piece)] = piece
        self._pending += len(piece)
        return view[len(piece) :]

    def _full(self) -> bool:
        return self._buffer is not None and self._pending == len(self._buffer)

    def _fall_back(self, rest: list[memoryview]) -> None:
        """Direct writes refused after all (a device with larger blocks, say):
        the page cache from here on."""
        self._direct = False
        self._flush_pending()
        self._write_buffered(rest)

    def _write_head(self, views: list[memoryview], head: int) -> list[memoryview]:
        """Write up to `head` bytes through the page cache, reaching an
        aligned offset; the views left."""
        taken, rest = [], views
        while rest and head:
            piece = rest[0][:head]
            taken.append(piece)
            head -= len(piece)
            rest = _skip(rest, len(piece))
        self._write_buffered(taken)
        return rest

    def _drain(self) -> bool:
        """Write the pending whole blocks directly and move the bytes after
        them to the buffer's start; False if the filesystem refused."""
        assert self._buffer is not None
        length = self._pending - self._pending % ALIGNMENT
        if not length:
            return True
        data = memoryview(self._buffer)[:length]
        written, refused = 0, False
        try:
            _set_direct(self._fd, True)
            while written < length:
                position = self._position + written
                written += os.pwrite(self._fd, data[written:], position)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            refused = True
        finally:
            _set_direct(self._fd, False)
            data.release()

        self._position += written
        self._pending -= written
        self._buffer.move(0, written, self._pending)
        return not refused

    def _flush_pending(self) -> None:
        if self._buffer is None or not self._pending:
            return
        with memoryview(self._buffer) as whole:
            self._write_buffered([whole[: self._pending]])
        self._pending = 0


def _supports_direct(fd: int) -> bool:
    """Whether the file takes O_DIRECT, which not every filesystem does
    (older kernels' tmpfs, for one)."""
    if not hasattr(os, "O_DIRECT"):
        return False
    try:
        _set_direct(fd, True)
    except OSError:
        return False
    _set_direct(fd, False)
    return True


def _set_direct(fd: int, on: bool) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    flags = flags | os.O_DIRECT if on else flags & ~os.O_DIRECT
    fcntl.fcntl(fd, fcntl.F_SETFL, flags)


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
