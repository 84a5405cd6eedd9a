"""Blob uploads: POST, PATCH, PUT, GET and DELETE /v2/<name>/blobs/uploads/."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.helpers import assert_error, push_blob, sha256, sha512
from tests.server import RunningServer

DATA = b"0123456789" * 10


def open_session(client: httpx.Client, repo: str, **params: str) -> str:
    """The Location of a new upload session."""
    response = client.post(f"/v2/{repo}/blobs/uploads/", params=params)
    assert response.status_code == 202, response.text
    return response.headers["location"]


def send_chunk(
    client: httpx.Client, location: str, data: bytes, start: int
) -> httpx.Response:
    end = start + len(data) - 1
    headers = {"Content-Range": f"{start}-{end}"}
    return client.patch(location, content=data, headers=headers)


def pieces(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body httpx sends with chunked transfer encoding, no Content-Length."""
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


def upload_id(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def staged_file(server: RunningServer, location: str) -> os.PathLike[str]:
    return server.data_dir / "storage" / "uploads" / upload_id(location)


def assert_blob(client: httpx.Client, repo: str, digest: str, data: bytes) -> None:
    response = client.get(f"/v2/{repo}/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == data


def assert_created(response: httpx.Response, repo: str, digest: str) -> None:
    assert response.status_code == 201, response.text
    assert response.headers["docker-content-digest"] == digest
    location = httpx.URL(response.headers["location"])
    assert location.path == f"/v2/{repo}/blobs/{digest}"
    assert location.query == b""


# Opening a session


def test_post_opens_a_session(client: httpx.Client, repo: str) -> None:
    response = client.post(f"/v2/{repo}/blobs/uploads/")

    assert response.status_code == 202
    location = httpx.URL(response.headers["location"])
    session = response.headers["docker-upload-uuid"]
    assert location.path == f"/v2/{repo}/blobs/uploads/{session}"
    assert uuid.UUID(session)
    assert response.headers["range"] == "0-0"


def test_each_post_opens_a_new_session(client: httpx.Client, repo: str) -> None:
    assert open_session(client, repo) != open_session(client, repo)


def test_unsupported_digest_algorithm_is_400(client: httpx.Client, repo: str) -> None:
    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest-algorithm": "md5"}
    )

    assert_error(response, 400, "DIGEST_INVALID")


def test_post_to_a_session_url_is_an_error(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)

    assert_error(client.post(location), 400, "BLOB_UPLOAD_INVALID")


# One-request upload


def test_post_with_digest_stores_the_blob(client: httpx.Client, repo: str) -> None:
    digest = sha256(DATA)

    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=DATA
    )

    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, DATA)


def test_post_with_digest_streams_the_body(client: httpx.Client, repo: str) -> None:
    digest = sha256(DATA)

    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=pieces(DATA, 7)
    )

    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, DATA)


def test_post_with_sha512_digest_stores_the_blob(
    client: httpx.Client, repo: str
) -> None:
    digest = sha512(DATA)

    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=DATA
    )

    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, DATA)


def test_post_with_wrong_digest_keeps_nothing(
    client: httpx.Client, repo: str, server: RunningServer
) -> None:
    digest = sha256(b"something else")
    staged = set((server.data_dir / "storage" / "uploads").iterdir())

    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=DATA
    )

    assert_error(response, 400, "DIGEST_INVALID")
    assert client.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
    assert client.head(f"/v2/{repo}/blobs/{sha256(DATA)}").status_code == 404
    assert set((server.data_dir / "storage" / "uploads").iterdir()) <= staged


def test_post_with_malformed_digest_is_400(client: httpx.Client, repo: str) -> None:
    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": "sha256:nope"}, content=DATA
    )

    assert_error(response, 400, "DIGEST_INVALID")


def test_post_of_the_same_blob_twice_is_fine(client: httpx.Client, repo: str) -> None:
    push_blob(client, repo, DATA)

    digest = push_blob(client, repo, DATA)["digest"]

    assert_blob(client, repo, digest, DATA)


