"""Real clients against a real `dockyard serve`: skopeo, podman, buildah, oras.

Each test pushes to its own repository and keeps every client file under its
own tmp_path (see `tests.e2e.clients`). Images come from ../shared/images.
"""

from __future__ import annotations

import filecmp
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import httpx
import oras.client
import pytest

from tests.e2e.clients import Clients, oci_blob, oci_json, oci_ref, sha256_file
from tests.server import RunningServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT_ALL = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST])

PYAPP_DOCKER_DIGEST = (
    "sha256:89e942176e53361f4f892374a6cf1795d5f61648e982d4b0fa6e50158bcdb4c5"
)
ARTIFACT_TYPE = "application/vnd.dockyard.test.report.v1+json"

OCI_LAYOUTS = [
    pytest.param("debian", "bookworm", id="debian-index"),
    pytest.param("pyapp", "1.4.2", id="pyapp-manifest"),
]


@pytest.fixture
def clients(tmp_path: Path) -> Clients:
    return Clients.create(tmp_path / "clients")


def docker_ref(server: RunningServer, repo: str, tag: str) -> str:
    return f"docker://{server.host}/{repo}:{tag}"


def push(clients: Clients, source: str, destination: str, *flags: str) -> None:
    clients.run(
        clients.skopeo("copy", *flags, "--dest-tls-verify=false", source, destination)
    )


def pull(clients: Clients, source: str, destination: str, *flags: str) -> None:
    clients.run(
        clients.skopeo("copy", *flags, "--src-tls-verify=false", source, destination)
    )


def skopeo_json(clients: Clients, *args: str) -> Any:
    return json.loads(clients.run(clients.skopeo(*args)))


def tagged(layout: Path, tag: str) -> Any:
    """The manifest or index an OCI layout tags `tag`, parsed."""
    return oci_json(layout, oci_ref(layout, tag)["digest"])


def platform_manifest(layout: Path, tag: str, arch: str) -> Any:
    [entry] = [
        m
        for m in tagged(layout, tag)["manifests"]
        if m["platform"]["architecture"] == arch
    ]
    return oci_json(layout, entry["digest"])


def assert_same_files(source: Path, copy: Path) -> None:
    """The two directories hold the same file names with the same bytes."""
    names = sorted(p.name for p in source.iterdir())
    assert sorted(p.name for p in copy.iterdir()) == names
    for name in names:
        assert filecmp.cmp(source / name, copy / name, shallow=False), name


def assert_layers_match_config(layout: Path, tag: str) -> Any:
    """Every layer is intact and decompresses to the diff_id its config names."""
    manifest = tagged(layout, tag)
    config = oci_json(layout, manifest["config"]["digest"])
    layers = [oci_blob(layout, layer["digest"]) for layer in manifest["layers"]]

    for layer in layers:
        assert sha256_file(layer) == f"sha256:{layer.name}"
    assert [diff_id(layer) for layer in layers] == config["rootfs"]["diff_ids"]
    return config


def diff_id(layer: Path) -> str:
    """The digest of a gzip layer's uncompressed tar, as image configs list it."""
    with gzip.open(layer) as stream:
        return f"sha256:{hashlib.file_digest(stream, 'sha256').hexdigest()}"


def get_manifest(client: httpx.Client, repo: str, reference: str) -> httpx.Response:
    response = client.get(
        f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT_ALL}
    )
    assert response.status_code == 200, response.text
    return response


# skopeo


@pytest.mark.parametrize(("layout", "tag"), OCI_LAYOUTS)
def test_skopeo_copies_an_oci_layout_in_and_out_unchanged(
    server: RunningServer,
    repo: str,
    images: Path,
    clients: Clients,
    client: httpx.Client,
    tmp_path: Path,
    layout: str,
    tag: str,
) -> None:
    source, out = images / layout, tmp_path / "out"
    pushed = docker_ref(server, repo, tag)
    expected = oci_ref(source, tag)

    push(clients, f"oci:{source}:{tag}", pushed, "--all")
    pull(clients, pushed, f"oci:{out}:{tag}", "--all")

    assert oci_ref(out, tag)["digest"] == expected["digest"]
    assert oci_ref(out, tag)["mediaType"] == expected["mediaType"]
    response = get_manifest(client, repo, tag)
    assert response.headers["Docker-Content-Digest"] == expected["digest"]
    assert response.headers["Content-Type"] == expected["mediaType"]
    assert_same_files(source / "blobs" / "sha256", out / "blobs" / "sha256")


