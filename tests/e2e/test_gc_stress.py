"""Garbage collection in a loop while several clients push and pull.

`dockyard gc --untagged` runs back to back against the live registry's data
directory, as an operator's cron job would, while skopeo and plain HTTP
clients push real and random images, overwrite tags (making garbage for the
collector) and pull back what they pushed. Every push in flight must keep
its blobs, and every image still tagged must come back byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    oci_index,
    oci_manifest,
    push_blob,
    put_manifest,
    random_bytes,
    sha256,
    to_bytes,
)
from tests.e2e.clients import Clients, oci_json, oci_ref, sha256_file
from tests.server import RunningServer, start_server

GRACE_PERIOD = 5
# Seconds of pushing and pulling while the collector loops.
LOAD_SECONDS = 35
# Seconds between pushes of Debian over the churned tag: well over the grace
# period, so the collector takes what only Debian has in between.
DEBIAN_EVERY = 12

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT_ALL = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST])
PYAPP_DOCKER_DIGEST = (
    "sha256:89e942176e53361f4f892374a6cf1795d5f61648e982d4b0fa6e50158bcdb4c5"
)


@dataclass(frozen=True)
class Source:
    """A real image as skopeo reads it, and the digest it must keep."""

    reference: str
    digest: str
    # How skopeo copies it back out: `oci` keeps OCI media types, `dir`
    # Docker ones.
    layout: str


@dataclass(frozen=True)
class Pushed:
    repo: str
    tag: str
    digest: str
    # None for images pushed over HTTP.
    source: Source | None = None


@dataclass
class Run:
    """What the clients pushed and the collector did, shared by the threads."""

    server: RunningServer
    base: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Clients stop on this; the collector once the clients are done.
    stop: threading.Event = field(default_factory=threading.Event)
    clients_done: threading.Event = field(default_factory=threading.Event)
    # Pushed under a tag nothing was pushed to again.
    kept: list[Pushed] = field(default_factory=list)
    # (repo, tag) -> the last push to a tag pushed to again and again.
    latest: dict[tuple[str, str], Pushed] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)

    def keep(self, pushed: Pushed) -> None:
        with self.lock:
            self.kept.append(pushed)

    def overwrite(self, pushed: Pushed) -> None:
        with self.lock:
            self.latest[pushed.repo, pushed.tag] = pushed

    def any_kept(self) -> Pushed | None:
        with self.lock:
            return random.choice(self.kept) if self.kept else None

    def clients(self, name: str) -> Clients:
        return Clients.create(self.base / name)

    def rounds(self) -> Iterator[int]:
        round_number = 0
        while not self.stop.is_set():
            yield round_number
            round_number += 1


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RunningServer]:
    env = {"DOCKYARD_GC__GRACE_PERIOD": str(GRACE_PERIOD)}
    with start_server(tmp_path / "data", env=env) as running:
        yield running


@pytest.fixture
def debian(images: Path) -> Source:
    return oci_source(images / "debian", "bookworm")


@pytest.fixture
def pyapps(images: Path) -> list[Source]:
    """The same image as an OCI manifest and as a Docker one."""
    docker = Source(f"dir:{images / 'pyapp-docker'}", PYAPP_DOCKER_DIGEST, "dir")
    return [oci_source(images / "pyapp", "1.4.2"), docker]


def oci_source(layout: Path, tag: str) -> Source:
    return Source(f"oci:{layout}:{tag}", oci_ref(layout, tag)["digest"], "oci")


def arm64_layer(images: Path) -> str:
    """The one blob of the test images that only Debian's arm64 image has."""
    layout = images / "debian"
    index = oci_json(layout, oci_ref(layout, "bookworm")["digest"])
    [entry] = [
        m for m in index["manifests"] if m["platform"]["architecture"] == "arm64"
    ]
    return str(oci_json(layout, entry["digest"])["layers"][0]["digest"])


# The collector


