"""The pull-through cache with real clients, and Distribution as its upstream.

Distribution (`docker-registry` 2.8) holds the shared test images, copied in
by skopeo; Dockyard caches it under the namespace `upstream`. Distribution's
access log tells what the cache asked it. Tests that stop an upstream or
need nothing cached yet start their own pair; the rest share one per module.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import assert_error
from tests.authserver import ALICE, BOB, AuthServer, auth_server
from tests.e2e.clients import Clients, oci_blob, oci_json, oci_ref, sha256_file
from tests.upstream import (
    Cache,
    Distribution,
    push_blob,
    start_cache,
    start_distribution,
    upstream,
)

ACCEPT_ALL = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
DEBIAN, BOOKWORM = "library/debian", "bookworm"
PYAPP, PYAPP_TAG = "library/pyapp", "1.4.2"
# The code for an upstream that cannot answer (docs/mirror.md); the issue
# said UNKNOWN, the implementation chose Distribution's UNAVAILABLE.
UPSTREAM_FAILED = "UNAVAILABLE"


@pytest.fixture(scope="module")
def seeder(tmp_path_factory: pytest.TempPathFactory) -> Clients:
    """The clients that copy images into upstreams."""
    return Clients.create(tmp_path_factory.mktemp("seeder"))


@pytest.fixture(scope="module")
def remote(
    tmp_path_factory: pytest.TempPathFactory, images: Path, seeder: Clients
) -> Iterator[Distribution]:
    with start_distribution(tmp_path_factory.mktemp("remote")) as registry:
        seed(seeder, registry, images)
        yield registry


@pytest.fixture(scope="module")
def cache(
    tmp_path_factory: pytest.TempPathFactory, remote: Distribution
) -> Iterator[Cache]:
    """Dockyard caching `remote` under `upstream/`, not as a mirror."""
    workdir = tmp_path_factory.mktemp("cache")
    with start_cache(workdir, [upstream(remote.url)]) as running:
        yield running


@pytest.fixture(scope="module")
def mirror(
    tmp_path_factory: pytest.TempPathFactory, remote: Distribution
) -> Iterator[Cache]:
    """Dockyard caching `remote`, also for names without the namespace."""
    workdir = tmp_path_factory.mktemp("mirror")
    with start_cache(workdir, [upstream(remote.url, mirror=True)]) as running:
        yield running


@pytest.fixture
def clients(tmp_path: Path) -> Clients:
    return Clients.create(tmp_path / "clients")


def copy_into(
    clients: Clients, host: str, layout: Path, tag: str, repo: str, *flags: str
) -> None:
    """Push the image `layout` tags `tag` to HOST/REPO:TAG with skopeo."""
    clients.run(
        clients.skopeo(
            "copy",
            "--all",
            "--dest-tls-verify=false",
            *flags,
            f"oci:{layout}:{tag}",
            f"docker://{host}/{repo}:{tag}",
        )
    )


def seed(clients: Clients, registry: Distribution, images: Path) -> None:
    copy_into(clients, registry.host, images / "debian", BOOKWORM, DEBIAN)
    copy_into(clients, registry.host, images / "pyapp", PYAPP_TAG, PYAPP)


@contextmanager
def own_pair(
    workdir: Path, images: Path, seeder: Clients, **options: Any
) -> Iterator[tuple[Distribution, Cache]]:
    """A seeded Distribution and a cache of it, for one test to stop or fill."""
    with start_distribution(workdir / "remote") as registry:
        seed(seeder, registry, images)
        entry = upstream(registry.url, **options)
        with start_cache(workdir / "cache", [entry]) as running:
            yield registry, running


def pull_command(
    clients: Clients, host: str, repo: str, tag: str, out: Path
) -> list[str]:
    return clients.skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        f"docker://{host}/{repo}:{tag}",
        f"oci:{out}:{tag}",
    )


def pull(clients: Clients, host: str, repo: str, tag: str, out: Path) -> str:
    """Copy HOST/REPO:TAG into the OCI layout `out`; the digest it got."""
    clients.run(pull_command(clients, host, repo, tag, out))
    return str(oci_ref(out, tag)["digest"])


def tagged_digest(layout: Path, tag: str) -> str:
    return str(oci_ref(layout, tag)["digest"])


def blobs_of(layout: Path, tag: str) -> list[str]:
    """Config and layer digests of every image under the tag (index or not)."""
    top = oci_json(layout, tagged_digest(layout, tag))
    manifests = [oci_json(layout, m["digest"]) for m in top.get("manifests", [])]
    manifests = manifests or [top]
    layers = [layer["digest"] for m in manifests for layer in m["layers"]]
    return [*(m["config"]["digest"] for m in manifests), *layers]


def get_manifest(cache: Cache, repo: str, reference: str, **params: str) -> Any:
    with cache.client() as http:
        return http.get(
            f"/v2/{repo}/manifests/{reference}",
            params=params,
            headers={"Accept": ACCEPT_ALL},
        )


def error_message(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["message"])


def assert_names(message: str, name: str, registry_host: str) -> None:
    """An error about an upstream must say which one: its name or its address."""
    assert name in message or registry_host in message, message


# Pulling through the cache


def test_skopeo_pulls_an_index_byte_for_byte(
    cache: Cache, clients: Clients, images: Path, tmp_path: Path
) -> None:
    source, out = images / "debian", tmp_path / "out"

    digest = pull(clients, cache.host, f"upstream/{DEBIAN}", BOOKWORM, out)

    assert digest == tagged_digest(source, BOOKWORM)
    for blob in blobs_of(source, BOOKWORM):
        assert sha256_file(oci_blob(out, blob)) == blob
        assert filecmp.cmp(oci_blob(out, blob), oci_blob(source, blob), shallow=False)


def test_pulled_repository_is_listed_with_its_tag(
    cache: Cache, clients: Clients, tmp_path: Path
) -> None:
    pull(clients, cache.host, f"upstream/{DEBIAN}", BOOKWORM, tmp_path / "out")

    with cache.client() as http:
        tags = http.get(f"/v2/upstream/{DEBIAN}/tags/list")
        catalog = http.get("/v2/_catalog")

    assert tags.status_code == 200, tags.text
    assert BOOKWORM in tags.json()["tags"]
    assert f"upstream/{DEBIAN}" in catalog.json()["repositories"]


def test_podman_pulls_through_the_cache(
    cache: Cache, clients: Clients, images: Path
) -> None:
    image = f"{cache.host}/upstream/{PYAPP}:{PYAPP_TAG}"

    clients.run(clients.podman("pull", "-q", "--tls-verify=false", image))
    found = clients.run(
        clients.podman("image", "inspect", "--format={{.Digest}}", image)
    )

    assert found.strip() == tagged_digest(images / "pyapp", PYAPP_TAG)


def test_blob_by_digest_is_fetched_from_upstream_once(
    cache: Cache, remote: Distribution
) -> None:
    repo = f"library/once-{uuid.uuid4().hex[:8]}"
    data = os.urandom(1 << 20)
    digest = push_blob(remote.url, repo, data)
    path = f"/v2/upstream/{repo}/blobs/{digest}"

    with cache.client() as http:
        bodies = [http.get(path).content for _ in range(3)]

    assert bodies == [data] * 3
    assert len(remote.requests("GET", f"/v2/{repo}/blobs/{digest}")) == 1


# When the upstream fails


def test_cached_image_is_served_while_the_upstream_is_down(
    tmp_path: Path, images: Path, seeder: Clients, clients: Clients
) -> None:
    # A name no message would hold by chance, to see that errors name it.
    name = "faraway"
    repo, uncached_repo = f"{name}/{DEBIAN}", f"{name}/{PYAPP}"
    with own_pair(tmp_path, images, seeder, name=name, tag_ttl=1) as (registry, run):
        first = pull(clients, run.host, repo, BOOKWORM, tmp_path / "first")
        registry.stop()
        # Past tag_ttl: the tag wants revalidating and the upstream is gone.
        time.sleep(1.5)
        again = pull(clients, run.host, repo, BOOKWORM, tmp_path / "again")
        uncached = get_manifest(run, uncached_repo, PYAPP_TAG)
        command = pull_command(clients, run.host, uncached_repo, PYAPP_TAG, tmp_path)
        refused = clients.fail(command)

    assert first == again == tagged_digest(images / "debian", BOOKWORM)
    assert_error(uncached, 502, UPSTREAM_FAILED)
    assert_names(error_message(uncached), name, registry.host)
    # skopeo 1.9 shows no message for a 502, only the status.
    assert "502 Bad Gateway" in refused, refused


def test_moved_tag_is_seen_once_its_ttl_has_passed(
    cache: Cache,
    remote: Distribution,
    seeder: Clients,
    clients: Clients,
    images: Path,
    tmp_path: Path,
) -> None:
    repo = f"library/moving-{uuid.uuid4().hex[:8]}"
    copy_into(seeder, remote.host, images / "debian", BOOKWORM, repo)
    first = get_manifest(cache, f"upstream/{repo}", BOOKWORM)
    fetched_at = time.monotonic()

    move_tag(seeder, remote, images, repo)
    # The module's cache has a tag_ttl of 2 s.
    time.sleep(max(0.0, fetched_at + 2.5 - time.monotonic()))
    digest = pull(clients, cache.host, f"upstream/{repo}", BOOKWORM, tmp_path / "out")

    assert first.headers["Docker-Content-Digest"] == tagged_digest(
        images / "debian", BOOKWORM
    )
    assert digest == tagged_digest(images / "pyapp", PYAPP_TAG)


def test_tag_is_confirmed_at_most_once_per_worker_within_its_ttl(
    tmp_path: Path, remote: Distribution, seeder: Clients, images: Path
) -> None:
    # Long enough that no test run is slow enough to see the tag expire.
    ttl, repo = 60, f"library/moving-{uuid.uuid4().hex[:8]}"
    heads = f"/v2/{repo}/manifests/{BOOKWORM}"
    copy_into(seeder, remote.host, images / "debian", BOOKWORM, repo)
    with start_cache(tmp_path / "cache", [upstream(remote.url, tag_ttl=ttl)]) as run:
        get_manifest(run, f"upstream/{repo}", BOOKWORM)
        move_tag(seeder, remote, images, repo)
        asked = len(remote.requests("HEAD", heads))
        # Several requests, so that both of the server's workers answer some.
        later = [get_manifest(run, f"upstream/{repo}", BOOKWORM) for _ in range(8)]

    # Each worker keeps its own confirmation times (docs/mirror.md), so a
    # worker that never saw the tag asks; one that did may serve it unasked.
    old = tagged_digest(images / "debian", BOOKWORM)
    new = tagged_digest(images / "pyapp", PYAPP_TAG)
    seen = [r.headers["Docker-Content-Digest"] for r in later]
    assert set(seen) <= {old, new}, seen
    assert len(remote.requests("HEAD", heads)) - asked <= 2
    # Once a worker has seen the move, no worker goes back to the old digest.
    assert seen == sorted(seen, key=lambda digest: digest != old), seen


def move_tag(clients: Clients, registry: Distribution, images: Path, repo: str) -> None:
    """Push pyapp to REPO:bookworm, where the Debian index was."""
    clients.run(
        clients.skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{images / 'pyapp'}:{PYAPP_TAG}",
            f"docker://{registry.host}/{repo}:{BOOKWORM}",
        )
    )


# Many clients at once


def test_concurrent_pulls_of_one_blob_make_one_upstream_request(
    cache: Cache, remote: Distribution
) -> None:
    repo = f"library/big-{uuid.uuid4().hex[:8]}"
    data = os.urandom(32 << 20)
    digest = push_blob(remote.url, repo, data)
    start = threading.Barrier(8)

    def fetch(_: int) -> str:
        start.wait()
        with cache.client() as http:
            return streamed_digest(http, f"/v2/upstream/{repo}/blobs/{digest}")

    with ThreadPoolExecutor(8) as pool:
        received = list(pool.map(fetch, range(8)))

    assert received == [digest] * 8
    assert len(remote.requests("GET", f"/v2/{repo}/blobs/{digest}")) == 1


def streamed_digest(http: httpx.Client, path: str) -> str:
    """The SHA-256 of a GET's body, read as it arrives."""
    hasher = hashlib.sha256()
    with http.stream("GET", path) as response:
        assert response.status_code == 200, response.read()
        for chunk in response.iter_bytes():
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