def test_skopeo_copies_a_docker_image_in_and_out_unchanged(
    server: RunningServer,
    repo: str,
    images: Path,
    clients: Clients,
    client: httpx.Client,
    tmp_path: Path,
) -> None:
    source, out = images / "pyapp-docker", tmp_path / "out"
    pushed = docker_ref(server, repo, "1.4.2-docker")
    assert sha256_file(source / "manifest.json") == PYAPP_DOCKER_DIGEST

    push(clients, f"dir:{source}", pushed)
    pull(clients, pushed, f"dir:{out}")

    assert sha256_file(out / "manifest.json") == PYAPP_DOCKER_DIGEST
    response = get_manifest(client, repo, "1.4.2-docker")
    assert response.headers["Docker-Content-Digest"] == PYAPP_DOCKER_DIGEST
    assert response.headers["Content-Type"] == DOCKER_MANIFEST
    assert_same_files(source, out)


@pytest.mark.parametrize(("layout", "tag"), OCI_LAYOUTS)
def test_skopeo_inspect_raw_gives_the_exact_manifest_bytes(
    server: RunningServer,
    repo: str,
    images: Path,
    clients: Clients,
    layout: str,
    tag: str,
) -> None:
    source = images / layout
    pushed = docker_ref(server, repo, tag)
    expected = oci_ref(source, tag)
    push(clients, f"oci:{source}:{tag}", pushed, "--all")

    raw = clients.run(clients.skopeo("inspect", "--raw", "--tls-verify=false", pushed))
    inspected = skopeo_json(clients, "inspect", "--tls-verify=false", pushed)

    assert raw.encode() == oci_blob(source, expected["digest"]).read_bytes()
    assert inspected["Digest"] == expected["digest"]
    assert inspected["RepoTags"] == [tag]
    assert inspected["Name"] == f"{server.host}/{repo}"


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_skopeo_inspect_resolves_each_platform_of_an_index(
    server: RunningServer, repo: str, images: Path, clients: Clients, arch: str
) -> None:
    source = images / "debian"
    pushed = docker_ref(server, repo, "bookworm")
    manifest = platform_manifest(source, "bookworm", arch)
    push(clients, f"oci:{source}:bookworm", pushed, "--all")

    platform = ["--override-os", "linux", "--override-arch", arch]
    inspected = skopeo_json(clients, *platform, "inspect", "--tls-verify=false", pushed)
    config = clients.run(
        clients.skopeo(
            *platform, "inspect", "--config", "--raw", "--tls-verify=false", pushed
        )
    )

    assert inspected["Architecture"] == arch
    assert inspected["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    config_blob = oci_blob(source, manifest["config"]["digest"])
    assert config.encode() == config_blob.read_bytes()


def test_skopeo_list_tags(
    server: RunningServer, repo: str, images: Path, clients: Clients
) -> None:
    for tag in ("1.4.2", "latest", "1.4"):
        push(clients, f"oci:{images / 'pyapp'}:1.4.2", docker_ref(server, repo, tag))

    listed = skopeo_json(
        clients, "list-tags", "--tls-verify=false", f"docker://{server.host}/{repo}"
    )

    assert listed["Repository"] == f"{server.host}/{repo}"
    assert sorted(listed["Tags"]) == ["1.4", "1.4.2", "latest"]


def test_skopeo_delete_removes_the_manifest_and_its_tags(
    server: RunningServer,
    repo: str,
    images: Path,
    clients: Clients,
    client: httpx.Client,
) -> None:
    digest = oci_ref(images / "pyapp", "1.4.2")["digest"]
    for tag in ("1.4.2", "stable"):
        push(clients, f"oci:{images / 'pyapp'}:1.4.2", docker_ref(server, repo, tag))
    kept = docker_ref(server, repo, "docker")
    push(clients, f"dir:{images / 'pyapp-docker'}", kept)

    # skopeo deletes by digest: the manifest goes, and every tag on it.
    deleted = docker_ref(server, repo, "1.4.2")
    clients.run(clients.skopeo("delete", "--tls-verify=false", deleted))

    for tag in ("1.4.2", "stable"):
        error = clients.fail(
            clients.skopeo(
                "inspect", "--tls-verify=false", docker_ref(server, repo, tag)
            )
        )
        assert "manifest unknown" in error
    assert client.get(f"/v2/{repo}/manifests/{digest}").status_code == 404
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["docker"]
    inspected = skopeo_json(clients, "inspect", "--tls-verify=false", kept)
    assert inspected["Digest"] == PYAPP_DOCKER_DIGEST


def test_readme_newcomer_command(
    server: RunningServer,
    images: Path,
    clients: Clients,
    client: httpx.Client,
    tmp_path: Path,
) -> None:
    # Run exactly as the README writes it, from a checkout next to shared/.
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "images").symlink_to(images)
    (tmp_path / "main").mkdir()
    command = (
        "skopeo copy --all oci:../shared/images/debian:bookworm "
        f"docker://{server.host}/library/debian:bookworm --dest-tls-verify=false"
    )

    clients.run(command.split(), cwd=tmp_path / "main")

    response = client.get("/v2/library/debian/tags/list")
    assert response.status_code == 200
    assert response.json() == {"name": "library/debian", "tags": ["bookworm"]}
    head = client.head(
        "/v2/library/debian/manifests/bookworm", headers={"Accept": ACCEPT_ALL}
    )
    expected = oci_ref(images / "debian", "bookworm")["digest"]
    assert head.headers["Docker-Content-Digest"] == expected


