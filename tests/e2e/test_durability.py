"""Uploads survive restarts and crashes; big blobs never sit in memory."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.server import free_port, launch

MiB = 1024 * 1024


@pytest.fixture
def own_server(tmp_path):
    """A registry of this test's own, so it may be restarted or killed."""
    servers = []

    def start(port=None, args=None):
        server = launch(tmp_path / "data", port=port, args=args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def open_upload(http: httpx.Client, repo: str) -> str:
    response = http.post(f"/v2/{repo}/blobs/uploads/")
    assert response.status_code == 202
    return response.headers["Location"]


def test_upload_session_survives_a_restart(own_server, repo):
    data = os.urandom(3 * MiB)
    half = len(data) // 2
    port = free_port()
    server = own_server(port)
    with httpx.Client(base_url=server.url) as http:
        location = open_upload(http, repo)
        first = http.patch(location, content=data[:half])
        assert first.headers["Range"] == f"0-{half - 1}"
    server.stop()

    server = own_server(port)
    with httpx.Client(base_url=server.url) as http:
        status = http.get(location)
        assert status.status_code == 204
        assert status.headers["Range"] == f"0-{half - 1}"

        rest = http.patch(
            location,
            content=data[half:],
            headers={"Content-Range": f"{half}-{len(data) - 1}"},
        )
        assert rest.status_code == 202
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        assert http.put(location, params={"digest": digest}).status_code == 201
        assert http.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_sigkill_mid_upload_leaves_no_partial_blob(own_server, repo):
    data = os.urandom(16 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    port = free_port()
    server = own_server(port)
    halfway = threading.Event()

    def body() -> Iterator[bytes]:
        yield data[: 8 * MiB]
        halfway.set()
        time.sleep(30)  # the server dies while this request is open
        yield data[8 * MiB :]

    def push_until_killed() -> None:
        http = httpx.Client(base_url=server.url, timeout=60)
        with http, contextlib.suppress(httpx.TransportError):
            http.post(
                f"/v2/{repo}/blobs/uploads/",
                params={"digest": digest},
                content=body(),
            )

    pusher = threading.Thread(target=push_until_killed, daemon=True)
    pusher.start()
    assert halfway.wait(30)
    _wait_for_staged_bytes(server.data_dir)
    server.kill()

    server = own_server(port)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
        blob_files = list((server.data_dir / "storage" / "blobs").rglob("*"))
        assert not [path for path in blob_files if path.is_file()]

        retry = http.post(
            f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data
        )
        assert retry.status_code == 201
        assert http.get(f"/v2/{repo}/blobs/{digest}").content == data


def _wait_for_staged_bytes(data_dir, timeout=30.0):
    uploads = data_dir / "storage" / "uploads"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(path.stat().st_size > 0 for path in uploads.iterdir()):
            return
        time.sleep(0.05)
    raise AssertionError("the server never staged any bytes")


class PeakMemory:
    """Samples the resident memory of a server and its workers."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for process in [self.root, *self.root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.05)


def test_one_gib_blob_streams_through_small_memory(own_server, repo):
    block = os.urandom(MiB)
    blocks = 1024
    hasher = hashlib.sha256()
    for _ in range(blocks):
        hasher.update(block)
    digest = "sha256:" + hasher.hexdigest()
    server = own_server(args=["--workers", "1"])

    def body() -> Iterator[bytes]:
        for _ in range(blocks):
            yield block

    with (
        PeakMemory(server.process.pid) as memory,
        httpx.Client(base_url=server.url, timeout=300) as http,
    ):
        location = open_upload(http, repo)
        assert http.patch(location, content=body()).status_code == 202
        assert http.put(location, params={"digest": digest}).status_code == 201

        pulled = hashlib.sha256()
        with http.stream("GET", f"/v2/{repo}/blobs/{digest}") as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                pulled.update(chunk)

    assert "sha256:" + pulled.hexdigest() == digest
    print(f"peak RSS {memory.peak / MiB:.0f} MiB")
    assert memory.peak < 200 * MiB, f"peak RSS {memory.peak / MiB:.0f} MiB"