# Mounting


def test_mount_links_a_blob_from_another_repository(
    client: httpx.Client, repo: str
) -> None:
    digest = push_blob(client, repo, DATA)["digest"]
    target = f"{repo}-mounted"

    response = client.post(
        f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": repo}
    )

    assert_created(response, target, digest)
    assert_blob(client, target, digest, DATA)


def test_mount_of_a_blob_already_there_is_201(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, DATA)["digest"]

    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": repo}
    )

    assert_created(response, repo, digest)


def test_mount_of_a_sha512_blob(client: httpx.Client, repo: str) -> None:
    digest = sha512(DATA)
    client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=DATA)
    target = f"{repo}-mounted"

    response = client.post(
        f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": repo}
    )

    assert_created(response, target, digest)
    assert_blob(client, target, digest, DATA)


MOUNT_FALLBACKS = {
    "blob not in from": {"mount": "{digest}", "from": "{other}"},
    "from unknown": {"mount": "{digest}", "from": "no/such-repo"},
    "from missing": {"mount": "{digest}"},
    "from empty": {"mount": "{digest}", "from": ""},
    "from invalid": {"mount": "{digest}", "from": "Bad//Name"},
    "digest malformed": {"mount": "sha256:zz", "from": "{repo}"},
    "digest unknown": {"mount": sha256(b"never pushed"), "from": "{repo}"},
}


@pytest.mark.parametrize("case", MOUNT_FALLBACKS)
def test_mount_that_cannot_happen_opens_a_session(
    client: httpx.Client, repo: str, case: str
) -> None:
    digest = push_blob(client, repo, DATA)["digest"]
    other = f"{repo}-other"
    push_blob(client, other, b"another blob")
    names = {"digest": digest, "repo": repo, "other": other}
    params = {
        key: value.format(**names) for key, value in MOUNT_FALLBACKS[case].items()
    }
    target = f"{repo}-mounted"

    response = client.post(f"/v2/{target}/blobs/uploads/", params=params)

    assert response.status_code == 202, response.text
    location = httpx.URL(response.headers["location"])
    session = response.headers["docker-upload-uuid"]
    assert location.path == f"/v2/{target}/blobs/uploads/{session}"
    assert location.query == b""
    assert response.headers["range"] == "0-0"
    assert client.get(str(location)).status_code == 204


def test_mount_fallback_session_accepts_the_blob(
    client: httpx.Client, repo: str
) -> None:
    digest = sha256(DATA)
    location = open_session(client, repo, mount=digest, **{"from": "no/such-repo"})

    response = client.put(location, params={"digest": digest}, content=DATA)

    assert_created(response, repo, digest)


def test_failed_mount_does_not_link_the_blob(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, DATA)["digest"]
    target = f"{repo}-mounted"

    client.post(
        f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": "no/such"}
    )

    assert client.head(f"/v2/{target}/blobs/{digest}").status_code == 404


# PATCH


def test_patch_streamed_body_appends(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)

    response = client.patch(location, content=pieces(DATA, 30))

    assert response.status_code == 202
    assert response.headers["range"] == f"0-{len(DATA) - 1}"
    assert response.headers["docker-upload-uuid"] == upload_id(location)
    assert httpx.URL(response.headers["location"]).path == httpx.URL(location).path


