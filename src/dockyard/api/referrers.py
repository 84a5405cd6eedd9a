"""GET /v2/<name>/referrers/<digest>: the manifests whose subject it is."""

from __future__ import annotations

from starlette.responses import Response

from dockyard.api.context import RepositoryRequest
from dockyard.api.jsonbody import json_body
from dockyard.api.pagination import next_link, page_request
from dockyard.core.digest import Digest
from dockyard.core.manifest import OCI_INDEX

# Descriptors per page; each is a few hundred bytes, so a page stays far
# below the manifest size limit clients apply to the index.
DEFAULT_PAGE = 1000


async def list_referrers(ctx: RepositoryRequest) -> Response:
    subject = Digest.parse(ctx.target)
    artifact_type = ctx.request.query_params.get("artifactType") or None
    limit, last = page_request(ctx.request, DEFAULT_PAGE)
    limit = DEFAULT_PAGE if limit is None else limit

    found = []
    if limit > 0:
        found = await ctx.registry.list_referrers(
            ctx.name, subject, artifact_type, limit + 1, last
        )

    headers = {}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    if len(found) > limit:
        found = found[:limit]
        query = {"artifactType": artifact_type} if artifact_type else {}
        headers["Link"] = next_link(ctx.request, limit, str(found[-1].digest), **query)

    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor.to_json() for descriptor in found],
    }
    return json_body(index, headers, OCI_INDEX)


HANDLERS = {"GET": list_referrers}
