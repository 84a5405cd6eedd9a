"""Who is calling, and may they: the auth step of the dispatcher.

Clients follow the Docker token protocol: a request without credentials gets
401 with a `WWW-Authenticate: Bearer realm=...,service=...,scope=...`
challenge, the client fetches a token from the realm and retries with it.
Basic credentials are accepted on every request too, for curl and simple
clients. The answers are the ones clients already explain to users:

- no credentials, or a token that does not cover the request but would be
  granted it: 401 `UNAUTHORIZED` and a challenge naming the scope needed;
- a known caller without the right: 403 `DENIED`.

Neither depends on whether the repository exists.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from dockyard.api.errors import registry_error_response
from dockyard.core.errors import Denied, RegistryError, Unauthorized
from dockyard.services.auth.permissions import ANONYMOUS, Principal
from dockyard.services.auth.scopes import PULL, PUSH, Scope, format_actions
from dockyard.services.auth.service import AuthService
from dockyard.services.auth.tokens import Claims


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated (or anonymous) caller and how they proved it."""

    principal: Principal
    # Set for a Bearer token, whose `access` claim bounds the request.
    claims: Claims | None = None

    @property
    def actor(self) -> str:
        return self.principal.subject or "anonymous"

    async def may(self, auth: AuthService, repository: str, actions: set[str]) -> bool:
        if self.claims is not None:
            return actions <= token_actions(self.claims, repository)
        return actions <= await auth.allowed(self.principal, repository)


def auth_service(request: Request) -> AuthService | None:
    """The auth service, or None when authentication is off."""
    service: AuthService | None = request.app.state.auth
    return service


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def identify(request: Request, auth: AuthService, scope: str = "") -> Caller:
    """The caller behind the request's credentials; `Unauthorized` if they fail."""
    header = request.headers.get("authorization")
    if header is None:
        return Caller(ANONYMOUS)
    kind, _, value = header.partition(" ")
    kind = kind.lower()
    try:
        if kind == "bearer":
            claims = auth.signer.verify(value.strip())
            if claims.token_id is not None:
                await _check_access_token(auth, claims)
            return Caller(_token_principal(claims), claims)
        if kind == "basic":
            username, password = _basic(value.strip())
            principal = await auth.login(username, password, client_address(request))
            return Caller(principal)
    except Unauthorized as exc:
        raise Unauthorized(exc.message, scope, exc.reason) from None
    raise Unauthorized("unsupported Authorization scheme; use Bearer or Basic", scope)


async def authorize(
    request: Request,
    auth: AuthService,
    repository: str,
    actions: set[str],
    caller: Caller | None = None,
) -> Caller:
    """The caller, if they may take `actions` on `repository`; else raise.

    `caller`, if given, was identified already.
    """
    scope = challenge_scope(repository, actions)
    caller = caller or await identify(request, auth, scope)
    if await caller.may(auth, repository, actions):
        return caller

    if caller.claims is not None:
        # A token for less than the caller could have: ask for a new one.
        principal = await auth.principal_for(caller.claims)
        if actions <= await auth.allowed(principal, repository):
            raise Unauthorized(
                "the token does not cover this request", scope, "insufficient_scope"
            )
    raise refusal(caller.principal, scope)


async def authorize_cached_pull(
    request: Request, auth: AuthService, caller: Caller, requested: str, cached: str
) -> None:
    """A pull of `requested` that a pull-through cache answers, as a mirror,
    from its repository `cached`: the caller needs pull there. Clients ask
    for tokens by the name they pull, so the challenge names `requested`, and
    the token endpoint grants the cache's repository for it."""
    try:
        await authorize(request, auth, cached, {PULL}, caller)
    except Unauthorized as exc:
        scope = challenge_scope(requested, {PULL})
        raise Unauthorized(exc.message, scope, exc.reason) from None


def refusal(principal: Principal, scope: str) -> RegistryError:
    if principal.anonymous:
        return Unauthorized("authentication required; log in first", scope)
    return Denied("requested access to the resource is denied")


def challenge_scope(repository: str, actions: set[str]) -> str:
    # Clients ask for pull with push: an upload checks what it may mount.
    asked = actions | {PULL} if PUSH in actions else actions
    return f"repository:{repository}:{format_actions(asked)}"


def token_actions(claims: Claims, repository: str) -> set[str]:
    actions: set[str] = set()
    for entry in claims.access:
        if entry.type == "repository" and entry.name == repository:
            actions |= entry.actions
    return actions


def token_allows(claims: Claims, wanted: Scope) -> bool:
    return any(
        entry.type == wanted.type
        and entry.name == wanted.name
        and wanted.actions <= entry.actions
        for entry in claims.access
    )


def unauthorized_response(request: Request, exc: Unauthorized) -> Response:
    return registry_error_response(exc, {"WWW-Authenticate": challenge(request, exc)})


def challenge(request: Request, exc: Unauthorized) -> str:
    auth = request.app.state.auth
    realm = auth_realm(request)
    parts = [f'realm="{realm}"', f'service="{auth.signer.service}"']
    if exc.scope:
        parts.append(f'scope="{exc.scope}"')
    if exc.reason:
        parts.append(f'error="{exc.reason}"')
    return "Bearer " + ",".join(parts)


def auth_realm(request: Request) -> str:
    configured: str | None = request.app.state.config.auth.realm
    return configured or str(request.base_url).rstrip("/") + "/token"


async def _check_access_token(auth: AuthService, claims: Claims) -> None:
    """Revoking or expiring an access token ends the JWTs issued for it too."""
    try:
        await auth.principal_for(claims)
    except Unauthorized as exc:
        raise Unauthorized(exc.message, reason="invalid_token") from None


def _token_principal(claims: Claims) -> Principal:
    """Who a token names; enough for audit lines, not for permission checks."""
    subject = claims.subject
    if subject.startswith("token:"):
        name = subject.removeprefix("token:")
        return Principal(token=name, token_id=claims.token_id)
    return Principal(subject or None, token_id=claims.token_id)


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError):
        # ValueError covers non-ASCII input and UnicodeDecodeError alike.
        raise Unauthorized("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise Unauthorized("malformed Basic credentials")
    return username, password
