"""Routing to pull-through caches, and reading an upstream's login answers."""

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from dockyard.bootstrap import build_mirror, build_registry
from dockyard.cli.upstreams import upstream_list
from dockyard.config import Config, ConfigError, load_config
from dockyard.core.digest import Digest
from dockyard.core.errors import NameInvalid, UpstreamUnavailable
from dockyard.services.mirror.cache import PullThroughCache, _checked_digest
from dockyard.services.mirror.fetches import BlobFetcher, Fetch
from dockyard.services.mirror.upstream import (
    MAX_TOKENS,
    Upstream,
    UpstreamFailed,
    _challenge_params,
    _token_of,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


UPSTREAMS = [
    {"name": "hub", "url": "https://registry-1.docker.io", "mirror": True},
    {"name": "quay", "url": "https://quay.io/"},
]


@pytest.fixture
def cache(tmp_path: Path) -> PullThroughCache:
    config = Config(data_dir=tmp_path, upstreams=UPSTREAMS)
    mirror = build_mirror(config, build_registry(config))
    assert mirror is not None
    return mirror


def local(*names: str):
    async def is_local(name: str) -> bool:
        return name in names

    return is_local


async def test_a_prefixed_name_goes_to_its_upstream(cache):
    route = await cache.route("quay/coreos/etcd", None, local())

    assert route is not None
    assert (route.upstream.name, route.repository, route.remote) == (
        "quay",
        "quay/coreos/etcd",
        "coreos/etcd",
    )


async def test_an_unprefixed_name_goes_to_the_mirror_unless_it_is_local(cache):
    route = await cache.route("library/debian", None, local())
    assert route is not None
    assert (route.upstream.name, route.repository) == ("hub", "hub/library/debian")

    assert await cache.route("team/app", None, local("team/app")) is None


async def test_ns_picks_the_upstream_by_registry_host(cache):
    route = await cache.route("coreos/etcd", "quay.io", local("coreos/etcd"))
    assert route is not None
    assert route.repository == "quay/coreos/etcd"

    docker = await cache.route("library/debian", "docker.io", local())
    assert docker is not None and docker.upstream.name == "hub"


async def test_ns_comes_before_a_prefix_that_names_an_upstream(cache):
    route = await cache.route("quay/coreos/etcd", "docker.io", local())

    assert route is not None
    assert (route.upstream.name, route.remote) == ("hub", "quay/coreos/etcd")


def test_tokens_kept_are_bounded():
    upstream = Upstream(Config(upstreams=UPSTREAMS).upstreams[0])
    for number in range(MAX_TOKENS + 500):
        upstream._keep_token(f"repository:r{number}:pull", "t", 300)

    assert len(upstream._tokens) == MAX_TOKENS
    assert f"repository:r{MAX_TOKENS + 499}:pull" in upstream._tokens


async def test_a_name_too_long_with_the_prefix_is_refused(cache):
    with pytest.raises(NameInvalid):
        await cache.route("a" * 254, None, local())


async def test_the_namespace_alone_is_no_cached_repository(cache):
    assert await cache.route("quay", None, local("quay")) is None


def test_config_refuses_bad_upstreams(tmp_path: Path):
    bad = [
        [{"name": "Hub", "url": "https://x.io"}],
        [{"name": "hub", "url": "ftp://x.io"}],
        [{"name": "hub", "url": "https://x.io/v2/"}],
        [{"name": "hub", "url": "https://x.io", "username": "u"}],
        [{"name": "a", "url": "https://x.io"}, {"name": "a", "url": "https://y.io"}],
        [
            {"name": "a", "url": "https://x.io", "mirror": True},
            {"name": "b", "url": "https://y.io", "mirror": True},
        ],
    ]
    for upstreams in bad:
        with pytest.raises(ConfigError, match="upstreams"):
            load_config(None, data_dir=tmp_path, upstreams=upstreams)


def test_the_password_stays_out_of_the_config_repr(tmp_path: Path):
    upstream = {"name": "a", "url": "https://x.io", "username": "u", "password": "pw"}
    config = Config(data_dir=tmp_path, upstreams=[upstream])

    assert "pw" not in repr(config)


def test_challenge_parameters_with_quotes_commas_and_escapes():
    params = _challenge_params(
        'realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/debian:pull,push",error=insufficient_scope,'
        'note="say \\"hi\\""'
    )

    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/debian:pull,push",
        "error": "insufficient_scope",
        "note": 'say "hi"',
    }


def test_a_token_answer_in_either_spelling_with_a_default_lifetime():
    docker = b'{"token": "abc", "expires_in": 300}'
    oauth = b'{"access_token": "def"}'

    assert _token_of(docker, "hub") == ("abc", 300.0)
    assert _token_of(oauth, "hub") == ("def", 60.0)


def test_a_token_answer_without_a_token_is_a_failure():
    # None: an answer too long to be a token's.
    for body in (b"{}", b"<html>", b'["token"]', None):
        with pytest.raises(UpstreamFailed, match="sent no token"):
            _token_of(body, "hub")


