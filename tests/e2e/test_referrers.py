"""Referrers end to end: skopeo pushes an image, oras attaches an SBOM and a
signature, and the artifacts are listed, filtered, printed by the CLI and
copied out again with the image.

oras-py sets no `artifactType` and has no referrers verb: its artifacts take
their type from the config media type, and a signature of the SBOM with an
`artifactType` field, like the listing itself, goes over raw HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import oras.client
import oras.oci
import pytest

from tests.e2e.clients import Clients, oci_blob, oci_ref, sha256_file
from tests.server import RunningServer, start_server

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SBOM = "application/spdx+json"
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIGNATURE_PAYLOAD = "application/vnd.dev.cosign.simplesigning.v1+json"
TITLE = "org.opencontainers.image.title"

TAG = "1.4.2"


@dataclass(frozen=True)
class SignedImage:
    """pyapp pushed with skopeo, with an SBOM and a signature, and the SBOM
    signed in turn. Digests by role; `files` holds what was attached."""

    repo: str
    image: dict[str, Any]
    sbom: str
    signature: str
    sbom_signature: str
    files: Path
    oci_subject_headers: tuple[str | None, ...]

    @property
    def referrers(self) -> list[str]:
        return [self.sbom, self.signature, self.sbom_signature]


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Clients:
    return Clients.create(tmp_path_factory.mktemp("clients"))


@pytest.fixture(scope="module")
def signed_image(
    server: RunningServer,
    images: Path,
    clients: Clients,
    tmp_path_factory: pytest.TempPathFactory,
) -> SignedImage:
    repo = f"e2e/signed-{uuid.uuid4().hex[:12]}"
    files = tmp_path_factory.mktemp("attached")
    skopeo_copy(clients, f"oci:{images / 'pyapp'}:{TAG}", image_ref(server, repo))
    image = oci_ref(images / "pyapp", TAG)
    subject = oras.oci.Subject(image["mediaType"], image["digest"], image["size"])

    sbom = oras_attach(server, repo, files, subject, "sbom.spdx.json", SBOM, SBOM)
    signature = oras_attach(
        server, repo, files, subject, "signature.json", SIGNATURE_PAYLOAD, SIGNATURE
    )
    sbom_subject = {
        "mediaType": OCI_MANIFEST,
        "digest": sbom.headers["Docker-Content-Digest"],
        "size": int(sbom.request.headers["Content-Length"]),
    }
    with httpx.Client(base_url=server.url, timeout=60) as http:
        sbom_signature = http_attach(http, repo, files, sbom_subject)

    return SignedImage(
        repo=repo,
        image=image,
        sbom=sbom.headers["Docker-Content-Digest"],
        signature=signature.headers["Docker-Content-Digest"],
        sbom_signature=sbom_signature,
        files=files,
        oci_subject_headers=(
            sbom.headers.get("OCI-Subject"),
            signature.headers.get("OCI-Subject"),
        ),
    )


def image_ref(server: RunningServer, repo: str) -> str:
    return f"docker://{server.host}/{repo}:{TAG}"


def skopeo_copy(clients: Clients, source: str, destination: str) -> None:
    clients.run(
        clients.skopeo(
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            source,
            destination,
        )
    )


def oras_attach(
    server: RunningServer,
    repo: str,
    files: Path,
    subject: oras.oci.Subject,
    name: str,
    media_type: str,
    artifact_type: str,
) -> Any:
    """Push one file as an artifact of `subject`; its type is the config's."""
    (files / name).write_text(json.dumps({"file": name, "nonce": uuid.uuid4().hex}))
    (files / "config.json").write_text("{}")
    client = oras.client.OrasClient(hostname=server.host, insecure=True)
    response = client.push(
        f"{server.host}/{repo}:{name.split('.')[0]}",
        files=[f"{files / name}:{media_type}"],
        manifest_config=f"{files / 'config.json'}:{artifact_type}",
        manifest_annotations={"org.opencontainers.image.created": "2024-05-01"},
        subject=subject,
        disable_path_validation=True,
        quiet=True,
    )
    assert response.status_code == 201, response.text
    return response


