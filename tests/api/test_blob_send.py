"""Whole-blob GETs while another is under way in the same process.

A lone pull is streamed from Python; while one is, the next ones are sent by
the server itself (ASGI pathsend). Both must give the same answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import push_blob, random_bytes
from tests.server import RunningServer, start_server

SIZE = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # One worker: the held pull and the next one meet in the same process.
    with start_server(tmp_path_factory.mktemp("send"), args=["--workers", "1"]) as s:
        yield s


def test_a_pull_beside_another_gets_the_same_answer(server):
    data = random_bytes(SIZE)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        digest = push_blob(client, "team/big", data)["digest"]
        path = f"/v2/team/big/blobs/{digest}"

        with client.stream("GET", path) as held:
            chunks = held.iter_raw()
            first = next(chunks)
            with httpx.Client(base_url=server.url, timeout=60) as other:
                beside = other.get(path)
            rest = b"".join(chunks)

    assert beside.status_code == held.status_code == 200
    assert beside.content == data
    assert first + rest == data
    for header in ("content-length", "docker-content-digest", "etag", "content-type"):
        assert beside.headers[header] == held.headers[header], header
