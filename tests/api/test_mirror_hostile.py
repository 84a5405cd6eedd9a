"""The pull-through cache against an upstream that misbehaves on purpose:
endless or dripping answers, lies about sizes, bodies that stop short.

Whatever the upstream does, the cache answers within its timeout with the
spec's JSON error, keeps nothing it could not verify and holds no more of an
answer in memory or on disk than its limits allow.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import assert_error, push_blob, random_bytes, sha256
from tests.upstream import MEBIBYTE, Cache, Hostile, hostile, start_cache, upstream

UPSTREAM_FAILED = "UNAVAILABLE"
# The cache's timeout for the hostile upstream, in seconds.
TIMEOUT = 2


@dataclass(frozen=True)
class Setup:
    cache: Cache
    upstream: Hostile


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with hostile() as server:
        options = {"timeout": TIMEOUT, "max_blob_bytes": 8 * MEBIBYTE}
        entries = [
            upstream(server.url, name="hostile", **options),
            upstream(server.url, name="quotaed", **options),
            upstream(server.url, name="counted", **options),
            # Each left alone after its timeouts, the others still asked.
            upstream(server.url, name="timedout", **options),
            upstream(server.url, name="silent", **options),
        ]
        with start_cache(tmp_path_factory.mktemp("cache"), entries) as cache:
            result = cache.cli("quota", "quotaed", "1000")
            assert result.returncode == 0, result.stderr
            yield Setup(cache, server)


@pytest.fixture
def http(setup: Setup) -> Iterator[httpx.Client]:
    # Well under the upstream's minute of dripping: a cache that waited for
    # it would fail the test by this timeout.
    with httpx.Client(base_url=setup.cache.url, timeout=30) as client:
        yield client


def blob_path(behaviour: str, digest: str, namespace: str = "hostile") -> str:
    return f"/v2/{namespace}/{behaviour}/app/blobs/{digest}"


def message(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["message"])


def wait_finished(setup: Setup, behaviour: str) -> None:
    """Wait until the upstream's answer for `behaviour` ended, however."""
    deadline = time.monotonic() + 60
    while behaviour not in setup.upstream.finished:
        assert time.monotonic() < deadline, f"{behaviour} was never asked"
        time.sleep(0.1)
    assert setup.upstream.finished[behaviour].wait(60), f"{behaviour} never ended"


def test_an_endless_error_answer_is_read_no_further_than_its_start(setup, http):
    response = http.get(blob_path("bigerror", sha256(b"anything")))

    assert_error(response, 502, UPSTREAM_FAILED)
    assert "500" in message(response)
    wait_finished(setup, "bigerror")
    # The socket buffers hold a few MiB; the rest was never read.
    assert setup.upstream.written["bigerror"] < 64 * MEBIBYTE


def test_an_answer_dripping_in_byte_by_byte_meets_the_timeout(setup, http):
    started = time.monotonic()
    response = http.get("/v2/timedout/drip/app/manifests/v1")

    assert_error(response, 502, UPSTREAM_FAILED)
    assert f"took over {TIMEOUT} s" in message(response)
    assert time.monotonic() - started < 20


def test_an_upstream_gone_silent_costs_one_timeout_then_none(setup, http):
    path = "/v2/silent/silenced/app/manifests/v1"
    cached = http.get(path)
    setup.upstream.silence.set()
    # Past the tag's time to live: the next GET asks the upstream first.
    time.sleep(2.5)

    started = time.monotonic()
    first = http.get(path)
    first_took = time.monotonic() - started
    started = time.monotonic()
    # On the same connection, so the same server worker.
    later = [http.get(path) for _ in range(3)]
    later_took = time.monotonic() - started

    assert cached.status_code == 200, cached.text
    assert first.content == cached.content
    assert all(response.content == cached.content for response in later)
    assert TIMEOUT <= first_took < TIMEOUT + 5
    assert later_took < 1
    log = setup.cache.server.log()
    assert "did not answer within 2 s; not asked again for as long" in log


def test_an_endless_blob_is_cut_off_at_the_limit_and_not_kept(setup, http):
    digest = sha256(b"a blob that never ends")

    try:
        response = http.get(blob_path("endless", digest))
        status = response.status_code
    except httpx.TransportError:
        status = None  # broken off mid-answer: as good, the client can tell

    assert status != 200
    wait_finished(setup, "endless")
    assert setup.upstream.written["endless"] < 64 * MEBIBYTE
    # Nothing staged is left over once the upstream's answer ended.
    time.sleep(1)
    assert not list(Path(setup.cache.server.data_dir).rglob("fetch-*"))


def test_a_blob_ending_before_its_first_byte_is_a_json_error(setup, http):
    response = http.get(blob_path("empty", sha256(b"never sent")))

    assert_error(response, 502, UPSTREAM_FAILED)
    assert "hostile" in message(response)


def test_the_failure_is_counted_for_the_upstream(setup, http):
    http.get(blob_path("empty", sha256(b"counted")))

    deadline = time.monotonic() + 15
    while True:
        result = setup.cache.cli("upstream", "list", "--json")
        assert result.returncode == 0, result.stderr
        entry = next(e for e in json.loads(result.stdout) if e["name"] == "hostile")
        if entry["failures"] > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    assert entry["failures"] > 0


def test_a_slow_upstreams_first_bytes_reach_the_client_at_once(setup, http):
    path = blob_path("slow", setup.upstream.digest)

    with http.stream("GET", path) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        first = next(chunks)
        # The upstream sent 64 KiB and waits: the client has bytes already.
        assert first == setup.upstream.blob[: len(first)]
        setup.upstream.release.set()
        body = first + b"".join(chunks)

    assert body == setup.upstream.blob


