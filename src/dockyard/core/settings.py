"""Per-repository and per-namespace settings the registry enforces on pushes."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TagRule:
    """Tag immutability: once pushed, a protected tag never moves.

    `exclusions` are tag globs (`*` any text) that stay mutable, such as
    `latest` or `dev-*`. Pushing the same manifest under a protected tag
    again is allowed: nothing moves.
    """

    immutable: bool = False
    exclusions: tuple[str, ...] = ()

    def protects(self, tag: str) -> bool:
        if not self.immutable:
            return False
        return not any(fnmatch.fnmatchcase(tag, glob) for glob in self.exclusions)


@dataclass(frozen=True, slots=True)
class Usage:
    """Bytes of blobs linked into a repository or a namespace; a blob counts
    once per repository that links it."""

    name: str
    bytes: int
    repositories: int = 1