def test_two_streamed_patches_add_up(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    client.patch(location, content=DATA[:40])

    response = client.patch(location, content=DATA[40:])

    assert response.status_code == 202
    assert response.headers["range"] == f"0-{len(DATA) - 1}"


def test_patch_chunks_with_content_range(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    first = send_chunk(client, location, DATA[:30], 0)

    second = send_chunk(client, first.headers["location"], DATA[30:], 30)

    assert first.status_code == 202
    assert first.headers["range"] == "0-29"
    assert second.status_code == 202
    assert second.headers["range"] == f"0-{len(DATA) - 1}"


def test_patch_accepts_content_range_with_bytes_unit(
    client: httpx.Client, repo: str
) -> None:
    location = open_session(client, repo)

    response = client.patch(
        location, content=DATA[:10], headers={"Content-Range": "bytes 0-9/*"}
    )

    assert response.status_code == 202
    assert response.headers["range"] == "0-9"


def test_patch_with_empty_body_changes_nothing(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    client.patch(location, content=DATA[:10])

    response = client.patch(location, content=b"")

    assert response.status_code == 202
    assert response.headers["range"] == "0-9"


@pytest.mark.parametrize("start", [5, 15, 31])
def test_out_of_order_chunk_is_416_and_not_appended(
    client: httpx.Client, repo: str, start: int
) -> None:
    location = open_session(client, repo)
    send_chunk(client, location, DATA[:10], 0)

    response = send_chunk(client, location, DATA[start : start + 10], start)

    assert_error(response, 416, "BLOB_UPLOAD_INVALID")
    assert response.headers["range"] == "0-9"
    assert client.get(location).headers["range"] == "0-9"


def test_first_chunk_must_start_at_zero(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)

    response = send_chunk(client, location, DATA[:10], 10)

    assert_error(response, 416, "BLOB_UPLOAD_INVALID")
    assert client.get(location).headers["range"] == "0-0"


def test_upload_goes_on_after_a_416(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    send_chunk(client, location, DATA[:10], 0)
    send_chunk(client, location, DATA[50:60], 50)
    send_chunk(client, location, DATA[10:], 10)

    response = client.put(location, params={"digest": sha256(DATA)})

    assert_created(response, repo, sha256(DATA))
    assert_blob(client, repo, sha256(DATA), DATA)


@pytest.mark.parametrize("header", ["abc", "0-", "-9", "9-0", "bytes=a-b", "0-9-10"])
def test_malformed_content_range_is_400(
    client: httpx.Client, repo: str, header: str
) -> None:
    location = open_session(client, repo)

    response = client.patch(
        location, content=DATA[:10], headers={"Content-Range": header}
    )

    assert_error(response, 400, "BLOB_UPLOAD_INVALID")
    assert client.get(location).headers["range"] == "0-0"


def test_content_range_longer_than_body_is_400(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)

    response = client.patch(
        location, content=DATA[:10], headers={"Content-Range": "0-19"}
    )

    assert_error(response, 400, "BLOB_UPLOAD_INVALID")
    assert client.get(location).headers["range"] == "0-0"


# PUT


def test_put_with_digest_after_patches(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    patched = client.patch(location, content=DATA)
    digest = sha256(DATA)

    response = client.put(patched.headers["location"], params={"digest": digest})

    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, DATA)


def test_put_with_the_last_chunk(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    client.patch(location, content=DATA[:40])
    digest = sha256(DATA)

    response = client.put(location, params={"digest": digest}, content=DATA[40:])

    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, DATA)


def test_put_with_the_last_chunk_and_content_range(
    client: httpx.Client, repo: str
) -> None:
    location = open_session(client, repo)
    send_chunk(client, location, DATA[:40], 0)
    digest = sha256(DATA)

    response = client.put(
        location,
        params={"digest": digest},
        content=DATA[40:],
        headers={"Content-Range": f"40-{len(DATA) - 1}"},
    )

    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, DATA)


def test_put_with_the_whole_blob(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    digest = sha256(DATA)

    response = client.put(location, params={"digest": digest}, content=DATA)

    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, DATA)


def test_put_with_out_of_order_last_chunk_is_416(
    client: httpx.Client, repo: str
) -> None:
    location = open_session(client, repo)
    send_chunk(client, location, DATA[:40], 0)

    response = client.put(
        location,
        params={"digest": sha256(DATA)},
        content=DATA[50:],
        headers={"Content-Range": f"50-{len(DATA) - 1}"},
    )

    assert_error(response, 416, "BLOB_UPLOAD_INVALID")
    assert client.get(location).headers["range"] == "0-39"


def test_put_with_wrong_digest_keeps_nothing(
    client: httpx.Client, repo: str, server: RunningServer
) -> None:
    location = open_session(client, repo)
    client.patch(location, content=DATA)
    wrong = sha256(b"something else")

    response = client.put(location, params={"digest": wrong})

    assert_error(response, 400, "DIGEST_INVALID")
    assert client.head(f"/v2/{repo}/blobs/{wrong}").status_code == 404
    assert client.head(f"/v2/{repo}/blobs/{sha256(DATA)}").status_code == 404
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert not os.path.exists(staged_file(server, location))


def test_put_without_digest_is_400(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    client.patch(location, content=DATA)

    response = client.put(location)

    assert_error(response, 400, "DIGEST_INVALID")


def test_put_without_digest_leaves_the_session_open(
    client: httpx.Client, repo: str
) -> None:
    location = open_session(client, repo)
    client.patch(location, content=DATA)
    client.put(location)

    response = client.put(location, params={"digest": sha256(DATA)})

    assert_created(response, repo, sha256(DATA))


def test_put_with_malformed_digest_is_400(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)

    response = client.put(location, params={"digest": "sha256:short"}, content=DATA)

    assert_error(response, 400, "DIGEST_INVALID")


def test_put_twice_is_404(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    client.put(location, params={"digest": sha256(DATA)}, content=DATA)

    response = client.put(location, params={"digest": sha256(DATA)})

    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")


def test_finished_session_is_gone(
    client: httpx.Client, repo: str, server: RunningServer
) -> None:
    location = open_session(client, repo)
    client.put(location, params={"digest": sha256(DATA)}, content=DATA)

    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert not os.path.exists(staged_file(server, location))


# Empty blobs and other digest algorithms


def test_empty_blob_upload(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    digest = sha256(b"")

    response = client.put(location, params={"digest": digest})

    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, b"")


def test_empty_blob_in_one_request(client: httpx.Client, repo: str) -> None:
    digest = sha256(b"")

    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest})

    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, b"")


def test_sha512_session_finishes_with_sha512(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo, **{"digest-algorithm": "sha512"})
    client.patch(location, content=DATA[:30])
    client.patch(location, content=DATA[30:])
    digest = sha512(DATA)

    response = client.put(location, params={"digest": digest})

    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, DATA)


def test_sha512_digest_finishes_a_default_session(
    client: httpx.Client, repo: str
) -> None:
    location = open_session(client, repo)
    client.patch(location, content=DATA)
    digest = sha512(DATA)

    response = client.put(location, params={"digest": digest})

    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, DATA)