def test_concurrent_skopeo_pulls_fetch_each_blob_once(
    tmp_path: Path, images: Path, seeder: Clients
) -> None:
    source, outs = images / "debian", [tmp_path / f"out-{n}" for n in range(8)]
    with own_pair(tmp_path, images, seeder) as (registry, running):
        digests = pull_at_once(running, f"upstream/{DEBIAN}", BOOKWORM, outs)

    assert digests == [tagged_digest(source, BOOKWORM)] * len(outs)
    for blob in blobs_of(source, BOOKWORM):
        assert len(registry.requests("GET", f"/v2/{DEBIAN}/blobs/{blob}")) == 1, blob
        for out in outs:
            assert sha256_file(oci_blob(out, blob)) == blob


def pull_at_once(running: Cache, repo: str, tag: str, outs: list[Path]) -> list[str]:
    """Pull REPO:TAG into each of `outs` at the same time, each with own clients."""

    def one(out: Path) -> str:
        clients = Clients.create(out.with_name(f"{out.name}-clients"))
        return pull(clients, running.host, repo, tag, out)

    with ThreadPoolExecutor(len(outs)) as pool:
        return list(pool.map(one, outs))


# What the cache refuses


def test_push_into_the_cache_namespace_is_denied(
    cache: Cache, clients: Clients, images: Path
) -> None:
    refused = clients.fail(
        clients.skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{images / 'pyapp'}:{PYAPP_TAG}",
            f"docker://{cache.host}/upstream/x:1",
        )
    )
    with cache.client() as http:
        upload = http.post("/v2/upstream/x/blobs/uploads/")

    assert "denied" in refused.lower(), refused
    assert "cache" in refused.lower(), refused
    assert_error(upload, 403, "DENIED")
    assert "pull-through cache" in error_message(upload)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (f"/v2/upstream/{DEBIAN}/blobs/sha256:1234", "DIGEST_INVALID"),
        (f"/v2/upstream/{DEBIAN}/blobs/md5:{'0' * 32}", "DIGEST_INVALID"),
        (f"/v2/upstream/{DEBIAN}/manifests/sha256:zz", "DIGEST_INVALID"),
        (f"/v2/upstream/{DEBIAN}/manifests/-dash", "TAG_INVALID"),
        ("/v2/upstream/Library/Debian/manifests/bookworm", "NAME_INVALID"),
        ("/v2/upstream/library//debian/manifests/bookworm", "NAME_INVALID"),
    ],
)
def test_bad_input_through_the_cache_is_400(
    cache: Cache, remote: Distribution, path: str, code: str
) -> None:
    asked = len(remote.log())

    with cache.client() as http:
        response = http.get(path, headers={"Accept": ACCEPT_ALL})

    assert_error(response, 400, code)
    # Input the spec rejects is not worth a round trip to the upstream.
    assert "/v2/library" not in remote.log()[asked:]


