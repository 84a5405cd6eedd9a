"""Answers to hot reads, kept in each server process and checked for freshness.

Manifest pulls by tag, tag lists and blob checks are most of a registry's
traffic, and the same few answers are asked for again and again. Each process
keeps them in a small LRU cache. Freshness comes from a change stamp that every
committed metadata write replaces: an answer is served from the cache only
while the stamp still reads as it did before the answer was looked up, so no
process ever serves an answer older than the last write it could have seen.

Tag-immutability rules are read on every manifest PUT, a write that replaces
the change stamp itself, so under a push load a rule cached behind that stamp
would never be served. Rules have a stamp of their own, replaced only when a
rule is set.

The stamps are memory-mapped beside the SQLite database, so reading one
costs no system call. It is shared by the processes of one machine, which is
all SQLite allows; a metadata store shared by several machines runs without
this cache.
"""

from __future__ import annotations

import mmap
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from dockyard.core.digest import Digest
from dockyard.core.ports import StoredManifest
from dockyard.core.settings import TagRule
from dockyard.metadata.store import SqlMetadataStore

T = TypeVar("T")

STAMP_SIZE = 16


class ChangeStamp:
    """A token in shared memory that every write of one kind replaces.

    One file holds a stamp per `slot`, so that writes of one kind leave the
    answers cached behind another kind's stamp alone.
    """

    def __init__(self, path: Path, slot: int = 0) -> None:
        self._start = slot * STAMP_SIZE
        self._end = self._start + STAMP_SIZE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < self._end:
                os.ftruncate(fd, self._end)
            self._map = mmap.mmap(fd, self._end)
        finally:
            os.close(fd)

    def read(self) -> bytes:
        return self._map[self._start : self._end]

    def replace(self) -> None:
        # Readers compare for equality only; a torn read is merely a miss.
        self._map[self._start : self._end] = os.urandom(STAMP_SIZE)


class _LRU:
    def __init__(self, capacity: int) -> None:
        self._entries: OrderedDict[Hashable, tuple[bytes, Any]] = OrderedDict()
        self._capacity = capacity

    def get(self, key: Hashable, stamp: bytes) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is None or entry[0] != stamp:
            return False, None
        self._entries.move_to_end(key)
        return True, entry[1]

    def put(self, key: Hashable, stamp: bytes, value: Any) -> None:
        self._entries[key] = (stamp, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)


class CachedMetadataStore(SqlMetadataStore):
    """`SqlMetadataStore` answering repeated hot reads from memory."""

    def __init__(
        self,
        engine: Engine,
        stamp: ChangeStamp,
        rule_stamp: ChangeStamp,
        capacity: int = 4096,
    ):
        super().__init__(engine)
        self._stamp = stamp
        self._rule_stamp = rule_stamp
        self._small = _LRU(capacity)
        # Tag lists can be large; keep fewer of them.
        self._lists = _LRU(64)
        self._rules = _LRU(capacity)

    def _committed(self) -> None:
        self._stamp.replace()

    def _rule_committed(self) -> None:
        self._rule_stamp.replace()

    async def _cached(
        self,
        cache: _LRU,
        key: Hashable,
        load: Callable[[], Awaitable[T]],
        changes: ChangeStamp | None = None,
    ) -> T:
        # The stamp is read before the lookup, so a write committed during
        # the lookup leaves the answer stamped as already stale.
        stamp = (changes or self._stamp).read()
        found, value = cache.get(key, stamp)
        if found:
            return value  # type: ignore[no-any-return]
        value = await load()
        cache.put(key, stamp, value)
        return value

    async def get_manifest(
        self, repository: str, reference: str | Digest
    ) -> StoredManifest | None:
        load = super().get_manifest
        key = ("manifest", repository, reference)
        return await self._cached(self._small, key, lambda: load(repository, reference))

    async def linked_blob_size(self, repository: str, digest: Digest) -> int | None:
        load = super().linked_blob_size
        key = ("blob", repository, digest)
        return await self._cached(self._small, key, lambda: load(repository, digest))

    async def repository_exists(self, name: str) -> bool:
        load = super().repository_exists
        key = ("repository", name)
        return await self._cached(self._small, key, lambda: load(name))

    async def list_tags(
        self, repository: str, limit: int | None, last: str | None
    ) -> list[str]:
        load = super().list_tags
        key = (repository, limit, last)
        tags = await self._cached(
            self._lists, key, lambda: load(repository, limit, last)
        )
        return list(tags)  # callers may trim their copy

    async def tag_rule(self, repository: str) -> TagRule:
        load = super().tag_rule
        return await self._cached(
            self._rules, repository, lambda: load(repository), self._rule_stamp
        )