def test_sha256_digest_finishes_a_sha512_session(
    client: httpx.Client, repo: str
) -> None:
    location = open_session(client, repo, **{"digest-algorithm": "sha512"})
    client.patch(location, content=DATA)
    digest = sha256(DATA)

    response = client.put(location, params={"digest": digest})

    assert_created(response, repo, digest)


# Large uploads


def test_large_streamed_upload_round_trips(client: httpx.Client, repo: str) -> None:
    data = os.urandom(12 * 1024 * 1024 + 7)
    location = open_session(client, repo)
    patched = client.patch(location, content=pieces(data, 1024 * 1024))
    digest = sha256(data)

    response = client.put(patched.headers["location"], params={"digest": digest})

    assert patched.headers["range"] == f"0-{len(data) - 1}"
    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, data)


def test_large_chunked_upload_round_trips(client: httpx.Client, repo: str) -> None:
    data = os.urandom(9 * 1024 * 1024 + 3)
    chunk = 2 * 1024 * 1024
    location = open_session(client, repo)
    for start in range(0, len(data) - chunk, chunk):
        location = send_chunk(client, location, data[start : start + chunk], start)
        location = location.headers["location"]
    last = len(data) - len(data) % chunk
    digest = sha256(data)

    response = client.put(
        location,
        params={"digest": digest},
        content=data[last:],
        headers={"Content-Range": f"{last}-{len(data) - 1}"},
    )

    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, data)


