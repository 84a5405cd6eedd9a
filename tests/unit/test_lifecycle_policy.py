import fnmatch
import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.services.lifecycle import (
    Evaluation,
    Image,
    Policy,
    PolicyInvalid,
    Rule,
    Selection,
    evaluate,
    parse_policy,
    policy_from_json,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# No example database: the tests leave nothing behind in the work tree.
PROPERTIES = settings(database=None, deadline=None, max_examples=150)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def image(
    digest: str,
    *tags: str,
    pushed: float,
    pulled: float | None = None,
    size: int = 100,
) -> Image:
    last_pulled = None if pulled is None else days_ago(pulled)
    return Image(digest, tags, days_ago(pushed), last_pulled, size)


def rule(
    priority: int,
    tag_status: str,
    count_type: str,
    count_number: int,
    *,
    prefixes: Sequence[str] | None = None,
    patterns: Sequence[str] | None = None,
    action: str = "expire",
) -> dict[str, Any]:
    selection: dict[str, Any] = {"tagStatus": tag_status}
    if prefixes is not None:
        selection["tagPrefixList"] = list(prefixes)
    if patterns is not None:
        selection["tagPatternList"] = list(patterns)
    selection["countType"] = count_type
    if count_type != "imageCountMoreThan":
        selection["countUnit"] = "days"
    selection["countNumber"] = count_number
    return {
        "rulePriority": priority,
        "description": f"Rule {priority}",
        "selection": selection,
        "action": {"type": action},
    }


def policy(*rules: dict[str, Any]) -> Policy:
    return parse_policy(json.dumps({"rules": list(rules)}))


def expired(policy: Policy, images: Sequence[Image]) -> set[str]:
    return set(evaluate(policy, images, NOW).expired_digests)


def faults(document: object) -> tuple[str, ...]:
    with pytest.raises(PolicyInvalid) as caught:
        policy_from_json(document)
    return caught.value.faults


# The examples of ECR's user guide ("Examples of lifecycle policies"), each with
# the repository it describes and the outcome it gives. The guide shows most of
# them with tagPatternList today and showed them with tagPrefixList before; both
# spellings are tested.

TAG_LIST_KINDS = [
    pytest.param("prefixes", id="tagPrefixList"),
    pytest.param("patterns", id="tagPatternList"),
]


def tag_list(kind: str, *values: str) -> dict[str, Any]:
    """`rule` arguments selecting tags that start with each of `values`."""
    if kind == "prefixes":
        return {"prefixes": values}
    return {"patterns": [f"{value}*" for value in values]}


def test_example_filtering_on_image_age_with_a_pattern():
    rules = policy(rule(1, "tagged", "sinceImagePushed", 14, patterns=["prod*"]))
    images = [
        image("A", "prod-1", pushed=20),
        image("B", "production", pushed=15),
        image("C", "prod-2", pushed=13),
        image("D", "dev-1", pushed=30),
        image("E", pushed=30),
    ]

    assert expired(rules, images) == {"A", "B"}


def test_example_filtering_on_image_age_untagged():
    rules = policy(rule(1, "untagged", "sinceImagePushed", 14))
    images = [
        image("A", pushed=15),
        image("B", pushed=14),
        image("C", "v1", pushed=30),
    ]

    assert expired(rules, images) == {"A"}


def test_example_filtering_on_image_count():
    rules = policy(rule(1, "untagged", "imageCountMoreThan", 1))
    images = [
        image("A", pushed=3),
        image("B", pushed=2),
        image("C", pushed=1),
        image("D", "latest", pushed=5),
    ]

    assert expired(rules, images) == {"A", "B"}


PROD_AND_BETA = [
    image("A", "beta-1", "prod-1", pushed=10),
    image("B", "beta-2", "prod-2", pushed=9),
    image("C", "beta-3", pushed=8),
]


@pytest.mark.parametrize("kind", TAG_LIST_KINDS)
def test_example_multiple_rules_a(kind):
    # Rule 2 would mark A and B, but B's prod tag belongs to rule 1, which
    # keeps it; A is expired once, by rule 1.
    rules = policy(
        rule(1, "tagged", "imageCountMoreThan", 1, **tag_list(kind, "prod")),
        rule(2, "tagged", "imageCountMoreThan", 1, **tag_list(kind, "beta")),
    )

    result = evaluate(rules, PROD_AND_BETA, NOW)

    assert [(e.image.digest, e.rule_priority) for e in result.expiries] == [("A", 1)]


@pytest.mark.parametrize("kind", TAG_LIST_KINDS)
def test_example_multiple_rules_b(kind):
    # With the priorities swapped, rule 1 (beta) sees all three images and
    # leaves rule 2 nothing.
    rules = policy(
        rule(1, "tagged", "imageCountMoreThan", 1, **tag_list(kind, "beta")),
        rule(2, "tagged", "imageCountMoreThan", 1, **tag_list(kind, "prod")),
    )

    result = evaluate(rules, PROD_AND_BETA, NOW)

    assert [(e.image.digest, e.rule_priority) for e in result.expiries] == [
        ("A", 1),
        ("B", 1),
    ]


@pytest.mark.parametrize("kind", TAG_LIST_KINDS)
def test_example_multiple_tags_in_one_rule_a(kind):
    # Only the images with both an alpha and a beta tag are selected: C and F.
    rules = policy(
        rule(1, "tagged", "sinceImagePushed", 5, **tag_list(kind, "alpha", "beta"))
    )
    images = [
        image("A", "alpha-1", pushed=12),
        image("B", "beta-1", pushed=11),
        image("C", "alpha-2", "beta-2", pushed=10),
        image("D", "alpha-3", pushed=4),
        image("E", "beta-3", pushed=3),
        image("F", "alpha-4", "beta-4", pushed=2),
    ]

    assert expired(rules, images) == {"C"}


@pytest.mark.parametrize("kind", TAG_LIST_KINDS)
def test_example_multiple_tags_in_one_rule_b(kind):
    # A gamma tag besides alpha and beta does not stop an image being selected.
    rules = policy(
        rule(1, "tagged", "imageCountMoreThan", 1, **tag_list(kind, "alpha", "beta"))
    )
    images = [
        image("A", "alpha-1", "beta-1", "gamma-1", pushed=10),
        image("B", "alpha-2", "beta-2", pushed=9),
        image("C", "alpha-3", "beta-3", "gamma-2", pushed=8),
    ]

    assert expired(rules, images) == {"A", "B"}


def test_example_all_images_a():
    rules = policy(rule(1, "any", "imageCountMoreThan", 1))
    images = [
        image("A", "alpha-1", pushed=4),
        image("B", "beta-1", pushed=3),
        image("C", pushed=2),
        image("D", "alpha-2", pushed=1),
    ]

    assert expired(rules, images) == {"A", "B", "C"}


@pytest.mark.parametrize("kind", TAG_LIST_KINDS)
def test_example_all_images_b(kind):
    # Rule 3 counts all five images and keeps the newest (E), but may mark only
    # D: A and C belong to rule 1, B and E to rule 2. E, pushed a day ago, is
    # not older than rule 2's one day.
    rules = policy(
        rule(1, "tagged", "imageCountMoreThan", 1, **tag_list(kind, "alpha")),
        rule(2, "untagged", "sinceImagePushed", 1),
        rule(3, "any", "imageCountMoreThan", 1),
    )
    images = [
        image("A", "alpha-1", "beta-1", pushed=4),
        image("B", pushed=3),
        image("C", "alpha-2", pushed=2),
        image("D", "git hash", pushed=1),
        image("E", pushed=1 - 1 / (24 * 60)),
    ]

    result = evaluate(rules, images, NOW)

    assert [(e.image.digest, e.rule_priority) for e in result.expiries] == [
        ("A", 1),
        ("B", 2),
        ("D", 3),
    ]


@pytest.mark.parametrize(
    ("pattern", "tag"),
    [
        ("prod*", "prod"),
        ("prod*", "prod1"),
        ("prod*", "production-team1"),
        ("*prod*", "repo-production"),
        ("*prod*", "prod-team"),
        ("v1.*", "v1.2"),
        ("*-rc*", "2.0-rc1"),
        ("latest", "latest"),
    ],
)
def test_tag_pattern_matches(pattern, tag):
    rules = policy(rule(1, "tagged", "imageCountMoreThan", 1, patterns=[pattern]))
    images = [image("old", tag, pushed=2), image("new", tag, pushed=1)]

    assert expired(rules, images) == {"old"}


@pytest.mark.parametrize(
    ("pattern", "tag"),
    [
        ("prod*", "preprod"),
        ("v1.*", "v1x2"),  # the dot is literal
        ("latest", "latest-1"),  # no wildcard: the whole tag must match
        ("Prod*", "prod"),  # tags are case-sensitive
    ],
)
def test_tag_pattern_does_not_match(pattern, tag):
    rules = policy(rule(1, "tagged", "imageCountMoreThan", 1, patterns=[pattern]))
    images = [image("old", tag, pushed=2), image("new", tag, pushed=1)]

    assert expired(rules, images) == set()


def test_four_wildcards_are_allowed():
    patterns = ["*test*1*2*3", "test*1*2*3*"]

    policy(rule(1, "tagged", "imageCountMoreThan", 1, patterns=patterns))


def pattern_matches(pattern: str, tag: str) -> bool:
    selection = Selection("tagged", "imageCountMoreThan", 1, tag_patterns=(pattern,))
    return selection.selects((tag,))


def regex_matches(pattern: str, tag: str) -> bool:
    """The old meaning of a pattern, as a regex: fine here, on short tags."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, tag) is not None


@pytest.mark.parametrize(
    ("pattern", "tag", "matches"),
    [
        ("", "", True),
        ("", "a", False),
        ("*", "", True),
        ("**", "abc", True),
        ("a*a", "a", False),  # prefix and suffix may not share a character
        ("a*a", "aa", True),
        ("ab*ba", "aba", False),
        ("ab*ba", "abba", True),
        ("a*b*a", "aba", True),
        ("a*b*a", "aa", False),
        ("*ab*ab*", "abab", True),
        ("*ab*ab*", "aba", False),
        ("v*.*", "v1.2", True),
    ],
)
def test_pattern_edges(pattern, tag, matches):
    assert pattern_matches(pattern, tag) is matches
    assert regex_matches(pattern, tag) is matches


# Patterns a regex backtracks on: each takes a regex a tenth of a second or
# more against one 128-character tag.
HOSTILE_PATTERNS = ["*a**a*ab", "**a*a*ab", "*a*a**ab", "**a**ab"]


@pytest.mark.parametrize("pattern", HOSTILE_PATTERNS)
def test_hostile_patterns_take_linear_time(pattern):
    rules = policy(rule(1, "tagged", "imageCountMoreThan", 1, patterns=[pattern]))
    images = [image(f"d{n}", "a" * 128, "a" * 127, pushed=n) for n in range(10)]

    started = time.perf_counter()
    result = expired(rules, images)

    assert time.perf_counter() - started < 0.1
    assert result == set()


@PROPERTIES
@given(st.text("ab*.", max_size=10), st.text("ab.", max_size=12))
def test_patterns_mean_what_the_regex_meant(pattern, tag):
    assert pattern_matches(pattern, tag) is regex_matches(pattern, tag)


# Validation: each fault alone, with its message.

VALID_RULE = rule(1, "tagged", "imageCountMoreThan", 5, prefixes=["v"])


def with_selection(**changes: Any) -> dict[str, Any]:
    selection = {**VALID_RULE["selection"], **changes}
    return {
        **VALID_RULE,
        "selection": {k: v for k, v in selection.items() if v is not None},
    }


@pytest.mark.parametrize(
    ("document", "fault"),
    [
        ([], "policy: must be a JSON object"),
        ({}, "policy: rules is required: a list of one or more rules"),
        ({"rules": []}, "policy: rules must be a list of one or more rules, not []"),
        ({"rules": [VALID_RULE], "version": 1}, "policy: unknown field version"),
        ({"rules": ["rule"]}, "rules[0]: must be a JSON object"),
    ],
)
def test_policy_fault(document, fault):
    assert faults(document) == (fault,)


@pytest.mark.parametrize(
    ("document", "fault"),
    [
        (
            {**VALID_RULE, "rulePriority": 0},
            "rules[0]: rulePriority must be a positive integer, not 0",
        ),
        (
            {**VALID_RULE, "rulePriority": "1"},
            'rules[0]: rulePriority must be a positive integer, not "1"',
        ),
        (
            {**VALID_RULE, "rulePriority": True},
            "rules[0]: rulePriority must be a positive integer, not true",
        ),
        (
            {**VALID_RULE, "rulePriority": 1.5},
            "rules[0]: rulePriority must be a positive integer, not 1.5",
        ),
        (
            {k: v for k, v in VALID_RULE.items() if k != "rulePriority"},
            "rules[0]: rulePriority is required: a positive integer",
        ),
        (
            {**VALID_RULE, "rulePriority": 2**63},
            "rules[0]: rulePriority must be at most 9223372036854775807, "
            "not 9223372036854775808",
        ),
        (
            {**VALID_RULE, "description": 7},
            "rules[0] (priority 1): description must be a string, not 7",
        ),
        (
            {**VALID_RULE, "description": "x" * 1025},
            "rules[0] (priority 1): description has 1025 characters; "
            "at most 1024 are allowed",
        ),
        (
            {**VALID_RULE, "description": "\ud800"},
            "rules[0] (priority 1): description holds a lone surrogate, "
            'which UTF-8 cannot encode: "\\ud800"',
        ),
        (
            {**VALID_RULE, "\ud800": 1},
            'rules[0] (priority 1): unknown field "\\ud800"',
        ),
        (
            {**VALID_RULE, "x" * 1000: 1},
            'rules[0] (priority 1): unknown field "' + "x" * 36 + "...",
        ),
        (
            {**VALID_RULE, "name": "x"},
            "rules[0] (priority 1): unknown field name",
        ),
        (
            {k: v for k, v in VALID_RULE.items() if k != "selection"},
            "rules[0] (priority 1): selection is required: "
            "an object with tagStatus and counts",
        ),
        (
            {**VALID_RULE, "selection": "tagged"},
            "rules[0] (priority 1): selection must be a JSON object",
        ),
        (
            {k: v for k, v in VALID_RULE.items() if k != "action"},
            "rules[0] (priority 1): action is required: an object with a type",
        ),
        (
            {**VALID_RULE, "action": {}},
            "rules[0] (priority 1): action.type is required: one of expire, keep",
        ),
        (
            {**VALID_RULE, "action": {"type": "delete"}},
            "rules[0] (priority 1): action.type must be one of expire, keep, "
            'not "delete"',
        ),
        (
            {**VALID_RULE, "action": {"type": ["expire"]}},
            "rules[0] (priority 1): action.type must be one of expire, keep, "
            'not ["expire"]',
        ),
        (
            {**VALID_RULE, "action": {"type": "expire", "after": 1}},
            "rules[0] (priority 1): unknown field action.after",
        ),
    ],
)
def test_rule_fault(document, fault):
    assert faults({"rules": [document]}) == (fault,)


@pytest.mark.parametrize(
    ("changes", "fault"),
    [
        (
            {"tagStatus": None},
            "selection.tagStatus is required: one of tagged, untagged, any",
        ),
        (
            {"tagStatus": "TAGGED"},
            'selection.tagStatus must be one of tagged, untagged, any, not "TAGGED"',
        ),
        (
            {"tagStatus": ["any"]},
            'selection.tagStatus must be one of tagged, untagged, any, not ["any"]',
        ),
        (
            {"tagStatus": {"any": 1}},
            'selection.tagStatus must be one of tagged, untagged, any, not {"any": 1}',
        ),
        (
            {"tagPrefixList": None},
            "selection.tagStatus tagged needs a tagPatternList or a tagPrefixList",
        ),
        (
            {"tagPatternList": ["v*"]},
            "selection.tagPatternList cannot be set together with tagPrefixList",
        ),
        (
            {"tagStatus": "untagged"},
            "selection.tagPrefixList is only allowed with tagStatus tagged, "
            "not untagged",
        ),
        (
            {"tagStatus": "any", "tagPrefixList": None, "tagPatternList": ["v*"]},
            "selection.tagPatternList is only allowed with tagStatus tagged, not any",
        ),
        (
            {"tagPrefixList": "v"},
            'selection.tagPrefixList must be a non-empty list of strings, not "v"',
        ),
        (
            {"tagPrefixList": None, "tagPatternList": ["v*", 3]},
            "selection.tagPatternList[1] must be a non-empty string, not 3",
        ),
        (
            {"tagPrefixList": ["v", ""]},
            'selection.tagPrefixList[1] must be a non-empty string, not ""',
        ),
        (
            {"tagPrefixList": ["v" * 129]},
            "selection.tagPrefixList[0] has 129 characters; at most 128 are allowed",
        ),
        (
            {"tagPrefixList": None, "tagPatternList": ["*" + "v" * 128]},
            "selection.tagPatternList[0] has 129 characters; at most 128 are allowed",
        ),
        (
            {"tagPrefixList": [f"v{n}" for n in range(101)]},
            "selection.tagPrefixList has 101 entries; at most 100 are allowed",
        ),
        (
            {"tagPrefixList": ["\ud800"]},
            "selection.tagPrefixList[0] holds a lone surrogate, "
            'which UTF-8 cannot encode: "\\ud800"',
        ),
        (
            {"tagPrefixList": None, "tagPatternList": ["v*\udfff"]},
            "selection.tagPatternList[0] holds a lone surrogate, "
            'which UTF-8 cannot encode: "v*\\udfff"',
        ),
        (
            {"tagPrefixList": None, "tagPatternList": ["test*1*2*3*4*5*6"]},
            "selection.tagPatternList[0] has 6 wildcards (*); at most 4 are allowed",
        ),
        (
            {"countType": None},
            "selection.countType is required: "
            "one of imageCountMoreThan, sinceImagePushed, sinceImagePulled",
        ),
        (
            {"countType": "sinceImageTransitioned"},
            "selection.countType must be one of imageCountMoreThan, "
            'sinceImagePushed, sinceImagePulled, not "sinceImageTransitioned" '
            "(Dockyard has no archive storage)",
        ),
        (
            {"countUnit": "days"},
            "selection.countUnit is not allowed with countType imageCountMoreThan",
        ),
        (
            {"countType": "sinceImagePushed"},
            "selection.countUnit is required with countType sinceImagePushed: days",
        ),
        (
            {"countType": "sinceImagePulled", "countUnit": "hours"},
            'selection.countUnit must be one of days, not "hours"',
        ),
        (
            {"countType": ["sinceImagePushed"], "countUnit": None},
            "selection.countType must be one of imageCountMoreThan, "
            'sinceImagePushed, sinceImagePulled, not ["sinceImagePushed"]',
        ),
        (
            {"countType": "sinceImagePushed", "countUnit": ["days"]},
            'selection.countUnit must be one of days, not ["days"]',
        ),
        (
            {"countNumber": None},
            "selection.countNumber is required: a positive integer",
        ),
        (
            {"countNumber": -3},
            "selection.countNumber must be a positive integer, not -3",
        ),
        (
            {"countNumber": "5"},
            'selection.countNumber must be a positive integer, not "5"',
        ),
        (
            {
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 1_000_000_000,
            },
            "selection.countNumber must be at most 36500 days (100 years) "
            "with countType sinceImagePushed, not 1000000000",
        ),
        (
            {
                "countType": "sinceImagePulled",
                "countUnit": "days",
                "countNumber": 36501,
            },
            "selection.countNumber must be at most 36500 days (100 years) "
            "with countType sinceImagePulled, not 36501",
        ),
        (
            {"countNumber": 2**64},
            "selection.countNumber must be at most 1000000 "
            "with countType imageCountMoreThan, not 18446744073709551616",
        ),
        (
            {"storageClass": "archive"},
            'selection.storageClass must be one of standard, not "archive" '
            "(Dockyard has no archive storage)",
        ),
        (
            {"storageClass": ["archive"]},
            'selection.storageClass must be one of standard, not ["archive"]',
        ),
        (
            {"tagPrefix": ["v"]},
            "unknown field selection.tagPrefix",
        ),
    ],
)
def test_selection_fault(changes, fault):
    document = {"rules": [with_selection(**changes)]}

    assert faults(document) == (f"rules[0] (priority 1): {fault}",)


def test_standard_storage_class_is_accepted():
    policy_from_json({"rules": [with_selection(storageClass="standard")]})


def test_the_largest_values_are_accepted():
    prefixes = ["v" * 128] + [f"v{n}" for n in range(99)]
    rules = [
        {**rule(1, "tagged", "sinceImagePushed", 36500, prefixes=prefixes)},
        rule(2, "untagged", "sinceImagePulled", 36500),
        {**rule(2**63 - 1, "any", "imageCountMoreThan", 1_000_000)},
    ]
    rules[0]["description"] = "d" * 1024

    read = policy_from_json({"rules": rules})

    assert [r.priority for r in read.rules] == [1, 2, 2**63 - 1]


def test_at_most_a_thousand_rules():
    rules = [
        rule(n, "tagged", "imageCountMoreThan", 1, prefixes=[f"p{n}"])
        for n in range(1, 1002)
    ]

    assert len(policy_from_json({"rules": rules[:1000]}).rules) == 1000
    assert faults({"rules": rules}) == (
        "policy: rules has 1001 rules; at most 1000 are allowed",
    )


def test_duplicate_priorities():
    first = rule(3, "tagged", "imageCountMoreThan", 1, prefixes=["a"])
    second = rule(3, "tagged", "imageCountMoreThan", 1, prefixes=["b"])
    third = rule(3, "untagged", "imageCountMoreThan", 1)

    assert faults({"rules": [first, second, third]}) == (
        "rules[0], rules[1] and rules[2]: rulePriority 3 is used more than once",
    )


def test_any_rule_must_be_last():
    rules = [
        rule(1, "tagged", "imageCountMoreThan", 1, prefixes=["a"]),
        rule(2, "any", "imageCountMoreThan", 5),
        rule(3, "untagged", "imageCountMoreThan", 1),
    ]

    assert faults({"rules": rules}) == (
        "rules[1] (priority 2): selection.tagStatus any needs the highest "
        "rulePriority of the policy, but rules[2] (priority 3) is higher",
    )


def test_any_rule_last_in_priority_though_not_in_the_document():
    rules = [
        rule(9, "any", "imageCountMoreThan", 5),
        rule(2, "tagged", "imageCountMoreThan", 1, prefixes=["a"]),
    ]

    assert [r.priority for r in policy(*rules).rules] == [2, 9]


def test_only_one_rule_may_expire_untagged_images():
    rules = [
        rule(2, "untagged", "imageCountMoreThan", 1),
        rule(1, "untagged", "sinceImagePushed", 3),
    ]

    assert faults({"rules": rules}) == (
        "rules[0] (priority 2): selection.tagStatus untagged: "
        "rules[1] (priority 1) already expires untagged images",
    )


def test_no_two_rules_may_expire_by_the_same_tag_list():
    rules = [
        rule(1, "tagged", "imageCountMoreThan", 1, prefixes=["a", "b"]),
        rule(2, "tagged", "sinceImagePushed", 3, prefixes=["b", "a"]),
        rule(3, "tagged", "sinceImagePushed", 3, patterns=["a", "b"]),
    ]

    assert faults({"rules": rules}) == (
        "rules[1] (priority 2): selection.tagPrefixList is the same as that of "
        "rules[0] (priority 1)",
    )


def test_every_fault_is_reported_at_once():
    rules = [
        {**with_selection(countUnit="days", countNumber=0), "extra": 1},
        rule(1, "untagged", "sinceImagePushed", 1),
    ]

    with pytest.raises(PolicyInvalid) as caught:
        policy_from_json({"rules": rules})

    assert caught.value.faults == (
        "rules[0] (priority 1): unknown field extra",
        "rules[0] (priority 1): selection.countUnit is not allowed with "
        "countType imageCountMoreThan",
        "rules[0] (priority 1): selection.countNumber must be a positive "
        "integer, not 0",
        "rules[0] and rules[1]: rulePriority 1 is used more than once",
    )
    assert str(caught.value) == "invalid lifecycle policy: " + "; ".join(
        caught.value.faults
    )


def test_text_that_is_not_json():
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy('{"rules": [')

    assert caught.value.faults[0].startswith("policy: not valid JSON (")


def deeply_nested(levels: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(levels):
        nested = [nested]
    return nested


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"rules": [' + "[" * 100_000 + "]" * 100_000 + "]}",
    ],
)
def test_text_nested_too_deeply(text):
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(text)

    assert caught.value.faults == ("policy: nested too deeply to read",)


def test_a_value_nested_too_deeply_to_show():
    document = {"rules": [with_selection(tagStatus=deeply_nested(100_000))]}

    assert faults(document) == (
        "rules[0] (priority 1): selection.tagStatus must be one of "
        "tagged, untagged, any, not <list>",
    )


@pytest.mark.parametrize(
    "text",
    [
        b'{"rules": [\xff]}',
        b'{"rules": "\xc3\x28"}',
        '{"rulePriority": 1' + "0" * 5000 + "}",  # beyond int's digit limit
    ],
)
def test_text_that_cannot_be_decoded(text):
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(text)

    assert caught.value.faults[0].startswith("policy: not valid JSON (")


def test_an_integer_too_long_to_show():
    document = {"rules": [{**VALID_RULE, "rulePriority": 10**5000}]}

    assert faults(document) == (
        "rules[0]: rulePriority must be at most 9223372036854775807, not <int>",
    )


def test_surrogates_encoded_as_utf8_bytes_are_refused():
    document = json.dumps({"rules": [with_selection(tagPrefixList=["v"])]})
    text = document.replace('"v"', '"\\ud800"').encode()  # a JSON escape
    raw = document.encode().replace(b'"v"', b'"\xed\xa0\x80"')

    for hostile in (text, raw):
        with pytest.raises(PolicyInvalid) as caught:
            parse_policy(hostile)
        assert "tagPrefixList[0] holds a lone surrogate" in caught.value.faults[0]


def json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats()
        | st.text(max_size=8)  # lone surrogates included
        | st.sampled_from(TAG_STATUSES_AND_TYPES)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=8) | FIELD_NAMES, inner, max_size=6)
        ),
        max_leaves=30,
    )


TAG_STATUSES_AND_TYPES = [
    "tagged",
    "untagged",
    "any",
    "imageCountMoreThan",
    "sinceImagePushed",
    "sinceImagePulled",
    "days",
    "expire",
    "keep",
]
FIELD_NAMES = st.sampled_from(
    [
        "rules",
        "rulePriority",
        "description",
        "selection",
        "action",
        "type",
        "tagStatus",
        "tagPrefixList",
        "tagPatternList",
        "countType",
        "countUnit",
        "countNumber",
    ]
)


@PROPERTIES
@given(json_values())
def test_any_document_is_read_or_refused_in_utf8(document):
    try:
        read = policy_from_json(document)
    except PolicyInvalid as exc:
        for fault in exc.faults:
            fault.encode("utf-8")
    else:
        json.dumps(read.to_json(), ensure_ascii=False).encode("utf-8")


@PROPERTIES
@given(st.binary(max_size=64))
def test_any_bytes_are_read_or_refused(text):
    try:
        parse_policy(b'{"rules": [' + text + b"]}")
    except PolicyInvalid as exc:
        for fault in exc.faults:
            fault.encode("utf-8")


def test_canonical_json_reads_back_the_same():
    document = {
        "rules": [
            rule(5, "any", "sinceImagePulled", 90),
            rule(1, "tagged", "imageCountMoreThan", 3, patterns=["v*"]),
            rule(2, "untagged", "sinceImagePushed", 7, action="keep"),
        ]
    }
    read = policy_from_json(document)

    assert policy_from_json(read.to_json()) == read
    assert read.to_json()["rules"][0] == document["rules"][1]


# Ages: sinceImagePushed and sinceImagePulled against a fixed clock.


def test_since_image_pushed_counts_whole_days_strictly():
    rules = policy(rule(1, "any", "sinceImagePushed", 7))
    exactly = Image("exactly", (), NOW - timedelta(days=7))
    just_over = Image("over", (), NOW - timedelta(days=7, seconds=1))

    assert expired(rules, [exactly, just_over]) == {"over"}


def test_since_image_pulled_goes_by_the_last_pull():
    rules = policy(rule(1, "any", "sinceImagePulled", 30))
    images = [
        image("pulled-recently", "a", pushed=100, pulled=2),
        image("pulled-long-ago", "b", pushed=100, pulled=31),
        image("never-pulled-old", "c", pushed=31),
        image("never-pulled-new", "d", pushed=29),
    ]

    assert expired(rules, images) == {"pulled-long-ago", "never-pulled-old"}


def test_since_image_pulled_boundary():
    rules = policy(rule(1, "untagged", "sinceImagePulled", 1))
    exactly = Image("exactly", (), days_ago(5), NOW - timedelta(days=1))
    over = Image("over", (), days_ago(5), NOW - timedelta(days=1, microseconds=1))

    assert expired(rules, [exactly, over]) == {"over"}


@pytest.mark.parametrize("days", [10**9, 10**30])
def test_an_age_beyond_any_date_expires_nothing(days):
    rules = Policy((Rule(1, Selection("any", "sinceImagePushed", days)),))
    images = [image("A", pushed=100_000), image("B", pushed=1)]

    assert expired(rules, images) == set()


def test_a_negative_age_beyond_any_date_expires_everything():
    rules = Policy((Rule(1, Selection("any", "sinceImagePulled", -(10**30))),))
    images = [image("A", pushed=100_000), image("B", pushed=1)]

    assert expired(rules, images) == {"A", "B"}


# Keep: Dockyard's action that protects images from every later rule.


def test_keep_protects_what_it_keeps_from_later_rules():
    rules = policy(
        rule(1, "tagged", "imageCountMoreThan", 2, patterns=["v*"], action="keep"),
        rule(2, "any", "sinceImagePushed", 30),
    )
    images = [
        image("v1", "v1.0", pushed=90),
        image("v2", "v2.0", pushed=80),
        image("v3", "v3.0", pushed=70),
        image("dev", "dev", pushed=60),
        image("new", "dev-2", pushed=10),
    ]

    result = evaluate(rules, images, NOW)

    # v1 is a v* image the keep rule does not keep, so rule 2 may expire it.
    assert result.expired_digests == {"v1", "dev"}
    assert [i.digest for i in result.outcomes[0].kept] == ["v2", "v3"]
    assert result.outcomes[0].expired == ()


def test_keep_by_recent_pull_before_the_any_rule():
    rules = policy(
        rule(1, "any", "sinceImagePulled", 7, action="keep"),
        rule(2, "untagged", "sinceImagePushed", 14),
        rule(3, "any", "imageCountMoreThan", 2),
    )
    images = [
        image("old-but-pulled", pushed=60, pulled=1),
        image("old-untagged", pushed=60, pulled=20),
        image("old-tagged", "v1", pushed=50),
        image("tagged-2", "v2", pushed=40),
        image("tagged-3", "v3", pushed=30),
        image("tagged-4", "v4", pushed=3),
    ]

    result = evaluate(rules, images, NOW)

    # Rule 3 counts all six and spares the newest two; tagged-4 was pushed
    # within the week, so the keep rule owns it anyway.
    assert {(e.image.digest, e.rule_priority) for e in result.expiries} == {
        ("old-untagged", 2),
        ("old-tagged", 3),
        ("tagged-2", 3),
    }


def test_protected_images_still_count_for_later_rules():
    rules = policy(
        rule(1, "tagged", "imageCountMoreThan", 3, prefixes=["release"], action="keep"),
        rule(2, "any", "imageCountMoreThan", 3),
    )
    images = [
        image("old", "dev-1", pushed=10),
        image("r1", "release-1", pushed=4),
        image("r2", "release-2", pushed=3),
        image("r3", "release-3", pushed=2),
        image("new", "dev-2", pushed=1),
    ]

    # Rule 2 keeps the three newest of all five (r2, r3, new), so "old" and
    # r1 are beyond its count, and only "old" is not protected.
    assert expired(rules, images) == {"old"}


def test_a_keep_rule_on_any_need_not_be_last():
    policy(
        rule(1, "any", "imageCountMoreThan", 10, action="keep"),
        rule(2, "untagged", "imageCountMoreThan", 1),
    )


def test_a_keep_rule_may_share_a_tag_list_with_an_expire_rule():
    rules = policy(
        rule(1, "tagged", "imageCountMoreThan", 1, prefixes=["v"], action="keep"),
        rule(2, "tagged", "sinceImagePushed", 30, prefixes=["v"]),
    )
    images = [
        image("v1", "v1", pushed=100),
        image("v2", "v2", pushed=90),
        image("v3", "v3", pushed=10),
    ]

    assert expired(rules, images) == {"v1", "v2"}


# The preview: outcomes by rule, with the bytes they free.


def test_outcomes_by_rule_with_bytes_freed():
    rules = policy(
        rule(1, "tagged", "imageCountMoreThan", 1, prefixes=["v"]),
        rule(2, "untagged", "sinceImagePushed", 1),
        rule(3, "any", "imageCountMoreThan", 100),
    )
    images = [
        image("v1", "v1", pushed=3, size=10),
        image("v2", "v2", pushed=2, size=20),
        image("u1", pushed=5, size=300),
        image("u2", pushed=4, size=4000),
    ]

    result = evaluate(rules, images, NOW)

    rows = [
        (o.rule.priority, [i.digest for i in o.expired], o.bytes_freed)
        for o in result.outcomes
    ]
    assert rows == [(1, ["v1"], 10), (2, ["u1", "u2"], 4300), (3, [], 0)]
    assert result.bytes_freed == 4310


def test_an_image_listed_twice_is_refused():
    rules = policy(rule(1, "any", "imageCountMoreThan", 1))

    with pytest.raises(ValueError, match="listed more than once"):
        evaluate(rules, [image("A", pushed=1), image("A", pushed=2)], NOW)


# Properties on random repositories and policies.

TAGS = ("prod-1", "prod-2", "production", "beta-1", "v1.0", "v1.1", "v2", "latest")
PREFIXES = ("prod", "beta", "v1", "v", "latest", "p")
PATTERNS = ("prod*", "*beta*", "v1.*", "v*", "*", "latest", "*-1", "*o*")
ACTIONS = st.sampled_from(["expire", "keep"])
COUNTS = st.one_of(
    st.tuples(st.just("imageCountMoreThan"), st.integers(1, 4)),
    st.tuples(
        st.sampled_from(["sinceImagePushed", "sinceImagePulled"]),
        st.integers(1, 40),
    ),
)


@st.composite
def repositories(draw: st.DrawFn) -> list[Image]:
    drawn = []
    for index in range(draw(st.integers(0, 12))):
        tags = draw(st.lists(st.sampled_from(TAGS), max_size=3, unique=True))
        # Half days from a small range, so that push times often tie.
        pushed = draw(st.integers(0, 120)) / 2
        pulled = draw(st.none() | st.integers(0, int(pushed * 2)).map(lambda h: h / 2))
        size = draw(st.integers(0, 1000))
        digest = f"sha256:{index:064x}"
        drawn.append(image(digest, *tags, pushed=pushed, pulled=pulled, size=size))
    return drawn


@st.composite
def rule_shapes(draw: st.DrawFn, tag_status: str) -> dict[str, Any]:
    """A rule's arguments for `rule`, less its priority."""
    count_type, count_number = draw(COUNTS)
    shape: dict[str, Any] = {
        "tag_status": tag_status,
        "count_type": count_type,
        "count_number": count_number,
        "action": draw(ACTIONS),
    }
    if tag_status == "tagged":
        kind = draw(st.sampled_from(["prefixes", "patterns"]))
        pool = PREFIXES if kind == "prefixes" else PATTERNS
        lists = st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True)
        shape[kind] = draw(lists)
    return shape


