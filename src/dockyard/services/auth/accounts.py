"""Managing users, teams, grants, visibility and access tokens.

The command line calls these (and a management API can); each change that
touches who may do what is checked here and recorded as an audit event.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

from dockyard.core.errors import RegistryError
from dockyard.core.names import check_name
from dockyard.services.audit import Auditor
from dockyard.services.auth.credentials import hash_password, new_token_secret
from dockyard.services.auth.permissions import ALL_ACTIONS
from dockyard.services.auth.records import (
    AccessToken,
    AccountError,
    AccountStore,
    GrantRecord,
    User,
)
from dockyard.services.auth.scopes import format_actions, parse_scope

MIN_PASSWORD_LENGTH = 8
LOGIN_PASSWORD_TTL = timedelta(hours=12)
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TEAM_NAME = TOKEN_NAME


class Accounts:
    def __init__(self, store: AccountStore, auditor: Auditor, actor: str) -> None:
        self.store = store
        self._auditor = auditor
        self._actor = actor

    # Users

    def add_user(self, name: str, password: str, is_admin: bool = False) -> None:
        _check_namespace_name(name)
        _check_password(password)
        self.store.add_user(name, hash_password(password), is_admin)
        self._audit("user.add", name, {"admin": is_admin})

    def set_password(self, name: str, password: str) -> None:
        _check_password(password)
        if not self.store.set_password(name, hash_password(password)):
            raise AccountError(f"no user named {name!r}")
        self._audit("user.passwd", name)

    def set_admin(self, name: str, is_admin: bool) -> None:
        if not self.store.set_admin(name, is_admin):
            raise AccountError(f"no user named {name!r}")
        self._audit("user.admin", name, {"admin": is_admin})

    def remove_user(self, name: str) -> None:
        if not self.store.remove_user(name):
            raise AccountError(f"no user named {name!r}")
        self._audit("user.remove", name)

    def list_users(self) -> list[User]:
        return self.store.list_users()

    # Access tokens

    def create_token(
        self,
        name: str,
        scopes: list[str],
        ttl: timedelta | None,
        user: str | None = None,
    ) -> tuple[AccessToken, str]:
        """A new token and its secret, which is shown once and never kept."""
        if not TOKEN_NAME.fullmatch(name):
            raise AccountError(
                f"invalid token name {name!r}: up to 64 letters, digits, . _ -"
            )
        checked = [_check_token_scope(scope) for scope in scopes]
        if not checked:
            raise AccountError("give at least one --scope")

        token_id, secret, secret_hash = new_token_secret()
        now = datetime.now(UTC)
        expires_at = now + ttl if ttl is not None else None
        token = AccessToken(
            token_id, name, user, secret_hash, tuple(checked), now, expires_at
        )
        self.store.create_token(token)
        self._audit("token.create", name, {"id": token_id, "scopes": checked})
        return token, secret

    def login_password(self, user: str, ttl: timedelta = LOGIN_PASSWORD_TTL) -> str:
        """A token with all of `user`'s rights, for `podman login --password-stdin`."""
        if self.store.get_user(user) is None:
            raise AccountError(f"no user named {user!r}")
        # Random first, so that a long user name cannot cut it off.
        name = f"login-{secrets.token_hex(6)}-{user}"[:64]
        _, secret = self.create_token(name, ["repository:*:*"], ttl, user)
        return secret

    def revoke_token(self, name_or_id: str) -> AccessToken:
        token = self.store.revoke_token(name_or_id)
        if token is None:
            raise AccountError(f"no access token named {name_or_id!r}")
        self._audit("token.revoke", token.name, {"id": token.id})
        return token

    def list_tokens(self) -> list[AccessToken]:
        return self.store.list_tokens()

    # Namespaces, visibility, teams and grants

    def create_namespace(self, name: str) -> None:
        _check_namespace_name(name)
        if self.store.get_user(name) is not None:
            raise AccountError(f"{name!r} is a user's namespace")
        self.store.create_namespace(name, "organization")
        self._audit("namespace.create", name)

    def set_visibility(self, name: str, public: bool) -> None:
        """`name` is a namespace or a repository."""
        _check_repository_name(name)
        self.store.set_visibility(name, public)
        self._audit("visibility.set", name, {"public": public})

    def create_team(self, name: str) -> None:
        if not _TEAM_NAME.fullmatch(name):
            raise AccountError(f"invalid team name {name!r}")
        self.store.create_team(name)
        self._audit("team.create", name)

    def remove_team(self, name: str) -> None:
        if not self.store.remove_team(name):
            raise AccountError(f"no team named {name!r}")
        self._audit("team.remove", name)

    def add_member(self, team: str, user: str) -> None:
        self.store.add_member(team, user)
        self._audit("team.add-member", team, {"user": user})

    def remove_member(self, team: str, user: str) -> None:
        if not self.store.remove_member(team, user):
            raise AccountError(f"{user!r} is not in team {team!r}")
        self._audit("team.remove-member", team, {"user": user})

    def grant(
        self, user: str | None, team: str | None, pattern: str, actions: str
    ) -> int:
        if (user is None) == (team is None):
            raise AccountError("grant to exactly one user or one team")
        _check_pattern(pattern)
        checked = _check_actions(actions)
        grant_id = self.store.add_grant(user, team, pattern, checked)
        subject = f"user:{user}" if user else f"team:{team}"
        detail = {"id": grant_id, "to": subject, "actions": checked}
        self._audit("permission.grant", pattern, detail)
        return grant_id

    def revoke_grant(self, grant_id: int) -> GrantRecord:
        record = self.store.remove_grant(grant_id)
        if record is None:
            raise AccountError(f"no grant with id {grant_id}")
        self._audit("permission.revoke", record.grant.pattern, {"id": grant_id})
        return record

    def _audit(
        self, action: str, target: str, detail: dict[str, object] | None = None
    ) -> None:
        self._auditor.record(action, self._actor, target=target, detail=detail)


def _check_namespace_name(name: str) -> None:
    """User names are namespace names: lowercase, one path component."""
    try:
        check_name(name)
    except RegistryError:
        raise AccountError(
            f"invalid name {name!r}: use lowercase letters, digits and . _ - "
            "(it names a namespace)"
        ) from None
    if "/" in name:
        raise AccountError(f"invalid name {name!r}: a namespace has no '/'")


def _check_repository_name(name: str) -> None:
    try:
        check_name(name)
    except RegistryError as exc:
        raise AccountError(exc.message) from None


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")


def _check_pattern(pattern: str) -> None:
    """A namespace, a repository, or a glob of repositories."""
    if not re.fullmatch(r"[a-z0-9._/*?-]+", pattern) or pattern.startswith("/"):
        raise AccountError(
            f"invalid pattern {pattern!r}: a namespace, a repository or a glob "
            "such as team/app-*"
        )


def _check_actions(actions: str) -> str:
    parsed = {action.strip() for action in actions.split(",") if action.strip()}
    unknown = parsed - ALL_ACTIONS
    if not parsed or unknown:
        raise AccountError(
            f"invalid actions {actions!r}: use pull, push, delete or admin, "
            "joined by commas"
        )
    return format_actions(parsed)


def _check_token_scope(text: str) -> str:
    try:
        scope = parse_scope(text)
    except RegistryError as exc:
        raise AccountError(exc.message) from None
    if scope.type != "repository":
        raise AccountError(f"scope {text!r}: only repository scopes are supported")
    _check_pattern(scope.name)
    if scope.actions != {"*"}:
        _check_actions(",".join(scope.actions))
    return str(scope)