def test_large_one_request_upload_round_trips(client: httpx.Client, repo: str) -> None:
    data = os.urandom(5 * 1024 * 1024)
    digest = sha256(data)

    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=pieces(data)
    )

    assert_created(response, repo, digest)
    assert_blob(client, repo, digest, data)


# Status and cancelling


def test_get_reports_the_session(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    client.patch(location, content=DATA[:25])

    response = client.get(location)

    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["range"] == "0-24"
    assert httpx.URL(response.headers["location"]).path == httpx.URL(location).path
    assert response.headers["docker-upload-uuid"] == upload_id(location)


def test_get_of_a_new_session_is_0_0(client: httpx.Client, repo: str) -> None:
    response = client.get(open_session(client, repo))

    assert response.status_code == 204
    assert response.headers["range"] == "0-0"


def test_delete_cancels_the_session(
    client: httpx.Client, repo: str, server: RunningServer
) -> None:
    location = open_session(client, repo)
    client.patch(location, content=DATA)
    assert os.path.exists(staged_file(server, location))

    response = client.delete(location)

    assert response.status_code == 204
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert not os.path.exists(staged_file(server, location))


def test_cancelled_session_takes_no_more_data(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    client.delete(location)

    assert_error(client.patch(location, content=DATA), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(
        client.put(location, params={"digest": sha256(DATA)}, content=DATA),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    assert_error(client.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")


# Unknown sessions


UNKNOWN_IDS = [str(uuid.uuid4()), "garbage", ".hidden", "..x", "x" * 300, "%00"]


@pytest.mark.parametrize("session", UNKNOWN_IDS)
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_unknown_session_is_404(
    client: httpx.Client, repo: str, session: str, method: str
) -> None:
    url = f"/v2/{repo}/blobs/uploads/{session}"

    response = client.request(
        method, url, params={"digest": sha256(DATA)}, content=DATA
    )

    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_missing_session_id_is_404(
    client: httpx.Client, repo: str, method: str
) -> None:
    response = client.request(method, f"/v2/{repo}/blobs/uploads/", content=DATA)

    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_session_of_another_repository_is_404(
    client: httpx.Client, repo: str, method: str
) -> None:
    location = open_session(client, repo)
    elsewhere = location.replace(f"/v2/{repo}/", f"/v2/{repo}-other/")

    response = client.request(
        method, elsewhere, params={"digest": sha256(DATA)}, content=DATA
    )

    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    assert client.get(location).headers["range"] == "0-0"


def test_unsupported_method_is_405(client: httpx.Client, repo: str) -> None:
    response = client.head(open_session(client, repo))

    assert response.status_code == 405
    assert "PATCH" in response.headers["allow"]


# Repository names


INVALID_NAMES = [
    "Upper/case",
    "-leading",
    "/leading",
    "test//double",
    "test/trailing/",
    "a/" + "b" * 254,
]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_repository_name_is_400(client: httpx.Client, name: str) -> None:
    response = client.post(f"/v2/{name}/blobs/uploads/")

    assert_error(response, 400, "NAME_INVALID")


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_repository_name_in_one_request_is_400(
    client: httpx.Client, name: str
) -> None:
    response = client.post(
        f"/v2/{name}/blobs/uploads/", params={"digest": sha256(DATA)}, content=DATA
    )

    assert_error(response, 400, "NAME_INVALID")


def test_invalid_name_on_a_session_url_is_400(client: httpx.Client, repo: str) -> None:
    location = open_session(client, repo)
    elsewhere = location.replace(f"/v2/{repo}/", "/v2/Upper/")

    assert_error(client.get(elsewhere), 400, "NAME_INVALID")


def test_concurrent_finishes_store_the_blob_once_and_never_fail(client, repo):
    data = os.urandom(4 * 1024 * 1024)
    location = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    client.patch(location, content=data)

    def finish(_: int) -> int:
        with httpx.Client(timeout=60) as http:
            return http.put(location, params={"digest": sha256(data)}).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(finish, range(6)))

    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {201, 400, 404}, statuses
    assert client.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data