# Mirror mode and ?ns=


def test_mirror_serves_names_without_the_namespace(
    mirror: Cache, clients: Clients, images: Path, tmp_path: Path
) -> None:
    digest = pull(clients, mirror.host, DEBIAN, BOOKWORM, tmp_path / "out")

    with mirror.client() as http:
        tags = http.get(f"/v2/upstream/{DEBIAN}/tags/list")

    assert digest == tagged_digest(images / "debian", BOOKWORM)
    assert BOOKWORM in tags.json()["tags"]


def test_mirror_serves_local_repositories_itself(
    mirror: Cache, remote: Distribution, clients: Clients, images: Path, tmp_path: Path
) -> None:
    repo = f"local/app-{uuid.uuid4().hex[:8]}"
    copy_into(clients, mirror.host, images / "pyapp", PYAPP_TAG, repo)
    asked = len(remote.log())

    digest = pull(clients, mirror.host, repo, PYAPP_TAG, tmp_path / "out")

    assert digest == tagged_digest(images / "pyapp", PYAPP_TAG)
    assert repo not in remote.log()[asked:]


def test_ns_parameter_picks_the_upstream(
    cache: Cache, remote: Distribution, images: Path
) -> None:
    expected = tagged_digest(images / "pyapp", PYAPP_TAG)

    named = get_manifest(cache, PYAPP, PYAPP_TAG, ns=remote.host)
    unnamed = get_manifest(cache, PYAPP, PYAPP_TAG)
    other = get_manifest(cache, PYAPP, PYAPP_TAG, ns="registry.example.com")

    assert named.status_code == 200, named.text
    assert named.headers["Docker-Content-Digest"] == expected
    # Without the mirror flag, a name nobody pushed stays unknown.
    assert unnamed.status_code == 404, unnamed.text
    assert other.status_code == 404, other.text


