"""The token endpoint: `GET /token` (Docker token protocol) and `POST /token`
(its OAuth2 form, which docker uses for refresh tokens).

A client asks for scopes; the answer grants what the caller may have of them,
and a partial grant, even an empty one, is not an error: the registry refuses
the request the token does not cover.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from dockyard.api.auth import (
    Caller,
    auth_service,
    client_address,
    identify,
    unauthorized_response,
)
from dockyard.api.errors import (
    error_response,
    registry_error_response,
    unexpected_error_response,
)
from dockyard.api.jsonbody import json_body
from dockyard.core.errors import RegistryError, Unauthorized
from dockyard.services.auth.permissions import Principal
from dockyard.services.auth.scopes import Scope, parse_scopes
from dockyard.services.auth.service import AuthService

# OAuth2 token requests are a few form fields; a longer body is no such request.
_FORM_LIMIT = 64 * 1024


async def token(request: Request) -> Response:
    auth = auth_service(request)
    if auth is None:
        return error_response(
            "UNSUPPORTED", 404, "authentication is off on this registry"
        )
    try:
        if request.method == "POST":
            return await _oauth(request, auth)
        return await _docker(request, auth)
    except Unauthorized as exc:
        return unauthorized_response(request, exc)
    except RegistryError as exc:
        return registry_error_response(exc)
    except ClientDisconnect:
        # Nobody is left to read an answer; the access line records the 400.
        return Response(status_code=400)
    except Exception as exc:
        return unexpected_error_response(exc, f"{request.method} /token")


async def _docker(request: Request, auth: AuthService) -> Response:
    scopes = parse_scopes(request.query_params.getlist("scope"))
    caller = await identify(request, auth)
    if caller.claims is not None:
        raise Unauthorized("log in with Basic credentials, not a token")

    granted = await auth.grant(caller.principal, scopes)
    offline = request.query_params.get("offline_token") == "true"
    refresh = _refresh_token(auth, caller, offline)
    return _answer(auth, caller.principal, granted, refresh)


async def _oauth(request: Request, auth: AuthService) -> Response:
    form = await _form(request)
    if form is None:
        return error_response(
            "UNSUPPORTED", 413, f"a token request has at most {_FORM_LIMIT} bytes"
        )
    grant_type = form.get("grant_type")
    scopes = parse_scopes([str(form.get("scope", ""))])
    address = client_address(request)

    if grant_type == "password":
        username = str(form.get("username", ""))
        password = str(form.get("password", ""))
        principal = await auth.login(username, password, address)
        offline = form.get("access_type") == "offline"
        refresh = _refresh_token(auth, Caller(principal), offline)
    elif grant_type == "refresh_token":
        principal = await auth.refresh(str(form.get("refresh_token", "")))
        refresh = str(form.get("refresh_token"))
    else:
        return error_response(
            "UNSUPPORTED",
            400,
            f"unsupported grant_type {grant_type!r}; use password or refresh_token",
        )
    granted = await auth.grant(principal, scopes)
    return _answer(auth, principal, granted, refresh)


async def _form(request: Request) -> dict[str, str] | None:
    """The urlencoded form OAuth2 clients send, or None if it is too long.

    Parsed here rather than by Starlette, whose form parser needs
    python-multipart, which Dockyard does not depend on.
    """
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _FORM_LIMIT:
            return None
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _refresh_token(auth: AuthService, caller: Caller, offline: bool) -> str | None:
    principal = caller.principal
    if not offline or principal.anonymous:
        return None
    return auth.issue_refresh(principal)


def _answer(
    auth: AuthService, principal: Principal, granted: list[Scope], refresh: str | None
) -> Response:
    issued = datetime.now(UTC)
    signed = auth.issue(principal, granted)
    body: dict[str, object] = {
        "token": signed,
        "access_token": signed,
        "expires_in": auth.token_ttl,
        "issued_at": issued.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if refresh is not None:
        body["refresh_token"] = refresh
    # Tokens are credentials: no cache may keep them.
    return json_body(body, headers={"Cache-Control": "no-store"})
