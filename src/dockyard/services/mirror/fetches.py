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
import logging
from collections.abc import AsyncIterator

import httpx

from dockyard.core import errors
from dockyard.core.digest import Digest, new_hasher
from dockyard.core.ports import BlobStore
from dockyard.core.registry import Registry
from dockyard.services.mirror.upstream import Upstream, UpstreamFailed

logger = logging.getLogger(__name__)

# Seconds between looks at another process's download, and at the lock it holds.
POLL_INTERVAL = 0.05

# Readers are woken after about this many bytes arrive from the upstream.
WAKE_EVERY = 1024 * 1024


class Fetch:
    """One blob on its way from an upstream, as the readers in a process see it."""

    def __init__(self, digest: Digest, repository: str) -> None:
        self.digest = digest
        self.upload_id = f"fetch-{digest.algorithm}-{digest.encoded}"
        # Repositories that asked for the blob: each gets it linked.
        self.repositories = {repository}
        self.size: int | None = None
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

    async def wait_size(self) -> int | None:
        """The blob's size once known; None if the upstream did not say."""
        while self.size is None and not self.finished:
            await self.waiter().wait()
        if self.size is None and self.error is not None:
            raise self.error
        return self.size


class BlobFetcher:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
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

    async def open(
        self, digest: Digest, offset: int, length: int | None
    ) -> AsyncIterator[bytes]:
        """The blob's bytes, from the store or from a fetch under way."""
        fetch = self._running.get(digest)
        if fetch is None:
            return await self._registry.open_blob(digest, offset, length)
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

    async def _fetch(self, fetch: Fetch, upstream: Upstream, remote: str) -> None:
        blobs = self._registry.blobs
        while True:
            async with blobs.fetch_lock(fetch.digest) as leading:
                stored = await blobs.stat(fetch.digest)
                if stored is not None:
                    fetch.size = stored
                    await self._link(fetch, stored)
                    return
                if leading:
                    await self._download(fetch, upstream, remote)
                    return

            # Another process is downloading: readers follow its staged file.
            if fetch.size is None:
                fetch.size = await upstream.blob_size(remote, fetch.digest)
                if fetch.size is None:
                    raise _unknown(fetch.digest, upstream)
            fetch.changed()
            await asyncio.sleep(POLL_INTERVAL)

    async def _download(self, fetch: Fetch, upstream: Upstream, remote: str) -> None:
        blobs = self._registry.blobs
        async with upstream.blob(remote, fetch.digest) as response:
            if response.status_code == 404:
                raise _unknown(fetch.digest, upstream)
            length = response.headers.get("content-length", "")
            fetch.size = int(length) if length.isdigit() else None
            fetch.changed()

            # Left over by a process that died while fetching the blob.
            await blobs.cancel_upload(fetch.upload_id)
            await blobs.create_upload(fetch.upload_id)
            try:
                size = await self._receive(fetch, upstream, response)
                async with blobs.collection_guard(exclusive=False):
                    await blobs.commit_upload(fetch.upload_id, fetch.digest)
                    await self._link(fetch, size)
            except BaseException:
                await blobs.cancel_upload(fetch.upload_id)
                raise
        logger.info("stored blob %s (%d bytes) from %s", fetch.digest, size, remote)

    async def _receive(
        self, fetch: Fetch, upstream: Upstream, response: httpx.Response
    ) -> int:
        """Stage the upstream's bytes and check that they are the blob."""
        hasher = new_hasher(fetch.digest.algorithm)
        try:
            size = await self._registry.blobs.append_upload(
                fetch.upload_id, 0, _waking(response, fetch), hasher
            )
        except httpx.HTTPError as exc:
            raise errors.UpstreamUnavailable(
                f"{upstream.describe()} broke off blob {fetch.digest}: {exc}"
            ) from None

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
        client's answer."""
        blobs = self._registry.blobs
        position = offset
        while end is None or position < end:
            waiter = fetch.waiter()
            left = None if end is None else end - position
            stored = await blobs.open(fetch.digest, position, left)
            if stored is not None:
                async for chunk in stored:
                    yield chunk
                return

            # The last staged byte is held back until the digest checks out
            # and the blob is stored: a client given every byte of a blob
            # that then fails the check could not tell it was broken off.
            staged = (await blobs.upload_size(fetch.upload_id) or 0) - 1
            staged = staged if end is None else min(staged, end)
            if staged > position:
                async for chunk in _staged(blobs, fetch, position, staged - position):
                    position += len(chunk)
                    yield chunk
                continue

            if fetch.finished:
                raise fetch.error or _unknown(fetch.digest, None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), POLL_INTERVAL * 2)


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


async def _waking(response: httpx.Response, fetch: Fetch) -> AsyncIterator[bytes]:
    """The upstream's bytes as they come, waking readers now and then."""
    since_wake = 0
    async for chunk in response.aiter_raw():
        yield chunk
        since_wake += len(chunk)
        if since_wake >= WAKE_EVERY:
            fetch.changed()
            since_wake = 0
    fetch.changed()


def _unknown(digest: Digest, upstream: Upstream | None) -> errors.BlobUnknown:
    where = upstream.describe() if upstream else "the upstream"
    return errors.BlobUnknown(f"blob {digest} is unknown to {where}")