# podman


@pytest.mark.parametrize(
    ("push_format", "media_type"),
    [(None, OCI_MANIFEST), ("v2s2", DOCKER_MANIFEST)],
    ids=["as-pulled", "v2s2"],
)
def test_podman_pulls_and_pushes(
    server: RunningServer,
    repo: str,
    images: Path,
    clients: Clients,
    client: httpx.Client,
    tmp_path: Path,
    push_format: str | None,
    media_type: str,
) -> None:
    source = images / "pyapp"
    digest = oci_ref(source, "1.4.2")["digest"]
    config_digest = tagged(source, "1.4.2")["config"]["digest"]
    pulled, copied = f"{server.host}/{repo}:1.4.2", f"{server.host}/{repo}/copy:1"
    push(clients, f"oci:{source}:1.4.2", f"docker://{pulled}")

    image_id = clients.run(clients.podman("pull", "-q", "--tls-verify=false", pulled))
    found = clients.run(
        clients.podman("image", "inspect", "--format={{.Digest}}", pulled)
    )
    assert f"sha256:{image_id.strip()}" == config_digest
    assert found.strip() == digest

    digest_file = tmp_path / "digest"
    format_flags = ["--format", push_format] if push_format else []
    clients.run(
        clients.podman(
            "push",
            "--tls-verify=false",
            "--digestfile",
            str(digest_file),
            *format_flags,
            pulled,
            f"docker://{copied}",
        )
    )
    raw = clients.run(
        clients.skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{copied}")
    ).encode()

    assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == digest_file.read_text()
    manifest = json.loads(raw)
    assert manifest["mediaType"] == media_type
    assert manifest["config"]["digest"] == config_digest
    for layer in manifest["layers"]:
        head = client.head(f"/v2/{repo}/copy/blobs/{layer['digest']}")
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(layer["size"])
    again = clients.run(clients.podman("pull", "-q", "--tls-verify=false", copied))
    assert again == image_id


def test_podman_pulls_the_platform_it_asks_for(
    server: RunningServer, repo: str, images: Path, clients: Clients
) -> None:
    source = images / "debian"
    index_digest = oci_ref(source, "bookworm")["digest"]
    arm64_config = platform_manifest(source, "bookworm", "arm64")["config"]
    pulled = f"{server.host}/{repo}:bookworm"
    push(clients, f"oci:{source}:bookworm", f"docker://{pulled}", "--all")

    image_id = clients.run(
        clients.podman("pull", "-q", "--tls-verify=false", "--arch", "arm64", pulled)
    )

    assert f"sha256:{image_id.strip()}" == arm64_config["digest"]
    [inspected] = json.loads(clients.run(clients.podman("image", "inspect", pulled)))
    assert inspected["Architecture"] == "arm64"
    assert inspected["Digest"] == index_digest


# buildah


def test_buildah_pushes_an_image_skopeo_copies_back_out(
    server: RunningServer,
    repo: str,
    images: Path,
    clients: Clients,
    tmp_path: Path,
) -> None:
    source = images / "pyapp"
    config_digest = tagged(source, "1.4.2")["config"]["digest"]
    pushed, out = docker_ref(server, repo, "built"), tmp_path / "out"
    digest_file = tmp_path / "digest"

    image_id = clients.run(clients.buildah("pull", "-q", f"oci:{source}:1.4.2"))
    clients.run(
        clients.buildah(
            "push",
            "--tls-verify=false",
            "--digestfile",
            str(digest_file),
            image_id.strip(),
            pushed,
        )
    )
    pull(clients, pushed, f"oci:{out}:built")

    assert f"sha256:{image_id.strip()}" == config_digest
    assert oci_ref(out, "built")["digest"] == digest_file.read_text()
    assert filecmp.cmp(
        oci_blob(source, config_digest), oci_blob(out, config_digest), shallow=False
    )
    assert_layers_match_config(out, "built")


