"""Who may do what to which repository: the rules, with no storage behind them.

- An admin may do everything.
- A user owns the namespace of their name: every action on `alice` and
  `alice/...`.
- Grants give actions to users and teams on a namespace (`team`: the
  repository `team` and everything under `team/`) or on a repository glob
  (`team/app-*`; `*` and `?` match across slashes, like the token scopes users
  already write).
- `admin` on a namespace or glob includes pull, push and delete.
- An access token can do at most what its scopes say, and, when it belongs to
  a user, at most what that user can do.
- Anyone, logged in or not, may pull a public repository.

Nothing here depends on whether a repository exists, so a caller without
rights gets the same answer for a repository that exists and one that does not.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from dockyard.core.names import namespace_of
from dockyard.services.auth.scopes import ADMIN, PULL, REPOSITORY_ACTIONS

ALL_ACTIONS = frozenset((*REPOSITORY_ACTIONS, ADMIN))


def expand_actions(actions: frozenset[str]) -> frozenset[str]:
    """`admin` and `*` stand for every action."""
    if ADMIN in actions or "*" in actions:
        return ALL_ACTIONS
    return actions & ALL_ACTIONS


@dataclass(frozen=True, slots=True)
class Grant:
    pattern: str
    actions: frozenset[str]

    def covers(self, repository: str) -> bool:
        return pattern_covers(self.pattern, repository)


def pattern_covers(pattern: str, repository: str) -> bool:
    if any(char in pattern for char in "*?["):
        return fnmatch.fnmatchcase(repository, pattern)
    return repository == pattern or repository.startswith(pattern + "/")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request, with everything needed to decide access.

    `name` is None for an anonymous caller or a robot token. `token` names the
    access token used, if any; `token_scopes` is then its cap.
    """

    name: str | None = None
    is_admin: bool = False
    grants: tuple[Grant, ...] = ()
    token: str | None = None
    token_scopes: tuple[Grant, ...] | None = None
    token_id: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.name is None and self.token is None

    @property
    def subject(self) -> str:
        """The JWT `sub`: the user, a robot token's name, or empty."""
        if self.name is not None:
            return self.name
        return f"token:{self.token}" if self.token else ""


ANONYMOUS = Principal()


def allowed_actions(
    principal: Principal, repository: str, public: bool
) -> frozenset[str]:
    """The actions `principal` may take on `repository`."""
    actions = _own_actions(principal, repository)
    if principal.token_scopes is not None:
        actions &= _granted(principal.token_scopes, repository)
    if public:
        actions |= {PULL}
    return actions


def _own_actions(principal: Principal, repository: str) -> frozenset[str]:
    if principal.is_admin:
        return ALL_ACTIONS
    if principal.name and namespace_of(repository) == principal.name:
        return ALL_ACTIONS
    if principal.name is None and principal.token_scopes is not None:
        # A robot token belongs to nobody: its scopes are all it has.
        return _granted(principal.token_scopes, repository)
    return _granted(principal.grants, repository)


def _granted(grants: tuple[Grant, ...], repository: str) -> frozenset[str]:
    actions: frozenset[str] = frozenset()
    for grant in grants:
        if grant.covers(repository):
            actions |= expand_actions(grant.actions)
    return actions