# An upstream that wants credentials


LOCKED_REPO = "alice/pyapp"


@pytest.fixture(scope="module")
def locked(
    tmp_path_factory: pytest.TempPathFactory, seeder: Clients, images: Path
) -> Iterator[AuthServer]:
    """A Dockyard with auth on, holding alice's LOCKED_REPO:1.4.2."""
    with auth_server(tmp_path_factory) as running:
        creds = f"--dest-creds={ALICE.name}:{ALICE.password}"
        layout = images / "pyapp"
        copy_into(seeder, running.server.host, layout, PYAPP_TAG, LOCKED_REPO, creds)
        yield running


def test_credentialed_upstream_is_pulled_through(
    locked: AuthServer, clients: Clients, images: Path, tmp_path: Path
) -> None:
    entry = upstream(
        locked.url, name="locked", username=ALICE.name, password=ALICE.password
    )
    repo = f"locked/{LOCKED_REPO}"
    with start_cache(tmp_path / "cache", [entry]) as running:
        digest = pull(clients, running.host, repo, PYAPP_TAG, tmp_path / "out")
        asked = len(locked.server.log())
        # Six tags nobody pushed: six more trips upstream, one after another.
        for n in range(6):
            get_manifest(running, repo, f"never-pushed-{n}")
        later = locked.server.log()[asked:]

    assert digest == tagged_digest(images / "pyapp", PYAPP_TAG)
    assert later.count(f"/v2/{LOCKED_REPO}/manifests/never-pushed-") >= 6
    # Tokens are kept until they expire: at most a worker that has none yet asks.
    assert later.count('"GET /token') <= 2, later