def collect(server: RunningServer) -> dict[str, Any]:
    """One `dockyard gc --untagged` run, as an operator would start it."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "dockyard", "gc", "--untagged", "--json"),
            *("--data-dir", str(server.data_dir)),
        ],
        env={**os.environ, "DOCKYARD_GC__GRACE_PERIOD": str(GRACE_PERIOD)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def collector(run: Run) -> None:
    while not run.clients_done.is_set():
        report = collect(run.server)
        with run.lock:
            run.reports.append(report)


# skopeo clients


def skopeo_push(clients: Clients, source: Source, destination: str) -> None:
    clients.run(
        clients.skopeo(
            "copy", "--all", "--dest-tls-verify=false", source.reference, destination
        )
    )


def skopeo_pull(run: Run, clients: Clients, pushed: Pushed) -> None:
    """Copy the image back out; its digest and every blob must be intact."""
    assert pushed.source is not None
    out = run.base / "pulled" / f"{threading.get_ident()}-{time.monotonic_ns()}"
    out.parent.mkdir(exist_ok=True)
    source = f"docker://{run.server.host}/{pushed.repo}:{pushed.tag}"
    oci = pushed.source.layout == "oci"
    destination = f"oci:{out}:{pushed.tag}" if oci else f"dir:{out}"
    clients.run(
        clients.skopeo("copy", "--all", "--src-tls-verify=false", source, destination)
    )

    if oci:
        assert oci_ref(out, pushed.tag)["digest"] == pushed.digest
        files = list((out / "blobs" / "sha256").iterdir())
    else:
        assert sha256_file(out / "manifest.json") == pushed.digest
        files = [path for path in out.iterdir() if len(path.name) == 64]
    assert files
    for path in files:
        assert sha256_file(path) == f"sha256:{path.name}"
    shutil.rmtree(out)


def skopeo_churn(run: Run, debian: Source, others: list[Source]) -> None:
    """Push real images over one tag in turn, each push leaving the last
    image untagged. Debian comes back only now and then, so its arm64
    layer is collected and pushing it again uploads it again."""
    clients = run.clients("churn")
    destination = f"docker://{run.server.host}/stress/churn:latest"
    pushed_debian = -float(DEBIAN_EVERY)
    for round_number in run.rounds():
        source = others[round_number % len(others)]
        if time.monotonic() - pushed_debian > DEBIAN_EVERY:
            source, pushed_debian = debian, time.monotonic()
        skopeo_push(clients, source, destination)
        run.overwrite(Pushed("stress/churn", "latest", source.digest, source))

    # Last, so that the images checked at the end include an index.
    skopeo_push(clients, debian, destination)
    run.overwrite(Pushed("stress/churn", "latest", debian.digest, debian))


def skopeo_keeper(run: Run, sources: list[Source]) -> None:
    """Push real images under new tags, pulling an older one back each time."""
    clients = run.clients("keeper")
    for round_number in run.rounds():
        source = random.choice(sources)
        repo = f"stress/real-{round_number % 3}"
        tag = f"v{round_number}"
        skopeo_push(clients, source, f"docker://{run.server.host}/{repo}:{tag}")
        run.keep(Pushed(repo, tag, source.digest, source))
        pulled = run.any_kept()
        if pulled and pulled.source:
            skopeo_pull(run, clients, pulled)


# HTTP clients


def http_pusher(run: Run) -> None:
    """Small random images, each with a layer every one of them shares."""
    shared = random_bytes(32 * 1024)
    with httpx.Client(base_url=run.server.url, timeout=60) as http:
        for round_number in run.rounds():
            repo = f"stress/http-{round_number % 2}"
            body = push_random_image(http, repo, "churn", shared)
            run.overwrite(Pushed(repo, "churn", sha256(body)))
            if round_number % 3 == 0:
                tag = f"keep-{round_number}"
                body = push_random_image(http, repo, tag, shared)
                run.keep(Pushed(repo, tag, sha256(body)))


def http_index_flipper(run: Run) -> None:
    """One multi-platform index and a random image over one tag in turn.

    Like a client pushing the same index again, each round puts the
    children again before the index: children the collector may find old,
    and no longer listed, while the random image has the tag."""
    repo = "stress/flip"
    with httpx.Client(base_url=run.server.url, timeout=60) as http:
        children = [push_child(http, repo), push_child(http, repo)]
        index = oci_index([descriptor(OCI_MANIFEST, body) for body in children])
        for _ in run.rounds():
            for body in children:
                for blob in json.loads(body)["layers"]:
                    assert blob_status(http, repo, blob["digest"]) == 200
                response = put_manifest(http, repo, sha256(body), body)
                assert response.status_code == 201, response.text
            pause()
            response = put_manifest(http, repo, "flip", index, OCI_INDEX)
            assert response.status_code == 201, response.text
            pause()
            image = push_random_image(http, repo, "flip", random_bytes())
            run.overwrite(Pushed(repo, "flip", sha256(image)))
            pause()


def push_child(http: httpx.Client, repo: str) -> bytes:
    config = push_blob(http, repo, to_bytes({"nonce": random_bytes(8).hex()}))
    body = oci_manifest(config, [push_blob(http, repo, random_bytes())])
    response = put_manifest(http, repo, sha256(body), body)
    assert response.status_code == 201, response.text
    return body


def blob_status(http: httpx.Client, repo: str, digest: str) -> int:
    return http.head(f"/v2/{repo}/blobs/{digest}").status_code


def pause() -> None:
    """A client's pause between requests, well inside the grace period."""
    time.sleep(random.uniform(0, GRACE_PERIOD / 4))


