"""Blob uploads: POST, PATCH, PUT, GET and DELETE /v2/<name>/blobs/uploads/."""

from __future__ import annotations

import re

from starlette.responses import Response

from dockyard.api.context import Handler, RepositoryRequest
from dockyard.core.digest import ALGORITHMS, Digest
from dockyard.core.errors import (
    DigestInvalid,
    RegistryError,
    UploadInvalid,
    UploadUnknown,
)
from dockyard.core.names import check_name
from dockyard.core.registry import UploadStatus
from dockyard.services.auth.scopes import PULL

_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?$")


async def start(ctx: RepositoryRequest) -> Response:
    if ctx.target:
        return _unknown_method(ctx)
    query = ctx.request.query_params

    if "mount" in query:
        mounted = await _try_mount(ctx, query["mount"], query.get("from"))
        if mounted is not None:
            return mounted

    if "digest" in query:
        digest = Digest.parse(query["digest"])
        await ctx.registry.push_blob(ctx.name, digest, ctx.request.stream())
        return _created(ctx, digest)

    algorithm = query.get("digest-algorithm", "sha256")
    if algorithm not in ALGORITHMS:
        raise DigestInvalid(
            f"unsupported digest-algorithm {algorithm!r}; use one of "
            + ", ".join(ALGORITHMS)
        )
    upload_id = await ctx.registry.start_upload(ctx.name, algorithm)
    return _accepted(ctx, UploadStatus(upload_id, 0))


async def _try_mount(
    ctx: RepositoryRequest, mount: str, source: str | None
) -> Response | None:
    """Mount a blob from another repository, or None to open a session.

    A mount that cannot happen, for whatever reason, is not an error: the
    client falls back to uploading the blob. That includes a source the caller
    may not pull from, which then looks exactly like one without the blob.
    """
    try:
        digest = Digest.parse(mount)
        if source is None or not await ctx.may(check_name(source), {PULL}):
            return None
        if not await ctx.registry.mount_blob(ctx.name, digest, source):
            return None
    except RegistryError:
        return None
    return _created(ctx, digest)


async def patch(ctx: RepositoryRequest) -> Response:
    start_at = _chunk_start(ctx)
    status = await ctx.registry.append_upload(
        ctx.name, ctx.target, ctx.request.stream(), start_at
    )
    return _accepted(ctx, status)


async def finish(ctx: RepositoryRequest) -> Response:
    if "digest" not in ctx.request.query_params:
        raise DigestInvalid("missing ?digest= naming the digest of the whole blob")
    digest = Digest.parse(ctx.request.query_params["digest"])

    start_at = _chunk_start(ctx)
    await ctx.registry.finish_upload(
        ctx.name, ctx.target, digest, ctx.request.stream(), start_at
    )
    return _created(ctx, digest)


async def status(ctx: RepositoryRequest) -> Response:
    upload = await ctx.registry.upload_status(ctx.name, ctx.target)
    response = _accepted(ctx, upload)
    response.status_code = 204
    return response


async def cancel(ctx: RepositoryRequest) -> Response:
    await ctx.registry.cancel_upload(ctx.name, ctx.target)
    return Response(status_code=204)


def _chunk_start(ctx: RepositoryRequest) -> int | None:
    """The chunk's first byte from Content-Range, checked against its length."""
    header = ctx.request.headers.get("content-range")
    if header is None:
        return None
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if match is None:
        raise UploadInvalid(f"malformed Content-Range {header!r}: expected FIRST-LAST")

    first, last = int(match[1]), int(match[2])
    length = ctx.request.headers.get("content-length", "")
    declared = int(length) if length.isascii() and length.isdigit() else None
    if last < first or (length and declared != last - first + 1):
        raise UploadInvalid(
            f"Content-Range {header!r} does not match Content-Length {length}"
        )
    return first


def _accepted(ctx: RepositoryRequest, upload: UploadStatus) -> Response:
    last = max(upload.size - 1, 0)
    return Response(
        status_code=202,
        headers={
            "Location": ctx.url(f"/v2/{ctx.name}/blobs/uploads/{upload.upload_id}"),
            "Docker-Upload-UUID": upload.upload_id,
            "Range": f"0-{last}",
            "Content-Length": "0",
        },
    )


def _created(ctx: RepositoryRequest, digest: Digest) -> Response:
    return Response(
        status_code=201,
        headers={
            "Location": ctx.url(f"/v2/{ctx.name}/blobs/{digest}"),
            "Docker-Content-Digest": str(digest),
            "Content-Length": "0",
        },
    )


def _unknown_method(ctx: RepositoryRequest) -> Response:
    raise UploadInvalid(
        f"{ctx.request.method} needs /blobs/uploads/ without an upload id"
    )


def _with_id(handler: Handler) -> Handler:
    async def checked(ctx: RepositoryRequest) -> Response:
        if not ctx.target:
            raise UploadUnknown("this request needs an upload id: /blobs/uploads/<id>")
        return await handler(ctx)

    return checked


HANDLERS = {
    "POST": start,
    "PATCH": _with_id(patch),
    "PUT": _with_id(finish),
    "GET": _with_id(status),
    "DELETE": _with_id(cancel),
}