def test_wrong_password_is_named_on_an_uncached_pull(
    locked: AuthServer, tmp_path: Path
) -> None:
    # bob, not alice: failed logins may lock the account they name.
    entry = upstream(
        locked.url, name="wrong", username=BOB.name, password="not-bobs-password"
    )

    with start_cache(tmp_path / "cache", [entry]) as running:
        refused = get_manifest(running, f"wrong/{LOCKED_REPO}", PYAPP_TAG)

    assert refused.status_code in (401, 403, 502), refused.text
    assert_names(error_message(refused), "wrong", locked.server.host)
    # The upstream's answer to the login, so the fix (the password) is plain.
    assert "401" in error_message(refused), refused.text


# Lifecycle policies and garbage collection


# Keep the newest image of each repository; expire every older one.
KEEP_NEWEST = {
    "rules": [
        {
            "rulePriority": 1,
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        }
    ]
}


def run_json(running: Cache, *args: str) -> Any:
    result = running.cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def blob_gets(registry: Distribution, repo: str, digests: set[str]) -> list[int]:
    """How many times each of `digests` (sorted) was fetched from REPO so far."""
    uris = registry.requests("GET", f"/v2/{repo}/blobs/")
    fetched = Counter(uri.rsplit("/", 1)[1] for uri in uris)
    return [fetched[digest] for digest in sorted(digests)]