def claim(shape: dict[str, Any]) -> object:
    """Two expire rules with the same claim make an invalid policy."""
    values = shape.get("prefixes") or shape.get("patterns") or ()
    if shape["action"] == "keep":
        return object()
    return shape["tag_status"], "prefixes" in shape, frozenset(values)


def from_shapes(shapes: Sequence[dict[str, Any]], priorities: Sequence[int]) -> Policy:
    rules = []
    for priority, shape in zip(priorities, shapes, strict=True):
        arguments = {k: v for k, v in shape.items() if k != "tag_status"}
        count = (arguments.pop("count_type"), arguments.pop("count_number"))
        rules.append(rule(priority, shape["tag_status"], *count, **arguments))
    return policy_from_json({"rules": rules})


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    # Valid by construction: unique claims among expire rules, and an any
    # rule, if there is one, last.
    middle = st.one_of(rule_shapes("tagged"), rule_shapes("untagged"))
    shapes = draw(st.lists(middle, max_size=5, unique_by=claim))
    if not shapes or draw(st.booleans()):
        shapes.append(draw(rule_shapes("any")))

    size = len(shapes)
    numbers = st.lists(st.integers(1, 1000), min_size=size, max_size=size, unique=True)
    return from_shapes(shapes, sorted(draw(numbers)))


