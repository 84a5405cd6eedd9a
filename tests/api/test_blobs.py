"""HEAD, GET and DELETE /v2/<name>/blobs/<digest>, ranges included."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import assert_error, sha256, sha512

DATA = bytes(range(256)) * 4
SIZE = len(DATA)


def push(client: httpx.Client, repo: str, data: bytes, digest: str = "") -> str:
    """Push `data` in one request, under its sha256 unless `digest` is given."""
    digest = digest or sha256(data)
    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data
    )
    assert response.status_code == 201, response.text
    return digest


@pytest.fixture
def blob(client: httpx.Client, repo: str) -> str:
    """The URL of DATA pushed to `repo`."""
    return f"/v2/{repo}/blobs/{push(client, repo, DATA)}"


def get_range(client: httpx.Client, url: str, spec: str) -> httpx.Response:
    return client.get(url, headers={"Range": spec})


# Reading a blob


def test_get_returns_blob_with_headers(client: httpx.Client, blob: str) -> None:
    response = client.get(blob)

    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["docker-content-digest"] == sha256(DATA)
    assert response.headers["accept-ranges"] == "bytes"


def test_head_has_get_headers_and_no_body(client: httpx.Client, blob: str) -> None:
    head = client.head(blob)
    get = client.get(blob)

    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-length", "docker-content-digest", "accept-ranges"):
        assert head.headers[name] == get.headers[name]


def test_head_reports_blob_size(client: httpx.Client, blob: str) -> None:
    assert client.head(blob).headers["content-length"] == str(SIZE)


def test_empty_blob_reads_back_empty(client: httpx.Client, repo: str) -> None:
    digest = push(client, repo, b"")

    response = client.get(f"/v2/{repo}/blobs/{digest}")

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"


def test_sha512_blob_reads_back(client: httpx.Client, repo: str) -> None:
    digest = push(client, repo, DATA, sha512(DATA))

    response = client.get(f"/v2/{repo}/blobs/{digest}")

    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["docker-content-digest"] == digest


def test_sha512_blob_is_not_found_by_its_sha256(
    client: httpx.Client, repo: str
) -> None:
    push(client, repo, DATA, sha512(DATA))

    response = client.get(f"/v2/{repo}/blobs/{sha256(DATA)}")

    assert_error(response, 404, "BLOB_UNKNOWN")


# Ranges


def test_range_first_last_is_partial(client: httpx.Client, blob: str) -> None:
    response = get_range(client, blob, "bytes=10-19")

    assert response.status_code == 206
    assert response.content == DATA[10:20]
    assert response.headers["content-range"] == f"bytes 10-19/{SIZE}"
    assert response.headers["content-length"] == "10"


def test_range_single_byte(client: httpx.Client, blob: str) -> None:
    response = get_range(client, blob, "bytes=0-0")

    assert response.status_code == 206
    assert response.content == DATA[:1]
    assert response.headers["content-range"] == f"bytes 0-0/{SIZE}"


def test_range_open_ended_reads_to_the_end(client: httpx.Client, blob: str) -> None:
    response = get_range(client, blob, "bytes=1000-")

    assert response.status_code == 206
    assert response.content == DATA[1000:]
    assert response.headers["content-range"] == f"bytes 1000-{SIZE - 1}/{SIZE}"


def test_range_past_the_end_is_cut_at_the_end(client: httpx.Client, blob: str) -> None:
    response = get_range(client, blob, f"bytes=1000-{SIZE * 10}")

    assert response.status_code == 206
    assert response.content == DATA[1000:]
    assert response.headers["content-range"] == f"bytes 1000-{SIZE - 1}/{SIZE}"


def test_range_suffix_reads_the_last_bytes(client: httpx.Client, blob: str) -> None:
    response = get_range(client, blob, "bytes=-24")

    assert response.status_code == 206
    assert response.content == DATA[-24:]
    assert response.headers["content-range"] == f"bytes {SIZE - 24}-{SIZE - 1}/{SIZE}"


def test_range_suffix_longer_than_blob_reads_it_all(
    client: httpx.Client, blob: str
) -> None:
    response = get_range(client, blob, f"bytes=-{SIZE * 2}")

    assert response.status_code == 206
    assert response.content == DATA
    assert response.headers["content-range"] == f"bytes 0-{SIZE - 1}/{SIZE}"


@pytest.mark.parametrize("spec", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}"])
def test_range_beyond_the_blob_is_416(
    client: httpx.Client, blob: str, spec: str
) -> None:
    response = get_range(client, blob, spec)

    assert_error(response, 416, "RANGE_INVALID")
    assert response.headers["content-range"] == f"bytes */{SIZE}"


def test_range_of_empty_blob_is_416(client: httpx.Client, repo: str) -> None:
    digest = push(client, repo, b"")

    response = get_range(client, f"/v2/{repo}/blobs/{digest}", "bytes=0-")

    assert_error(response, 416, "RANGE_INVALID")
    assert response.headers["content-range"] == "bytes */0"


@pytest.mark.parametrize(
    "spec",
    ["bytes=abc", "bytes=-", "bytes=5-2", "bytes=-0", "lines=0-1", "bytes 0-1", "0-1"],
)
def test_malformed_range_is_a_json_error(
    client: httpx.Client, blob: str, spec: str
) -> None:
    response = get_range(client, blob, spec)

    assert_error(response, 416, "RANGE_INVALID")
    assert response.headers["content-range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize(
    "spec", ["bytes=0-1,5-6", "bytes=0-1,abc", f"bytes={SIZE}-,5-2", "bytes=,"]
)
def test_several_ranges_get_the_whole_blob(
    client: httpx.Client, blob: str, spec: str
) -> None:
    response = get_range(client, blob, spec)

    assert response.status_code == 200
    assert response.content == DATA


def test_huge_range_numbers_are_not_a_server_error(
    client: httpx.Client, blob: str
) -> None:
    response = get_range(client, blob, f"bytes={'9' * 40}-")

    assert_error(response, 416, "RANGE_INVALID")


# Unknown and malformed digests


def test_unknown_blob_is_404(client: httpx.Client, repo: str) -> None:
    url = f"/v2/{repo}/blobs/{sha256(b'never pushed')}"

    assert_error(client.get(url), 404, "BLOB_UNKNOWN")
    assert client.head(url).status_code == 404


def test_blob_of_another_repository_is_404(
    client: httpx.Client, blob: str, repo: str
) -> None:
    other = f"{repo}-other"
    url = blob.replace(f"/v2/{repo}/", f"/v2/{other}/")

    assert_error(client.get(url), 404, "BLOB_UNKNOWN")
    assert client.head(url).status_code == 404


def test_mounted_blob_is_readable_in_the_other_repository(
    client: httpx.Client, repo: str
) -> None:
    digest = push(client, repo, DATA)
    other = f"{repo}-other"

    mount = client.post(
        f"/v2/{other}/blobs/uploads/", params={"mount": digest, "from": repo}
    )

    assert mount.status_code == 201
    assert client.get(f"/v2/{other}/blobs/{digest}").content == DATA


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:abc",
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "sha512:" + "a" * 64,
        "md5:" + "a" * 32,
        "no-algorithm",
        "sha256:",
    ],
)
def test_malformed_digest_is_400(client: httpx.Client, repo: str, digest: str) -> None:
    url = f"/v2/{repo}/blobs/{digest}"

    assert_error(client.get(url), 400, "DIGEST_INVALID")
    assert_error(client.delete(url), 400, "DIGEST_INVALID")
    assert client.head(url).status_code == 400


def test_empty_digest_is_400(client: httpx.Client, repo: str) -> None:
    assert_error(client.get(f"/v2/{repo}/blobs/"), 400, "DIGEST_INVALID")


def test_unsupported_method_is_405(client: httpx.Client, blob: str) -> None:
    response = client.post(blob, content=b"x")

    assert_error(response, 405, "UNSUPPORTED")
    assert "GET" in response.headers["allow"]


# Deleting


def test_delete_gives_202_then_the_blob_is_404(client: httpx.Client, blob: str) -> None:
    response = client.delete(blob)

    assert response.status_code == 202
    assert_error(client.get(blob), 404, "BLOB_UNKNOWN")
    assert client.head(blob).status_code == 404


def test_delete_twice_is_404(client: httpx.Client, blob: str) -> None:
    client.delete(blob)

    assert_error(client.delete(blob), 404, "BLOB_UNKNOWN")


def test_delete_unknown_blob_is_404(client: httpx.Client, repo: str) -> None:
    url = f"/v2/{repo}/blobs/{sha256(b'never pushed')}"

    assert_error(client.delete(url), 404, "BLOB_UNKNOWN")


def test_delete_leaves_other_repositories_alone(
    client: httpx.Client, repo: str
) -> None:
    digest = push(client, repo, DATA)
    other = f"{repo}-other"
    push(client, other, DATA)

    assert client.delete(f"/v2/{repo}/blobs/{digest}").status_code == 202

    assert client.get(f"/v2/{other}/blobs/{digest}").content == DATA


def test_deleted_blob_can_be_pushed_again(client: httpx.Client, blob: str) -> None:
    repo = blob.split("/blobs/")[0].removeprefix("/v2/")
    client.delete(blob)

    push(client, repo, DATA)

    assert client.get(blob).content == DATA


# Repository names


INVALID_NAMES = [
    "Upper/case",
    "test/UPPER",
    "-leading",
    "_leading",
    ".leading",
    "test//double",
    "test/trailing-",
    "test/trailing/",
    "a/" + "b" * 254,
]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_repository_name_is_400(client: httpx.Client, name: str) -> None:
    url = f"/v2/{name}/blobs/{sha256(DATA)}"

    assert_error(client.get(url), 400, "NAME_INVALID")
    assert_error(client.delete(url), 400, "NAME_INVALID")
    assert client.head(url).status_code == 400


def test_longest_valid_name_is_accepted(client: httpx.Client, repo: str) -> None:
    name = repo + "/" + "x" * (255 - len(repo) - 1)

    push(client, name, DATA)

    assert client.get(f"/v2/{name}/blobs/{sha256(DATA)}").content == DATA


def test_blob_lost_from_storage_is_404_not_500(client, repo, server):
    data = b"soon gone from the disk " + repo.encode()
    digest = push(client, repo, data)
    encoded = digest.split(":", 1)[1]
    (server.data_dir / "storage" / "blobs" / "sha256" / encoded[:2] / encoded).unlink()

    response = client.get(f"/v2/{repo}/blobs/{digest}")

    assert_error(response, 404, "BLOB_UNKNOWN")
    assert "missing from storage" in response.json()["errors"][0]["message"]
