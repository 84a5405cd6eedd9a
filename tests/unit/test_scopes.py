import pytest

from dockyard.core.errors import ScopeInvalid
from dockyard.services.auth.scopes import (
    Scope,
    format_actions,
    parse_scope,
    parse_scopes,
)


def scope(kind: str, name: str, *actions: str) -> Scope:
    return Scope(kind, name, frozenset(actions))


def test_repository_scope():
    assert parse_scope("repository:team/app:pull,push") == scope(
        "repository", "team/app", "pull", "push"
    )


def test_resource_class_is_accepted():
    assert parse_scope("repository(plugin):team/app:pull") == scope(
        "repository", "team/app", "pull"
    )


def test_name_with_a_port_keeps_its_colons():
    parsed = parse_scope("repository:localhost:5000/foo/bar:pull,push")

    assert parsed == scope("repository", "localhost:5000/foo/bar", "pull", "push")


def test_catalog_scope():
    assert parse_scope("registry:catalog:*") == scope("registry", "catalog", "*")


@pytest.mark.parametrize("text", ["repository:app:", "repository:app:,"])
def test_empty_actions(text):
    assert parse_scope(text) == scope("repository", "app")


def test_several_scopes_in_one_parameter_and_repeated_parameters():
    values = [
        "repository:a:pull repository:b:push",
        "registry:catalog:*",
        "  repository:c:delete  ",
    ]

    assert parse_scopes(values) == [
        scope("repository", "a", "pull"),
        scope("repository", "b", "push"),
        scope("registry", "catalog", "*"),
        scope("repository", "c", "delete"),
    ]


def test_no_scope_parameters():
    assert parse_scopes([]) == []
    assert parse_scopes([""]) == []


@pytest.mark.parametrize(
    "text",
    [
        "repository",
        "repository:app",
        "repository::pull",
        ":app:pull",
        "Repository:app:pull",
        "repo-sitory:app:pull",
        "repository(plug in):app:pull",
        "repository():app:pull",
    ],
)
def test_malformed_scope_says_what_the_form_is(text):
    with pytest.raises(ScopeInvalid) as raised:
        parse_scope(text)

    assert repr(text) in raised.value.message
    assert "TYPE:NAME:ACTIONS" in raised.value.message


@pytest.mark.parametrize("action", ["pu!ll", "Pull", "pull;", "**", "pull-all"])
def test_malformed_action_is_named(action):
    with pytest.raises(ScopeInvalid) as raised:
        parse_scope(f"repository:app:pull,{action}")

    assert f"malformed action {action!r}" in raised.value.message


def test_one_bad_scope_fails_the_whole_list():
    with pytest.raises(ScopeInvalid):
        parse_scopes(["repository:a:pull nonsense"])


@pytest.mark.parametrize(
    "text",
    [
        "repository:team/app:pull,push",
        "repository:localhost:5000/foo/bar:pull",
        "registry:catalog:*",
        "repository:app:",
    ],
)
def test_str_round_trips(text):
    assert str(parse_scope(text)) == text
    assert parse_scope(str(parse_scope(text))) == parse_scope(text)


def test_actions_are_written_in_a_fixed_order():
    parsed = parse_scope("repository:app:*,zap,admin,delete,push,pull,bump")

    assert str(parsed) == "repository:app:pull,push,delete,admin,*,bump,zap"
    assert parsed.to_json()["actions"] == [
        "pull",
        "push",
        "delete",
        "admin",
        "*",
        "bump",
        "zap",
    ]


def test_format_actions():
    assert format_actions({"push", "pull"}) == "pull,push"
    assert format_actions(frozenset()) == ""