def test_a_manifest_that_hashes_otherwise_is_refused():
    upstream = Upstream(Config(upstreams=UPSTREAMS).upstreams[0])
    content = b'{"schemaVersion": 2}'
    right = Digest.of(content)

    assert _checked_digest(upstream, right, None, content) == right
    assert _checked_digest(upstream, "latest", right, content) == right
    assert _checked_digest(upstream, "latest", None, content) == right
    with pytest.raises(UpstreamUnavailable, match="nothing was kept"):
        _checked_digest(upstream, "latest", Digest.of(b"other"), content)
    with pytest.raises(UpstreamUnavailable):
        _checked_digest(upstream, Digest.of(b"other"), None, content)


def test_upstream_list_without_upstreams_points_at_the_config(tmp_path: Path):
    result = CliRunner().invoke(upstream_list, ["--data-dir", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert "--config" in result.output


async def _once(data: bytes):
    yield data


async def _failed(upstream: Upstream, reason: str) -> None:
    pass


async def _read_across_two_downloads(
    tmp_path: Path, first: Callable[[bytes], bytes]
) -> tuple[bytes, bytes]:
    """What a reader of a whole blob gets when it began with staged bytes
    `first(blob)` of one download, and another download then stored it."""
    registry = build_registry(Config(data_dir=tmp_path))
    blobs = registry.blobs
    fetcher = BlobFetcher(registry, _failed)
    good = os.urandom(3 * 1024 * 1024)
    digest = Digest.of(good)
    fetch = Fetch(digest, "hub/app")
    fetch.size, fetch.answered = len(good), True
    fetcher._running[digest] = fetch
    await blobs.create_upload(fetch.upload_id)
    await blobs.append_upload(fetch.upload_id, 0, _once(first(good)))

    stream = fetcher.follow(fetch, 0, len(good))
    received = await anext(stream)
    await blobs.cancel_upload(fetch.upload_id)
    await blobs.create_upload(fetch.upload_id)
    await blobs.append_upload(fetch.upload_id, 0, _once(good))
    await blobs.commit_upload(fetch.upload_id, digest)
    del fetcher._running[digest]
    fetch.finished = True
    fetch.changed()
    async for chunk in stream:
        received += chunk
    return received, good


async def test_a_reader_given_bytes_of_a_failed_download_is_broken_off(tmp_path):
    def corrupt(good: bytes) -> bytes:
        return bytes(255 - b for b in good[: 1024 * 1024])

    with pytest.raises(UpstreamUnavailable, match="pull it again"):
        await _read_across_two_downloads(tmp_path, corrupt)


async def test_a_reader_given_the_right_bytes_gets_the_whole_blob(tmp_path):
    def right(good: bytes) -> bytes:
        return good[: 1024 * 1024]

    received, good = await _read_across_two_downloads(tmp_path, right)

    assert received == good


class _Silent(httpx.AsyncBaseTransport):
    """An upstream that takes every request and never answers, as one behind
    a firewall that drops packets; counts what it was asked."""

    def __init__(self) -> None:
        self.asked = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.asked += 1
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def test_an_upstream_that_never_answers_is_left_alone_for_its_timeout():
    settings = {"name": "hub", "url": "https://registry.example", "timeout": 0.3}
    silent = _Silent()
    upstream = Upstream(Config(upstreams=[settings]).upstreams[0], silent)
    digest = Digest.of(b"layer")

    started = time.monotonic()
    with pytest.raises(UpstreamFailed, match="took over 0.3 s"):
        await upstream.head_manifest("library/debian", "bookworm")
    waited = time.monotonic() - started
    with pytest.raises(UpstreamFailed, match="not asking it for blob"):
        await upstream.blob_head("library/debian", digest)
    asked_while_quiet = silent.asked
    await asyncio.sleep(0.4)
    with pytest.raises(UpstreamFailed, match="took over"):
        await upstream.blob_head("library/debian", digest)

    assert waited >= 0.3
    assert asked_while_quiet == 1
    assert silent.asked == 2
    await upstream.close()


class _Crowded(httpx.AsyncBaseTransport):
    """Every request waits in vain for a connection of the client's own."""

    def __init__(self) -> None:
        self.asked = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.asked += 1
        raise httpx.PoolTimeout("no connection free")


async def test_a_full_connection_pool_does_not_silence_the_upstream():
    settings = {"name": "hub", "url": "https://registry.example", "timeout": 5}
    crowded = _Crowded()
    upstream = Upstream(Config(upstreams=[settings]).upstreams[0], crowded)

    for _ in range(2):
        with pytest.raises(UpstreamFailed, match="asked too much at once"):
            await upstream.head_manifest("library/debian", "bookworm")

    assert crowded.asked == 2
    await upstream.close()


class _Unreachable(httpx.AsyncBaseTransport):
    """Connections time out, as to a host that drops packets."""

    def __init__(self) -> None:
        self.asked = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.asked += 1
        raise httpx.ConnectTimeout("timed out")


async def test_a_connection_timing_out_also_silences_the_upstream():
    settings = {"name": "hub", "url": "https://registry.example", "timeout": 5}
    unreachable = _Unreachable()
    upstream = Upstream(Config(upstreams=[settings]).upstreams[0], unreachable)

    with pytest.raises(UpstreamFailed, match="took over 5 s"):
        await upstream.head_manifest("library/debian", "bookworm")
    with pytest.raises(UpstreamFailed, match="not asking it"):
        await upstream.head_manifest("library/debian", "bookworm")

    assert unreachable.asked == 1
    await upstream.close()
