"""Lifecycle policies at work: `dockyard policy`, /api/v1/policies/<target>,
/api/v1/lifecycle/preview and /run, pull times and the schedule in `serve`.

Policies act on every repository they cover, so the module has a registry of
its own and each test a namespace of its own. Images are made old by moving
their push time back, straight in the registry's database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    OCI_INDEX,
    assert_error,
    manifest_descriptor,
    oci_index,
    oci_manifest,
    push_artifact,
    push_image,
    push_image_blobs,
    put_manifest,
    sha256,
)
from tests.authserver import ALICE, BOB, ROOT, AuthServer, auth_server, run_cli
from tests.server import RunningServer, start_server

SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
# How SQLAlchemy stores a datetime in SQLite: UTC, without an offset.
DB_TIME = "%Y-%m-%d %H:%M:%S.%f"


def rule(
    priority: int, tag_status: str, count_type: str, count: int, **selection: Any
) -> dict[str, Any]:
    """A rule in ECR's format; `selection` adds tagPrefixList and the like."""
    chosen: dict[str, Any] = {"tagStatus": tag_status, **selection}
    chosen["countType"] = count_type
    if count_type != "imageCountMoreThan":
        chosen["countUnit"] = "days"
    chosen["countNumber"] = count
    return {
        "rulePriority": priority,
        "selection": chosen,
        "action": {"type": "expire"},
    }


# Keep two release-* images; untagged ones a week; anything else 30 days.
POLICY = {
    "rules": [
        {
            "description": "the two newest releases",
            **rule(1, "tagged", "imageCountMoreThan", 2, tagPrefixList=["release"]),
        },
        rule(2, "untagged", "sinceImagePushed", 7),
        rule(3, "any", "sinceImagePushed", 30),
    ]
}
KEEP_ONE = {"rules": [rule(1, "any", "imageCountMoreThan", 1)]}
KEEP_FIVE = {"rules": [rule(1, "any", "imageCountMoreThan", 5)]}
MONTH = {"rules": [rule(1, "any", "sinceImagePushed", 30)]}
UNPULLED_WEEK = {"rules": [rule(1, "any", "sinceImagePulled", 7)]}

# One fault of each kind the format forbids, in four rules.
FAULTY = {
    "rules": [
        rule(1, "any", "imageCountMoreThan", 5),
        {
            **rule(2, "tagged", "imageCountMoreThan", 0, countUnit="days"),
            "comment": "not a field",
        },
        rule(2, "tagged", "sinceImagePushed", 30, tagPrefixList=["v"]),
        rule(3, "untagged", "sinceImagePushed", 1),
    ]
}
FAULTS = [
    ("rules[1] (priority 2)", "unknown field comment"),
    ("rules[1] (priority 2)", "selection.tagStatus tagged needs"),
    ("rules[1] (priority 2)", "selection.countUnit is not allowed"),
    ("rules[1] (priority 2)", "selection.countNumber must be a positive integer"),
    ("rules[1] and rules[2]", "rulePriority 2 is used more than once"),
    ("rules[0] (priority 1)", "selection.tagStatus any needs the highest"),
]

# The registry, its command line and its database


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("lifecycle")) as running:
        yield running


@pytest.fixture
def http(registry: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=60) as client:
        yield client


@pytest.fixture
def ns() -> str:
    """A namespace no other test's policies cover."""
    return f"lc{uuid.uuid4().hex[:10]}"


def dockyard(server: RunningServer, *args: str, stdin: str | None = None) -> str:
    """Run a `dockyard` command against the server's data that must succeed."""
    result = run_cli(server.data_dir, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def cli_json(server: RunningServer, *args: str) -> Any:
    return json.loads(dockyard(server, *args, "--json"))


def database(server: RunningServer) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(server.data_dir / "dockyard.db"))


def set_time(
    server: RunningServer, repo: str, digest: str, column: str, days: float
) -> None:
    """Set one of a manifest's times (pushed_at, ...) to `days` ago."""
    moment = (datetime.now(UTC) - timedelta(days=days)).strftime(DB_TIME)
    statement = (
        f"UPDATE manifests SET {column} = ? WHERE digest = ? AND repository_id = "
        "(SELECT id FROM repositories WHERE name = ?)"
    )
    with database(server) as db, db:
        assert db.execute(statement, (moment, digest, repo)).rowcount == 1