def test_cached_images_expire_and_are_collected_like_any_other(
    tmp_path: Path, images: Path, seeder: Clients, clients: Clients
) -> None:
    repo = "library/expiring"
    debian, pyapp = images / "debian", images / "pyapp"
    only_debian = set(blobs_of(debian, BOOKWORM)) - set(blobs_of(pyapp, PYAPP_TAG))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(KEEP_NEWEST))
    with start_distribution(tmp_path / "remote") as registry:
        copy_into(seeder, registry.host, debian, BOOKWORM, repo)
        copy_into(seeder, registry.host, pyapp, PYAPP_TAG, repo)
        with start_cache(tmp_path / "cache", [upstream(registry.url)]) as running:
            cached = f"upstream/{repo}"
            pull(clients, running.host, cached, BOOKWORM, tmp_path / "old")
            pull(clients, running.host, cached, PYAPP_TAG, tmp_path / "new")
            put = running.cli("policy", "put", cached, "--file", str(policy))
            # Just cached, both images are within the grace period.
            expired = run_json(running, "policy", "run", "--grace-period", "0")
            collected = run_json(running, "gc", "--grace-period", "0")
            with running.client() as http:
                tags = http.get(f"/v2/{cached}/tags/list").json()["tags"]
            before = blob_gets(registry, repo, only_debian)
            again = pull(clients, running.host, cached, BOOKWORM, tmp_path / "again")
            after = blob_gets(registry, repo, only_debian)

    assert put.returncode == 0, put.stderr
    [evaluation] = expired
    assert [image["tags"] for image in evaluation["expired"]] == [[BOOKWORM]]
    assert tags == [PYAPP_TAG]
    assert only_debian <= {blob["digest"] for blob in collected["blobs"]}
    # Gone from the cache, the image is fetched from the upstream again.
    assert again == tagged_digest(debian, BOOKWORM)
    assert before == [1] * len(only_debian)
    assert after == [2] * len(only_debian)


# `dockyard upstream list`


# The keys the issue asks for; the implementation adds its failure counts.
UPSTREAM_KEYS = {
    "name",
    "url",
    "mirror",
    "reachable",
    "cached_repositories",
    "cached_images",
    "bytes",
    "hits",
    "misses",
}


def listed(running: Cache) -> dict[str, Any]:
    result = running.cli("upstream", "list", "--json")
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)
    return dict(entry)


def test_upstream_list_json_has_the_documented_keys(cache: Cache) -> None:
    assert set(listed(cache)) >= UPSTREAM_KEYS


def listed_after_hits(running: Cache) -> dict[str, Any]:
    """The listing once a hit has reached the database.

    Workers flush their hit counters about a second late; each round asks for
    a cached manifest again, so whichever worker answers has a hit to flush.
    """
    deadline = time.monotonic() + 15
    while True:
        entry = listed(running)
        if entry["hits"] > 0 or time.monotonic() > deadline:
            return entry
        get_manifest(running, f"upstream/{PYAPP}", PYAPP_TAG)
        time.sleep(0.5)


def test_upstream_list_counts_what_was_cached(
    tmp_path: Path, images: Path, seeder: Clients, clients: Clients
) -> None:
    repo, pyapp = f"upstream/{PYAPP}", images / "pyapp"
    with own_pair(tmp_path, images, seeder) as (registry, running):
        pull(clients, running.host, repo, PYAPP_TAG, tmp_path / "first")
        pull(clients, running.host, repo, PYAPP_TAG, tmp_path / "again")
        counted = listed_after_hits(running)
        text = running.cli("upstream", "list")

    manifest = oci_json(pyapp, tagged_digest(pyapp, PYAPP_TAG))
    blobs = [manifest["config"], *manifest["layers"]]
    assert (counted["name"], counted["url"]) == ("upstream", registry.url)
    assert (counted["mirror"], counted["reachable"]) == (False, True)
    assert (counted["cached_repositories"], counted["cached_images"]) == (1, 1)
    assert counted["bytes"] == sum(blob["size"] for blob in blobs)
    assert counted["misses"] > 0
    assert counted["hits"] > 0
    assert text.returncode == 0, text.stderr
    assert registry.url in text.stdout


def test_upstream_list_tells_a_stopped_upstream(
    tmp_path: Path, images: Path, seeder: Clients
) -> None:
    with own_pair(tmp_path, images, seeder) as (registry, running):
        answering = listed(running)
        registry.stop()
        stopped = listed(running)

    assert answering["reachable"] is True
    assert stopped["reachable"] is False
