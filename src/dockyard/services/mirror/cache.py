"""Pull-through caches: upstream registries served from Dockyard's own store.

An upstream named `dockerhub` appears as the namespace `dockerhub`: a pull of
`dockerhub/library/debian` is answered from the cache, or fetched from the
upstream's `library/debian` and kept. What is cached is an ordinary
repository, so the catalog, lifecycle policies and garbage collection see it
like any other.

- Manifests and blobs by digest never change: once cached, they are served
  without asking the upstream again.
- A tag is served from the cache for `tag_ttl` seconds after the upstream last
  confirmed it, then confirmed again with a HEAD, which Docker Hub does not
  count as a pull.
- When the upstream fails or rate-limits, what is cached is served anyway
  (and the failure logged); what is not gets an error naming the upstream's
  answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

from dockyard.config import UpstreamConfig
from dockyard.core import errors
from dockyard.core.digest import Digest
from dockyard.core.names import check_name
from dockyard.core.ports import StoredManifest
from dockyard.core.registry import Registry
from dockyard.metadata.mirror import MirrorStore
from dockyard.services.mirror.fetches import BlobFetcher, Fetch, unknown_blob
from dockyard.services.mirror.upstream import Upstream, UpstreamFailed

logger = logging.getLogger(__name__)

# Seconds a process keeps its hits before adding them to the shared counters.
FLUSH_INTERVAL = 1.0

# Docker Hub's 429 answers carry no Retry-After; ask clients to wait this long.
_UPSTREAM_RETRY_AFTER = 60


@dataclass(frozen=True, slots=True)
class Route:
    """A repository request that a pull-through cache answers."""

    cache: PullThroughCache
    upstream: Upstream
    # The Dockyard repository the cached content lives in.
    repository: str
    # The same repository's name upstream.
    remote: str


class _Counts:
    """Hits, misses and failures of one process, added to the database's
    counters every `FLUSH_INTERVAL` seconds and at once after a failure."""

    def __init__(self, store: MirrorStore) -> None:
        self._store = store
        self._pending: dict[str, list[int]] = {}
        self._last_flush = time.monotonic()
        # Flushes what is pending once FLUSH_INTERVAL has passed, so that
        # the last counts of a quiet spell are not held back until the next.
        self._timer: asyncio.Task[None] | None = None

    async def hit(self, upstream: Upstream) -> None:
        await self._add(upstream, 0)

    async def miss(self, upstream: Upstream) -> None:
        await self._add(upstream, 1)

    async def failure(self, upstream: Upstream, reason: str) -> None:
        counts = self._pending.pop(upstream.name, [0, 0, 0])
        counts[2] += 1
        hits, misses, failures = counts
        await self._store.add(upstream.name, hits, misses, failures, reason)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        self._last_flush = time.monotonic()
        for name, (hits, misses, failures) in pending.items():
            await self._store.add(name, hits, misses, failures, None)

    async def _add(self, upstream: Upstream, index: int) -> None:
        self._pending.setdefault(upstream.name, [0, 0, 0])[index] += 1
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush()
        except Exception as exc:
            logger.warning("could not store the caches' counters: %s", exc)
        finally:
            self._timer = None


class PullThroughCache:
    def __init__(
        self,
        registry: Registry,
        configs: Sequence[UpstreamConfig],
        store: MirrorStore,
    ) -> None:
        self._registry = registry
        self.upstreams = {config.name: Upstream(config) for config in configs}
        self._ttl = {config.name: config.tag_ttl for config in configs}
        self._by_host = {
            host: self.upstreams[config.name]
            for config in configs
            for host in config.hosts
        }
        mirrors = [self.upstreams[c.name] for c in configs if c.mirror]
        self._default = mirrors[0] if mirrors else None
        self._store = store
        self._counts = _Counts(store)
        self._fetcher = BlobFetcher(registry, self._counts.failure)
        # Manifest requests to upstreams under way, by (repository, reference).
        self._asking: dict[tuple[str, str], asyncio.Future[StoredManifest]] = {}
        # (repository, tag) -> (digest, when the upstream last confirmed it).
        self._confirmed: OrderedDict[tuple[str, str], tuple[Digest, float]] = (
            OrderedDict()
        )

    async def close(self) -> None:
        await self._counts.close()
        for upstream in self.upstreams.values():
            await upstream.close()

    # Which requests a cache answers

    async def route(
        self,
        name: str,
        ns: str | None,
        is_local: Callable[[str], Awaitable[bool]],
    ) -> Route | None:
        """The cache that answers for repository `name`, if any.

        `ns` is the registry a client names when it uses Dockyard as a mirror
        (the spec's `?ns=`). Unprefixed names go to the default mirror unless
        a local repository has that name.
        """
        # The registry the client means comes first: for containerd,
        # `quay/etcd?ns=docker.io` is Docker Hub's quay/etcd.
        upstream = self._by_host.get(ns) if ns else None
        if upstream is not None:
            return Route(self, upstream, check_name(f"{upstream.name}/{name}"), name)

        prefix, _, rest = name.partition("/")
        if rest and prefix in self.upstreams:
            return Route(self, self.upstreams[prefix], name, rest)

        if ns:
            # A registry no upstream stands for: Dockyard's own names.
            upstream = None
        elif self._default is not None and not await is_local(name):
            upstream = self._default
        else:
            upstream = None
        if upstream is None:
            return None
        return Route(self, upstream, check_name(f"{upstream.name}/{name}"), name)

    @staticmethod
    def refuse_push(route: Route) -> errors.Denied:
        return errors.Denied(
            f"{route.repository} is a pull-through cache of "
            f"{route.upstream.url}; pushes are refused here: push to a "
            "namespace of your own"
        )

    # Manifests

    async def manifest(self, route: Route, reference: str | Digest) -> StoredManifest:
        cached = await self._registry.metadata.get_manifest(route.repository, reference)
        if isinstance(reference, Digest):
            if cached is not None:
                await self._counts.hit(route.upstream)
                return cached
            fetch = partial(self._fetch_manifest, route, reference)
        elif cached is not None and self._still_confirmed(route, reference, cached):
            await self._counts.hit(route.upstream)
            return cached
        else:
            fetch = partial(self._revalidate, route, reference, cached)
        return await self._shared((route.repository, str(reference)), fetch)

    async def _shared(
        self, key: tuple[str, str], work: Callable[[], Awaitable[StoredManifest]]
    ) -> StoredManifest:
        """One upstream request in this process for clients asking together.

        Shielded: a client that hangs up does not cancel the others' answer.
        """
        task = self._asking.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._asking[key] = task
            task.add_done_callback(lambda _: self._asking.pop(key, None))
        return await asyncio.shield(task)

    def _still_confirmed(self, route: Route, tag: str, cached: StoredManifest) -> bool:
        confirmed = self._confirmed.get((route.repository, tag))
        if confirmed is None or confirmed[0] != cached.digest:
            return False
        return time.monotonic() - confirmed[1] < self._ttl[route.upstream.name]

    def _confirm(self, route: Route, tag: str, digest: Digest) -> None:
        key = (route.repository, tag)
        self._confirmed[key] = (digest, time.monotonic())
        self._confirmed.move_to_end(key)
        if len(self._confirmed) > 65536:
            self._confirmed.popitem(last=False)

    async def _revalidate(
        self, route: Route, tag: str, cached: StoredManifest | None
    ) -> StoredManifest:
        """Ask the upstream where the tag points; fetch it if it moved."""
        try:
            found, current = await route.upstream.head_manifest(route.remote, tag)
        except UpstreamFailed as exc:
            return await self._instead(route, f"tag {tag}", exc, cached)
        if not found:
            if cached is not None:
                await self._forget_tag(route, tag)
            raise errors.ManifestUnknown(
                f"manifest {tag} is unknown to {route.upstream.describe()} "
                f"as {route.remote}:{tag}"
            )
        if cached is not None and current == cached.digest:
            self._confirm(route, tag, current)
            await self._counts.hit(route.upstream)
            return cached
        return await self._fetch_manifest(route, tag, cached)

    async def _forget_tag(self, route: Route, tag: str) -> None:
        """Untag what the upstream untagged: the cache's tag list follows the
        upstream's, and the manifest, by digest, stays until GC or a policy
        removes it."""
        self._confirmed.pop((route.repository, tag), None)
        if await self._registry.metadata.delete_tag(route.repository, tag):
            logger.info(
                "untagged %s:%s: %s no longer has it",
                route.repository,
                tag,
                route.upstream.describe(),
            )

    async def _fetch_manifest(
        self,
        route: Route,
        reference: str | Digest,
        cached: StoredManifest | None = None,
    ) -> StoredManifest:
        upstream = route.upstream
        limit = self._registry.max_manifest_bytes
        try:
            fetched = await upstream.get_manifest(route.remote, str(reference), limit)
        except UpstreamFailed as exc:
            return await self._instead(route, f"manifest {reference}", exc, cached)
        if fetched is None:
            raise errors.ManifestUnknown(
                f"manifest {reference} is unknown to {upstream.describe()} "
                f"in {route.remote}"
            )

        digest = _checked_digest(upstream, reference, fetched.digest, fetched.content)
        tag = reference if isinstance(reference, str) else None
        try:
            stored = await self._registry.cache_manifest(
                route.repository,
                digest,
                fetched.content,
                fetched.media_type or None,
                tag,
            )
        except errors.ManifestInvalid as exc:
            # The upstream's fault, not the client's: a 502, as for any
            # answer that is not what a registry sends.
            failed = UpstreamFailed(
                f"{upstream.describe()} sent manifest {reference} of "
                f"{route.remote}, which Dockyard cannot read: {exc.message}"
            )
            return await self._instead(route, f"manifest {reference}", failed, cached)
        if tag is not None:
            self._confirm(route, tag, digest)
        await self._counts.miss(upstream)
        logger.info("cached %s@%s from %s", route.repository, digest, upstream.url)
        return stored

    async def _instead(
        self,
        route: Route,
        what: str,
        exc: UpstreamFailed,
        cached: StoredManifest | None,
    ) -> StoredManifest:
        """The cached manifest when the upstream fails, else the failure."""
        await self._counts.failure(route.upstream, str(exc))
        if cached is None:
            raise _failure(exc)
        logger.warning("serving cached %s of %s: %s", what, route.repository, exc)
        await self._counts.hit(route.upstream)
        return cached

    # Blobs

    async def blob_size(self, route: Route, digest: Digest) -> int:
        """The blob's size, asking the upstream when it is not cached."""
        size = await self._registry.metadata.linked_blob_size(route.repository, digest)
        if size is not None:
            return size
        size = await self._registry.blobs.stat(digest)
        if size is None or not await self._store.lists_cached_blob(
            route.repository, digest
        ):
            # Not shown to be this repository's: the upstream's word, and
            # nothing of what is stored for others.
            size = await self._upstream_has(route, digest)
        if size is None:
            raise errors.UpstreamUnavailable(
                f"{route.upstream.describe()} did not say the size of blob "
                f"{digest}; pull it to cache it"
            )
        return size

    async def pull_blob(
        self, route: Route, digest: Digest
    ) -> tuple[int | None, Fetch | None]:
        """Make the blob readable, fetching it if need be: its size, None
        when the upstream does not say before sending it, and the fetch that
        brings it, None when it is stored."""
        metadata, blobs = self._registry.metadata, self._registry.blobs
        size = await metadata.linked_blob_size(route.repository, digest)
        if size is not None and await blobs.stat(digest) is not None:
            await self._counts.hit(route.upstream)
            return size, None

        if await blobs.stat(digest) is not None:
            # Stored for another repository, perhaps a private one: linked
            # only once this repository is shown to have it too, by the
            # upstream or by a manifest cached here that lists a blob this
            # cache holds already.
            if not await self._store.lists_cached_blob(route.repository, digest):
                await self._upstream_has(route, digest)
            async with blobs.collection_guard(exclusive=False):
                size = await blobs.stat(digest)
                if size is not None:
                    await self._registry.check_quota(route.repository, digest, size)
                    await metadata.link_blob(route.repository, digest, size)
                    await self._counts.hit(route.upstream)
                    return size, None

        running = self._fetcher.running(digest)
        if running is not None and route.repository not in running.repositories:
            # Another repository's download, perhaps from another upstream:
            # joined once this repository's upstream shows it has the blob.
            await self._upstream_has(route, digest)
        fetch, started = self._fetcher.start(
            route.upstream, route.remote, route.repository, digest
        )
        # Clients that join a fetch under way cost the upstream nothing; a
        # failed fetch is counted once, by the fetcher.
        await (self._counts.miss if started else self._counts.hit)(route.upstream)
        size = await fetch.wait_answer()
        if size is not None:
            # Before any byte: whether it started the download, joined it, or
            # follows another process's.
            await self._registry.check_quota(route.repository, digest, size)
        return size, fetch

    async def read_blob(
        self, digest: Digest, offset: int, length: int | None, fetch: Fetch | None
    ) -> AsyncIterator[bytes]:
        """The blob's bytes, from the store or as `fetch` brings them.

        The first bytes are awaited here, so that a fetch failing before
        them is an error answer rather than a broken-off one.
        """
        if fetch is not None:
            stream = self._fetcher.follow(fetch, offset, length)
        else:
            stream = await self._registry.open_blob(digest, offset, length)
        first = await anext(aiter(stream), None)
        return _resumed(first, stream)

    async def _upstream_has(self, route: Route, digest: Digest) -> int | None:
        """Whether the upstream has the blob (or an error), and its size if
        it says."""
        try:
            found, size = await route.upstream.blob_head(route.remote, digest)
        except UpstreamFailed as exc:
            await self._counts.failure(route.upstream, str(exc))
            raise _failure(exc) from None
        if not found:
            raise unknown_blob(digest, route.upstream, route.remote)
        return size


async def _resumed(
    first: bytes | None, rest: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    if first is None:
        return
    yield first
    async for chunk in rest:
        yield chunk


def _checked_digest(
    upstream: Upstream,
    reference: str | Digest,
    stated: Digest | None,
    content: bytes,
) -> Digest:
    """The manifest's digest, once sure the upstream sent what was asked for."""
    expected = reference if isinstance(reference, Digest) else stated
    algorithm = expected.algorithm if expected else "sha256"
    actual = Digest.of(content, algorithm)
    if expected is not None and actual != expected:
        raise errors.UpstreamUnavailable(
            f"{upstream.describe()} sent a manifest hashing to {actual} for "
            f"{reference}, which should be {expected}; nothing was kept"
        )
    return actual


def _failure(exc: UpstreamFailed) -> errors.RegistryError:
    if exc.status == 429:
        return errors.TooManyRequests(
            f"{exc}; try again later", retry_after=_UPSTREAM_RETRY_AFTER
        )
    return errors.UpstreamUnavailable(str(exc))