def push_random_image(http: httpx.Client, repo: str, tag: str, shared: bytes) -> bytes:
    """Push as a client does: check each blob with HEAD, push what is
    missing, then the manifest, sometimes after a pause well inside the
    grace period."""
    config = to_bytes({"nonce": random_bytes(8).hex()})
    layers = [random_bytes(random.randint(1, 64 * 1024)), shared]
    for data in [config, *layers]:
        if blob_status(http, repo, sha256(data)) != 200:
            push_blob(http, repo, data)
    if random.random() < 0.3:
        pause()

    body = oci_manifest(
        descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, d) for d in layers]
    )
    response = put_manifest(http, repo, tag, body)
    assert response.status_code == 201, response.text
    return body


def puller(run: Run) -> None:
    """Pull what was pushed under kept tags, every blob checked by digest."""
    clients = run.clients("puller")
    with httpx.Client(base_url=run.server.url, timeout=60) as http:
        for _ in run.rounds():
            pushed = run.any_kept()
            if pushed is None:
                time.sleep(0.2)
            elif pushed.source is None:
                assert_intact(http, pushed, set())
            else:
                skopeo_pull(run, clients, pushed)


def assert_intact(http: httpx.Client, pushed: Pushed, checked: set[str]) -> None:
    """The tag names the pushed digest; every manifest and blob under it
    comes back with the bytes its digest names. Blobs in `checked`, as
    `repo@digest`, were read before."""
    response = http.get(
        f"/v2/{pushed.repo}/manifests/{pushed.tag}", headers={"Accept": ACCEPT_ALL}
    )
    assert response.status_code == 200, (pushed, response.text)
    assert sha256(response.content) == pushed.digest, pushed
    _assert_tree(http, pushed.repo, json.loads(response.content), checked)


def _assert_tree(
    http: httpx.Client, repo: str, document: dict[str, Any], checked: set[str]
) -> None:
    for child in document.get("manifests", []):
        response = http.get(
            f"/v2/{repo}/manifests/{child['digest']}", headers={"Accept": ACCEPT_ALL}
        )
        assert response.status_code == 200, (repo, child, response.text)
        assert sha256(response.content) == child["digest"]
        _assert_tree(http, repo, json.loads(response.content), checked)
    for blob in [document.get("config"), *document.get("layers", [])]:
        if blob is None or f"{repo}@{blob['digest']}" in checked:
            continue
        hasher = hashlib.sha256()
        with http.stream("GET", f"/v2/{repo}/blobs/{blob['digest']}") as response:
            assert response.status_code == 200, (repo, blob)
            for chunk in response.iter_bytes():
                hasher.update(chunk)
        assert f"sha256:{hasher.hexdigest()}" == blob["digest"], (repo, blob)
        checked.add(f"{repo}@{blob['digest']}")


def _stopping_all_on_failure(run: Run, work: Callable[[], None]) -> Callable[[], None]:
    def guarded() -> None:
        try:
            work()
        except BaseException:
            run.stop.set()
            run.clients_done.set()
            raise

    return guarded


@pytest.mark.slow
def test_pushes_and_pulls_survive_gc_running_in_a_loop(
    tmp_path: Path,
    images: Path,
    registry: RunningServer,
    debian: Source,
    pyapps: list[Source],
) -> None:
    run = Run(registry, tmp_path / "clients")
    clients = [
        lambda: skopeo_churn(run, debian, pyapps),
        # Debian is left to the churn, so its arm64 layer can be collected.
        lambda: skopeo_keeper(run, pyapps),
        lambda: http_pusher(run),
        lambda: http_index_flipper(run),
        lambda: puller(run),
    ]

    with ThreadPoolExecutor(len(clients) + 1) as pool:
        collecting = pool.submit(_stopping_all_on_failure(run, lambda: collector(run)))
        pushing = [pool.submit(_stopping_all_on_failure(run, c)) for c in clients]
        run.stop.wait(LOAD_SECONDS)
        run.stop.set()
        for future in pushing:
            future.exception()
        run.clients_done.set()
    for future in [*pushing, collecting]:
        future.result()

    # Once the grace period is over, a last run takes everything untagged.
    time.sleep(GRACE_PERIOD + 1)
    reports = [*run.reports, collect(registry)]
    expected = [*run.kept, *run.latest.values()]
    checked: set[str] = set()
    with httpx.Client(base_url=registry.url, timeout=60) as http:
        for pushed in expected:
            assert_intact(http, pushed, checked)

    log = registry.log()
    assert '" 500 ' not in log
    assert "Traceback" not in log
    assert "missing from storage" not in log
    assert not re.search(r'"PUT /v2/\S+/manifests/\S+" 400', log)
    assert len(reports) >= 5
    assert sum(report["bytes"] for report in reports) > 0
    assert sum(len(report["manifests"]) for report in reports) > 0
    deleted = {blob["digest"] for report in reports for blob in report["blobs"]}
    assert arm64_layer(images) in deleted
    pushed_sources = {pushed.source for pushed in expected if pushed.source}
    assert pushed_sources == {debian, *pyapps}
