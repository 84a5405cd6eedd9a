"""`SqlAccountStore` round trips on a freshly migrated SQLite database."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, func, select

from dockyard.core.ports import AuditEvent
from dockyard.metadata.accounts import SqlAccountStore
from dockyard.metadata.migrate import upgrade
from dockyard.metadata.schema import access_tokens, grants, team_members
from dockyard.metadata.store import create_db_engine
from dockyard.services.auth.permissions import Grant
from dockyard.services.auth.records import AccessToken, AccountError


@pytest.fixture
def store(tmp_path) -> SqlAccountStore:
    url = f"sqlite:///{tmp_path / 'dockyard.db'}"
    upgrade(create_engine(url))
    return SqlAccountStore(create_db_engine(url))


def token(token_id: str, name: str, user: str | None = None) -> AccessToken:
    return AccessToken(
        token_id,
        name,
        user,
        "hash-" + token_id,
        ("repository:team/*:pull,push",),
        datetime.now(UTC),
        datetime.now(UTC) + timedelta(hours=1),
    )


def event(action: str, actor: str = "alice", **fields) -> AuditEvent:
    return AuditEvent(datetime.now(UTC), action, actor, **fields)


def rows(store: SqlAccountStore, table) -> int:
    with store.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(table))


# Users


def test_add_and_get_user(store):
    store.add_user("alice", "argon-hash", is_admin=True)

    user = store.get_user("alice")

    assert user is not None
    assert (user.password_hash, user.is_admin) == ("argon-hash", True)
    assert user.created_at.tzinfo is not None
    assert abs(user.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert store.namespace_kind("alice") == "user"
    assert store.get_user("bob") is None
    assert (store.count_users(), store.count_admins()) == (1, 1)


def test_duplicate_user_is_refused(store):
    store.add_user("alice", "h", False)

    with pytest.raises(AccountError, match="already exists"):
        store.add_user("alice", "h2", False)
    assert store.get_user("alice").password_hash == "h"


def test_user_cannot_take_an_organisation_namespace(store):
    store.create_namespace("acme", "organization")

    with pytest.raises(AccountError, match="namespace 'acme' already exists"):
        store.add_user("acme", "h", False)
    assert store.get_user("acme") is None
    assert store.list_namespaces() == [("acme", "organization")]


def test_set_password_moves_credentials_changed_at(store):
    store.add_user("alice", "old", False)
    before = store.get_user("alice")

    assert store.set_password("alice", "new")

    after = store.get_user("alice")
    assert after.password_hash == "new"
    assert after.credentials_changed_at > before.credentials_changed_at
    assert not store.set_password("nobody", "new")


def test_remove_user_removes_what_was_theirs(store):
    for name in ("alice", "bob"):
        store.add_user(name, "h", False)
    store.create_team("ops")
    store.add_member("ops", "alice")
    store.add_member("ops", "bob")
    store.add_grant("alice", None, "team", "pull")
    store.add_grant("bob", None, "team", "push")
    store.create_token(token("aaaaaaaaaaaa", "alice-ci", "alice"))
    store.create_token(token("bbbbbbbbbbbb", "bob-ci", "bob"))

    assert store.remove_user("alice")

    assert store.get_user("alice") is None
    assert store.namespace_kind("alice") is None
    assert [r.user for r in store.list_grants()] == ["bob"]
    assert store.list_teams() == [("ops", ["bob"])]
    assert [t.name for t in store.list_tokens()] == ["bob-ci"]
    assert store.get_token("aaaaaaaaaaaa") is None
    assert (rows(store, grants), rows(store, team_members)) == (1, 1)
    assert rows(store, access_tokens) == 1
    assert not store.remove_user("alice")


def test_removed_user_name_can_be_added_again(store):
    store.add_user("alice", "h", False)
    store.remove_user("alice")

    store.add_user("alice", "h2", False)

    assert store.get_user("alice").password_hash == "h2"


# Grants


def test_grants_for_includes_team_grants(store):
    for name in ("alice", "bob"):
        store.add_user(name, "h", False)
    for team in ("ops", "web"):
        store.create_team(team)
    store.add_member("ops", "alice")
    store.add_member("web", "bob")
    store.add_grant("alice", None, "alice-stuff", "pull")
    store.add_grant(None, "ops", "infra/*", "pull,push")
    store.add_grant(None, "web", "site", "admin")
    store.add_grant("bob", None, "bob-stuff", "delete")

    assert set(store.grants_for("alice")) == {
        Grant("alice-stuff", frozenset({"pull"})),
        Grant("infra/*", frozenset({"pull", "push"})),
    }
    assert store.grants_for("nobody") == ()


def test_grant_to_an_unknown_user_or_team_is_refused(store):
    with pytest.raises(AccountError, match="no user named 'ghost'"):
        store.add_grant("ghost", None, "team", "pull")
    with pytest.raises(AccountError, match="no team named 'ghosts'"):
        store.add_grant(None, "ghosts", "team", "pull")


def test_remove_grant_returns_what_it_removed(store):
    store.add_user("alice", "h", False)
    grant_id = store.add_grant("alice", None, "team", "pull,push")

    removed = store.remove_grant(grant_id)

    assert removed is not None
    assert (removed.id, removed.user, removed.team) == (grant_id, "alice", None)
    assert removed.grant == Grant("team", frozenset({"pull", "push"}))
    assert store.list_grants() == []
    assert store.remove_grant(grant_id) is None


def test_removing_a_team_removes_its_grants_and_members(store):
    store.add_user("alice", "h", False)
    store.create_team("ops")
    store.add_member("ops", "alice")
    store.add_grant(None, "ops", "infra", "pull")

    assert store.remove_team("ops")

    assert store.grants_for("alice") == ()
    assert store.list_teams() == []
    assert not store.remove_team("ops")


def test_duplicate_team_is_refused(store):
    store.create_team("ops")

    with pytest.raises(AccountError, match="already exists"):
        store.create_team("ops")


# Visibility


def test_repositories_are_private_by_default(store):
    assert not store.is_public("team/app")
    assert not store.is_public("team")


def test_namespace_setting_covers_its_repositories(store):
    store.set_visibility("team", True)

    assert store.is_public("team")
    assert store.is_public("team/app")
    assert store.is_public("team/a/b")
    assert not store.is_public("teamx/app")


def test_repository_setting_beats_namespace_setting(store):
    store.set_visibility("team", True)
    store.set_visibility("team/secret", False)
    store.set_visibility("private/open", True)
    store.set_visibility("private", False)

    assert not store.is_public("team/secret")
    assert store.is_public("team/other")
    assert store.is_public("private/open")
    assert not store.is_public("private/other")


def test_setting_visibility_again_replaces_it(store):
    store.set_visibility("team", True)
    store.set_visibility("team", False)

    assert not store.is_public("team/app")
    assert store.list_visibility() == [("team", False)]


# Access tokens


def test_create_and_get_token(store):
    store.add_user("alice", "h", False)
    created = token("0123456789ab", "ci", "alice")

    store.create_token(created)

    found = store.get_token("0123456789ab")
    assert found is not None
    assert (found.name, found.user) == ("ci", "alice")
    assert (found.secret_hash, found.scopes) == (created.secret_hash, created.scopes)
    assert found.expires_at == created.expires_at
    assert found.revoked_at is None
    assert store.get_token("ffffffffffff") is None


def test_robot_token_belongs_to_nobody(store):
    store.create_token(token("0123456789ab", "robot"))

    assert store.get_token("0123456789ab").user is None


def test_token_names_are_unique(store):
    store.create_token(token("0123456789ab", "ci"))

    with pytest.raises(AccountError, match="'ci' exists"):
        store.create_token(token("ba9876543210", "ci"))


def test_token_for_an_unknown_user_is_refused(store):
    with pytest.raises(AccountError, match="no user named 'ghost'"):
        store.create_token(token("0123456789ab", "ci", "ghost"))
    assert store.list_tokens() == []


def test_list_tokens_oldest_first(store):
    store.create_token(token("bbbbbbbbbbbb", "first"))
    store.create_token(token("aaaaaaaaaaaa", "second"))

    assert [t.name for t in store.list_tokens()] == ["first", "second"]


@pytest.mark.parametrize("key", ["ci", "0123456789ab"])
def test_revoke_token_by_name_or_id(store, key):
    store.create_token(token("0123456789ab", "ci"))
    store.create_token(token("ba9876543210", "other"))

    revoked = store.revoke_token(key)

    assert revoked is not None and revoked.id == "0123456789ab"
    assert revoked.revoked_at is not None
    assert store.get_token("0123456789ab").revoked_at == revoked.revoked_at
    assert store.get_token("ba9876543210").revoked_at is None


def test_revoking_twice_keeps_the_first_time(store):
    store.create_token(token("0123456789ab", "ci"))
    first = store.revoke_token("ci")

    again = store.revoke_token("ci")

    assert again.revoked_at == first.revoked_at
    assert store.revoke_token("nothing") is None


def test_touch_token(store):
    store.create_token(token("0123456789ab", "ci"))

    store.touch_token("0123456789ab")

    used = store.get_token("0123456789ab").last_used_at
    assert used is not None and abs(used - datetime.now(UTC)) < timedelta(minutes=1)


# Audit events


def test_events_newest_first_with_their_fields(store):
    store.record_event(event("login", outcome="failure", address="10.0.0.1"))
    store.record_event(event("push", target="team/app", detail={"tag": "v1"}))

    newest, oldest = store.list_events(10)

    assert (newest.action, newest.target) == ("push", "team/app")
    assert newest.detail == {"tag": "v1"}
    assert (oldest.action, oldest.outcome) == ("login", "failure")
    assert oldest.address == "10.0.0.1"
    assert oldest.detail is None
    assert oldest.occurred_at.tzinfo is not None


def test_events_filtered_by_action_pattern_and_actor(store):
    store.record_event(event("login"))
    store.record_event(event("token.create", actor="cli:root"))
    store.record_event(event("login", actor="bob", outcome="failure"))
    store.record_event(event("login.refresh"))
    store.record_event(event("logout"))
    store.record_event(event("push"))

    assert [e.action for e in store.list_events(10, action="login*")] == [
        "login.refresh",
        "login",
        "login",
    ]
    assert [e.actor for e in store.list_events(10, action="login")] == ["bob", "alice"]
    assert store.list_events(10, actor="cli:root")[0].action == "token.create"
    assert len(store.list_events(10, actor="cli:root")) == 1
    assert store.list_events(10, action="login", actor="bob")[0].outcome == "failure"
    assert [e.action for e in store.list_events(2)] == ["push", "logout"]
    assert len(store.list_events(1, action="login*")) == 1
