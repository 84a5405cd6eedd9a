"""Shared fixtures: a real `dockyard serve` and the real images to push."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import RunningServer, start_server

SHARED_IMAGES = Path(
    os.environ.get(
        "DOCKYARD_TEST_IMAGES",
        Path(__file__).resolve().parents[2] / "shared" / "images",
    )
)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One registry for the whole session; tests use their own repositories."""
    data_dir = tmp_path_factory.mktemp("registry")
    with start_server(data_dir) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


@pytest.fixture
def repo() -> str:
    """A repository name no other test uses."""
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def images() -> Path:
    if not (SHARED_IMAGES / "debian" / "index.json").exists():
        pytest.fail(f"test images not found in {SHARED_IMAGES}")
    return SHARED_IMAGES
