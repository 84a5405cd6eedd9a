"""Tag immutability as podman users meet it: a refused push says why, the
same image pushes again, and excluded tags move.

Image A is ../shared/images/pyapp; image B is A with one label more, built
by podman, so the two share every layer and differ in config and manifest.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.authserver import run_cli
from tests.e2e.clients import Clients
from tests.server import RunningServer, start_server


@dataclass(frozen=True)
class Images:
    """Two images in podman's local storage, by image id."""

    clients: Clients
    a: str
    b: str


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("immutability")) as running:
        yield running


@pytest.fixture(scope="module")
def podman_images(tmp_path_factory: pytest.TempPathFactory, images: Path) -> Images:
    clients = Clients.create(tmp_path_factory.mktemp("podman"))
    a = clients.run(clients.podman("pull", "-q", f"oci:{images / 'pyapp'}:1.4.2"))
    containerfile = clients.base / "Containerfile"
    containerfile.write_text(f"FROM {a.strip()}\nLABEL variant=b\n")
    b = clients.run(
        clients.podman(
            "build", "--pull=never", "-q", "-f", str(containerfile), str(clients.base)
        )
    )
    return Images(clients, a.strip(), b.strip())


@pytest.fixture
def frozen_repo(registry: RunningServer) -> str:
    """A repository whose tags are immutable, except `latest`."""
    repo = f"frozen/{uuid.uuid4().hex[:12]}"
    command = ["repo", "immutability", repo, "immutable", "--exclude", "latest"]
    result = run_cli(registry.data_dir, *command)
    assert result.returncode == 0, result.stderr
    return repo


def destination(registry: RunningServer, repo: str, tag: str) -> str:
    return f"docker://{registry.host}/{repo}:{tag}"


def push(images: Images, image: str, target: str, digest_file: Path) -> list[str]:
    return images.clients.podman(
        "push", "--tls-verify=false", "--digestfile", str(digest_file), image, target
    )


def tagged_digest(registry: RunningServer, repo: str, tag: str) -> str:
    response = httpx.head(
        f"{registry.url}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert response.status_code == 200, response.text
    return response.headers["Docker-Content-Digest"]


def test_podman_cannot_move_an_immutable_tag(
    registry: RunningServer, podman_images: Images, frozen_repo: str, tmp_path: Path
) -> None:
    target = destination(registry, frozen_repo, "v1")
    podman_images.clients.run(
        push(podman_images, podman_images.a, target, tmp_path / "a")
    )

    stderr = podman_images.clients.fail(
        push(podman_images, podman_images.b, target, tmp_path / "b")
    )

    assert "immutable" in stderr
    assert "v1" in stderr
    assert tagged_digest(registry, frozen_repo, "v1") == (tmp_path / "a").read_text()


def test_podman_pushes_the_same_image_again(
    registry: RunningServer, podman_images: Images, frozen_repo: str, tmp_path: Path
) -> None:
    target = destination(registry, frozen_repo, "v1")
    podman_images.clients.run(
        push(podman_images, podman_images.a, target, tmp_path / "first")
    )

    podman_images.clients.run(
        push(podman_images, podman_images.a, target, tmp_path / "again")
    )

    first = (tmp_path / "first").read_text()
    assert (tmp_path / "again").read_text() == first
    assert tagged_digest(registry, frozen_repo, "v1") == first


def test_podman_moves_an_excluded_tag(
    registry: RunningServer, podman_images: Images, frozen_repo: str, tmp_path: Path
) -> None:
    target = destination(registry, frozen_repo, "latest")
    podman_images.clients.run(
        push(podman_images, podman_images.a, target, tmp_path / "a")
    )

    podman_images.clients.run(
        push(podman_images, podman_images.b, target, tmp_path / "b")
    )

    moved = (tmp_path / "b").read_text()
    assert moved != (tmp_path / "a").read_text()
    assert tagged_digest(registry, frozen_repo, "latest") == moved
