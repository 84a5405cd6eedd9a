import pytest

from dockyard.services.auth.permissions import (
    ALL_ACTIONS,
    ANONYMOUS,
    Grant,
    Principal,
    allowed_actions,
)

NOTHING: frozenset[str] = frozenset()
PULL = frozenset({"pull"})
PULL_PUSH = frozenset({"pull", "push"})


def grant(pattern: str, actions: str) -> Grant:
    return Grant(pattern, frozenset(actions.split(",")))


def user(name: str, *grants: Grant, admin: bool = False) -> Principal:
    return Principal(name, admin, tuple(grants))


def user_token(owner: Principal, *scopes: Grant) -> Principal:
    return Principal(owner.name, owner.is_admin, owner.grants, "ci", scopes, "t1")


def robot(*scopes: Grant) -> Principal:
    return Principal(token="robot", token_scopes=scopes, token_id="t2")


def allowed(principal: Principal, repository: str, public: bool = False):
    return allowed_actions(principal, repository, public)


@pytest.mark.parametrize("repository", ["alice/app", "team/app", "a/b/c"])
def test_admin_may_do_everything(repository):
    assert allowed(user("root", admin=True), repository) == ALL_ACTIONS


@pytest.mark.parametrize("repository", ["alice", "alice/app", "alice/a/b"])
def test_user_owns_the_namespace_of_their_name(repository):
    assert allowed(user("alice"), repository) == ALL_ACTIONS


@pytest.mark.parametrize("repository", ["alicex/app", "alicex", "bob/alice", "ali"])
def test_user_owns_no_other_namespace(repository):
    assert allowed(user("alice"), repository) == NOTHING


def test_namespace_grant_covers_the_namespace_and_below_only():
    bob = user("bob", grant("team", "pull"))

    assert allowed(bob, "team") == PULL
    assert allowed(bob, "team/app") == PULL
    assert allowed(bob, "team/a/b") == PULL
    assert allowed(bob, "teamx/app") == NOTHING
    assert allowed(bob, "other/team") == NOTHING


def test_repository_grant_covers_that_repository():
    bob = user("bob", grant("team/app", "pull,push"))

    assert allowed(bob, "team/app") == PULL_PUSH
    assert allowed(bob, "team/app2") == NOTHING
    assert allowed(bob, "team") == NOTHING


def test_glob_grant_crosses_slashes():
    bob = user("bob", grant("team/app-*", "pull"), grant("lib/?", "push"))

    assert allowed(bob, "team/app-web") == PULL
    assert allowed(bob, "team/app-web/debug") == PULL
    assert allowed(bob, "team/app") == NOTHING
    assert allowed(bob, "lib/x") == {"push"}
    assert allowed(bob, "lib/xy") == NOTHING


def test_grants_add_up():
    bob = user("bob", grant("team", "pull"), grant("team/app", "push"))

    assert allowed(bob, "team/app") == PULL_PUSH
    assert allowed(bob, "team/other") == PULL


@pytest.mark.parametrize("actions", ["admin", "*", "pull,admin"])
def test_admin_grant_includes_every_action(actions):
    assert allowed(user("bob", grant("team", actions)), "team/app") == ALL_ACTIONS


def test_unknown_grant_actions_give_nothing():
    assert allowed(user("bob", grant("team", "pull,frobnicate")), "team/app") == PULL


def test_team_grants_arrive_as_the_principal_grants():
    # The store folds a user's team grants into `Principal.grants`.
    member = user("carol", grant("ops", "pull,push"), grant("ops/secrets", "delete"))

    assert allowed(member, "ops/app") == PULL_PUSH
    assert allowed(member, "ops/secrets") == {"pull", "push", "delete"}


def test_anyone_may_pull_a_public_repository():
    assert allowed(ANONYMOUS, "team/app", public=True) == PULL
    assert allowed(user("bob"), "team/app", public=True) == PULL
    assert allowed(robot(grant("other", "push")), "team/app", public=True) == PULL


def test_anonymous_gets_nothing_on_a_private_repository():
    assert allowed(ANONYMOUS, "team/app") == NOTHING
    assert ANONYMOUS.anonymous


def test_public_adds_pull_to_what_a_user_has():
    bob = user("bob", grant("team", "push"))

    assert allowed(bob, "team/app", public=True) == PULL_PUSH


def test_robot_token_has_exactly_its_scopes():
    ci = robot(grant("team/*", "pull,push"))

    assert allowed(ci, "team/app") == PULL_PUSH
    assert allowed(ci, "other/app") == NOTHING
    assert not ci.anonymous
    assert ci.subject == "token:robot"


def test_robot_token_ignores_grants_it_was_not_given():
    # A robot has no namespace, even one spelled like its name.
    ci = Principal(
        grants=(grant("team", "delete"),),
        token="team",
        token_scopes=(grant("team", "pull"),),
    )

    assert allowed(ci, "team/app") == PULL


def test_user_token_is_capped_by_its_scopes():
    alice = user("alice", grant("team", "pull,push"))
    token = user_token(alice, grant("*", "pull"))

    assert allowed(token, "alice/app") == PULL
    assert allowed(token, "team/app") == PULL
    assert token.subject == "alice"


def test_user_token_is_capped_by_the_user_rights():
    alice = user("alice", grant("team", "pull"))
    token = user_token(alice, grant("*", "*"))

    assert allowed(token, "team/app") == PULL
    assert allowed(token, "bob/app") == NOTHING
    assert allowed(token, "alice/app") == ALL_ACTIONS


def test_admin_token_is_capped_by_its_scopes():
    token = user_token(user("root", admin=True), grant("team", "pull,push"))

    assert allowed(token, "team/app") == PULL_PUSH
    assert allowed(token, "other/app") == NOTHING


def test_token_with_no_repository_scope_may_do_nothing():
    assert allowed(user_token(user("alice")), "alice/app") == NOTHING
    assert allowed(robot(), "alice/app") == NOTHING


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        (ANONYMOUS, NOTHING),
        (user("bob"), NOTHING),
        (user("bob", grant("team", "pull")), PULL),
        (robot(grant("team/*", "push")), {"push"}),
    ],
)
def test_the_answer_does_not_depend_on_what_exists(principal, expected):
    # Only names go in: a repository that was pushed and one that never was
    # get the same answer, so a refusal reveals nothing.
    assert allowed(principal, "team/app") == expected
    assert allowed(principal, "team/never-pushed") == expected
