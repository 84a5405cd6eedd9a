"""GET, HEAD and DELETE /v2/<name>/blobs/<digest>."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator

from starlette.responses import FileResponse, Response, StreamingResponse

from dockyard.api.context import RepositoryRequest
from dockyard.core.digest import Digest
from dockyard.core.errors import RangeNotSatisfiable

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _headers(digest: Digest, size: int) -> dict[str, str]:
    return {
        "Content-Length": str(size),
        "Content-Type": "application/octet-stream",
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        # Content under a digest never changes.
        "Cache-Control": "max-age=31536000",
    }


async def head(ctx: RepositoryRequest) -> Response:
    digest = Digest.parse(ctx.target)
    if ctx.route is not None:
        size = await ctx.route.cache.blob_size(ctx.route, digest)
    else:
        size = await ctx.registry.check_blob(ctx.name, digest)
    return Response(status_code=200, headers=_headers(digest, size))


async def get(ctx: RepositoryRequest) -> Response:
    digest = Digest.parse(ctx.target)
    if ctx.route is not None:
        return await _get_cached(ctx, digest)
    size = await ctx.registry.stat_blob(ctx.name, digest)
    headers = _headers(digest, size)

    requested = ctx.request.headers.get("range")
    byte_range = parse_range(requested, size) if requested else None
    if byte_range is None:
        return await _whole(ctx, digest, headers, sendable=requested is None)

    start, end = byte_range
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    body = await ctx.registry.open_blob(digest, start, end - start + 1)
    return StreamingResponse(body, status_code=206, headers=headers)


class _Streams:
    """Whole blobs this process is streaming from Python right now."""

    active = 0


async def _whole(
    ctx: RepositoryRequest, digest: Digest, headers: dict[str, str], sendable: bool
) -> Response:
    """A whole blob: streamed from Python when it is the process's only
    one, else sent by the server itself (ASGI pathsend).

    Python reads 1 MiB at a time, the server 128 KiB, so a lone pull is no
    slower through Python; with several at once the server's own threads,
    which need no interpreter lock, measured about 15% faster (figures in
    docs/performance.md).
    """
    # Not with a Range header, even one answered whole: FileResponse would
    # answer it itself.
    extensions = ctx.request.scope.get("extensions", {})
    sendable = sendable and "http.response.pathsend" in extensions
    path = ctx.registry.blobs.local_path(digest)
    if path is not None and sendable and _Streams.active > 0:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            pass  # lost from storage: open_blob says so
        else:
            return FileResponse(path, headers=headers, stat_result=stat)
    body = await ctx.registry.open_blob(digest)
    return StreamingResponse(_counted(body), headers=headers)


async def _counted(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    _Streams.active += 1
    try:
        async for chunk in body:
            yield chunk
    finally:
        _Streams.active -= 1


async def _get_cached(ctx: RepositoryRequest, digest: Digest) -> Response:
    """A blob from a pull-through cache, streamed while it is fetched."""
    assert ctx.route is not None
    cache = ctx.route.cache
    size, fetch = await cache.pull_blob(ctx.route, digest)
    if size is None:
        # The upstream did not say how long the blob is: no ranges then.
        body = await cache.read_blob(digest, 0, None, fetch)
        headers = _headers(digest, 0)
        del headers["Content-Length"], headers["Accept-Ranges"]
        return StreamingResponse(body, headers=headers)

    headers = _headers(digest, size)
    requested = ctx.request.headers.get("range")
    byte_range = parse_range(requested, size) if requested else None
    if byte_range is None:
        return StreamingResponse(
            await cache.read_blob(digest, 0, size, fetch), headers=headers
        )

    start, end = byte_range
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    body = await cache.read_blob(digest, start, end - start + 1, fetch)
    return StreamingResponse(body, status_code=206, headers=headers)


async def delete(ctx: RepositoryRequest) -> Response:
    digest = Digest.parse(ctx.target)
    await ctx.registry.delete_blob(ctx.name, digest)
    await ctx.audit("delete", f"{ctx.name}@{digest}")
    return Response(status_code=202, headers={"Content-Length": "0"})


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One byte range as (first, last), inclusive; None to send the whole blob.

    Several ranges are answered with the whole blob, which HTTP allows; a
    malformed or unsatisfiable range raises `RangeNotSatisfiable`.
    """
    header = header.strip()
    if "," in header:
        return None
    match = _RANGE.fullmatch(header)
    if match is None or match.groups() == ("", ""):
        raise RangeNotSatisfiable(
            f"malformed Range {header!r}: expected bytes=FIRST-LAST, bytes=FIRST- "
            "or bytes=-SUFFIX",
            size,
        )

    first, last = match.groups()
    if first == "":
        length = int(last)
        if length == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(size - length, 0), size - 1

    start = int(first)
    end = int(last) if last else size - 1
    if end < start:
        raise RangeNotSatisfiable(
            f"malformed Range {header!r}: last before first", size
        )
    if start >= size:
        raise _unsatisfiable(header, size)
    return start, min(end, size - 1)


def _unsatisfiable(header: str, size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"Range {header!r} is outside the blob, which is {size} bytes", size
    )


HANDLERS = {"GET": get, "HEAD": head, "DELETE": delete}