def age(server: RunningServer, repo: str, days: float, *digests: str) -> None:
    """Make manifests as old as if pushed `days` ago and never since."""
    for digest in digests:
        for column in ("pushed_at", "last_pushed_at"):
            set_time(server, repo, digest, column, days)


def last_pulled(server: RunningServer, repo: str, digest: str) -> datetime | None:
    query = (
        "SELECT last_pulled_at FROM manifests WHERE digest = ? AND repository_id = "
        "(SELECT id FROM repositories WHERE name = ?)"
    )
    with database(server) as db:
        [(value,)] = db.execute(query, (digest, repo)).fetchall()
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


# Images


def image_size(body: bytes) -> int:
    """The bytes of an image's config and layers, as a preview counts them."""
    manifest = json.loads(body)
    return int(manifest["config"]["size"]) + sum(
        layer["size"] for layer in manifest["layers"]
    )


def push_untagged(http: httpx.Client, repo: str) -> tuple[bytes, str]:
    config, layers = push_image_blobs(http, repo)
    body = oci_manifest(config, layers)
    response = put_manifest(http, repo, sha256(body), body)
    assert response.status_code == 201, response.text
    return body, sha256(body)


def push_index(
    http: httpx.Client, repo: str, reference: str, children: list[bytes]
) -> tuple[bytes, str]:
    body = oci_index([manifest_descriptor(child) for child in children])
    response = put_manifest(http, repo, reference, body, OCI_INDEX)
    assert response.status_code == 201, response.text
    return body, sha256(body)


def manifest_status(http: httpx.Client, repo: str, digest: str) -> int:
    return http.head(f"/v2/{repo}/manifests/{digest}").status_code


def tags(http: httpx.Client, repo: str) -> list[str]:
    response = http.get(f"/v2/{repo}/tags/list")
    assert response.status_code == 200, response.text
    return sorted(response.json()["tags"])


def put_policy(http: httpx.Client, target: str, policy: dict[str, Any]) -> None:
    response = http.put(f"/api/v1/policies/{target}", json=policy)
    assert response.status_code == 200, response.text