def selected_by(rule: Rule, image: Image) -> bool:
    """The tagging requirements, written apart from the engine's own."""
    selection = rule.selection
    if selection.tag_status == "any":
        return True
    if selection.tag_status == "untagged":
        return not image.tags
    if selection.tag_patterns:
        return all(
            any(fnmatch.fnmatchcase(tag, pattern) for tag in image.tags)
            for pattern in selection.tag_patterns
        )
    return all(
        any(tag.startswith(prefix) for tag in image.tags)
        for prefix in selection.tag_prefixes
    )


def marked_by(rule: Rule, repository: Sequence[Image]) -> list[Image]:
    """What the rule picks when it looks at every image, alone."""
    selection = rule.selection
    selected = sorted(
        (i for i in repository if selected_by(rule, i)),
        key=lambda i: (i.pushed_at, i.digest),
    )
    if selection.count_type == "imageCountMoreThan":
        return selected[: max(0, len(selected) - selection.count_number)]

    def age(i: Image) -> timedelta:
        if selection.count_type == "sinceImagePulled" and i.last_pulled_at:
            return NOW - i.last_pulled_at
        return NOW - i.pushed_at

    return [i for i in selected if age(i) > timedelta(days=selection.count_number)]


def by_the_book(rules: Policy, repository: Sequence[Image]) -> dict[str, int]:
    """ECR's evaluator as its guide words it, plus keep rules.

    Every rule marks images as if it were alone; then, by priority, a rule
    expires what it marked unless the image is already expired or a higher
    rule's tags select it (a keep rule only holds the images it keeps).
    """
    marked = {
        r.priority: {i.digest for i in marked_by(r, repository)} for r in rules.rules
    }

    def holds(higher: Rule, image: Image) -> bool:
        kept = higher.action == "expire" or image.digest not in marked[higher.priority]
        return selected_by(higher, image) and kept

    result: dict[str, int] = {}
    for place, current in enumerate(rules.rules):
        if current.action == "keep":
            continue
        for image in marked_by(current, repository):
            if image.digest in result:
                continue
            if any(holds(higher, image) for higher in rules.rules[:place]):
                continue
            result[image.digest] = current.priority
    return result


