"""`AuthService` with `Accounts` on a migrated SQLite database, no server."""

import contextlib
import logging
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, text

from dockyard.core.errors import TooManyRequests, Unauthorized
from dockyard.metadata.accounts import SqlAccountStore
from dockyard.metadata.migrate import upgrade
from dockyard.metadata.store import create_db_engine
from dockyard.services.audit import Auditor
from dockyard.services.auth.accounts import Accounts
from dockyard.services.auth.permissions import ALL_ACTIONS, ANONYMOUS, Grant
from dockyard.services.auth.scopes import Scope, parse_scopes
from dockyard.services.auth.service import AuthService
from dockyard.services.auth.throttle import LoginThrottle
from dockyard.services.auth.tokens import TokenSigner

pytestmark = pytest.mark.anyio

PASSWORD = "s3cret-Pa55word"
ADDRESS = "192.0.2.7"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch):
    # The real argon2 cost is deliberate, and adds up over dozens of logins.
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr("dockyard.services.auth.credentials._hasher", cheap)


@pytest.fixture
def store(tmp_path) -> SqlAccountStore:
    url = f"sqlite:///{tmp_path / 'dockyard.db'}"
    upgrade(create_engine(url))
    return SqlAccountStore(create_db_engine(url))


@pytest.fixture
def accounts(store) -> Accounts:
    accounts = Accounts(store, Auditor(store), "cli:test")
    accounts.add_user("alice", PASSWORD)
    return accounts


def auth_service(
    store: SqlAccountStore, per_user: str = "3/minute", per_address: str = "5/minute"
) -> AuthService:
    signer = TokenSigner(
        ec.generate_private_key(ec.SECP256R1()), "ES256", "dockyard", "registry.test"
    )
    throttle = LoginThrottle(per_user, per_address, None)
    return AuthService(store, signer, throttle, Auditor(store), 300, 3600)


@pytest.fixture
def auth(store, accounts) -> AuthService:
    return auth_service(store)


async def refused(auth: AuthService, username: str, secret: str, **kw) -> str:
    with pytest.raises(Unauthorized) as raised:
        await auth.login(username, secret, kw.get("address", ADDRESS))
    return raised.value.message


def login_events(store: SqlAccountStore) -> list[tuple[str, str]]:
    return [(e.actor, e.outcome) for e in store.list_events(100, action="login")]


# Passwords


async def test_login_with_the_password(auth, accounts):
    accounts.grant("alice", None, "team", "pull")

    principal = await auth.login("alice", PASSWORD, ADDRESS)

    assert (principal.name, principal.is_admin) == ("alice", False)
    assert principal.grants == (Grant("team", frozenset({"pull"})),)
    assert principal.token is None and principal.token_scopes is None


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong-password"), ("alice", ""), ("nobody", PASSWORD)],
)
async def test_wrong_password_or_unknown_user(auth, username, password):
    message = await refused(auth, username, password)

    assert message == "invalid username or password"


async def test_new_password_replaces_the_old_one(auth, accounts):
    await auth.login("alice", PASSWORD, ADDRESS)
    accounts.set_password("alice", "another-password")

    await refused(auth, "alice", PASSWORD)
    assert (await auth.login("alice", "another-password", None)).name == "alice"


# Access tokens


async def test_access_token_works_under_any_username(auth, accounts):
    _, secret = accounts.create_token("ci", ["repository:alice/*:pull"], None, "alice")

    for username in ("alice", "ci", "", "whoever"):
        principal = await auth.login(username, secret, ADDRESS)

        assert (principal.name, principal.token) == ("alice", "ci")
        assert principal.token_scopes == (Grant("alice/*", frozenset({"pull"})),)
        assert principal.token_id == secret[4:16]


async def test_robot_token_has_no_user(auth, accounts):
    _, secret = accounts.create_token("robot", ["repository:team/*:push"], None)

    principal = await auth.login("robot", secret, ADDRESS)

    assert (principal.name, principal.token, principal.subject) == (
        None,
        "robot",
        "token:robot",
    )
    assert not principal.anonymous


async def test_altered_token_secret_is_refused(auth, accounts):
    _, secret = accounts.create_token("ci", ["repository:alice:pull"], None, "alice")

    assert await refused(auth, "ci", secret[:-1]) == "invalid access token"
    assert await refused(auth, "ci", "dky_ffffffffffff_x") == "invalid access token"


async def test_expired_token_says_when_it_expired(auth, accounts):
    _, secret = accounts.create_token(
        "old", ["repository:alice:pull"], timedelta(seconds=-5), "alice"
    )

    message = await refused(auth, "alice", secret)

    assert message.startswith("access token 'old' expired at 20")


async def test_revoked_token_says_it_was_revoked(auth, accounts):
    _, secret = accounts.create_token("ci", ["repository:alice:pull"], None, "alice")
    await auth.login("alice", secret, ADDRESS)

    accounts.revoke_token("ci")

    assert await refused(auth, "alice", secret) == "access token 'ci' was revoked"


