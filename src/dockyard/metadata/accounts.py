"""`AccountStore` on SQLAlchemy Core: users, teams, grants, tokens, audit.

Methods are synchronous, one short transaction each; the server calls them on
a worker thread, the command line directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from dockyard.core.names import namespace_of
from dockyard.core.ports import AuditEvent
from dockyard.metadata.schema import (
    access_tokens,
    audit_events,
    grants,
    namespaces,
    team_members,
    teams,
    users,
    visibility,
)
from dockyard.metadata.store import insert_audit_event, utc
from dockyard.services.auth.permissions import Grant
from dockyard.services.auth.records import (
    AccessToken,
    AccountError,
    GrantRecord,
    User,
)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc(moment)


class SqlAccountStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            connection = connection.execution_options(writing=True)
            with connection.begin():
                yield connection

    # Users

    def add_user(self, name: str, password_hash: str, is_admin: bool) -> None:
        now = _now()
        row = {
            "name": name,
            "password_hash": password_hash,
            "is_admin": is_admin,
            "created_at": now,
            "credentials_changed_at": now,
        }
        with self._writing() as connection:
            if _namespace_kind(connection, name) is not None:
                raise AccountError(f"the namespace {name!r} already exists")
            if _user_id(connection, name) is not None:
                raise AccountError(f"user {name!r} already exists")
            connection.execute(insert(users).values(**row))
            connection.execute(
                insert(namespaces).values(name=name, kind="user", created_at=now)
            )

    def get_user(self, name: str) -> User | None:
        with self._reading() as connection:
            row = connection.execute(select(users).where(users.c.name == name)).first()
        return _user(row) if row else None

    def list_users(self) -> list[User]:
        with self._reading() as connection:
            rows = connection.execute(select(users).order_by(users.c.name))
            return [_user(row) for row in rows]

    def set_password(self, name: str, password_hash: str) -> bool:
        values = {"password_hash": password_hash, "credentials_changed_at": _now()}
        with self._writing() as connection:
            statement = update(users).where(users.c.name == name).values(**values)
            return connection.execute(statement).rowcount > 0

    def set_admin(self, name: str, is_admin: bool) -> bool:
        statement = update(users).where(users.c.name == name)
        with self._writing() as connection:
            return connection.execute(statement.values(is_admin=is_admin)).rowcount > 0

    def remove_user(self, name: str) -> bool:
        with self._writing() as connection:
            user_id = _user_id(connection, name)
            if user_id is None:
                return False
            for table in (grants, team_members, access_tokens):
                connection.execute(delete(table).where(table.c.user_id == user_id))
            connection.execute(delete(users).where(users.c.id == user_id))
            connection.execute(
                delete(namespaces).where(
                    namespaces.c.name == name, namespaces.c.kind == "user"
                )
            )
            return True

    def count_users(self) -> int:
        with self._reading() as connection:
            return connection.scalar(select(func.count()).select_from(users)) or 0

    def count_admins(self) -> int:
        query = select(func.count()).select_from(users).where(users.c.is_admin)
        with self._reading() as connection:
            return connection.scalar(query) or 0

    # Namespaces and visibility

    def create_namespace(self, name: str, kind: str) -> None:
        with self._writing() as connection:
            if _namespace_kind(connection, name) is not None:
                raise AccountError(f"the namespace {name!r} already exists")
            connection.execute(
                insert(namespaces).values(name=name, kind=kind, created_at=_now())
            )

    def namespace_kind(self, name: str) -> str | None:
        with self._reading() as connection:
            return _namespace_kind(connection, name)

    def list_namespaces(self) -> list[tuple[str, str]]:
        query = select(namespaces.c.name, namespaces.c.kind).order_by(namespaces.c.name)
        with self._reading() as connection:
            return [(row.name, row.kind) for row in connection.execute(query)]

    def remove_namespace(self, name: str) -> bool:
        statement = delete(namespaces).where(
            namespaces.c.name == name, namespaces.c.kind == "organization"
        )
        with self._writing() as connection:
            return connection.execute(statement).rowcount > 0

    def set_visibility(self, name: str, public: bool) -> None:
        with self._writing() as connection:
            connection.execute(delete(visibility).where(visibility.c.name == name))
            connection.execute(
                insert(visibility).values(name=name, public=public, updated_at=_now())
            )

    def is_public(self, repository: str) -> bool:
        """The repository's own setting, else its namespace's, else private."""
        names = [repository, namespace_of(repository)]
        query = select(visibility.c.name, visibility.c.public).where(
            visibility.c.name.in_(names)
        )
        with self._reading() as connection:
            settings = {row.name: row.public for row in connection.execute(query)}
        for name in names:
            if name in settings:
                return bool(settings[name])
        return False

    def list_visibility(self) -> list[tuple[str, bool]]:
        query = select(visibility.c.name, visibility.c.public).order_by(
            visibility.c.name
        )
        with self._reading() as connection:
            return [(row.name, bool(row.public)) for row in connection.execute(query)]

    # Teams

    def create_team(self, name: str) -> None:
        try:
            with self._writing() as connection:
                connection.execute(insert(teams).values(name=name, created_at=_now()))
        except IntegrityError:
            raise AccountError(f"team {name!r} already exists") from None

    def remove_team(self, name: str) -> bool:
        with self._writing() as connection:
            team_id = _team_id(connection, name)
            if team_id is None:
                return False
            for table in (grants, team_members):
                connection.execute(delete(table).where(table.c.team_id == team_id))
            connection.execute(delete(teams).where(teams.c.id == team_id))
            return True

    def add_member(self, team: str, user: str) -> None:
        with self._writing() as connection:
            team_id, user_id = _team_and_user(connection, team, user)
            connection.execute(
                delete(team_members).where(
                    team_members.c.team_id == team_id, team_members.c.user_id == user_id
                )
            )
            connection.execute(
                insert(team_members).values(team_id=team_id, user_id=user_id)
            )

    def remove_member(self, team: str, user: str) -> bool:
        with self._writing() as connection:
            team_id, user_id = _team_and_user(connection, team, user)
            statement = delete(team_members).where(
                team_members.c.team_id == team_id, team_members.c.user_id == user_id
            )
            return connection.execute(statement).rowcount > 0

    def list_teams(self) -> list[tuple[str, list[str]]]:
        query = (
            select(teams.c.name, users.c.name.label("member"))
            .select_from(teams)
            .outerjoin(team_members, team_members.c.team_id == teams.c.id)
            .outerjoin(users, users.c.id == team_members.c.user_id)
            .order_by(teams.c.name, users.c.name)
        )
        listed: dict[str, list[str]] = {}
        with self._reading() as connection:
            for row in connection.execute(query):
                members = listed.setdefault(row.name, [])
                if row.member is not None:
                    members.append(row.member)
        return list(listed.items())

    # Grants

    def add_grant(
        self, user: str | None, team: str | None, pattern: str, actions: str
    ) -> int:
        with self._writing() as connection:
            row: dict[str, Any] = {
                "pattern": pattern,
                "actions": actions,
                "created_at": _now(),
            }
            if user is not None:
                row["user_id"] = _require(_user_id(connection, user), "user", user)
            else:
                assert team is not None
                row["team_id"] = _require(_team_id(connection, team), "team", team)
            result = connection.execute(insert(grants).values(**row))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def remove_grant(self, grant_id: int) -> GrantRecord | None:
        with self._writing() as connection:
            found = [r for r in _grant_rows(connection) if r.id == grant_id]
            if not found:
                return None
            connection.execute(delete(grants).where(grants.c.id == grant_id))
            return found[0]

    def list_grants(self) -> list[GrantRecord]:
        with self._reading() as connection:
            return _grant_rows(connection)

    def grants_for(self, user: str) -> tuple[Grant, ...]:
        """The user's own grants and those of every team they are in."""
        user_id = select(users.c.id).where(users.c.name == user).scalar_subquery()
        their_teams = select(team_members.c.team_id).where(
            team_members.c.user_id == user_id
        )
        query = select(grants.c.pattern, grants.c.actions).where(
            or_(grants.c.user_id == user_id, grants.c.team_id.in_(their_teams))
        )
        with self._reading() as connection:
            return tuple(
                Grant(row.pattern, frozenset(row.actions.split(",")))
                for row in connection.execute(query)
            )

    # Access tokens

    def create_token(self, token: AccessToken) -> None:
        with self._writing() as connection:
            exists = select(access_tokens.c.id).where(
                access_tokens.c.name == token.name
            )
            if connection.scalar(exists) is not None:
                raise AccountError(f"an access token named {token.name!r} exists")
            user_id = None
            if token.user is not None:
                found = _user_id(connection, token.user)
                user_id = _require(found, "user", token.user)
            connection.execute(
                insert(access_tokens).values(
                    id=token.id,
                    name=token.name,
                    user_id=user_id,
                    secret_hash=token.secret_hash,
                    scopes=" ".join(token.scopes),
                    created_at=token.created_at,
                    expires_at=token.expires_at,
                )
            )

    def get_token(self, token_id: str) -> AccessToken | None:
        query = _token_query().where(access_tokens.c.id == token_id)
        with self._reading() as connection:
            row = connection.execute(query).first()
        return _token(row) if row else None

    def list_tokens(self) -> list[AccessToken]:
        query = _token_query().order_by(access_tokens.c.created_at)
        with self._reading() as connection:
            return [_token(row) for row in connection.execute(query)]

    def revoke_token(self, name_or_id: str) -> AccessToken | None:
        match = or_(
            access_tokens.c.id == name_or_id, access_tokens.c.name == name_or_id
        )
        with self._writing() as connection:
            found = connection.execute(_token_query().where(match)).all()
            # An id is unique and random; prefer it over a name that equals it.
            rows = sorted(found, key=lambda each: each.id != name_or_id)
            row = rows[0] if rows else None
            if row is None:
                return None
            connection.execute(
                update(access_tokens)
                .where(
                    access_tokens.c.id == row.id, access_tokens.c.revoked_at.is_(None)
                )
                .values(revoked_at=_now())
            )
            revoked = connection.execute(
                _token_query().where(access_tokens.c.id == row.id)
            ).first()
            return _token(revoked)

    def touch_token(self, token_id: str) -> None:
        statement = (
            update(access_tokens)
            .where(access_tokens.c.id == token_id)
            .values(last_used_at=_now())
        )
        with self._writing() as connection:
            connection.execute(statement)

    # Audit events

    def record_event(self, event: AuditEvent) -> None:
        with self._writing() as connection:
            insert_audit_event(connection, event)

    def list_events(
        self, limit: int, action: str | None = None, actor: str | None = None
    ) -> list[AuditEvent]:
        query = select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        if action is not None:
            query = query.where(_glob(audit_events.c.action, action))
        if actor is not None:
            query = query.where(audit_events.c.actor == actor)
        with self._reading() as connection:
            return [_event(row) for row in connection.execute(query)]