def expiry_map(evaluation: Evaluation) -> dict[str, int]:
    return {e.image.digest: e.rule_priority for e in evaluation.expiries}


@PROPERTIES
@given(policies(), repositories())
def test_agrees_with_the_evaluator_as_documented(rules, repository):
    assert expiry_map(evaluate(rules, repository, NOW)) == by_the_book(
        rules, repository
    )


@PROPERTIES
@given(policies(), repositories())
def test_no_image_is_expired_twice(rules, repository):
    digests = [e.image.digest for e in evaluate(rules, repository, NOW).expiries]

    assert len(digests) == len(set(digests))


@PROPERTIES
@given(policies(), repositories())
def test_no_rule_expires_an_image_a_higher_rule_holds(rules, repository):
    result = evaluate(rules, repository, NOW)
    kept_by = {o.rule.priority: {i.digest for i in o.kept} for o in result.outcomes}

    for expiry in result.expiries:
        for higher in rules.rules:
            if higher.priority >= expiry.rule_priority:
                break
            if higher.action == "expire":
                assert not selected_by(higher, expiry.image)
            else:
                assert expiry.image.digest not in kept_by[higher.priority]


@PROPERTIES
@given(policies(), repositories())
def test_each_expiry_meets_its_rule(rules, repository):
    for expiry in evaluate(rules, repository, NOW).expiries:
        assert expiry.rule.action == "expire"
        assert selected_by(expiry.rule, expiry.image)
        assert expiry.image in marked_by(expiry.rule, repository)