def test_buildah_commits_a_new_layer_and_pushes_it(
    server: RunningServer,
    repo: str,
    images: Path,
    clients: Clients,
    tmp_path: Path,
) -> None:
    source = images / "pyapp"
    base_config_digest = tagged(source, "1.4.2")["config"]["digest"]
    base_config = oci_json(source, base_config_digest)
    pushed, out = docker_ref(server, repo, "1.4.3"), tmp_path / "out"
    digest_file = tmp_path / "digest"
    # Random bytes do not compress: the new layer is a few MiB that no
    # repository holds yet, so buildah must stream it up.
    added = tmp_path / "added"
    added.mkdir()
    (added / "NOTE.txt").write_text("pyapp 1.4.3, built by buildah for tests\n")
    (added / "random.bin").write_bytes(os.urandom(4 * 1024 * 1024))

    clients.run(clients.buildah("pull", "-q", f"oci:{source}:1.4.2"))
    base_id = base_config_digest.removeprefix("sha256:")
    container = clients.run(
        clients.buildah("from", "--pull-never", "--name", "work", base_id)
    ).strip()
    clients.run(clients.buildah("copy", container, str(added), "/app/added/"))
    clients.run(clients.buildah("commit", "-q", container, "pyapp:1.4.3"))
    clients.run(
        clients.buildah(
            "push",
            "--tls-verify=false",
            "--digestfile",
            str(digest_file),
            "pyapp:1.4.3",
            pushed,
        )
    )
    pull(clients, pushed, f"oci:{out}:1.4.3")

    assert oci_ref(out, "1.4.3")["digest"] == digest_file.read_text()
    config = assert_layers_match_config(out, "1.4.3")
    assert config["rootfs"]["diff_ids"][:-1] == base_config["rootfs"]["diff_ids"]
    new_layer = oci_blob(out, tagged(out, "1.4.3")["layers"][-1]["digest"])
    tar_bytes = io.BytesIO(gzip.decompress(new_layer.read_bytes()))
    with tarfile.open(fileobj=tar_bytes) as tar:
        for path in added.iterdir():
            member = tar.extractfile(f"app/added/{path.name}")
            assert member is not None
            assert member.read() == path.read_bytes()


# oras


@pytest.mark.parametrize("chunked", [False, True], ids=["monolithic", "chunked"])
def test_oras_pushes_and_pulls_an_artifact(
    server: RunningServer,
    repo: str,
    client: httpx.Client,
    tmp_path: Path,
    chunked: bool,
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "report.json").write_text('{"findings": []}\n')
    (files / "data.bin").write_bytes(bytes(range(256)) * 300)
    (files / "config.json").write_text('{"generator": "dockyard-tests"}\n')
    target = f"{server.host}/{repo}:report"
    oras_client = oras.client.OrasClient(hostname=server.host, insecure=True)

    # oras-py sets no artifactType; a custom config media type is the
    # OCI 1.0 way to give an artifact its type, and what it supports.
    pushed = oras_client.push(
        target,
        files=[
            f"{files / 'report.json'}:application/json",
            f"{files / 'data.bin'}:application/vnd.dockyard.test.data",
        ],
        manifest_config=f"{files / 'config.json'}:{ARTIFACT_TYPE}",
        disable_path_validation=True,
        do_chunked=chunked,
        chunk_size=10_000,
        quiet=True,
    )
    pulled = oras_client.pull(target, outdir=str(tmp_path / "pulled"))

    assert pushed.status_code == 201
    assert sorted(Path(p).name for p in pulled) == ["data.bin", "report.json"]
    for path in map(Path, pulled):
        assert path.read_bytes() == (files / path.name).read_bytes()

    response = get_manifest(client, repo, "report")
    digest = response.headers["Docker-Content-Digest"]
    assert digest == pushed.headers["Docker-Content-Digest"]
    manifest = response.json()
    assert manifest["config"]["mediaType"] == ARTIFACT_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/json",
        "application/vnd.dockyard.test.data",
    ]
    config = client.get(f"/v2/{repo}/blobs/{manifest['config']['digest']}")
    assert config.content == (files / "config.json").read_bytes()
    assert oras_client.get_tags(f"{server.host}/{repo}") == ["report"]
