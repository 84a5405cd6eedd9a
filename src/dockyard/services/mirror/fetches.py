"""Fetching a blob from an upstream once, however many clients ask for it.

In each process, one task per blob downloads it into the staging area and
stores it once its digest checks out. Every client asking for the blob
meanwhile, the first one included, reads the staged bytes as they land, so
its answer starts long before the download ends, then the stored blob.

Processes agree on one downloader through the blob store's fetch lock. A
process that does not get it watches the other's staged file instead, and
takes over if the other dies before the blob is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from dockyard.core import errors
from dockyard.core.digest import Digest, new_hasher
from dockyard.core.ports import BlobStore
from dockyard.core.registry import Registry
from dockyard.services.mirror.upstream import (
    Upstream,
    UpstreamFailed,
    content_length,
)

logger = logging.getLogger(__name__)

# Seconds between looks at another process's download, and at the lock it holds.
POLL_INTERVAL = 0.05

# The staged file grows, and readers see the new bytes, at least this often
# while bytes arrive, however slowly they come...
SEGMENT_SECONDS = 0.25
# ...and after at most this many bytes when they come fast.
SEGMENT_BYTES = 16 * 1024 * 1024

# Called with the upstream and the reason when a fetch fails.
FailureHook = Callable[[Upstream, str], Awaitable[None]]


class Fetch:
    """One blob on its way from an upstream, as the readers in a process see it."""

    def __init__(self, digest: Digest, repository: str) -> None:
        self.digest = digest
        self.upload_id = f"fetch-{digest.algorithm}-{digest.encoded}"
        # Repositories that asked for the blob: each gets it linked.
        self.repositories = {repository}
        self.size: int | None = None
        # Whether the upstream has begun sending the blob (or another
        # process's download is under way).
        self.answered = False
        self.error: errors.RegistryError | None = None
        self.finished = False
        self._changed = asyncio.Event()

    def changed(self) -> None:
        """Wake every reader waiting for news."""
        self._changed.set()
        self._changed = asyncio.Event()

    def waiter(self) -> asyncio.Event:
        """Taken before a reader looks at the state, so no news is missed."""
        return self._changed

    async def wait_answer(self) -> int | None:
        """The blob's size once the upstream answered; None if it did not say.

        Raises the fetch's error if it failed before the first byte.
        """
        while not self.answered and not self.finished:
            await self.waiter().wait()
        error = self.failure()
        if error is not None:
            raise error
        return self.size

    def failure(self) -> errors.RegistryError | None:
        """The fetch's error, a copy for each reader: one exception raised
        to many would gather every reader's traceback."""
        if self.error is None:
            return None
        try:
            return copy.copy(self.error)
        except TypeError:
            return self.error