async def test_token_of_a_removed_user_is_gone(auth, accounts):
    _, secret = accounts.create_token("ci", ["repository:alice:pull"], None, "alice")

    accounts.remove_user("alice")

    assert await refused(auth, "alice", secret) == "invalid access token"


async def test_login_password_token_has_all_the_user_rights(auth, accounts):
    secret = accounts.login_password("alice")

    principal = await auth.login("alice", secret, ADDRESS)

    assert await auth.allowed(principal, "alice/app") == ALL_ACTIONS
    assert await auth.allowed(principal, "bob/app") == frozenset()


# Throttling


async def throttled(auth: AuthService, username: str, address: str) -> int:
    with pytest.raises(TooManyRequests) as raised:
        await auth.login(username, PASSWORD, address)
    assert "too many failed logins" in raised.value.message
    return raised.value.retry_after


async def test_failures_throttle_the_user_even_with_the_right_password(auth):
    for _ in range(3):
        await refused(auth, "alice", "wrong-password")

    retry_after = await throttled(auth, "alice", ADDRESS)

    assert 1 <= retry_after <= 60
    # From another address too: the window is per user.
    await throttled(auth, "alice", "198.51.100.1")


async def test_throttle_counts_each_user_apart(auth, accounts):
    accounts.add_user("bob", PASSWORD)
    for _ in range(3):
        await refused(auth, "alice", "wrong-password", address=None)

    assert (await auth.login("bob", PASSWORD, None)).name == "bob"


async def test_failures_for_unknown_users_throttle_too(auth):
    for _ in range(3):
        await refused(auth, "nobody", "guess")

    await throttled(auth, "nobody", ADDRESS)


async def test_failures_throttle_the_address(store, accounts):
    auth = auth_service(store, per_user="100/minute", per_address="3/minute")
    for name in ("bob", "carol", "dave"):
        await refused(auth, name, "guess")

    assert await throttled(auth, "alice", ADDRESS) >= 1
    assert (await auth.login("alice", PASSWORD, "198.51.100.1")).name == "alice"


async def test_successful_logins_are_not_counted(auth):
    for _ in range(5):
        assert (await auth.login("alice", PASSWORD, ADDRESS)).name == "alice"


async def test_throttled_login_is_not_audited_as_a_failure(auth, store):
    for _ in range(3):
        await refused(auth, "alice", "wrong-password")

    await throttled(auth, "alice", ADDRESS)

    assert login_events(store) == [("alice", "failure")] * 3


# What the token endpoint grants


async def test_grant_is_the_intersection_of_asked_and_allowed(auth, accounts):
    accounts.grant("alice", None, "team", "pull")
    alice = await auth.login("alice", PASSWORD, ADDRESS)
    asked = parse_scopes(
        [
            "repository:alice/app:pull,push repository:alice/app:delete",
            "repository:team/app:pull,push,delete",
            "repository:other/app:pull",
            "repository:Bad_Name:pull repository:a//b:pull",
            "registry:catalog:* registry:catalog:everything",
            "plugin:x:pull",
        ]
    )

    granted = await auth.grant(alice, asked)

    assert granted == [
        Scope("repository", "alice/app", frozenset({"pull", "push", "delete"})),
        Scope("repository", "team/app", frozenset({"pull"})),
        Scope("registry", "catalog", frozenset({"*"})),
    ]


async def test_grant_of_star_gives_what_the_caller_has(auth, accounts):
    accounts.grant("alice", None, "team", "pull,push")
    alice = await auth.login("alice", PASSWORD, ADDRESS)

    granted = await auth.grant(alice, parse_scopes(["repository:team/app:*"]))

    assert granted == [Scope("repository", "team/app", frozenset({"pull", "push"}))]


async def test_grant_with_no_actions_asked_is_empty(auth):
    alice = await auth.login("alice", PASSWORD, ADDRESS)

    assert await auth.grant(alice, parse_scopes(["repository:alice/app:"])) == []


async def test_anonymous_gets_public_pulls_and_the_catalog(auth, accounts):
    accounts.set_visibility("pub", True)
    accounts.set_visibility("alice/open", True)
    asked = parse_scopes(
        [
            "repository:pub/app:pull,push",
            "repository:alice/open:pull",
            "repository:alice/closed:pull",
            "registry:catalog:*",
        ]
    )

    assert await auth.grant(ANONYMOUS, asked) == [
        Scope("repository", "pub/app", frozenset({"pull"})),
        Scope("repository", "alice/open", frozenset({"pull"})),
        Scope("registry", "catalog", frozenset({"*"})),
    ]


async def test_robot_token_is_granted_only_its_scopes(auth, accounts):
    _, secret = accounts.create_token("ci", ["repository:team/*:pull,push"], None)
    robot = await auth.login("ci", secret, ADDRESS)
    asked = parse_scopes(["repository:team/app:pull,push,delete repository:x:pull"])

    assert await auth.grant(robot, asked) == [
        Scope("repository", "team/app", frozenset({"pull", "push"}))
    ]


# Issued tokens and refresh


