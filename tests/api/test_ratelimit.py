"""Pull rate limits on the wire: the headers on manifest GET and HEAD, what
counts as a pull, 429 and its reset, limits per account after login, push and
request limits, X-Forwarded-For from trusted proxies only, and two server
processes sharing their counters through Redis.

Servers run one worker, so counters kept in a process are exact. Servers a
module shares count in Redis database 15, which `counters` empties around each
test, so no test spends another's allowance; the one behind a proxy counts in
its process, and each of its tests forwards addresses of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.api.helpers import assert_error, push_blob, push_image, random_bytes
from tests.authserver import (
    ALICE,
    BOB,
    PUBLIC_REPO,
    AuthServer,
    auth_server,
    empty_auth_server,
)
from tests.server import RunningServer, start_server

REDIS_URL = "redis://127.0.0.1:6379/15"
ONE_WORKER = ["--workers", "1"]
LOCAL = "127.0.0.1"
REPO = "pulls/app"
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "Docker-RateLimit-Source")


@pytest.fixture
def counters() -> Iterator[redis.Redis]:
    """Redis database 15, empty before and after the test."""
    db = redis.Redis.from_url(REDIS_URL)
    try:
        db.ping()
    except redis.ConnectionError:
        pytest.fail(f"rate-limit tests need Redis at {REDIS_URL}")
    db.flushdb()
    yield db
    db.flushdb()
    db.close()


def limits_env(shared: bool = True, **limits: str) -> dict[str, str]:
    """DOCKYARD_* settings for `rate_limits`; counted in Redis if `shared`."""
    env = {f"DOCKYARD_RATE_LIMITS__{kind.upper()}": v for kind, v in limits.items()}
    if shared:
        env["DOCKYARD_REDIS_URL"] = REDIS_URL
    return env


def manifest(
    client: httpx.Client,
    method: str,
    repo: str = REPO,
    reference: str = "latest",
    **kwargs: Any,
) -> httpx.Response:
    return client.request(method, f"/v2/{repo}/manifests/{reference}", **kwargs)


def pulls(client: httpx.Client, count: int, **kwargs: Any) -> list[httpx.Response]:
    return [manifest(client, "GET", **kwargs) for _ in range(count)]


def rate_headers(response: httpx.Response) -> dict[str, str]:
    return {n: response.headers[n] for n in RATE_HEADERS if n in response.headers}


def quota(limit: int, remaining: int, source: str, window: int = 60) -> dict[str, str]:
    """The headers a manifest answer carries, exactly."""
    return {
        "RateLimit-Limit": f"{limit};w={window}",
        "RateLimit-Remaining": f"{remaining};w={window}",
        "Docker-RateLimit-Source": source,
    }


def remaining(responses: list[httpx.Response]) -> list[int]:
    return [int(r.headers["RateLimit-Remaining"].split(";")[0]) for r in responses]


def assert_refused(response: httpx.Response, what: str, window: int = 60) -> str:
    """A 429 past a limit, with an honest Retry-After; returns the message."""
    assert_error(response, 429, "TOOMANYREQUESTS")
    assert 0 < int(response.headers["Retry-After"]) <= window
    message: str = response.json()["errors"][0]["message"]
    assert what in message
    return message


def forwarded(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def show(
    data_dir: Path, source: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`dockyard ratelimit show SOURCE` with only these DOCKYARD_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    command = ["ratelimit", "show", source, "--data-dir", str(data_dir)]
    return subprocess.run(
        [sys.executable, "-m", "dockyard", *command],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


# Anonymous pulls, counted per address


@pytest.fixture(scope="module")
def pull_limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("pull-limited")
    env = limits_env(anonymous="3/minute")
    with start_server(data_dir, env=env, args=ONE_WORKER) as running:
        with httpx.Client(base_url=running.url) as client:
            push_image(client, REPO)
        yield running


@pytest.fixture
def http(pull_limited: RunningServer, counters: redis.Redis) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pull_limited.url, timeout=60) as client:
        yield client


def test_head_reports_the_allowance_without_spending_it(http):
    checks = [manifest(http, "HEAD") for _ in range(10)]

    assert [r.status_code for r in checks] == [200] * 10
    for check in checks:
        assert rate_headers(check) == quota(3, 3, LOCAL)


def test_each_get_is_a_pull(http):
    digest = manifest(http, "HEAD").headers["Docker-Content-Digest"]

    by_tag = manifest(http, "GET")
    by_digest = manifest(http, "GET", reference=digest)
    last = manifest(http, "GET")

    assert [r.status_code for r in (by_tag, by_digest, last)] == [200] * 3
    assert rate_headers(by_tag) == quota(3, 2, LOCAL)
    assert rate_headers(by_digest) == quota(3, 1, LOCAL)
    assert rate_headers(last) == quota(3, 0, LOCAL)


def test_past_the_limit_a_pull_is_refused_with_advice(http):
    allowed = pulls(http, 3)
    refused = manifest(http, "GET")

    assert [r.status_code for r in allowed] == [200] * 3
    message = assert_refused(refused, "log in or wait")
    assert "3 per minute" in message
    assert LOCAL in message


def test_head_still_answers_when_no_pull_is_left(http):
    # A version check is never refused: it says that nothing is left.
    pulls(http, 3)
    check = manifest(http, "HEAD")

    assert check.status_code == 200
    assert check.headers["Docker-Content-Digest"]
    assert rate_headers(check) == quota(3, 0, LOCAL)


def test_a_pull_of_a_missing_tag_is_spent_and_reported(http):
    missing = manifest(http, "GET", reference="no-such-tag")
    check = manifest(http, "HEAD", reference="no-such-tag")

    assert_error(missing, 404, "MANIFEST_UNKNOWN")
    assert rate_headers(missing) == quota(3, 2, LOCAL)
    assert check.status_code == 404
    assert rate_headers(check) == quota(3, 2, LOCAL)


def test_blob_gets_tag_lists_and_pushes_are_not_pulls(http, repo):
    body, digest = push_image(http, repo)
    document = json.loads(body)
    blobs = [d["digest"] for d in (document["config"], *document["layers"])]

    others = [
        *(http.get(f"/v2/{repo}/blobs/{blob}") for blob in blobs * 3),
        *(http.head(f"/v2/{repo}/blobs/{blob}") for blob in blobs),
        *(http.get(f"/v2/{repo}/tags/list") for _ in range(4)),
        http.get(f"/v2/{repo}/referrers/{digest}"),
    ]
    check = manifest(http, "HEAD", repo=repo)

    assert [r.status_code for r in others] == [200] * len(others)
    assert [rate_headers(r) for r in others] == [{}] * len(others)
    assert rate_headers(check) == quota(3, 3, LOCAL)


def test_forwarded_for_is_ignored_without_trusted_proxies(http):
    first = manifest(http, "GET", headers=forwarded("203.0.113.7"))
    second = manifest(http, "GET", headers=forwarded("203.0.113.8"))

    assert rate_headers(first) == quota(3, 2, LOCAL)
    assert rate_headers(second) == quota(3, 1, LOCAL)


def test_nothing_is_limited_or_reported_unless_configured(client, repo):
    push_image(client, repo)

    answers = [manifest(client, "GET", repo=repo) for _ in range(20)]
    answers.append(manifest(client, "HEAD", repo=repo))

    assert [r.status_code for r in answers] == [200] * 21
    assert [rate_headers(r) for r in answers] == [{}] * 21


def test_the_limit_frees_after_its_window(tmp_path):
    # Counted in the process, as when no redis_url is set.
    env = limits_env(shared=False, anonymous="2/3seconds")
    with (
        start_server(tmp_path / "data", env=env, args=ONE_WORKER) as running,
        httpx.Client(base_url=running.url, timeout=60) as client,
    ):
        push_image(client, REPO)
        allowed = pulls(client, 2)
        refused = manifest(client, "GET")
        # Retry-After is rounded up; the margin covers a window ending on a
        # whole second.
        time.sleep(int(refused.headers["Retry-After"]) + 0.2)
        again = manifest(client, "GET")

    assert remaining(allowed) == [1, 0]
    assert_refused(refused, "2 per 3 seconds", window=3)
    assert again.status_code == 200, again.text
    assert again.headers["RateLimit-Limit"] == "2;w=3"


# Per account after login


@pytest.fixture(scope="module")
def accounts_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    env = limits_env(
        anonymous="2/minute",
        authenticated="3/minute",
        overrides=json.dumps({"bob": "unlimited"}),
    )
    with auth_server(tmp_path_factory, env, ONE_WORKER) as running:
        yield running


@pytest.fixture
def accounts(accounts_server: AuthServer, counters: redis.Redis) -> AuthServer:
    return accounts_server


def bearer(registry: AuthServer, auth: httpx.Auth | tuple[str, str]) -> dict[str, str]:
    """An Authorization header with a token to pull the public repository."""
    query = {"service": "dockyard", "scope": f"repository:{PUBLIC_REPO}:pull"}
    response = httpx.get(f"{registry.url}/token", params=query, auth=auth)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_alice_is_counted_as_herself_with_basic_or_bearer(accounts):
    with accounts.client(ALICE.basic) as client:
        basic = manifest(client, "GET", repo=PUBLIC_REPO)
    with accounts.client(headers=bearer(accounts, ALICE.basic)) as client:
        token = manifest(client, "GET", repo=PUBLIC_REPO)
    with accounts.client() as client:
        anonymous = manifest(client, "HEAD", repo=PUBLIC_REPO)

    assert rate_headers(basic) == quota(3, 2, "alice")
    assert rate_headers(token) == quota(3, 1, "alice")
    assert rate_headers(anonymous) == quota(2, 2, LOCAL)


def test_an_account_past_its_limit_is_told_to_wait(accounts):
    with accounts.client(ALICE.basic) as client:
        allowed = pulls(client, 3, repo=PUBLIC_REPO)
        refused = manifest(client, "GET", repo=PUBLIC_REPO)
    with accounts.client() as client:
        anonymous = manifest(client, "GET", repo=PUBLIC_REPO)

    assert remaining(allowed) == [2, 1, 0]
    message = assert_refused(refused, "wait")
    assert "log in" not in message
    assert "alice" in message
    assert rate_headers(anonymous) == quota(2, 1, LOCAL)


def test_anonymous_pulls_of_a_public_repository_count_per_address(accounts):
    with accounts.client() as client:
        allowed = pulls(client, 2, repo=PUBLIC_REPO)
        refused = manifest(client, "GET", repo=PUBLIC_REPO)
    with accounts.client(ALICE.basic) as client:
        alice = manifest(client, "GET", repo=PUBLIC_REPO)

    assert [rate_headers(r) for r in allowed] == [
        quota(2, 1, LOCAL),
        quota(2, 0, LOCAL),
    ]
    assert_refused(refused, "log in or wait")
    assert rate_headers(alice) == quota(3, 2, "alice")


def test_an_unlimited_account_is_neither_refused_nor_told_a_limit(accounts):
    # An account without a limit gets no RateLimit headers, as on Docker Hub.
    with accounts.client(BOB.basic) as client:
        answers = pulls(client, 10, repo=PUBLIC_REPO)
        answers.append(manifest(client, "HEAD", repo=PUBLIC_REPO))
    with accounts.client(ALICE.basic) as client:
        alice = manifest(client, "GET", repo=PUBLIC_REPO)

    assert [r.status_code for r in answers] == [200] * 11
    assert [rate_headers(r) for r in answers] == [{}] * 11
    assert rate_headers(alice) == quota(3, 2, "alice")


def test_a_robot_token_is_counted_by_its_name(accounts):
    scope = f"repository:{PUBLIC_REPO}:pull"
    secret = accounts.cli("token", "create", "--name", "robot", "--scope", scope)
    robot = ("robot", secret.strip())

    with accounts.client(robot) as client:
        basic = manifest(client, "GET", repo=PUBLIC_REPO)
    with accounts.client(headers=bearer(accounts, robot)) as client:
        token = manifest(client, "GET", repo=PUBLIC_REPO)

    assert rate_headers(basic) == quota(3, 2, "token:robot")
    assert rate_headers(token) == quota(3, 1, "token:robot")


def test_show_reports_what_an_account_used(accounts):
    with accounts.client(ALICE.basic) as client:
        pulls(client, 2, repo=PUBLIC_REPO)

    env = limits_env(anonymous="2/minute", authenticated="3/minute")
    shown = show(accounts.server.data_dir, "alice", env)

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "pull: 2 of 3 used in the last 60s, 1 left (alice)\n"


def test_an_override_gives_an_account_its_own_limit(tmp_path_factory, counters):
    env = limits_env(authenticated="3/minute", overrides='{"alice": "5/minute"}')
    with empty_auth_server(tmp_path_factory, env, ONE_WORKER) as registry:
        registry.add_user(ALICE)
        registry.add_user(BOB)
        with registry.client(ALICE.basic) as client:
            push_image(client, "alice/app")
            alice = pulls(client, 5, repo="alice/app")
            refused = manifest(client, "GET", repo="alice/app")
        with registry.client(BOB.basic) as client:
            push_image(client, "bob/app")
            bob = manifest(client, "GET", repo="bob/app")

    assert rate_headers(alice[0]) == quota(5, 4, "alice")
    assert remaining(alice) == [4, 3, 2, 1, 0]
    assert_refused(refused, "5 per minute")
    assert rate_headers(bob) == quota(3, 2, "bob")


# Pushes and all requests


@pytest.fixture(scope="module")
def writes_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("write-limited")
    env = limits_env(pushes="3/minute", requests="5/minute")
    with start_server(data_dir, env=env, args=ONE_WORKER) as running:
        yield running


@pytest.fixture
def writer(
    writes_server: RunningServer, counters: redis.Redis
) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=writes_server.url, timeout=60) as client:
        yield client


def test_writes_past_the_push_limit_are_refused(writer, repo):
    for _ in range(3):
        push_blob(writer, repo, random_bytes())
    refused = writer.post(f"/v2/{repo}/blobs/uploads/")

    assert_refused(refused, "push rate limit of 3 per minute")


def test_every_request_counts_past_the_request_limit(writer, repo):
    answers = [
        writer.get(f"/v2/{repo}/tags/list"),
        manifest(writer, "HEAD", repo=repo),
        manifest(writer, "GET", repo=repo),
        writer.head(f"/v2/{repo}/blobs/sha256:{'0' * 64}"),
        writer.get(f"/v2/{repo}/tags/list"),
    ]
    refused = writer.get(f"/v2/{repo}/tags/list")
    base = writer.get("/v2/")

    assert [r.status_code for r in answers] == [404] * 5
    assert_refused(refused, "request rate limit of 5 per minute")
    assert_refused(base, "request rate limit of 5 per minute")


def test_the_request_limit_counts_every_endpoint_under_v2(writer, repo):
    answers = [
        writer.get("/v2/"),
        writer.get("/v2/_catalog"),
        writer.get("/v2/Not_A_Name/tags/list"),
        writer.delete(f"/v2/{repo}/tags/list"),
        writer.get("/v2/no-such-endpoint"),
    ]
    refused = writer.get("/v2/_catalog")

    assert [r.status_code for r in answers] == [200, 200, 400, 405, 404]
    assert_refused(refused, "request rate limit of 5 per minute")


# Callers who have not proven who they are


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    env = limits_env(requests="6/minute")
    with auth_server(tmp_path_factory, env, ONE_WORKER) as running:
        yield running


@pytest.fixture
def guarded(guarded_server: AuthServer, counters: redis.Redis) -> AuthServer:
    return guarded_server


def test_requests_refused_for_want_of_credentials_are_limited(guarded):
    with guarded.client() as client:
        refused = [manifest(client, "GET", repo="team/app") for _ in range(6)]
        over = manifest(client, "GET", repo="team/app")

    assert [r.status_code for r in refused] == [401] * 6
    message = assert_refused(over, "request rate limit of 6 per minute")
    assert f"for {LOCAL}; log in or wait" in message
    assert "WWW-Authenticate" not in over.headers


def test_wrong_credentials_are_limited_by_address(guarded):
    wrong = httpx.BasicAuth(ALICE.name, "not-her-password")
    with guarded.client(wrong) as client:
        refused = [client.get("/v2/") for _ in range(3)]
    with guarded.client(headers={"Authorization": "Bearer forged"}) as client:
        refused += [manifest(client, "GET", repo=PUBLIC_REPO) for _ in range(3)]
        over = client.get("/v2/")

    assert [r.status_code for r in refused] == [401] * 6
    assert_refused(over, "request rate limit of 6 per minute")


def test_every_endpoint_counts_for_a_caller_not_yet_known(guarded):
    with guarded.client() as client:
        answers = [
            client.get("/v2/"),
            client.get("/v2/_catalog"),
            client.get(f"/v2/{PUBLIC_REPO}/tags/list"),
            client.get("/v2/Not_A_Name/tags/list"),
            client.delete(f"/v2/{PUBLIC_REPO}/tags/list"),
            client.get("/v2/no-such-endpoint"),
        ]
        over = manifest(client, "GET", repo=PUBLIC_REPO)

    assert [r.status_code for r in answers] == [401, 401, 200, 400, 405, 404]
    assert_refused(over, "request rate limit")


def test_a_login_counts_against_the_account_once_not_the_address(guarded):
    with guarded.client() as client:
        flood = [client.get("/v2/") for _ in range(7)]
    with guarded.client(ALICE.basic) as client:
        hers = [client.get("/v2/"), client.get("/v2/_catalog")]
        hers += [manifest(client, "GET", repo=PUBLIC_REPO) for _ in range(4)]
        her_over = client.get(f"/v2/{PUBLIC_REPO}/tags/list")

    assert [r.status_code for r in flood] == [401] * 6 + [429]
    assert [r.status_code for r in hers] == [200] * 6
    assert "for alice; wait" in assert_refused(her_over, "request rate limit")


def test_refusals_of_a_known_caller_count_against_the_account(guarded):
    with guarded.client(BOB.basic) as client:
        denied = [manifest(client, "GET", repo="team/app") for _ in range(6)]
        over = manifest(client, "GET", repo="team/app")
    with guarded.client() as client:
        anonymous = client.get(f"/v2/{PUBLIC_REPO}/tags/list")

    assert [r.status_code for r in denied] == [403] * 6
    assert "for bob; wait" in assert_refused(over, "request rate limit")
    assert anonymous.status_code == 200


def test_forwarded_for_buys_an_unknown_caller_no_fresh_allowance(guarded):
    with guarded.client() as client:
        answers = [
            client.get("/v2/", headers=forwarded(f"203.0.113.{n}")) for n in range(7)
        ]

    assert [r.status_code for r in answers] == [401] * 6 + [429]


# Behind a trusted proxy


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """Counting in the process; each test forwards addresses of its own."""
    data_dir = tmp_path_factory.mktemp("proxied")
    env = {
        **limits_env(shared=False, anonymous="2/minute"),
        "DOCKYARD_TRUSTED_PROXIES": json.dumps([LOCAL]),
    }
    with (
        start_server(data_dir, env=env, args=ONE_WORKER) as running,
        httpx.Client(base_url=running.url, timeout=60) as client,
    ):
        push_image(client, REPO)
        yield client


def test_forwarded_addresses_are_counted_apart(proxied):
    first = pulls(proxied, 2, headers=forwarded("203.0.113.7"))
    refused = manifest(proxied, "GET", headers=forwarded("203.0.113.7"))
    other = manifest(proxied, "GET", headers=forwarded("198.51.100.9, 203.0.113.8"))

    assert [rate_headers(r) for r in first] == [
        quota(2, 1, "203.0.113.7"),
        quota(2, 0, "203.0.113.7"),
    ]
    assert_refused(refused, "203.0.113.7")
    assert rate_headers(other) == quota(2, 1, "203.0.113.8")


def test_forwarded_ipv6_addresses_are_counted_per_64(proxied):
    same = [
        manifest(proxied, "GET", headers=forwarded("2001:db8:7:1::1")),
        manifest(proxied, "GET", headers=forwarded("2001:db8:7:1:ffff::2")),
    ]
    refused = manifest(proxied, "GET", headers=forwarded("2001:db8:7:1::3"))
    next_door = manifest(proxied, "GET", headers=forwarded("2001:db8:7:2::1"))

    assert [rate_headers(r) for r in same] == [
        quota(2, 1, "2001:db8:7:1::/64"),
        quota(2, 0, "2001:db8:7:1::/64"),
    ]
    assert_refused(refused, "2001:db8:7:1::/64")
    assert rate_headers(next_door) == quota(2, 1, "2001:db8:7:2::/64")


@pytest.fixture(scope="module")
def proxied_guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """Auth on, counting in the process; each test forwards its own addresses."""
    env = {
        **limits_env(shared=False, requests="3/minute"),
        "DOCKYARD_TRUSTED_PROXIES": json.dumps([LOCAL]),
    }
    with empty_auth_server(tmp_path_factory, env, ONE_WORKER) as running:
        yield running


def test_forwarded_addresses_are_limited_apart_before_a_login(proxied_guard):
    with proxied_guard.client() as client:
        first = [
            client.get("/v2/", headers=forwarded("203.0.113.20")) for _ in range(4)
        ]
        other = client.get("/v2/_catalog", headers=forwarded("203.0.113.21"))

    assert [r.status_code for r in first] == [401] * 3 + [429]
    assert "203.0.113.20" in assert_refused(first[-1], "request rate limit")
    assert other.status_code == 401


# Counters shared through Redis


def test_two_servers_share_one_limit_through_redis(tmp_path, counters):
    data_dir = tmp_path / "data"
    env = limits_env(anonymous="4/minute")
    # Two workers each: every process of both servers shares the counter.
    with (
        start_server(data_dir, env=env) as first,
        start_server(data_dir, env=env) as second,
        httpx.Client(base_url=first.url, timeout=60) as one,
        httpx.Client(base_url=second.url, timeout=60) as two,
    ):
        push_image(one, REPO)
        alternated = [manifest(client, "GET") for client in (one, two, one, two)]
        refused = [manifest(one, "GET"), manifest(two, "GET")]
        shown = show(data_dir, LOCAL, env)

    assert remaining(alternated) == [3, 2, 1, 0]
    for response in refused:
        assert_refused(response, "4 per minute")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "pull: 4 of 4 used in the last 60s, 0 left (127.0.0.1)\n"


def test_show_without_redis_explains_why_it_cannot(tmp_path):
    shown = show(tmp_path, LOCAL, limits_env(shared=False, anonymous="3/minute"))

    assert shown.returncode == 1
    assert "redis_url" in shown.stderr
    assert shown.stdout == ""


def test_show_without_limits_says_so(tmp_path):
    shown = show(tmp_path, LOCAL, {"DOCKYARD_REDIS_URL": REDIS_URL})

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "no rate limits are configured\n"


def test_show_refuses_a_source_it_keeps_no_counter_for(tmp_path):
    shown = show(tmp_path, "2001:db8::/48", limits_env(anonymous="3/minute"))

    assert shown.returncode == 2
    assert "give an address or an IPv6 /64" in shown.stderr
    assert shown.stdout == ""