class BlobFetcher:
    def __init__(self, registry: Registry, failed: FailureHook) -> None:
        self._registry = registry
        self._failed = failed
        self._running: dict[Digest, Fetch] = {}
        # Strong references: the event loop keeps only weak ones to tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    def start(
        self, upstream: Upstream, remote: str, repository: str, digest: Digest
    ) -> tuple[Fetch, bool]:
        """The running fetch of the blob, and whether it started just now."""
        fetch = self._running.get(digest)
        if fetch is not None:
            fetch.repositories.add(repository)
            return fetch, False

        fetch = Fetch(digest, repository)
        self._running[digest] = fetch
        task = asyncio.create_task(self._run(fetch, upstream, remote))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fetch, True

    def running(self, digest: Digest) -> Fetch | None:
        """The fetch of the blob under way in this process, if any."""
        return self._running.get(digest)

    def follow(
        self, fetch: Fetch, offset: int, length: int | None
    ) -> AsyncIterator[bytes]:
        """The blob's bytes as the fetch brings them, then from the store;
        the fetch's error if it fails, even after it ended."""
        end = None if length is None else offset + length
        return self._follow(fetch, offset, end)

    async def _run(self, fetch: Fetch, upstream: Upstream, remote: str) -> None:
        try:
            await self._fetch(fetch, upstream, remote)
        except errors.RegistryError as exc:
            fetch.error = exc
        except UpstreamFailed as exc:
            fetch.error = errors.UpstreamUnavailable(str(exc))
        except Exception as exc:
            logger.error("fetching blob %s failed", fetch.digest, exc_info=exc)
            fetch.error = errors.UpstreamUnavailable(
                f"fetching blob {fetch.digest} from {upstream.describe()} failed"
            )
        finally:
            fetch.finished = True
            del self._running[fetch.digest]
            fetch.changed()
        if isinstance(fetch.error, errors.UpstreamUnavailable):
            await self._failed(upstream, fetch.error.message)

    async def _fetch(self, fetch: Fetch, upstream: Upstream, remote: str) -> None:
        blobs = self._registry.blobs
        while True:
            async with blobs.fetch_lock(fetch.digest) as leading:
                stored = await blobs.stat(fetch.digest)
                if stored is not None:
                    # Stored by another process's download meanwhile, which
                    # may have been another upstream's: the upstream shows
                    # that it has the blob too, unless it did already.
                    if not fetch.answered:
                        await _upstream_size(upstream, remote, fetch.digest)
                    fetch.size = stored
                    async with blobs.collection_guard(exclusive=False):
                        await self._check_quotas(fetch, stored)
                        await self._link(fetch, stored)
                    return
                if leading:
                    await self._download(fetch, upstream, remote)
                    return

            # Another process is downloading: readers follow its staged file.
            if not fetch.answered:
                fetch.size = await _upstream_size(upstream, remote, fetch.digest)
                fetch.answered = True
            fetch.changed()
            await asyncio.sleep(POLL_INTERVAL)

    async def _download(self, fetch: Fetch, upstream: Upstream, remote: str) -> None:
        blobs = self._registry.blobs
        async with upstream.blob(remote, fetch.digest) as response:
            if response.status_code == 404:
                raise unknown_blob(fetch.digest, upstream, remote)
            fetch.size = content_length(response)
            if fetch.size is not None:
                if fetch.size > upstream.max_blob_bytes:
                    raise _too_long(fetch, upstream)
                await self._check_quotas(fetch, fetch.size)
            fetch.answered = True
            fetch.changed()

            # Left over by a process that died while fetching the blob.
            await blobs.cancel_upload(fetch.upload_id)
            await blobs.create_upload(fetch.upload_id)
            try:
                size = await self._receive(fetch, upstream, response)
                async with blobs.collection_guard(exclusive=False):
                    await self._check_quotas(fetch, size)
                    await blobs.commit_upload(fetch.upload_id, fetch.digest)
                    await self._link(fetch, size)
            except BaseException:
                await blobs.cancel_upload(fetch.upload_id)
                raise
        logger.info("stored blob %s (%d bytes) from %s", fetch.digest, size, remote)

    async def _check_quotas(self, fetch: Fetch, size: int) -> None:
        """Leave out the repositories whose namespace the blob would take
        past its quota; refuse the blob if that leaves none.

        One namespace's quota does not break another's download.
        """
        refused: errors.QuotaExceeded | None = None
        for repository in list(fetch.repositories):
            try:
                await self._registry.check_quota(repository, fetch.digest, size)
            except errors.QuotaExceeded as exc:
                logger.warning("not linking blob %s: %s", fetch.digest, exc.message)
                fetch.repositories.discard(repository)
                refused = exc
        if not fetch.repositories and refused is not None:
            raise refused

    async def _receive(
        self, fetch: Fetch, upstream: Upstream, response: httpx.Response
    ) -> int:
        """Stage the upstream's bytes and check that they are the blob."""
        blobs = self._registry.blobs
        hasher = new_hasher(fetch.digest.algorithm)
        relay = _Relay(response, upstream.max_blob_bytes)
        size = 0
        try:
            while not relay.ended:
                size = await blobs.append_upload(
                    fetch.upload_id, size, relay.segment(), hasher
                )
                fetch.changed()
        except httpx.HTTPError as exc:
            raise errors.UpstreamUnavailable(
                f"{upstream.describe()} broke off blob {fetch.digest}: {exc}"
            ) from None
        except _TooLong:
            raise _too_long(fetch, upstream) from None
        finally:
            await relay.close()

        actual = Digest.from_hasher(hasher)
        if actual != fetch.digest or fetch.size not in (None, size):
            logger.error(
                "%s sent %d bytes hashing to %s for blob %s",
                upstream.describe(),
                size,
                actual,
                fetch.digest,
            )
            raise errors.UpstreamUnavailable(
                f"{upstream.describe()} sent {size} bytes that are not blob "
                f"{fetch.digest} (they hash to {actual}); nothing was kept"
            )
        fetch.size = size
        return size

    async def _link(self, fetch: Fetch, size: int) -> None:
        for repository in list(fetch.repositories):
            await self._registry.metadata.link_blob(repository, fetch.digest, size)

    async def _follow(
        self, fetch: Fetch, offset: int, end: int | None
    ) -> AsyncIterator[bytes]:
        """Staged bytes as they land, then the stored blob, up to `end` (None:
        all of it); the fetch's error if it fails, which breaks off the
        client's answer.

        Staged bytes may come from a download that then fails and, past
        them, from a later one, in this process or another. A reader of the
        whole blob hashes what it sends and holds its last bytes back until
        the hash checks out; a reader of a range waits for the stored blob.
        """
        blobs = self._registry.blobs
        whole = offset == 0 and (end is None or end == fetch.size)
        hasher = new_hasher(fetch.digest.algorithm) if whole else None
        position = offset
        while end is None or position < end:
            waiter = fetch.waiter()
            left = None if end is None else end - position
            stored = await blobs.open(fetch.digest, position, left)
            if stored is not None:
                if hasher is not None and position > 0:
                    stored = _checked(stored, hasher, fetch.digest)
                async for chunk in stored:
                    yield chunk
                return

            # The last staged byte is held back until the blob is stored.
            staged = (await blobs.upload_size(fetch.upload_id) or 0) - 1
            if hasher is not None and staged > position:
                async for chunk in _staged(blobs, fetch, position, staged - position):
                    position += len(chunk)
                    hasher.update(chunk)
                    yield chunk
                continue

            if fetch.finished:
                raise fetch.failure() or errors.BlobUnknown(
                    f"blob {fetch.digest} was removed while it was read"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), POLL_INTERVAL * 2)


