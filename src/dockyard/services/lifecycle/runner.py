"""Applying lifecycle policies to repositories: which policy governs a
repository, what it would expire (a preview), and expiring it.

A policy is stored for a target: a repository name, a namespace (`team`, its
repository and everything under it) or a glob (`team/app-*`). The most
specific target governs a repository: its own name first, then the target
that pins down most of its name (`team/app-*` before `team`, `team` before
`team*`). Policies see each repository's top-level images; the manifests an
expired index lists and the referrers of an expired image go with it, unless
something else still needs them.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import anyio.to_thread

from dockyard.core.digest import Digest
from dockyard.core.errors import NameInvalid
from dockyard.core.registry import Registry
from dockyard.metadata.collection import (
    CollectionStore,
    ImageRow,
    LifecycleStore,
    ManifestRow,
)
from dockyard.services.audit import Auditor
from dockyard.services.auth.permissions import pattern_covers
from dockyard.services.gc import reach
from dockyard.services.lifecycle.policy import (
    Evaluation,
    Expiry,
    Image,
    Policy,
    PolicyInvalid,
    evaluate,
    policy_from_json,
)

logger = logging.getLogger(__name__)


# Why an image the policy chose is left in place.
PUSHED_LATELY = "pushed within the grace period"
CHANGED = "retagged, pushed again or listed by an index since it was chosen"


@dataclass(frozen=True, slots=True)
class Held:
    expiry: Expiry
    reason: str
    # When it was last pushed (or cached, or checked), if that is the reason.
    last_pushed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RepositoryEvaluation:
    repository: str
    target: str
    # What expires (or, run, expired).
    evaluation: Evaluation
    # What the policy chose but leaves in place.
    held: tuple[Held, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "repository": self.repository,
            "policy": self.target,
            "bytes": self.evaluation.bytes_freed,
            "expired": [_expiry_json(e) for e in self.evaluation.expiries],
            "held": [_held_json(held) for held in self.held],
        }


def _held_json(held: Held) -> dict[str, object]:
    last = held.last_pushed_at.isoformat() if held.last_pushed_at else None
    return {**_expiry_json(held.expiry), "reason": held.reason, "last_pushed_at": last}


def _expiry_json(expiry: Expiry) -> dict[str, object]:
    return {
        "digest": expiry.image.digest,
        "tags": list(expiry.image.tags),
        "pushed_at": expiry.image.pushed_at.isoformat(),
        "rule": expiry.rule_priority,
        "size": expiry.image.size,
    }


_TARGET = re.compile(r"^[a-z0-9][a-z0-9._/*?-]{0,254}$")


def check_target(target: str) -> str:
    """A repository, a namespace or a glob of repositories, else NameInvalid."""
    if not _TARGET.fullmatch(target) or "//" in target:
        raise NameInvalid(
            f"invalid policy target {target!r}: a repository, a namespace or a "
            "glob such as team/app-*"
        )
    return target


def governing_target(targets: list[str], repository: str) -> str | None:
    """The most specific target covering `repository`, if any."""
    if repository in targets:
        return repository
    covering = [t for t in targets if pattern_covers(t, repository)]
    return max(covering, key=_specificity) if covering else None


def _specificity(target: str) -> tuple[int, bool, int, str]:
    """How much of a repository's name a target pins down.

    A namespace `team` pins `team/`; a glob pins the text before its first
    wildcard, so `team/app-*` is more specific than `team`, and `team*`, which
    also covers `teams/...`, less. A namespace wins a tie with a glob; the
    target itself breaks the remaining ties, so the answer never depends on
    the order policies were stored in.
    """
    literal = re.split(r"[*?]", target, maxsplit=1)[0]
    is_glob = literal != target
    pinned = len(literal) if is_glob else len(target) + 1
    return pinned, not is_glob, len(target), target


class LifecycleRunner:
    def __init__(
        self,
        registry: Registry,
        store: LifecycleStore,
        collection: CollectionStore,
        auditor: Auditor,
        grace: timedelta,
    ) -> None:
        self._registry = registry
        self._store = store
        self._collection = collection
        self.auditor = auditor
        self._grace = grace

    @property
    def grace_seconds(self) -> int:
        return int(self._grace.total_seconds())

    async def preview(
        self, repository: str | None = None
    ) -> list[RepositoryEvaluation]:
        """What every policy (or the one governing `repository`) would expire
        now, and what it chose but holds back for the grace period."""
        policies = await self._policies()
        names = [repository] if repository else await self._store.repositories()
        results = []
        for name in sorted(names):
            target = governing_target(list(policies), name)
            if target is None:
                continue
            rows = await self._store.images(name)
            images = [
                Image(row.digest, row.tags, row.pushed_at, row.last_pulled_at, row.size)
                for row in rows
            ]
            try:
                # Off the event loop: thousands of images and rules take time.
                evaluation = await anyio.to_thread.run_sync(
                    evaluate, policies[target], images, datetime.now(UTC)
                )
            except Exception:
                logger.exception("policy %s failed on %s; skipped", target, name)
                continue
            results.append(self._held_back(name, target, evaluation, rows))
        return results

    def _held_back(
        self, name: str, target: str, evaluation: Evaluation, rows: list[ImageRow]
    ) -> RepositoryEvaluation:
        """The evaluation without the images pushed within the grace period,
        which a run would not expire yet."""
        cutoff = datetime.now(UTC) - self._grace
        pushed = {row.digest: row.last_pushed_at for row in rows}
        recent = {digest: at for digest, at in pushed.items() if at >= cutoff}
        chosen = evaluation.expiries
        due = {e.image.digest for e in chosen if e.image.digest not in recent}
        held = tuple(
            Held(e, PUSHED_LATELY, recent[e.image.digest])
            for e in chosen
            if e.image.digest in recent
        )
        return RepositoryEvaluation(name, target, evaluation.limited_to(due), held)

    async def run(self, actor: str = "lifecycle") -> list[RepositoryEvaluation]:
        """Expire what the policies choose; the results say what went and
        what was held back."""
        results = []
        for result in await self.preview():
            if result.evaluation.expiries:
                result = await self._apply(result, actor)
            results.append(result)
        return results

    async def _apply(
        self, result: RepositoryEvaluation, actor: str
    ) -> RepositoryEvaluation:
        cutoff = datetime.now(UTC) - self._grace
        rows = await self._collection.repository_manifests(result.repository)
        expired, changed = set(), []
        for expiry in result.evaluation.expiries:
            digest = expiry.image.digest
            if await self._expire(result, expiry.image, expiry.rule_priority, actor):
                expired.add(digest)
            # Gone already: another run (a worker's schedule, the command
            # line) expired it meanwhile, which is no reason to report it.
            elif await self._still_there(result, digest):
                changed.append(Held(expiry, CHANGED))

        needed = still_needed(rows, expired, cutoff)
        orphans = [r for r in descendants(rows, expired) if r.digest not in needed]
        for row in orphans:
            await self._collection.delete_untagged(row.id, cutoff)
        return replace(
            result,
            evaluation=result.evaluation.limited_to(expired),
            held=(*result.held, *changed),
        )

    async def _still_there(self, result: RepositoryEvaluation, digest: str) -> bool:
        metadata = self._registry.metadata
        found = await metadata.get_manifest(result.repository, Digest.parse(digest))
        return found is not None

    async def _policies(self) -> dict[str, Policy]:
        """The stored policies that still read; one that does not (stored
        under older rules) is logged and skipped, not fatal to the rest."""
        policies = {}
        for target, document in (await self._store.policies()).items():
            try:
                policies[target] = policy_from_json(json.loads(document))
            except (PolicyInvalid, ValueError) as exc:
                logger.error("lifecycle policy for %s skipped: %s", target, exc)
        return policies

    async def _expire(
        self, result: RepositoryEvaluation, image: Image, rule: int, actor: str
    ) -> bool:
        """Expire the image if it still stands as it was evaluated: the same
        tags, listed by no index, and older than the grace period."""
        cutoff = datetime.now(UTC) - self._grace
        expired = await self._collection.expire_manifest(
            result.repository, image.digest, image.tags, cutoff
        )
        if not expired:
            return False
        target = f"{result.repository}@{image.digest}"
        detail = {"policy": result.target, "rule": rule, "tags": list(image.tags)}
        await self.auditor.record_async(
            "lifecycle.expire", actor, target=target, detail=detail
        )
        return True


def still_needed(
    rows: list[ManifestRow], expired: set[str], cutoff: datetime
) -> set[str]:
    """What stays reachable without the expired images: from tags, recent
    pushes and top-level images that stay, through children and referrers.

    `rows` are from before the expiry, so a manifest only an expired index
    listed is no top-level image of its own.
    """
    listed = {child for row in rows for child in row.children}
    roots = [
        row
        for row in rows
        if row.digest not in expired
        and (
            row.tagged
            or row.pushed_at >= cutoff
            or (row.digest not in listed and not row.subject)
        )
    ]
    return reach(rows, roots)


def descendants(rows: list[ManifestRow], roots: set[str]) -> list[ManifestRow]:
    """Manifests reached from `roots` through index children and referrers,
    nearest first."""
    by_digest = {row.digest: row for row in rows}
    referrers: dict[str, list[ManifestRow]] = {}
    for row in rows:
        if row.subject:
            referrers.setdefault(row.subject, []).append(row)

    found: list[ManifestRow] = []
    seen = set(roots)
    frontier = [by_digest[d] for d in roots if d in by_digest]
    while frontier:
        reached = [
            *(by_digest[c] for row in frontier for c in row.children if c in by_digest),
            *(r for row in frontier for r in referrers.get(row.digest, [])),
        ]
        frontier = [row for row in reached if row.digest not in seen]
        seen |= {row.digest for row in frontier}
        found += frontier
    return found