@PROPERTIES
@given(policies(), repositories())
def test_a_count_rule_never_expires_its_newest_images(rules, repository):
    result = evaluate(rules, repository, NOW)

    for outcome in result.outcomes:
        selection = outcome.rule.selection
        if selection.count_type != "imageCountMoreThan":
            continue
        selected = sorted(
            (i for i in repository if selected_by(outcome.rule, i)),
            key=lambda i: (i.pushed_at, i.digest),
        )
        newest = selected[len(selected) - selection.count_number :]
        assert not set(newest) & set(outcome.expired)


@PROPERTIES
@given(rule_shapes("tagged"), repositories())
def test_one_count_rule_leaves_exactly_the_newest(shape, repository):
    shape = {**shape, "count_type": "imageCountMoreThan", "action": "expire"}
    rules = from_shapes([shape], [1])
    selected = [i for i in repository if selected_by(rules.rules[0], i)]

    result = evaluate(rules, repository, NOW)

    left = [i for i in selected if i.digest not in result.expired_digests]
    assert len(left) == min(len(selected), shape["count_number"])
    assert all(i.pushed_at >= e.image.pushed_at for i in left for e in result.expiries)


@PROPERTIES
@given(policies(), repositories(), st.randoms(use_true_random=False))
def test_results_do_not_depend_on_the_order_of_images(rules, repository, random):
    shuffled = list(repository)
    random.shuffle(shuffled)

    assert evaluate(rules, shuffled, NOW) == evaluate(rules, repository, NOW)


