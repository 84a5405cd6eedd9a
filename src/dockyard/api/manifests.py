"""PUT, GET, HEAD and DELETE /v2/<name>/manifests/<reference>."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dockyard.api.context import RepositoryRequest
from dockyard.core.digest import Digest
from dockyard.core.errors import ManifestTooLarge, SizeInvalid
from dockyard.core.names import parse_reference
from dockyard.core.ports import AuditEvent, StoredManifest


def _headers(manifest: StoredManifest) -> dict[str, str]:
    return {
        "Content-Type": manifest.media_type,
        "Content-Length": str(len(manifest.content)),
        "Docker-Content-Digest": str(manifest.digest),
        "ETag": f'"{manifest.digest}"',
    }


async def get(ctx: RepositoryRequest) -> Response:
    manifest = await _find(ctx)
    # A GET is a pull; a HEAD only asks whether the tag moved.
    await ctx.registry.note_pull(ctx.name, manifest.digest)
    return Response(manifest.content, headers=_headers(manifest))


async def head(ctx: RepositoryRequest) -> Response:
    reference = parse_reference(ctx.target)
    if ctx.route is not None:
        manifest = await ctx.route.cache.manifest(ctx.route, reference)
    else:
        manifest = await ctx.registry.check_manifest(ctx.name, reference)
    return Response(headers=_headers(manifest))


async def _find(ctx: RepositoryRequest) -> StoredManifest:
    reference = parse_reference(ctx.target)
    if ctx.route is not None:
        return await ctx.route.cache.manifest(ctx.route, reference)
    return await ctx.registry.get_manifest(ctx.name, reference)


async def put(ctx: RepositoryRequest) -> Response:
    reference = parse_reference(ctx.target)
    body = await _read_body(ctx.request, ctx.registry.max_manifest_bytes)
    extra_tags = ctx.request.query_params.getlist("tag")
    tags = [t for t in (reference, *extra_tags) if isinstance(t, str)]

    def pushed(digest: Digest) -> AuditEvent:
        return ctx.audit_event("push", f"{ctx.name}@{digest}", tags=tags)

    result = await ctx.registry.put_manifest(
        ctx.name,
        reference,
        body,
        ctx.request.headers.get("content-type"),
        extra_tags,
        audit=pushed,
    )

    headers = {
        "Location": ctx.url(f"/v2/{ctx.name}/manifests/{result.digest}"),
        "Docker-Content-Digest": str(result.digest),
        "Content-Length": "0",
    }
    if result.subject is not None:
        headers["OCI-Subject"] = str(result.subject)
    if extra_tags:
        # The spec asks for OCI-Tag naming each tag a `?tag=` PUT accepted.
        headers["OCI-Tag"] = ", ".join(dict.fromkeys(extra_tags))

    if result.audit is not None:
        ctx.audited(result.audit)
    return Response(status_code=201, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The manifest body, refused as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and not (declared.isascii() and declared.isdigit()):
        raise SizeInvalid(f"Content-Length {declared!r} is not a number")
    if declared is not None and int(declared) > limit:
        raise _too_large(int(declared), limit)

    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(len(body), limit)
    return bytes(body)


def _too_large(size: int, limit: int) -> ManifestTooLarge:
    return ManifestTooLarge(
        f"manifest is over the limit of {limit} bytes ({size} bytes or more)"
    )


async def delete(ctx: RepositoryRequest) -> Response:
    reference = parse_reference(ctx.target)
    await ctx.registry.delete_manifest(ctx.name, reference)
    separator = "@" if isinstance(reference, Digest) else ":"
    await ctx.audit("delete", f"{ctx.name}{separator}{reference}")
    return Response(status_code=202, headers={"Content-Length": "0"})


HANDLERS = {"GET": get, "HEAD": head, "PUT": put, "DELETE": delete}