def test_a_blob_stored_for_another_repository_is_served_whole_despite_a_lying_head(
    setup, http
):
    data = random_bytes(4096)
    push_blob(http, "team/app", data)

    response = http.get(blob_path("liar", sha256(data)))

    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(len(data))


def test_a_missing_blob_reads_the_same_whether_or_not_stored_here(setup, http):
    stored = random_bytes(4096)
    push_blob(http, "team/private", stored)
    nowhere = sha256(b"stored nowhere")

    answers = [http.get(blob_path("missing", d)) for d in (sha256(stored), nowhere)]

    for response in answers:
        assert_error(response, 404, "BLOB_UNKNOWN")
    first, second = (message(r) for r in answers)
    assert first.replace(sha256(stored), "D") == second.replace(nowhere, "D")


def test_a_cached_blob_counts_against_the_namespaces_quota(setup, http):
    response = http.get(blob_path("slow", setup.upstream.digest, "quotaed"))

    assert_error(response, 403, "DENIED")
    assert "quota" in message(response)


def test_a_blob_stored_here_counts_against_the_quota_when_linked(setup, http):
    data = random_bytes(4096)
    push_blob(http, "team/other", data)

    response = http.get(blob_path("liar", sha256(data), "quotaed"))

    assert_error(response, 403, "DENIED")
    assert "quota" in message(response)


def test_a_compressed_answer_is_refused_unread(setup, http):
    response = http.get("/v2/hostile/bomb/app/manifests/v1")

    assert_error(response, 502, UPSTREAM_FAILED)
    assert "gzip-encoded" in message(response)


def test_a_manifest_no_registry_would_store_is_the_upstreams_fault(setup, http):
    response = http.get("/v2/hostile/badmanifest/app/manifests/v1")

    assert_error(response, 502, UPSTREAM_FAILED)
    assert "cannot read" in message(response)


def test_a_cached_manifest_never_releases_a_blob_stored_for_others(setup, http):
    _, config, layer = setup.upstream.listed
    for data in (config, layer):
        push_blob(http, "team/listed", data)

    cached = http.get("/v2/hostile/listing/app/manifests/v1")
    # The manifest lists them, but only the upstream, answering 503 for
    # every blob, could show that the image has the bytes stored here.
    pulled = http.get(blob_path("listing", sha256(layer)))

    assert cached.status_code == 200
    assert_error(pulled, 502, UPSTREAM_FAILED)


def test_a_blob_cached_and_listed_by_a_cached_manifest_needs_no_upstream(setup, http):
    manifest, config, layer = setup.upstream.listed
    for data in (config, layer):
        assert http.get(blob_path("listed", sha256(data))).content == data

    cached = http.get("/v2/hostile/listing/app/manifests/v1")
    # The upstream answers 503 for every blob of `listing`: both are served
    # from this cache's store, as the cached manifest lists them.
    head = http.head(blob_path("listing", sha256(layer)))
    pulled = [http.get(blob_path("listing", sha256(d))) for d in (config, layer)]

    assert cached.content == manifest
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(layer))
    assert [r.status_code for r in pulled] == [200, 200]
    assert [r.content for r in pulled] == [config, layer]


def while_downloading(
    setup: Setup,
    behaviour: str,
    data: bytes,
    release: threading.Event,
    ask: Callable[[], list[httpx.Response]],
) -> tuple[bytes, list[httpx.Response]]:
    """Pull `data` through `behaviour` and, while the upstream holds back all
    but its first 64 KiB, make the requests `ask` makes; then let it finish.
    The pull's body and the answers to `ask`."""
    path = blob_path(behaviour, sha256(data))
    with (
        httpx.Client(base_url=setup.cache.url, timeout=30) as first,
        first.stream("GET", path) as downloading,
    ):
        assert downloading.status_code == 200
        chunks = downloading.iter_raw()
        body = next(chunks)
        answers = ask()
        release.set()
        body += b"".join(chunks)
    return body, answers


def test_a_download_under_way_is_no_proof_for_another_repository(setup, http):
    held = setup.upstream.held
    digest = sha256(held)

    # `missing` has no such blob: asking for it there, in either worker,
    # must not join the download under way.
    body, joined = while_downloading(
        setup,
        "held",
        held,
        setup.upstream.release_held,
        lambda: [http.get(blob_path("missing", digest)) for _ in range(6)],
    )

    assert body == held
    for response in joined:
        assert_error(response, 404, "BLOB_UNKNOWN")
    assert http.get(blob_path("missing", digest)).status_code == 404


def test_one_namespaces_quota_does_not_break_anothers_download(setup, http):
    shared = setup.upstream.shared
    digest = sha256(shared)

    # quotaed has room for 1,000 bytes: its clients are refused, in either
    # worker, and the download under way goes on.
    body, over = while_downloading(
        setup,
        "shared",
        shared,
        setup.upstream.release_shared,
        lambda: [http.get(blob_path("shared", digest, "quotaed")) for _ in range(4)],
    )

    assert body == shared
    for response in over:
        assert_error(response, 403, "DENIED")


def counted(setup: Setup) -> int:
    result = setup.cache.cli("upstream", "list", "--json")
    assert result.returncode == 0, result.stderr
    entry = next(e for e in json.loads(result.stdout) if e["name"] == "counted")
    return int(entry["hits"]) + int(entry["misses"])


def test_counts_reach_the_database_without_further_requests(setup, http):
    for _ in range(4):
        response = http.get("/v2/counted/listing/app/manifests/v1")
        assert response.status_code == 200

    # Each worker flushes its counts a second after the first it holds,
    # whether or not more requests come.
    deadline = time.monotonic() + 10
    while counted(setup) < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert counted(setup) == 4
