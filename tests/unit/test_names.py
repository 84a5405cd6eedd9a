import pytest

from dockyard.core.digest import Digest
from dockyard.core.errors import DigestInvalid, NameInvalid, TagInvalid
from dockyard.core.names import check_name, check_tag, namespace_of, parse_reference


@pytest.mark.parametrize(
    "name",
    ["a", "library/debian", "a/b/c/d", "a.b_c__d-e---f/g9", "0", "x" * 255],
)
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A",
        "a//b",
        "/a",
        "a/",
        "-a",
        "a-",
        "a___b",
        "a..b",
        "a b",
        "a/_b",
        "x" * 256,
    ],
)
def test_invalid_names(name):
    with pytest.raises(NameInvalid):
        check_name(name)


@pytest.mark.parametrize("tag", ["latest", "v1.0", "_x", "A-b.c_d", "a" * 128])
def test_valid_tags(tag):
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a" * 129, "a/b", "a:b", "ä"])
def test_invalid_tags(tag):
    with pytest.raises(TagInvalid):
        check_tag(tag)


def test_reference_with_colon_is_a_digest():
    assert isinstance(parse_reference("sha256:" + "0" * 64), Digest)
    with pytest.raises(DigestInvalid):
        parse_reference("sha256:nothex")


def test_reference_without_colon_is_a_tag():
    assert parse_reference("v1") == "v1"


def test_namespace_is_the_first_component():
    assert namespace_of("team/app/web") == "team"
    assert namespace_of("app") == "app"


def test_trailing_newline_is_not_part_of_a_valid_name_or_tag():
    with pytest.raises(NameInvalid):
        check_name("a\n")
    with pytest.raises(TagInvalid):
        check_tag("latest\n")
