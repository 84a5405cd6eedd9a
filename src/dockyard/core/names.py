"""Repository names, tags and references, checked against the spec's grammar."""

from __future__ import annotations

import re

from dockyard.core.digest import Digest
from dockyard.core.errors import NameInvalid, TagInvalid

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")

# Clients join host, "/" and name and many cap the whole at 255 characters.
MAX_NAME_LENGTH = 255


def check_name(name: str) -> str:
    """Return `name` if it is a valid repository name, else raise `NameInvalid`."""
    if len(name) > MAX_NAME_LENGTH:
        raise NameInvalid(
            f"repository name is {len(name)} characters long; "
            f"the limit is {MAX_NAME_LENGTH}"
        )
    if not _NAME.fullmatch(name):
        raise NameInvalid(
            f"invalid repository name {name!r}: use lowercase letters, digits and "
            "separators (. _ __ -) in path components joined by /"
        )
    return name


def check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise TagInvalid(
            f"invalid tag {tag!r}: up to 128 letters, digits, _ . and -, "
            "not starting with . or -"
        )
    return tag


def namespace_of(name: str) -> str:
    """The first path component, which owns permissions and quotas."""
    return name.split("/", 1)[0]


def parse_reference(reference: str) -> str | Digest:
    """A manifest reference: a `Digest` if it contains ':', otherwise a tag."""
    if ":" in reference:
        return Digest.parse(reference)
    return check_tag(reference)
