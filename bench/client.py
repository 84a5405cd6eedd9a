"""A small, fast registry client on `http.client`: one connection per thread.

Blob bodies go from the file to the socket with `sendfile`, so the client
spends almost no CPU on them and never holds a blob in memory.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCTET_STREAM = "application/octet-stream"

_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class UnexpectedStatus(Exception):
    """The registry answered with a status the workload did not expect."""


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def location(self) -> str:
        return self.headers["Location"]


class Client:
    """One keep-alive connection to the registry at `base_url`."""

    def __init__(self, base_url: str, timeout: float = 600) -> None:
        self.base_url = base_url
        address = urlsplit(base_url)
        self._connection = http.client.HTTPConnection(
            address.hostname or "127.0.0.1", address.port, timeout=timeout
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._connection.close()

    def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        expect: Collection[int] = (200,),
    ) -> Response:
        """Send one request; `target` may be a path or a URL from a header."""
        headers = {"Content-Length": str(len(body)), **(headers or {})}
        self._connection.request(method, self._path(target), body, headers)
        return self._response(method, target, expect)

    def send_file(
        self,
        method: str,
        target: str,
        file: BinaryIO,
        span: tuple[int, int],
        expect: Collection[int],
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send the `span` (offset, count) of `file` as the request body."""
        offset, count = span
        self._connection.putrequest(method, self._path(target))
        all_headers = {
            "Content-Type": OCTET_STREAM,
            "Content-Length": str(count),
            **(headers or {}),
        }
        for name, value in all_headers.items():
            self._connection.putheader(name, value)
        self._connection.endheaders()

        assert self._connection.sock is not None
        self._connection.sock.sendfile(file, offset, count)
        return self._response(method, target, expect)

    def _path(self, target: str) -> str:
        address = urlsplit(urljoin(self.base_url, target))
        return f"{address.path}?{address.query}" if address.query else address.path

    def _response(self, method: str, target: str, expect: Collection[int]) -> Response:
        raw = self._connection.getresponse()
        response = Response(raw.status, raw.headers, raw.read())
        if response.status not in expect:
            raise UnexpectedStatus(
                f"{method} {self._path(target)}: {response.status} "
                f"{response.body[:300]!r}"
            )
        return response


def with_query(target: str, **params: str) -> str:
    """`target` with `params` added to its query, which may already exist."""
    separator = "&" if "?" in target else "?"
    return f"{target}{separator}{urlencode(params)}"


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def sha256_file(path: Path, span: tuple[int, int]) -> str:
    """The digest of `span` (offset, count) of a file, read 8 MiB at a time."""
    offset, count = span
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        file.seek(offset)
        while count > 0:
            piece = file.read(min(count, 8 * 1024 * 1024))
            if not piece:
                raise ValueError(f"{path} ends before the span does")
            digest.update(piece)
            count -= len(piece)
    return f"sha256:{digest.hexdigest()}"


def push_small_blob(client: Client, repo: str, data: bytes) -> str:
    """Upload `data` as a blob in one POST and one PUT; returns its digest."""
    digest = sha256_digest(data)
    session = client.request("POST", f"/v2/{repo}/blobs/uploads/", expect=[202])
    client.request(
        "PUT",
        with_query(session.location(), digest=digest),
        data,
        {"Content-Type": OCTET_STREAM},
        expect=[201],
    )
    return digest


def mount_or_push_blob(client: Client, repo: str, data: bytes, source: str) -> str:
    """Mount the blob `data` from `source`, uploading it if the mount fails."""
    digest = sha256_digest(data)
    query = urlencode({"mount": digest, "from": source})
    answer = client.request(
        "POST", f"/v2/{repo}/blobs/uploads/?{query}", expect=[201, 202]
    )
    if answer.status == 202:
        client.request(
            "PUT",
            with_query(answer.location(), digest=digest),
            data,
            {"Content-Type": OCTET_STREAM},
            expect=[201],
        )
    return digest


def image_manifest(config: bytes, layer: bytes) -> bytes:
    """A small OCI image manifest with one config blob and one layer."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(OCI_CONFIG, config),
        "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}


def put_manifest(client: Client, repo: str, reference: str, manifest: bytes) -> None:
    client.request(
        "PUT",
        f"/v2/{repo}/manifests/{reference}",
        manifest,
        {"Content-Type": OCI_MANIFEST},
        expect=[201],
    )


def fetch_pages(client: Client, path: str) -> list[bytes]:
    """The raw pages of a paginated list: the part a benchmark times."""
    pages = []
    target: str | None = path
    while target is not None:
        page = client.request("GET", target)
        pages.append(page.body)
        target = next_page(page.headers.get("Link"))
    return pages


def entries_of(pages: list[bytes], key: str) -> list[str]:
    return [entry for page in pages for entry in json.loads(page)[key] or []]


def next_page(link: str | None) -> str | None:
    match = _NEXT_LINK.search(link or "")
    return match.group(1) if match else None
