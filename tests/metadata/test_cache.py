"""The per-process cache never serves an answer older than a committed write."""

import pytest
from sqlalchemy import create_engine

from dockyard.core.digest import Digest
from dockyard.core.ports import NewManifest
from dockyard.core.settings import TagRule
from dockyard.metadata.cache import CachedMetadataStore, ChangeStamp
from dockyard.metadata.migrate import upgrade
from dockyard.metadata.store import create_db_engine

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def two_processes(tmp_path):
    """Two stores on one database and stamp, as two server workers have."""
    url = f"sqlite:///{tmp_path / 'dockyard.db'}"
    upgrade(create_engine(url))
    stamp_path = tmp_path / "dockyard.db-stamp"
    return [
        CachedMetadataStore(
            create_db_engine(url), ChangeStamp(stamp_path), ChangeStamp(stamp_path, 1)
        )
        for _ in range(2)
    ]


def manifest(body: bytes) -> NewManifest:
    return NewManifest(
        digest=Digest.of(body),
        media_type="application/vnd.oci.image.manifest.v1+json",
        content=body,
        artifact_type=None,
        subject=None,
        blobs=[],
        children=[],
    )


async def test_tag_moved_by_another_process_is_seen(two_processes):
    first, second = two_processes
    await first.put_manifest("a/b", manifest(b'{"v":1}'), ["latest"])
    assert (await second.get_manifest("a/b", "latest")).content == b'{"v":1}'

    await first.put_manifest("a/b", manifest(b'{"v":2}'), ["latest"])

    assert (await second.get_manifest("a/b", "latest")).content == b'{"v":2}'


async def test_deleted_tag_disappears_from_another_process(two_processes):
    first, second = two_processes
    await first.put_manifest("a/b", manifest(b"{}"), ["x", "y"])
    assert await second.list_tags("a/b", None, None) == ["x", "y"]

    await first.delete_tag("a/b", "x")

    assert await second.list_tags("a/b", None, None) == ["y"]
    assert await second.get_manifest("a/b", "x") is None


async def test_repeated_reads_are_answered_from_memory(two_processes, monkeypatch):
    first, _ = two_processes
    await first.put_manifest("a/b", manifest(b"{}"), ["t"])
    await first.get_manifest("a/b", "t")

    def no_database(*args, **kwargs):
        raise AssertionError("the database was asked again")

    monkeypatch.setattr(first.engine, "connect", no_database)
    assert (await first.get_manifest("a/b", "t")).content == b"{}"


async def test_callers_cannot_change_a_cached_tag_list(two_processes):
    first, _ = two_processes
    await first.put_manifest("a/b", manifest(b"{}"), ["t"])
    (await first.list_tags("a/b", None, None)).clear()
    assert await first.list_tags("a/b", None, None) == ["t"]


async def test_tag_rule_set_by_another_process_is_seen_at_once(two_processes):
    first, second = two_processes
    assert not (await first.tag_rule("a/b")).immutable

    await second.set_tag_rule("a", TagRule(immutable=True))

    assert (await first.tag_rule("a/b")).immutable


async def test_tag_rule_stays_cached_through_pushes(two_processes, monkeypatch):
    first, second = two_processes
    await first.tag_rule("a/b")
    await second.put_manifest("a/b", manifest(b"{}"), ["t"])

    def no_database(*args, **kwargs):
        raise AssertionError("the database was asked again")

    monkeypatch.setattr(first.engine, "connect", no_database)
    assert await first.tag_rule("a/b") == TagRule()
