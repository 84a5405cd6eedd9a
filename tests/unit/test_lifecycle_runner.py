from datetime import UTC, datetime, timedelta

import pytest

from dockyard.metadata.collection import ManifestRow
from dockyard.services.lifecycle.runner import (
    descendants,
    governing_target,
    still_needed,
)


@pytest.mark.parametrize(
    ("targets", "repository", "governing"),
    [
        (["team", "team/app"], "team/app", "team/app"),
        (["team/app*", "team/app"], "team/app", "team/app"),
        (["team*", "team"], "team/app", "team"),
        (["*/app", "team"], "team/app", "team"),
        (["team/*", "team"], "team/app", "team"),
        (["team", "team/app-*"], "team/app-ci", "team/app-*"),
        (["team", "team/app"], "team/app/cache", "team/app"),
        (["team*"], "teams/app", "team*"),
        (["team", "team/app"], "teams/app", None),
        ([], "team/app", None),
    ],
)
def test_the_most_specific_target_governs(
    targets: list[str], repository: str, governing: str | None
) -> None:
    assert governing_target(targets, repository) == governing
    assert governing_target(targets[::-1], repository) == governing


# What goes with an expired image: found by an attack, where the signature of
# a child that a kept index still lists was deleted.

OLD = datetime(2020, 1, 1, tzinfo=UTC)
CUTOFF = datetime(2026, 1, 1, tzinfo=UTC)


def row(
    number: int,
    digest: str,
    children: tuple[str, ...] = (),
    subject: str | None = None,
    tagged: bool = False,
) -> ManifestRow:
    return ManifestRow(
        number, "lc/app", digest, subject, OLD, tagged, children=list(children)
    )


def orphans(rows: list[ManifestRow], expired: set[str]) -> set[str]:
    needed = still_needed(rows, expired, CUTOFF)
    return {r.digest for r in descendants(rows, expired) if r.digest not in needed}


def test_an_expired_index_takes_only_what_nothing_else_needs() -> None:
    rows = [
        row(1, "old", ("c1", "c2"), tagged=True),
        row(2, "new", ("c1", "c3"), tagged=True),
        row(3, "c1"),
        row(4, "c2"),
        row(5, "c3"),
        row(6, "sig-c1", subject="c1"),
        row(7, "sig-c2", subject="c2"),
        row(8, "sig-old", subject="old"),
    ]

    assert orphans(rows, {"old"}) == {"c2", "sig-c2", "sig-old"}


def test_a_tagged_child_keeps_its_referrers() -> None:
    rows = [
        row(1, "old", ("c1",)),
        row(2, "c1", tagged=True),
        row(3, "sig-c1", subject="c1"),
    ]

    assert orphans(rows, {"old"}) == set()


def test_a_recent_manifest_is_not_taken() -> None:
    rows = [row(1, "old", ("c1",)), row(2, "c1")]
    rows[1].pushed_at = CUTOFF + timedelta(hours=1)

    assert orphans(rows, {"old"}) == set()
