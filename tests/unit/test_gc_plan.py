"""What garbage collection plans from a metadata snapshot, before it deletes."""

import itertools
from datetime import UTC, datetime, timedelta

from dockyard.metadata.collection import ManifestRow, Snapshot
from dockyard.services.gc import Plan, plan

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
GRACE = timedelta(hours=1)
UPLOAD_MAX_AGE = timedelta(days=7)
OLD = NOW - timedelta(hours=3)
YOUNG = NOW - timedelta(minutes=5)

_ids = itertools.count(1)


def digest(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")


def manifest(
    name: str,
    repository: str = "team/app",
    pushed_at: datetime = OLD,
    tagged: bool = False,
    children: tuple[str, ...] = (),
    subject: str | None = None,
) -> ManifestRow:
    """A manifest with a blob of its own, `<name>-layer`."""
    return ManifestRow(
        id=next(_ids),
        repository=repository,
        digest=digest(name),
        subject=digest(subject) if subject else None,
        pushed_at=pushed_at,
        tagged=tagged,
        children=[digest(c) for c in children],
        blobs=[digest(f"{name}-layer")],
    )


def snapshot(
    *rows: ManifestRow,
    links: dict[tuple[str, str], datetime] | None = None,
    blobs: dict[str, tuple[int, datetime]] | None = None,
    uploads: dict[str, datetime] | None = None,
) -> Snapshot:
    """The rows, with each blob they name linked, stored and old, plus extras."""
    linked = {(row.repository, d): OLD for row in rows for d in row.blobs}
    stored = {d: (100, OLD) for row in rows for d in row.blobs}
    return Snapshot(
        list(rows),
        {**linked, **(links or {})},
        {**stored, **(blobs or {})},
        uploads or {},
    )


def run(state: Snapshot, untagged: bool = False) -> Plan:
    return plan(state, NOW, GRACE, UPLOAD_MAX_AGE, untagged)


def doomed(work: Plan) -> set[tuple[str, str]]:
    return {(row.repository, row.digest) for row in work.manifests}


def layer(name: str) -> str:
    return digest(f"{name}-layer")


def test_old_unreferenced_link_and_orphan_blob_are_planned():
    state = snapshot(
        manifest("app", tagged=True),
        links={("team/app", digest("loose")): OLD},
        blobs={digest("loose"): (7, OLD), digest("orphan"): (5, OLD)},
    )

    work = run(state)

    assert work.links == {"team/app": [digest("loose")]}
    assert work.blobs == {digest("loose"): 7, digest("orphan"): 5}
    assert work.manifests == []


def test_young_links_and_blobs_are_in_their_grace_period():
    state = snapshot(
        links={("team/app", digest("linked")): YOUNG},
        blobs={digest("linked"): (7, OLD), digest("stored"): (5, YOUNG)},
    )

    work = run(state)

    assert work.links == {}
    assert work.blobs == {}


def test_grace_period_ends_exactly_at_the_cutoff():
    cutoff = NOW - GRACE
    state = snapshot(
        links={
            ("team/app", digest("kept")): cutoff,
            ("team/app", digest("gone")): cutoff - timedelta(microseconds=1),
        },
        blobs={digest("kept"): (1, OLD), digest("gone"): (1, OLD)},
    )

    assert run(state).links == {"team/app": [digest("gone")]}


def test_blob_survives_while_one_repository_still_needs_it():
    shared = digest("shared")
    needed = manifest("app", repository="team/app", tagged=True)
    needed.blobs.append(shared)
    state = snapshot(
        needed,
        links={
            ("team/app", shared): OLD,
            ("team/old", shared): OLD,
            ("team/new", digest("fresh")): YOUNG,
            ("team/old", digest("fresh")): OLD,
        },
        blobs={shared: (9, OLD), digest("fresh"): (3, OLD)},
    )

    work = run(state)

    assert {r: sorted(d) for r, d in work.links.items()} == {
        "team/old": sorted([shared, digest("fresh")])
    }
    assert work.blobs == {}


def test_blob_goes_once_no_repository_needs_it():
    shared = digest("shared")
    state = snapshot(
        links={("team/a", shared): OLD, ("team/b", shared): OLD},
        blobs={shared: (9, OLD)},
    )

    work = run(state)

    assert work.links == {"team/a": [shared], "team/b": [shared]}
    assert work.blobs == {shared: 9}


def test_untagged_manifests_stay_unless_asked_for():
    state = snapshot(manifest("dangling"))

    work = run(state)

    assert work.manifests == []
    assert work.links == {}
    assert work.blobs == {}


def test_untagged_mode_keeps_tagged_manifests_and_drops_unreachable_old_ones():
    state = snapshot(manifest("tagged", tagged=True), manifest("dangling"))

    work = run(state, untagged=True)

    assert doomed(work) == {("team/app", digest("dangling"))}
    assert work.links == {"team/app": [layer("dangling")]}
    assert work.blobs == {layer("dangling"): 100}


def test_untagged_mode_keeps_children_of_kept_indexes_at_any_depth():
    state = snapshot(
        manifest("index", tagged=True, children=("nested", "amd64")),
        manifest("nested", children=("arm64",)),
        manifest("amd64"),
        manifest("arm64"),
        manifest("other"),
    )

    work = run(state, untagged=True)

    assert doomed(work) == {("team/app", digest("other"))}


def test_untagged_mode_drops_children_of_dropped_indexes():
    state = snapshot(
        manifest("index", children=("amd64", "arm64")),
        manifest("amd64"),
        manifest("arm64"),
    )

    work = run(state, untagged=True)

    assert doomed(work) == {
        ("team/app", digest(name)) for name in ("index", "amd64", "arm64")
    }
    assert work.bytes == 300


def test_untagged_mode_lists_an_index_before_the_manifests_it_lists():
    # Deleting a manifest re-checks that no index lists it: the index must
    # go first, or its children would wait for the next run.
    state = snapshot(
        manifest("arm64"),
        manifest("nested", children=("arm64",)),
        manifest("amd64"),
        manifest("index", children=("amd64", "nested")),
    )

    order = [row.digest for row in run(state, untagged=True).manifests]

    assert order.index(digest("index")) < order.index(digest("amd64"))
    assert order.index(digest("index")) < order.index(digest("nested"))
    assert order.index(digest("nested")) < order.index(digest("arm64"))


def test_untagged_mode_matches_children_within_their_repository():
    state = snapshot(
        manifest("index", repository="team/a", tagged=True, children=("child",)),
        manifest("child", repository="team/a"),
        manifest("child", repository="team/b"),
    )

    work = run(state, untagged=True)

    assert doomed(work) == {("team/b", digest("child"))}


def test_untagged_mode_keeps_referrers_of_kept_manifests_transitively():
    state = snapshot(
        manifest("image", tagged=True),
        manifest("signature", subject="image"),
        manifest("signature-of-signature", subject="signature"),
        manifest("index", tagged=True, children=("child",)),
        manifest("child"),
        manifest("sbom-of-child", subject="child"),
        manifest("dangling"),
        manifest("signature-of-dangling", subject="dangling"),
    )

    work = run(state, untagged=True)

    assert doomed(work) == {
        ("team/app", digest("dangling")),
        ("team/app", digest("signature-of-dangling")),
    }


def test_untagged_mode_keeps_recent_pushes_and_what_they_name():
    # A push in flight: children and blobs land before the index names them.
    state = snapshot(
        manifest("index", pushed_at=YOUNG, children=("old-child",)),
        manifest("old-child"),
        manifest("new-image", pushed_at=YOUNG),
    )

    work = run(state, untagged=True)

    assert work.manifests == []
    assert work.blobs == {}


def test_a_referrer_does_not_keep_its_subject():
    state = snapshot(
        manifest("image"),
        manifest("signature", pushed_at=YOUNG, subject="image"),
    )

    work = run(state, untagged=True)

    assert doomed(work) == {("team/app", digest("image"))}


def test_blob_shared_with_a_dropped_manifest_stays_for_the_kept_one():
    kept = manifest("kept", tagged=True)
    dropped = manifest("dropped")
    dropped.blobs.append(layer("kept"))
    state = snapshot(kept, dropped)

    work = run(state, untagged=True)

    assert work.links == {"team/app": [layer("dropped")]}
    assert work.blobs == {layer("dropped"): 100}


def test_stale_uploads_are_planned_by_age():
    state = snapshot(
        uploads={
            "stale": NOW - UPLOAD_MAX_AGE - timedelta(seconds=1),
            "open": NOW - UPLOAD_MAX_AGE + timedelta(minutes=1),
            "new": YOUNG,
        }
    )

    assert run(state).uploads == ["stale"]


def test_bytes_sum_the_sizes_of_planned_blobs():
    state = snapshot(
        blobs={
            digest("a"): (1000, OLD),
            digest("b"): (234, OLD),
            digest("young"): (5000, YOUNG),
        }
    )

    work = run(state)

    assert work.bytes == 1234
    assert Plan().bytes == 0