async def test_issued_token_names_the_caller(auth, accounts):
    _, secret = accounts.create_token("ci", ["repository:alice:pull"], None, "alice")
    principal = await auth.login("x", secret, ADDRESS)
    scope = Scope("repository", "alice", frozenset({"pull"}))

    claims = auth.signer.verify(auth.issue(principal, [scope]))

    assert (claims.subject, claims.access, claims.token_id) == (
        "alice",
        (scope,),
        principal.token_id,
    )
    assert (await auth.principal_for(claims)).token == "ci"


async def test_refresh_gives_the_user_as_they_stand_now(auth, accounts):
    alice = await auth.login("alice", PASSWORD, ADDRESS)
    refresh_token = auth.issue_refresh(alice)
    accounts.grant("alice", None, "team", "push")

    refreshed = await auth.refresh(refresh_token)

    assert refreshed.name == "alice"
    assert refreshed.grants == (Grant("team", frozenset({"push"})),)


async def test_refresh_token_is_not_an_access_token(auth):
    alice = await auth.login("alice", PASSWORD, ADDRESS)

    with pytest.raises(Unauthorized):
        await auth.refresh(auth.issue(alice, []))
    with pytest.raises(Unauthorized):
        auth.signer.verify(auth.issue_refresh(alice))


async def test_token_from_the_second_of_a_password_change_is_valid(auth, store):
    # `iat` is in whole seconds: a token issued just after the change, in the
    # same second, carries an `iat` before the exact moment of the change.
    changed_at = store.get_user("alice").credentials_changed_at
    alice = await auth.login("alice", PASSWORD, ADDRESS)
    claims = auth.signer.verify(auth.issue_refresh(alice), refresh=True)
    same_second = replace(claims, issued_at=int(changed_at.timestamp()))

    assert (await auth.principal_for(same_second)).name == "alice"


async def test_refresh_token_is_refused_after_a_password_change(auth, accounts):
    alice = await auth.login("alice", PASSWORD, ADDRESS)
    refresh_token = auth.issue_refresh(alice)
    # Into the next whole second, since `iat` has no fraction.
    time.sleep(1.01 - time.time() % 1)

    accounts.set_password("alice", "another-password")

    with pytest.raises(Unauthorized, match="password changed"):
        await auth.refresh(refresh_token)
    fresh = auth.issue_refresh(await auth.login("alice", "another-password", None))
    assert (await auth.refresh(fresh)).name == "alice"


async def test_refresh_token_of_a_removed_user_is_refused(auth, accounts):
    refresh_token = auth.issue_refresh(await auth.login("alice", PASSWORD, ADDRESS))

    accounts.remove_user("alice")

    with pytest.raises(Unauthorized, match="no longer exists"):
        await auth.refresh(refresh_token)


async def test_refresh_token_from_a_revoked_access_token_is_refused(auth, accounts):
    _, secret = accounts.create_token("ci", ["repository:alice:pull"], None, "alice")
    refresh_token = auth.issue_refresh(await auth.login("ci", secret, ADDRESS))

    accounts.revoke_token("ci")

    with pytest.raises(Unauthorized, match="revoked"):
        await auth.refresh(refresh_token)


# Audit


async def test_logins_are_audited(auth, store):
    await auth.login("alice", PASSWORD, ADDRESS)
    await refused(auth, "alice", "wrong-password")
    await refused(auth, "nobody", PASSWORD)

    nobody, failure, success = store.list_events(10, action="login")

    assert (success.actor, success.outcome, success.address) == (
        "alice",
        "success",
        ADDRESS,
    )
    assert (failure.actor, failure.outcome) == ("alice", "failure")
    assert failure.detail == {"reason": "invalid username or password"}
    assert (nobody.actor, nobody.outcome) == ("nobody", "failure")


async def test_a_cached_password_is_audited_once(auth, store):
    for _ in range(3):
        await auth.login("alice", PASSWORD, ADDRESS)

    assert login_events(store) == [("alice", "success")]


async def test_token_logins_are_audited_once(auth, accounts, store):
    _, secret = accounts.create_token("ci", ["repository:team:pull"], None)
    for _ in range(3):
        await auth.login("ci", secret, ADDRESS)
    await refused(auth, "ci", secret[:-1])

    assert login_events(store) == [("ci", "failure"), ("token:ci", "success")]


async def test_secrets_are_never_audited_or_logged(auth, accounts, store, caplog):
    caplog.set_level(logging.DEBUG)
    _, secret = accounts.create_token("ci", ["repository:alice:pull"], None, "alice")
    accounts.set_password("alice", PASSWORD + "-new")
    attempts = [
        ("alice", PASSWORD + "-new"),
        ("alice", PASSWORD),
        ("nobody", PASSWORD),
        ("ci", secret),
        ("ci", secret[:-1]),
    ]
    for username, password in attempts:
        with contextlib.suppress(Unauthorized):
            await auth.login(username, password, ADDRESS)

    with store.engine.connect() as connection:
        dumped = repr(connection.execute(text("SELECT * FROM audit_events")).all())
    logged = caplog.text + repr([vars(record) for record in caplog.records])
    assert "login" in dumped and "login" in logged
    for leaked in (PASSWORD, secret[:-1], secret[17:]):
        assert leaked not in dumped
        assert leaked not in logged
