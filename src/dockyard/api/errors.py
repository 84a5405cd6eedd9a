"""Domain errors to spec error codes: the one table, and the one JSON writer.

Every error response has the spec's body, `{"errors": [{"code", "message",
"detail"}]}`. An exception the table does not know is a bug: it is logged with
its traceback and answered with a 500 `UNKNOWN` that reveals nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from starlette.responses import Response

from dockyard.core import errors

logger = logging.getLogger(__name__)

HeaderMaker = Callable[[Any], Mapping[str, str]]


def _content_range(exc: Any) -> Mapping[str, str]:
    return {"Content-Range": f"bytes */{exc.size}"}


def _retry_after(exc: Any) -> Mapping[str, str]:
    return {"Retry-After": str(exc.retry_after)}


def _upload_range(exc: Any) -> Mapping[str, str]:
    return {"Range": f"0-{max(exc.size - 1, 0)}"}


ERROR_TABLE: dict[type[errors.RegistryError], tuple[str, int, HeaderMaker | None]] = {
    errors.NameInvalid: ("NAME_INVALID", 400, None),
    errors.NameUnknown: ("NAME_UNKNOWN", 404, None),
    errors.TagInvalid: ("TAG_INVALID", 400, None),
    errors.DigestInvalid: ("DIGEST_INVALID", 400, None),
    errors.BlobUnknown: ("BLOB_UNKNOWN", 404, None),
    errors.UploadUnknown: ("BLOB_UPLOAD_UNKNOWN", 404, None),
    errors.UploadInvalid: ("BLOB_UPLOAD_INVALID", 400, None),
    errors.UploadOffsetMismatch: ("BLOB_UPLOAD_INVALID", 416, _upload_range),
    errors.RangeNotSatisfiable: ("RANGE_INVALID", 416, _content_range),
    errors.SizeInvalid: ("SIZE_INVALID", 400, None),
    errors.ManifestUnknown: ("MANIFEST_UNKNOWN", 404, None),
    errors.ManifestInvalid: ("MANIFEST_INVALID", 400, None),
    errors.ManifestBlobUnknown: ("MANIFEST_BLOB_UNKNOWN", 400, None),
    errors.ManifestTooLarge: ("SIZE_INVALID", 413, None),
    errors.PaginationInvalid: ("PAGINATION_NUMBER_INVALID", 400, None),
    # The edge adds the WWW-Authenticate challenge, which needs the request.
    errors.Unauthorized: ("UNAUTHORIZED", 401, None),
    errors.Denied: ("DENIED", 403, None),
    errors.TooManyRequests: ("TOOMANYREQUESTS", 429, _retry_after),
    errors.ScopeInvalid: ("UNSUPPORTED", 400, None),
    errors.LifecyclePolicyUnknown: ("POLICY_UNKNOWN", 404, None),
    errors.LifecyclePolicyInvalid: ("POLICY_INVALID", 400, None),
    # Distribution's code for a registry that cannot answer for now.
    errors.UpstreamUnavailable: ("UNAVAILABLE", 502, None),
}


def error_body(code: str, message: str, detail: object = None) -> bytes:
    entry = {"code": code, "message": message, "detail": detail}
    return json.dumps({"errors": [entry]}).encode()


def error_response(
    code: str,
    status: int,
    message: str,
    detail: object = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(code, message, detail),
        status_code=status,
        headers=dict(headers or {}),
        media_type="application/json",
    )


def registry_error_response(
    exc: errors.RegistryError, headers: Mapping[str, str] | None = None
) -> Response:
    code, status, make_headers = _lookup(type(exc))
    all_headers = dict(headers or {})
    if make_headers is not None:
        all_headers.update(make_headers(exc))
    return error_response(code, status, exc.message, exc.detail, all_headers)


def _lookup(kind: type) -> tuple[str, int, HeaderMaker | None]:
    for cls in kind.__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return ("UNKNOWN", 500, None)


def unexpected_error_response(exc: BaseException, where: str) -> Response:
    logger.error("unexpected error in %s", where, exc_info=exc)
    return error_response("UNKNOWN", 500, "internal server error; see the server log")