def unknown_blob(digest: Digest, upstream: Upstream, remote: str) -> errors.BlobUnknown:
    """The one answer for a blob the upstream lacks, whether or not Dockyard
    stores it for another repository."""
    return errors.BlobUnknown(
        f"blob {digest} is unknown to {upstream.describe()} in {remote}"
    )


async def _upstream_size(upstream: Upstream, remote: str, digest: Digest) -> int | None:
    """The blob's size if the upstream says; `BlobUnknown` if it lacks it."""
    found, size = await upstream.blob_head(remote, digest)
    if not found:
        raise unknown_blob(digest, upstream, remote)
    return size


def _too_long(fetch: Fetch, upstream: Upstream) -> errors.UpstreamUnavailable:
    return errors.UpstreamUnavailable(
        f"{upstream.describe()} sends blob {fetch.digest} of over "
        f"{upstream.max_blob_bytes} bytes, its max_blob_bytes; nothing was kept"
    )


async def _checked(
    stream: AsyncIterator[bytes], hasher: Any, digest: Digest
) -> AsyncIterator[bytes]:
    """The rest of a blob whose first bytes `hasher` has seen, its last
    chunk held back until the whole hashes to `digest`."""
    held = b""
    async for chunk in stream:
        if held:
            yield held
        hasher.update(chunk)
        held = chunk
    if Digest.from_hasher(hasher) != digest:
        raise errors.UpstreamUnavailable(
            f"blob {digest} was fetched again while it was sent, and the first "
            "bytes sent were not the blob's; pull it again"
        )
    yield held


async def _staged(
    blobs: BlobStore, fetch: Fetch, offset: int, length: int
) -> AsyncIterator[bytes]:
    """Staged bytes, or none if the staged file was stored or dropped meanwhile."""
    stream = await blobs.open_upload(fetch.upload_id, offset, length)
    if stream is None:
        return
    try:
        async for chunk in stream:
            yield chunk
    except FileNotFoundError:
        return


class _TooLong(Exception):
    """The upstream sent more than `max_blob_bytes`."""


class _Relay:
    """The upstream's body, received by a task of its own and handed on in
    segments that each end after SEGMENT_SECONDS or SEGMENT_BYTES.

    The blob store writes out a segment as it ends, so that readers see
    even a slow upstream's bytes within a fraction of a second, rather than
    after the store's write buffer fills.
    """

    def __init__(self, response: httpx.Response, limit: int) -> None:
        self.ended = False
        self._limit = limit
        self._received = 0
        # A few chunks ahead at most: the upstream waits for the disk.
        self._queue: asyncio.Queue[bytes | Exception | None] = asyncio.Queue(64)
        self._task = asyncio.create_task(self._pump(response))

    async def _pump(self, response: httpx.Response) -> None:
        try:
            async for chunk in response.aiter_raw():
                await self._queue.put(chunk)
        except Exception as exc:
            # Raised again where the segments are read.
            await self._queue.put(exc)
            return
        await self._queue.put(None)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def segment(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SEGMENT_SECONDS
        size = 0
        while size < SEGMENT_BYTES:
            try:
                item = await self._next(deadline - loop.time())
            except TimeoutError:
                return
            if item is None:
                self.ended = True
                return
            if isinstance(item, Exception):
                raise item
            self._received += len(item)
            if self._received > self._limit:
                raise _TooLong
            size += len(item)
            yield item

    async def _next(self, wait: float) -> bytes | Exception | None:
        with contextlib.suppress(asyncio.QueueEmpty):
            return self._queue.get_nowait()
        async with asyncio.timeout(max(wait, 0)):
            return await self._queue.get()