def http_attach(
    http: httpx.Client, repo: str, files: Path, subject: dict[str, Any]
) -> str:
    """Sign `subject` over raw HTTP, with an `artifactType` and empty config."""
    payload = files / "sbom-signature.json"
    payload.write_text(json.dumps({"critical": {"image": subject["digest"]}}))
    layer = push_blob(http, repo, payload.read_bytes(), SIGNATURE_PAYLOAD)
    layer["annotations"] = {
        TITLE: payload.name,
        "dev.cosignproject.cosign/signature": base64.b64encode(b"sig").decode(),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE,
        "config": push_blob(http, repo, b"{}", OCI_EMPTY),
        "layers": [layer],
        "subject": subject,
    }
    body = json.dumps(manifest).encode()
    digest = f"sha256:{sha256_bytes(body)}"

    response = http.put(
        f"/v2/{repo}/manifests/{digest}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    assert response.headers["OCI-Subject"] == subject["digest"]
    return digest


def push_blob(
    http: httpx.Client, repo: str, data: bytes, media_type: str
) -> dict[str, Any]:
    digest = f"sha256:{sha256_bytes(data)}"
    response = http.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data
    )
    assert response.status_code == 201, response.text
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def referrers(
    http: httpx.Client, repo: str, digest: str, **params: str
) -> httpx.Response:
    response = http.get(f"/v2/{repo}/referrers/{digest}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == OCI_INDEX
    return response


def listed(response: httpx.Response) -> dict[str, str | None]:
    """Digest to artifactType of each descriptor in a referrers answer."""
    return {m["digest"]: m.get("artifactType") for m in response.json()["manifests"]}


def run_dockyard_referrers(
    server: RunningServer, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run `dockyard referrers` on the running server's data directory."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dockyard",
            "referrers",
            "--data-dir",
            str(server.data_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def dockyard_referrers(server: RunningServer, *args: str) -> str:
    result = run_dockyard_referrers(server, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


# Attaching and listing


def test_oras_push_with_a_subject_is_answered_with_oci_subject(
    signed_image: SignedImage,
) -> None:
    digest = signed_image.image["digest"]

    assert signed_image.oci_subject_headers == (digest, digest)


def test_referrers_api_lists_the_sbom_and_the_signature(
    client: httpx.Client, signed_image: SignedImage
) -> None:
    response = referrers(client, signed_image.repo, signed_image.image["digest"])

    assert listed(response) == {
        signed_image.sbom: SBOM,
        signed_image.signature: SIGNATURE,
    }


def test_referrers_api_carries_the_manifest_annotations(
    client: httpx.Client, signed_image: SignedImage
) -> None:
    response = referrers(client, signed_image.repo, signed_image.image["digest"])

    for entry in response.json()["manifests"]:
        manifest = client.get(f"/v2/{signed_image.repo}/manifests/{entry['digest']}")
        assert entry["annotations"] == manifest.json()["annotations"]
        assert entry["size"] == len(manifest.content)


def test_referrers_api_filters_by_artifact_type(
    client: httpx.Client, signed_image: SignedImage
) -> None:
    digest = signed_image.image["digest"]

    sboms = referrers(client, signed_image.repo, digest, artifactType=SBOM)
    signatures = referrers(client, signed_image.repo, digest, artifactType=SIGNATURE)

    assert listed(sboms) == {signed_image.sbom: SBOM}
    assert listed(signatures) == {signed_image.signature: SIGNATURE}
    assert sboms.headers["OCI-Filters-Applied"] == "artifactType"


def test_referrers_api_lists_the_signature_of_the_sbom(
    client: httpx.Client, signed_image: SignedImage
) -> None:
    response = referrers(client, signed_image.repo, signed_image.sbom)

    assert listed(response) == {signed_image.sbom_signature: SIGNATURE}


def test_image_still_pulls_by_tag_with_its_referrers_beside_it(
    client: httpx.Client, signed_image: SignedImage
) -> None:
    response = client.head(
        f"/v2/{signed_image.repo}/manifests/{TAG}",
        headers={"Accept": OCI_MANIFEST},
    )

    assert response.headers["Docker-Content-Digest"] == signed_image.image["digest"]
    tags = client.get(f"/v2/{signed_image.repo}/tags/list").json()["tags"]
    assert sorted(tags) == sorted([TAG, "sbom", "signature"])


# The CLI


def test_cli_prints_the_referrer_tree(
    server: RunningServer, signed_image: SignedImage
) -> None:
    output = dockyard_referrers(server, f"{signed_image.repo}:{TAG}")

    lines = output.splitlines()
    assert lines[0] == f"{signed_image.repo}@{signed_image.image['digest']}"
    sbom = line_with(lines, signed_image.sbom)
    signature = line_with(lines, signed_image.signature)
    nested = line_with(lines, signed_image.sbom_signature)
    assert f"sbom {SBOM} {signed_image.sbom}" in lines[sbom]
    assert f"signature {SIGNATURE} {signed_image.signature}" in lines[signature]
    assert f"signature {SIGNATURE} {signed_image.sbom_signature}" in lines[nested]
    assert nested == sbom + 1
    assert indent(lines[nested]) > indent(lines[sbom]) == indent(lines[signature])


def line_with(lines: list[str], text: str) -> int:
    [number] = [i for i, line in enumerate(lines) if text in line]
    return number


def indent(line: str) -> int:
    """Where a tree line's label starts, after rich's guide characters."""
    return len(line) - len(line.lstrip(" │├└─"))


def test_cli_json_is_the_management_api_tree(
    server: RunningServer, client: httpx.Client, signed_image: SignedImage
) -> None:
    output = dockyard_referrers(server, "--json", f"{signed_image.repo}:{TAG}")

    tree = json.loads(output)
    api = client.get(f"/api/v1/repositories/{signed_image.repo}/referrers/{TAG}")
    assert api.status_code == 200, api.text
    assert tree == api.json()
    nodes = {node["digest"]: node for node in tree["referrers"]}
    assert set(nodes) == {signed_image.sbom, signed_image.signature}
    [nested] = nodes[signed_image.sbom]["referrers"]
    assert nested["digest"] == signed_image.sbom_signature


def test_cli_by_digest_prints_the_same_tree(
    server: RunningServer, signed_image: SignedImage
) -> None:
    by_digest = dockyard_referrers(
        server, "--json", f"{signed_image.repo}@{signed_image.image['digest']}"
    )

    by_tag = dockyard_referrers(server, "--json", f"{signed_image.repo}:{TAG}")
    assert json.loads(by_digest) == json.loads(by_tag)


def test_cli_says_when_the_image_is_unknown(
    server: RunningServer, signed_image: SignedImage
) -> None:
    result = run_dockyard_referrers(server, f"{signed_image.repo}:missing")

    assert result.returncode == 1
    assert result.stderr.startswith("dockyard: manifest missing is not in")
    assert "Traceback" not in result.stderr


# Copying image and referrers out


def test_skopeo_copies_the_signed_image_out_unchanged(
    server: RunningServer,
    clients: Clients,
    images: Path,
    signed_image: SignedImage,
    tmp_path: Path,
) -> None:
    out = tmp_path / "layout"

    skopeo_copy(clients, image_ref(server, signed_image.repo), f"oci:{out}:{TAG}")

    assert oci_ref(out, TAG)["digest"] == signed_image.image["digest"]
    manifest = json.loads(oci_blob(out, signed_image.image["digest"]).read_bytes())
    for layer in manifest["layers"]:
        copied = oci_blob(out, layer["digest"])
        assert sha256_file(copied) == layer["digest"]
        assert (
            copied.read_bytes()
            == oci_blob(images / "pyapp", layer["digest"]).read_bytes()
        )


@pytest.mark.parametrize("role", ["sbom", "signature", "sbom_signature"])
def test_oras_pulls_each_referrer_by_digest(
    server: RunningServer, signed_image: SignedImage, tmp_path: Path, role: str
) -> None:
    digest = getattr(signed_image, role)
    client = oras.client.OrasClient(hostname=server.host, insecure=True)

    pulled = client.pull(
        f"{server.host}/{signed_image.repo}@{digest}", outdir=str(tmp_path)
    )

    [path] = map(Path, pulled)
    assert path.read_bytes() == (signed_image.files / path.name).read_bytes()


@pytest.fixture(scope="module")
def second_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("second")
    with start_server(base / "data", args=["--workers", "1"]) as running:
        yield running


def copy_referrers(
    source: httpx.Client, target: httpx.Client, repo: str, subject: str
) -> list[str]:
    """Copy every referrer of `subject`, theirs first, manifests by digest."""
    copied = []
    for entry in referrers(source, repo, subject).json()["manifests"]:
        manifest = source.get(
            f"/v2/{repo}/manifests/{entry['digest']}",
            headers={"Accept": entry["mediaType"]},
        )
        assert manifest.status_code == 200, manifest.text
        document = manifest.json()
        for blob in [document["config"], *document["layers"]]:
            data = source.get(f"/v2/{repo}/blobs/{blob['digest']}").content
            push_blob(target, repo, data, blob["mediaType"])
        put = target.put(
            f"/v2/{repo}/manifests/{entry['digest']}",
            content=manifest.content,
            headers={"Content-Type": manifest.headers["Content-Type"]},
        )
        assert put.status_code == 201, put.text
        copied += [
            entry["digest"],
            *copy_referrers(source, target, repo, entry["digest"]),
        ]
    return copied


def test_image_and_referrers_copy_to_another_registry(
    server: RunningServer,
    second_server: RunningServer,
    clients: Clients,
    client: httpx.Client,
    signed_image: SignedImage,
) -> None:
    repo, digest = signed_image.repo, signed_image.image["digest"]
    skopeo_copy(clients, image_ref(server, repo), image_ref(second_server, repo))

    with httpx.Client(base_url=second_server.url, timeout=60) as second:
        copied = copy_referrers(client, second, repo, digest)

        assert sorted(copied) == sorted(signed_image.referrers)
        for reference in [digest, *copied]:
            url = f"/v2/{repo}/manifests/{reference}"
            accept = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
            original = client.get(url, headers=accept)
            copy = second.get(url, headers=accept)
            assert copy.content == original.content
            assert copy.headers["Docker-Content-Digest"] == reference
        for subject in (digest, signed_image.sbom):
            theirs = referrers(second, repo, subject).json()
            assert theirs == referrers(client, repo, subject).json()
        tree = f"/api/v1/repositories/{repo}/referrers/{TAG}"
        assert second.get(tree).json() == client.get(tree).json()