@PROPERTIES
@given(policies(), repositories())
def test_each_image_has_at_most_one_outcome(rules, repository):
    result = evaluate(rules, repository, NOW)
    placed = [i.digest for o in result.outcomes for i in (*o.expired, *o.kept)]

    assert len(placed) == len(set(placed))
    assert all(not o.expired for o in result.outcomes if o.rule.action == "keep")


@PROPERTIES
@given(policies(), repositories(), rule_shapes("tagged") | rule_shapes("any"))
def test_a_keep_rule_in_front_never_expires_more(rules, repository, shape):
    document = rules.to_json()
    for entry in document["rules"]:
        entry["rulePriority"] += 1
    keep = from_shapes([{**shape, "action": "keep"}], [1]).to_json()["rules"]
    guarded = policy_from_json({"rules": keep + document["rules"]})

    before = evaluate(rules, repository, NOW).expired_digests
    after = evaluate(guarded, repository, NOW).expired_digests

    assert after <= before


@PROPERTIES
@given(policies(), repositories())
def test_a_lower_rule_changes_nothing_above_it(rules, repository):
    if len(rules.rules) < 2:
        return
    shorter = Policy(rules.rules[:-1])
    last = rules.rules[-1].priority

    full = expiry_map(evaluate(rules, repository, NOW))
    above = {digest: p for digest, p in full.items() if p != last}

    assert expiry_map(evaluate(shorter, repository, NOW)) == above


@PROPERTIES
@given(policies())
def test_canonical_json_round_trips(rules):
    assert parse_policy(json.dumps(rules.to_json())) == rules