def api_preview(http: httpx.Client, repo: str | None = None) -> Any:
    params = {"repository": repo} if repo else {}
    response = http.get("/api/v1/lifecycle/preview", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def expired(result: dict[str, Any]) -> list[tuple[int, str]]:
    """(rule, digest) for each expiry, in the order the preview lists them."""
    return [(entry["rule"], entry["digest"]) for entry in result["expired"]]


def audit_events(server: RunningServer, action: str) -> list[dict[str, Any]]:
    output = dockyard(server, "audit", "--json", "--limit", "1000", "--action", action)
    return [json.loads(line) for line in output.splitlines()]


# Storing policies


def test_cli_puts_gets_lists_and_deletes_a_policy(
    registry: RunningServer, ns: str, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(POLICY))

    put = dockyard(registry, "policy", "put", ns, "--file", str(policy_file))
    stored = json.loads(dockyard(registry, "policy", "get", ns))
    listed = dockyard(registry, "policy", "list").split()
    dockyard(registry, "policy", "delete", ns)
    missing = run_cli(registry.data_dir, "policy", "get", ns)

    assert f"policy for {ns}: 3 rules" in put
    assert stored == POLICY
    assert ns in listed
    assert missing.returncode == 1
    assert f"no policy for {ns}" in missing.stderr
    assert ns not in dockyard(registry, "policy", "list").split()


def test_cli_reads_the_policy_from_standard_input(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    target = f"{ns}/app-*"

    dockyard(registry, "policy", "put", target, "--file", "-", stdin=json.dumps(MONTH))

    assert http.get(f"/api/v1/policies/{target}").json() == MONTH


def test_cli_refuses_an_invalid_policy_with_one_line_per_fault(
    registry: RunningServer, ns: str
) -> None:
    result = run_cli(
        registry.data_dir, "policy", "put", ns, "--file", "-", stdin=json.dumps(FAULTY)
    )

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == len(FAULTS), result.stderr
    for line, (rule_label, field) in zip(lines, FAULTS, strict=True):
        assert line.startswith(f"dockyard: {rule_label}: {field}"), line
    assert ns not in dockyard(registry, "policy", "list").split()


def test_cli_and_api_name_the_same_faults(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    cli = run_cli(
        registry.data_dir, "policy", "put", ns, "--file", "-", stdin=json.dumps(FAULTY)
    )
    response = http.put(f"/api/v1/policies/{ns}", json=FAULTY)

    assert_error(response, 400, "POLICY_INVALID")
    faults = response.json()["errors"][0]["detail"]["faults"]
    assert cli.stderr.splitlines() == [f"dockyard: {fault}" for fault in faults]
    assert_error(http.get(f"/api/v1/policies/{ns}"), 404, "POLICY_UNKNOWN")


def test_api_refuses_a_document_that_is_not_json(http: httpx.Client, ns: str) -> None:
    response = http.put(f"/api/v1/policies/{ns}", content=b'{"rules": [')

    assert_error(response, 400, "POLICY_INVALID")
    [fault] = response.json()["errors"][0]["detail"]["faults"]
    assert "not valid JSON" in fault


def test_invalid_target_is_refused(registry: RunningServer, http: httpx.Client) -> None:
    cli = run_cli(registry.data_dir, "policy", "put", "Team", "--file", "-", stdin="{}")
    response = http.put("/api/v1/policies/Team", json=MONTH)

    assert cli.returncode == 1
    assert "invalid policy target 'Team'" in cli.stderr
    assert_error(response, 400, "NAME_INVALID")


def test_api_puts_gets_and_deletes_a_policy(http: httpx.Client, ns: str) -> None:
    target = f"{ns}/app"

    put = http.put(f"/api/v1/policies/{target}", json=POLICY)
    got = http.get(f"/api/v1/policies/{target}")
    deleted = http.delete(f"/api/v1/policies/{target}")

    assert put.status_code == 200, put.text
    assert put.json() == POLICY
    assert got.status_code == 200
    assert got.json() == POLICY
    assert deleted.status_code == 204
    assert_error(http.get(f"/api/v1/policies/{target}"), 404, "POLICY_UNKNOWN")
    assert_error(http.delete(f"/api/v1/policies/{target}"), 404, "POLICY_UNKNOWN")


def test_policies_are_stored_in_canonical_form(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    # Rules out of order: stored by priority.
    shuffled = {
        "rules": [POLICY["rules"][2], rule(1, "untagged", "sinceImagePushed", 1)]
    }

    put_policy(http, ns, shuffled)

    stored = json.loads(dockyard(registry, "policy", "get", ns))
    assert [r["rulePriority"] for r in stored["rules"]] == [1, 3]


# Preview and run


@dataclass(frozen=True)
class AgedRepository:
    """A repository under POLICY and its images by name: (digest, size)."""

    name: str
    images: dict[str, tuple[str, int]]

    def digest(self, image: str) -> str:
        return self.images[image][0]

    def size(self, image: str) -> int:
        return self.images[image][1]

    def expected(self) -> list[tuple[int, str]]:
        """(rule, digest) POLICY expires. Rule 1 owns every release-* image,
        so release-3, older than 30 days, stays; rule 2 owns the untagged."""
        return [
            (1, self.digest("release-1")),
            (1, self.digest("release-2")),
            (2, self.digest("untagged-old")),
            (3, self.digest("dev-old")),
        ]


@pytest.fixture
def aged(registry: RunningServer, http: httpx.Client, ns: str) -> AgedRepository:
    """`ns/app` under POLICY, with images pushed the given days ago."""
    repo = f"{ns}/app"
    ages = {
        "release-1": 50,
        "release-2": 40,
        "release-3": 35,
        "release-4": 1,
        "dev-old": 45,
        "dev-new": 3,
        "untagged-old": 10,
        "untagged-new": 2,
    }
    images = {}
    for name, days in ages.items():
        if name.startswith("untagged"):
            body, digest = push_untagged(http, repo)
        else:
            body, digest = push_image(http, repo, name)
        age(registry, repo, days, digest)
        images[name] = (digest, image_size(body))
    put_policy(http, repo, POLICY)
    return AgedRepository(repo, images)


def test_preview_lists_the_expiries_by_rule(
    registry: RunningServer, http: httpx.Client, aged: AgedRepository
) -> None:
    repo = aged.name

    [from_api] = api_preview(http, repo)
    [from_cli] = cli_json(registry, "policy", "preview", repo)

    assert from_api == from_cli
    assert from_api["repository"] == repo
    assert from_api["policy"] == repo
    assert expired(from_api) == aged.expected()
    sizes = dict(aged.images.values())
    for entry in from_api["expired"]:
        assert entry["size"] == sizes[entry["digest"]]
    assert from_api["bytes"] == sum(e["size"] for e in from_api["expired"])
    [release_1] = [e for e in from_api["expired"] if e["tags"] == ["release-1"]]
    pushed = datetime.fromisoformat(release_1["pushed_at"])
    assert abs(datetime.now(UTC) - pushed - timedelta(days=50)) < timedelta(minutes=5)


def test_preview_table_totals_the_expiries(
    registry: RunningServer, aged: AgedRepository
) -> None:
    table = dockyard(registry, "policy", "preview", aged.name)

    total = sum(aged.size(name) for name in ("release-1", "release-2", "dev-old"))
    total += aged.size("untagged-old")
    assert f"would expire 4 images, {total} bytes" in table
    assert "release-1" in table


def test_preview_changes_nothing(
    registry: RunningServer, http: httpx.Client, aged: AgedRepository
) -> None:
    repo = aged.name

    api_preview(http, repo)
    dockyard(registry, "policy", "preview", repo)

    assert tags(http, repo) == [
        "dev-new",
        "dev-old",
        "release-1",
        "release-2",
        "release-3",
        "release-4",
    ]
    assert manifest_status(http, repo, aged.digest("untagged-old")) == 200


def test_run_expires_the_images_the_policy_selects(
    registry: RunningServer, http: httpx.Client, aged: AgedRepository
) -> None:
    repo = aged.name

    results = cli_json(registry, "policy", "run")

    [result] = [r for r in results if r["repository"] == repo]
    assert expired(result) == aged.expected()
    assert tags(http, repo) == ["dev-new", "release-3", "release-4"]
    for _, digest in aged.expected():
        response = http.get(f"/v2/{repo}/manifests/{digest}")
        assert_error(response, 404, "MANIFEST_UNKNOWN")
    for name in ("release-3", "release-4", "dev-new", "untagged-new"):
        assert manifest_status(http, repo, aged.digest(name)) == 200, name
    [again] = api_preview(http, repo)
    assert again["expired"] == []


def test_run_holds_back_images_newer_than_the_grace_period(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    _, older = push_image(http, repo, "older")
    _, newer = push_image(http, repo, "newer")
    # A minute old: the older of the two, yet well within the hour's grace.
    age(registry, repo, 1 / 1440, older)
    put_policy(http, repo, KEEP_ONE)

    [preview] = api_preview(http, repo)
    previewed = dockyard(registry, "policy", "preview", repo)
    first = cli_json(registry, "policy", "run")
    text = dockyard(registry, "policy", "run")
    tags_after_first = tags(http, repo)
    second = cli_json(registry, "policy", "run", "--grace-period", "0")

    [held] = [r for r in first if r["repository"] == repo]
    assert preview["expired"] == held["expired"] == []
    assert [e["digest"] for e in preview["held"]] == [older]
    assert [e["digest"] for e in held["held"]] == [older]
    assert held["held"][0]["reason"] == "pushed within the grace period"
    assert held["held"][0]["last_pushed_at"] is not None
    line = f"held back: {repo}@{older[:19]} (older)"
    assert line in previewed and line in text
    assert "pushed within the grace period (3600 s; see --grace-period)" in text
    assert tags_after_first == ["newer", "older"]
    [result] = [r for r in second if r["repository"] == repo]
    assert expired(result) == [(1, older)]
    assert result["held"] == []
    assert tags(http, repo) == ["newer"]
    assert manifest_status(http, repo, newer) == 200


def test_two_runs_at_once_report_each_expiry_once_and_hold_nothing(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    digests = [push_image(http, repo, f"v{number}")[1] for number in range(60)]
    age(registry, repo, 2, *digests)
    put_policy(http, repo, KEEP_ONE)

    # As when the server's schedule and an administrator run at once.
    command = [sys.executable, "-m", "dockyard", "policy", "run", "--json"]
    command += ["--data-dir", str(registry.data_dir)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE) for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]

    results = [r for out in outputs for r in json.loads(out) if r["repository"] == repo]
    reported = sorted(e["digest"] for r in results for e in r["expired"])
    [kept] = tags(http, repo)
    kept_digest = http.head(f"/v2/{repo}/manifests/{kept}").headers[
        "Docker-Content-Digest"
    ]
    assert [run.returncode for run in runs] == [0, 0]
    assert reported == sorted(set(digests) - {kept_digest})
    assert [r["held"] for r in results] == [[]] * len(results)


def test_run_records_each_expiry_in_the_audit_log(
    registry: RunningServer, http: httpx.Client, aged: AgedRepository
) -> None:
    repo = aged.name

    response = http.post("/api/v1/lifecycle/run")

    assert response.status_code == 200, response.text
    events = [
        event
        for event in audit_events(registry, "lifecycle.expire")
        if event["target"].startswith(f"{repo}@")
    ]
    by_target = {event["target"]: event for event in events}
    assert len(by_target) == len(events) == 4
    for rule_priority, digest in aged.expected():
        event = by_target[f"{repo}@{digest}"]
        assert event["outcome"] == "success"
        assert event["actor"] == "anonymous"
        assert event["detail"]["policy"] == repo
        assert event["detail"]["rule"] == rule_priority
    assert by_target[f"{repo}@{aged.digest('release-1')}"]["detail"]["tags"] == [
        "release-1"
    ]


def test_run_takes_index_children_and_referrers_with_an_expired_image(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    child_a, digest_a = push_untagged(http, repo)
    child_b, digest_b = push_untagged(http, repo)
    _, old_index = push_index(http, repo, "multi-old", [child_a, child_b])
    _, new_index = push_index(http, repo, "multi-new", [child_b])
    signed, signed_digest = push_image(http, repo, "signed-old")
    sbom, sbom_digest = push_artifact(http, repo, manifest_descriptor(signed))
    _, sbom_signature = push_artifact(http, repo, manifest_descriptor(sbom), SIGNATURE)
    fresh, fresh_digest = push_image(http, repo, "fresh")
    _, fresh_signature = push_artifact(
        http, repo, manifest_descriptor(fresh), SIGNATURE
    )
    # Old: the first index and its children, `signed-old` and its referrers,
    # and the signature of `fresh`, which stays with the image it signs.
    age(registry, repo, 40, digest_a, digest_b, old_index)
    age(registry, repo, 45, signed_digest, sbom_digest, sbom_signature)
    age(registry, repo, 40, fresh_signature)
    put_policy(http, repo, MONTH)

    [preview] = api_preview(http, repo)
    response = http.post("/api/v1/lifecycle/run")

    assert response.status_code == 200, response.text
    assert expired(preview) == [(1, signed_digest), (1, old_index)]
    [entry] = [e for e in preview["expired"] if e["digest"] == old_index]
    assert entry["size"] == image_size(child_a) + image_size(child_b)
    for gone in (old_index, digest_a, signed_digest, sbom_digest, sbom_signature):
        assert manifest_status(http, repo, gone) == 404, gone
    for kept in (new_index, digest_b, fresh_digest, fresh_signature):
        assert manifest_status(http, repo, kept) == 200, kept
    assert tags(http, repo) == ["fresh", "multi-new"]
    referrers = http.get(f"/v2/{repo}/referrers/{signed_digest}").json()
    assert referrers["manifests"] == []


def test_pull_time_is_recorded_on_get_not_on_head(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    _, pulled = push_image(http, repo, "pulled")
    _, checked = push_image(http, repo, "checked")

    assert http.get(f"/v2/{repo}/manifests/pulled").status_code == 200
    assert http.head(f"/v2/{repo}/manifests/checked").status_code == 200

    recorded = last_pulled(registry, repo, pulled)
    assert recorded is not None
    assert abs(datetime.now(UTC) - recorded) < timedelta(minutes=1)
    assert last_pulled(registry, repo, checked) is None


def test_since_image_pulled_counts_from_the_recorded_pull(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    _, pulled = push_image(http, repo, "pulled")
    _, checked = push_image(http, repo, "checked")
    _, recent = push_image(http, repo, "recent")
    put_policy(http, repo, UNPULLED_WEEK)
    http.get(f"/v2/{repo}/manifests/{pulled}")
    http.head(f"/v2/{repo}/manifests/checked")
    # Aged after the HEAD, which counts as a push for the grace period.
    age(registry, repo, 31, pulled)
    age(registry, repo, 30, checked)

    [now] = api_preview(http, repo)
    set_time(registry, repo, pulled, "last_pulled_at", 10)
    [later] = api_preview(http, repo)

    # Never pulled: counted from the push.
    assert expired(now) == [(1, checked)]
    assert expired(later) == [(1, pulled), (1, checked)]
    assert recent not in [digest for _, digest in expired(later)]


# Which policy governs a repository


def test_the_most_specific_target_governs(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    # Two images each; KEEP_ONE would expire the older one.
    repos = [f"{ns}/app", f"{ns}/other", f"{ns}/app-ci", f"{ns}x/app"]
    older = {}
    for repo in repos:
        _, older[repo] = push_image(http, repo, "v1")
        age(registry, repo, 2, older[repo])
        push_image(http, repo, "v2")
    put_policy(http, f"{ns}*", KEEP_FIVE)
    put_policy(http, ns, KEEP_ONE)
    put_policy(http, f"{ns}/app", KEEP_FIVE)
    put_policy(http, f"{ns}/app-*", KEEP_FIVE)

    results = {r["repository"]: r for r in api_preview(http)}

    assert {repo: results[repo]["policy"] for repo in repos} == {
        f"{ns}/app": f"{ns}/app",
        f"{ns}/other": ns,
        f"{ns}/app-ci": f"{ns}/app-*",
        f"{ns}x/app": f"{ns}*",
    }
    assert expired(results[f"{ns}/other"]) == [(1, older[f"{ns}/other"])]
    assert expired(results[f"{ns}/app"]) == []
    assert expired(results[f"{ns}/app-ci"]) == []


def test_repositories_without_a_policy_are_left_alone(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    _, digest = push_image(http, repo, "v1")
    age(registry, repo, 400, digest)

    assert api_preview(http, repo) == []
    cli_json(registry, "policy", "run")

    assert manifest_status(http, repo, digest) == 200


# The schedule in `dockyard serve`


def test_serve_runs_the_policies_on_its_schedule(tmp_path: Path) -> None:
    settings = {"DOCKYARD_LIFECYCLE__INTERVAL": "2", "DOCKYARD_GC__INTERVAL": "0"}
    with (
        start_server(tmp_path / "data", env=settings) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        _, old = push_image(http, "team/app", "old")
        push_image(http, "team/app", "new")
        age(server, "team/app", 40, old)
        put_policy(http, "team", MONTH)

        deadline = time.monotonic() + 30
        while not audit_events(server, "lifecycle.expire"):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.5)

        [event] = audit_events(server, "lifecycle.expire")
        assert event["target"] == f"team/app@{old}"
        assert event["actor"] == "lifecycle"
        assert_error(http.get(f"/v2/team/app/manifests/{old}"), 404, "MANIFEST_UNKNOWN")
        assert tags(http, "team/app") == ["new"]


# Loaded by `dockyard serve` through PYTHONPATH: anyio's asyncio backend
# takes seconds to import off the main thread, as on a loaded machine.
SLOW_SCHEDULE_START = """\
import importlib.abc, importlib.util, sys, threading, time

class SlowBackend(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "anyio._backends._asyncio":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        sys.meta_path.insert(0, self)
        load = spec.loader.exec_module

        def exec_module(module):
            if threading.current_thread() is not threading.main_thread():
                time.sleep(1.5)
            load(module)

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, SlowBackend())
"""


def test_workers_serve_however_slowly_the_schedule_starts(tmp_path: Path) -> None:
    # The schedule once ran on a thread of the parent process; workers forked
    # while it imported its event loop waited for that import forever. It now
    # runs in the workers, and must never keep them from serving.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_SCHEDULE_START)
    path = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))

    with start_server(tmp_path / "data", env={"PYTHONPATH": path}) as server:
        responses = [
            httpx.get(f"{server.url}/api/v1/policies/team{n}", timeout=10)
            for n in range(4)
        ]

    for response in responses:
        assert_error(response, 404, "POLICY_UNKNOWN")


# With authentication on


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    with auth_server(tmp_path_factory) as running:
        yield running


@pytest.mark.parametrize(
    "target",
    ["bob", "bob/app", "team", "team/app-*", "ali*"],
    ids=["other-namespace", "other-repository", "push-only", "glob", "cross"],
)
def test_only_administrators_manage_other_policies(
    secured: AuthServer, target: str
) -> None:
    with secured.client(ALICE.basic) as alice:
        put = alice.put(f"/api/v1/policies/{target}", json=MONTH)
        get = alice.get(f"/api/v1/policies/{target}")
        delete = alice.delete(f"/api/v1/policies/{target}")
    with secured.client(ROOT.basic) as root:
        by_admin = root.put(f"/api/v1/policies/{target}", json=MONTH)
        root.delete(f"/api/v1/policies/{target}")

    for response in (put, get, delete):
        assert_error(response, 403, "DENIED")
    assert by_admin.status_code == 200, by_admin.text


@pytest.mark.parametrize("target", ["alice", "alice/app", "alice/ci-*"])
def test_namespace_owner_manages_their_own_policies(
    secured: AuthServer, target: str
) -> None:
    with secured.client(ALICE.basic) as alice:
        put = alice.put(f"/api/v1/policies/{target}", json=MONTH)
        get = alice.get(f"/api/v1/policies/{target}")
        delete = alice.delete(f"/api/v1/policies/{target}")

    assert put.status_code == 200, put.text
    assert get.json() == MONTH
    assert delete.status_code == 204


def test_anonymous_callers_must_log_in(secured: AuthServer) -> None:
    with secured.client() as anonymous:
        response = anonymous.put("/api/v1/policies/alice", json=MONTH)

    assert_error(response, 401, "UNAUTHORIZED")


def test_previews_follow_namespace_rights_and_runs_need_an_administrator(
    secured: AuthServer,
) -> None:
    with secured.client(ALICE.basic) as alice:
        push_image(alice, "alice/app", "v1")
        own = alice.get("/api/v1/lifecycle/preview", params={"repository": "alice/app"})
        other = alice.get("/api/v1/lifecycle/preview", params={"repository": "bob/app"})
        everything = alice.get("/api/v1/lifecycle/preview")
        run = alice.post("/api/v1/lifecycle/run")
    with secured.client(BOB.basic) as bob, secured.client(ROOT.basic) as root:
        by_bob = bob.post("/api/v1/lifecycle/run")
        by_root = root.post("/api/v1/lifecycle/run")

    assert own.status_code == 200, own.text
    for response in (other, everything, run, by_bob):
        assert_error(response, 403, "DENIED")
    assert by_root.status_code == 200, by_root.text


def test_an_administrators_narrow_token_cannot_manage_policies(
    secured: AuthServer,
) -> None:
    # Found by an attack: a pull-only token of an admin set policies and ran
    # lifecycle across every namespace.
    secret = secured.cli(
        "token",
        "create",
        "--name",
        "narrow-admin",
        "--user",
        "root",
        "--scope",
        "repository:pub/*:pull",
    ).strip()
    with secured.client(("token", secret)) as narrow:
        put = narrow.put("/api/v1/policies/bob", json=MONTH)
        run = narrow.post("/api/v1/lifecycle/run")

    for response in (put, run):
        assert_error(response, 403, "DENIED")


def test_registry_tokens_do_not_manage_policies(secured: AuthServer) -> None:
    with secured.client(ROOT.basic) as root:
        token = root.get("/token", params={"service": "dockyard"}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    with secured.client(headers=bearer) as client:
        response = client.put("/api/v1/policies/bob", json=MONTH)

    assert_error(response, 401, "UNAUTHORIZED")


@pytest.mark.parametrize("command", [("policy", "preview"), ("policy", "run"), ("gc",)])
def test_a_grace_period_no_date_can_hold_is_refused(
    registry: RunningServer, command: tuple[str, ...]
) -> None:
    result = run_cli(registry.data_dir, *command, "--grace-period", "99999999999")

    assert result.returncode == 2
    assert "'--grace-period': 99999999999 is not in the range" in result.stderr
