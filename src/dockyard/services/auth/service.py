"""Authentication and authorization for requests, as the server needs them.

`login` turns a username and password (or access-token secret) into a
`Principal`; `allowed` says what a principal may do to a repository; `grant`
trims the scopes a client asked the token endpoint for to what it may have.
Store calls are blocking, so each public coroutine runs them on a thread.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

import anyio.to_thread

from dockyard.core.errors import NameInvalid, Unauthorized
from dockyard.core.names import check_name
from dockyard.services.audit import Auditor
from dockyard.services.auth.credentials import (
    secret_matches,
    spend_verification,
    token_id_of,
    verify_password,
)
from dockyard.services.auth.permissions import (
    ANONYMOUS,
    Grant,
    Principal,
    allowed_actions,
    expand_actions,
)
from dockyard.services.auth.records import AccessToken, AccountStore, User
from dockyard.services.auth.scopes import PULL, Scope, parse_scope
from dockyard.services.auth.throttle import LoginThrottle
from dockyard.services.auth.tokens import Claims, TokenSigner

CATALOG = Scope("registry", "catalog", frozenset({"*"}))
_VERIFIED_CACHE_SIZE = 1024
# `last_used_at` is written at most this often per token.
_TOUCH_INTERVAL = timedelta(minutes=1)


class AuthService:
    def __init__(
        self,
        store: AccountStore,
        signer: TokenSigner,
        throttle: LoginThrottle,
        auditor: Auditor,
        token_ttl: int,
        refresh_token_ttl: int,
        mirror_namespaces: tuple[str, ...] = (),
    ) -> None:
        self.store = store
        self.signer = signer
        self.auditor = auditor
        self.token_ttl = token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        # Namespaces of pull-through caches that answer unprefixed names.
        self.mirror_namespaces = mirror_namespaces
        self._throttle = throttle
        # Credentials verified in this process, by a hash of the stored hash and
        # the secret: argon2 costs tens of milliseconds, and curl sends Basic
        # credentials on every request. A changed password misses the cache.
        self._verified: OrderedDict[str, None] = OrderedDict()

    async def login(self, username: str, secret: str, address: str | None) -> Principal:
        return await anyio.to_thread.run_sync(self._login, username, secret, address)

    async def principal_for(self, claims: Claims) -> Principal:
        """The caller a token was issued to, as they stand now."""
        return await anyio.to_thread.run_sync(self._principal_for, claims)

    async def allowed(self, principal: Principal, repository: str) -> frozenset[str]:
        public = await anyio.to_thread.run_sync(self.store.is_public, repository)
        return allowed_actions(principal, repository, public)

    async def public_settings(self) -> dict[str, bool]:
        return dict(await anyio.to_thread.run_sync(self.store.list_visibility))

    async def grant(self, principal: Principal, scopes: list[Scope]) -> list[Scope]:
        """What of `scopes` the principal may have; asking for more is no error."""
        settings = await self.public_settings()
        granted: dict[tuple[str, str], frozenset[str]] = {}
        for scope in scopes:
            for kind, name, actions in self._grantable(principal, scope, settings):
                key = (kind, name)
                granted[key] = granted.get(key, frozenset()) | actions
        return [Scope(kind, name, actions) for (kind, name), actions in granted.items()]

    def _grantable(
        self, principal: Principal, scope: Scope, settings: dict[str, bool]
    ) -> list[tuple[str, str, frozenset[str]]]:
        actions = _grantable(principal, scope, settings)
        grants = [(scope.type, scope.name, actions)] if actions else []
        if scope.type != "repository" or not scope.actions & {PULL, "*"}:
            return grants
        if scope.name.partition("/")[0] in self.mirror_namespaces:
            return grants
        # A name a pull-through cache may answer as a mirror: clients ask for
        # tokens by the name they pull, and the registry checks the token
        # against the cache's repository. Granted even when the local name is
        # too: the cache answers whenever no local repository has the name.
        for namespace in self.mirror_namespaces:
            name = f"{namespace}/{scope.name}"
            cached = Scope(scope.type, name, frozenset({PULL}))
            if _grantable(principal, cached, settings):
                grants.append((scope.type, name, frozenset({PULL})))
        return grants

    def issue(self, principal: Principal, access: list[Scope]) -> str:
        return self.signer.issue(
            principal.subject, access, self.token_ttl, principal.token_id
        )

    def issue_refresh(self, principal: Principal) -> str:
        return self.signer.issue(
            principal.subject,
            [],
            self.refresh_token_ttl,
            principal.token_id,
            refresh=True,
        )

    async def refresh(self, refresh_token: str) -> Principal:
        claims = self.signer.verify(refresh_token, refresh=True)
        return await self.principal_for(claims)

    # Blocking parts, run on a worker thread.

    def _login(self, username: str, secret: str, address: str | None) -> Principal:
        # With an access token the username is anything the client likes,
        # often a shared one such as `token`: count failures per token, so
        # nobody can lock out every pipeline by failing as `token`.
        token_id = token_id_of(secret)
        account = f"token:{token_id}" if token_id else username
        with self._throttle.attempt(account, address):
            try:
                principal, verified_now = self._verify(username, secret)
            except Unauthorized as exc:
                self._throttle.failed(account, address)
                self.auditor.record(
                    "login",
                    shown_username(username),
                    outcome="failure",
                    address=address,
                    detail={"reason": exc.message},
                )
                raise
        if verified_now:
            self.auditor.record("login", principal.subject, address=address)
        return principal

    def _verify(self, username: str, secret: str) -> tuple[Principal, bool]:
        token_id = token_id_of(secret)
        if token_id is not None:
            token = self.store.get_token(token_id)
            if token is None or not secret_matches(secret, token.secret_hash):
                raise Unauthorized("invalid access token")
            principal = self._token_principal(token)
            self._touch(token)
            return principal, self._first_use(token.secret_hash)

        user = self.store.get_user(username)
        if user is None:
            spend_verification(secret)
            raise Unauthorized("invalid username or password")
        verified_now = self._check_password(user, secret)
        return self._user_principal(user), verified_now

    def _check_password(self, user: User, password: str) -> bool:
        key = hashlib.sha256(f"{user.password_hash}\0{password}".encode()).hexdigest()
        known = key in self._verified
        if not known and not verify_password(user.password_hash, password):
            raise Unauthorized("invalid username or password")
        return self._first_use(key)

    def _first_use(self, key: str) -> bool:
        """Whether these credentials are new to this process, which audits once."""
        if key in self._verified:
            self._verified.move_to_end(key)
            return False
        self._verified[key] = None
        if len(self._verified) > _VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return True

    def _touch(self, token: AccessToken) -> None:
        now = datetime.now(UTC)
        if token.last_used_at is None or now - token.last_used_at > _TOUCH_INTERVAL:
            self.store.touch_token(token.id)

    def _principal_for(self, claims: Claims) -> Principal:
        if claims.token_id is not None:
            token = self.store.get_token(claims.token_id)
            if token is None:
                raise Unauthorized("the access token behind this token is gone")
            return self._token_principal(token)
        if not claims.subject:
            return ANONYMOUS
        user = self.store.get_user(claims.subject)
        if user is None:
            raise Unauthorized(f"user {claims.subject!r} no longer exists")
        # `iat` has whole seconds: a token issued in the second of the change
        # counts as after it, or one issued just after it would be refused.
        if claims.issued_at < int(user.credentials_changed_at.timestamp()):
            raise Unauthorized("the password changed since this token was issued")
        return self._user_principal(user)

    def _token_principal(self, token: AccessToken) -> Principal:
        now = datetime.now(UTC)
        if token.revoked_at is not None:
            raise Unauthorized(f"access token {token.name!r} was revoked")
        if token.expires_at is not None and token.expires_at <= now:
            expired = token.expires_at.isoformat(timespec="seconds")
            raise Unauthorized(f"access token {token.name!r} expired at {expired}")

        scopes = tuple(token_grants(token.scopes))
        if token.user is None:
            return Principal(token=token.name, token_scopes=scopes, token_id=token.id)
        user = self.store.get_user(token.user)
        if user is None:
            raise Unauthorized(f"access token {token.name!r} has no user")
        owner = self._user_principal(user)
        return Principal(
            owner.name, owner.is_admin, owner.grants, token.name, scopes, token.id
        )

    def _user_principal(self, user: User) -> Principal:
        return Principal(user.name, user.is_admin, self.store.grants_for(user.name))


MAX_USERNAME_SHOWN = 64


def shown_username(username: str) -> str:
    """A claimed username as logs may show it: short, and never a secret
    pasted into the wrong field."""
    token_id = token_id_of(username)
    if token_id is not None or username.startswith("dky_"):
        return f"(an access-token secret, id {token_id or 'unknown'})"
    if len(username) > MAX_USERNAME_SHOWN:
        return username[:MAX_USERNAME_SHOWN] + "…"
    return username


def token_grants(scopes: tuple[str, ...]) -> list[Grant]:
    """An access token's repository scopes as grants (its cap)."""
    grants = []
    for text in scopes:
        scope = parse_scope(text)
        if scope.type == "repository":
            grants.append(Grant(scope.name, scope.actions))
    return grants


def _grantable(
    principal: Principal, scope: Scope, settings: dict[str, bool]
) -> frozenset[str]:
    if scope.type == "registry" and scope.name == "catalog":
        # Anyone may list; the listing holds only what they may pull.
        return scope.actions & {"*"}
    if scope.type != "repository":
        return frozenset()
    try:
        check_name(scope.name)
    except NameInvalid:
        return frozenset()
    allowed = allowed_actions(principal, scope.name, is_public(settings, scope.name))
    if "*" in scope.actions:
        return allowed
    return expand_actions(scope.actions) & allowed if scope.actions else frozenset()


def is_public(settings: dict[str, bool], repository: str) -> bool:
    """A repository's visibility from all settings: its own, else its namespace's."""
    if repository in settings:
        return settings[repository]
    return settings.get(repository.split("/", 1)[0], False)
