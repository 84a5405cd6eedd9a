"""Scopes as the Docker token protocol spells them: `TYPE[(CLASS)]:NAME:ACTIONS`.

A client asks for scopes at the token endpoint (`scope=repository:app:pull,push`)
and the registry names the scope a request needed in its challenge. Names may
contain colons (`repository:localhost:5000/app:pull` in some clients), so the
type ends at the first colon and the actions begin after the last one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.core.errors import ScopeInvalid

PULL, PUSH, DELETE, ADMIN = "pull", "push", "delete", "admin"
REPOSITORY_ACTIONS = (PULL, PUSH, DELETE)

_TYPE = re.compile(r"^(?P<type>[a-z0-9]+)(?:\((?P<class>[a-zA-Z0-9]+)\))?$")
_ACTION = re.compile(r"^(?:[a-z]+|\*)$")


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{format_actions(self.actions)}"

    def to_json(self) -> dict[str, object]:
        """The entry of a token's `access` claim."""
        return {
            "type": self.type,
            "name": self.name,
            "actions": sorted(self.actions, key=_action_order),
        }


def parse_scope(text: str) -> Scope:
    """One scope; `ScopeInvalid` names what is wrong with it."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    match = _TYPE.fullmatch(kind)
    if not (sep and sep2 and name and match):
        raise ScopeInvalid(
            f"scope {text!r} is not TYPE:NAME:ACTIONS, "
            "for example repository:team/app:pull,push"
        )

    parsed = frozenset(a for a in actions.split(",") if a)
    bad = [action for action in parsed if not _ACTION.fullmatch(action)]
    if bad:
        raise ScopeInvalid(f"scope {text!r} has a malformed action {bad[0]!r}")
    return Scope(match["type"], name, parsed)


# Clients ask for one scope, two for a cross-repository mount; a request for
# hundreds would only make a huge token.
MAX_SCOPES = 32


def parse_scopes(values: list[str]) -> list[Scope]:
    """Scopes from repeated parameters, each possibly space-separated (OAuth2)."""
    parts = [part for value in values for part in value.split()]
    if len(parts) > MAX_SCOPES:
        raise ScopeInvalid(f"{len(parts)} scopes asked for; the limit is {MAX_SCOPES}")
    return [parse_scope(part) for part in parts]


def format_actions(actions: frozenset[str] | set[str]) -> str:
    return ",".join(sorted(actions, key=_action_order))


def _action_order(action: str) -> tuple[int, str]:
    order = (PULL, PUSH, DELETE, ADMIN, "*")
    return (order.index(action) if action in order else len(order), action)