def _glob(column: Any, pattern: str) -> Any:
    """`*` matches any text; everything else, `%` and `_` included, itself."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped.replace("*", "%"), escape="\\")


def _user_id(connection: Connection, name: str) -> int | None:
    return connection.scalar(select(users.c.id).where(users.c.name == name))


def _team_id(connection: Connection, name: str) -> int | None:
    return connection.scalar(select(teams.c.id).where(teams.c.name == name))


def _namespace_kind(connection: Connection, name: str) -> str | None:
    return connection.scalar(select(namespaces.c.kind).where(namespaces.c.name == name))


def _require(found: int | None, kind: str, name: str) -> int:
    if found is None:
        raise AccountError(f"no {kind} named {name!r}")
    return found


def _team_and_user(connection: Connection, team: str, user: str) -> tuple[int, int]:
    return (
        _require(_team_id(connection, team), "team", team),
        _require(_user_id(connection, user), "user", user),
    )


def _user(row: Any) -> User:
    return User(
        row.id,
        row.name,
        row.password_hash,
        bool(row.is_admin),
        _aware(row.created_at),  # type: ignore[arg-type]
        _aware(row.credentials_changed_at),  # type: ignore[arg-type]
    )


def _grant_rows(connection: Connection) -> list[GrantRecord]:
    query = (
        select(
            grants.c.id,
            grants.c.pattern,
            grants.c.actions,
            users.c.name.label("user"),
            teams.c.name.label("team"),
        )
        .select_from(grants)
        .outerjoin(users, users.c.id == grants.c.user_id)
        .outerjoin(teams, teams.c.id == grants.c.team_id)
        .order_by(grants.c.id)
    )
    return [
        GrantRecord(
            row.id,
            row.user,
            row.team,
            Grant(row.pattern, frozenset(row.actions.split(","))),
        )
        for row in connection.execute(query)
    ]


def _token_query() -> Any:
    return (
        select(access_tokens, users.c.name.label("user"))
        .select_from(access_tokens)
        .outerjoin(users, users.c.id == access_tokens.c.user_id)
    )


def _token(row: Any) -> AccessToken:
    return AccessToken(
        id=row.id,
        name=row.name,
        user=row.user,
        secret_hash=row.secret_hash,
        scopes=tuple(row.scopes.split()),
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
        expires_at=_aware(row.expires_at),
        revoked_at=_aware(row.revoked_at),
        last_used_at=_aware(row.last_used_at),
    )


def _event(row: Any) -> AuditEvent:
    return AuditEvent(
        occurred_at=_aware(row.occurred_at),  # type: ignore[arg-type]
        action=row.action,
        actor=row.actor,
        outcome=row.outcome,
        address=row.address,
        target=row.target,
        detail=json.loads(row.detail) if row.detail else None,
    )
