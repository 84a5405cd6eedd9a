"""`RateLimiter` and its parts, counting in memory; the `rate_limits` config."""

import os

import pytest

from dockyard.config import ConfigError, load_config
from dockyard.core.errors import TooManyRequests
from dockyard.services.ratelimit import (
    Caller,
    Quota,
    RateLimiter,
    network_of,
    parse_limit,
)

ADDRESS = "192.0.2.7"
ANONYMOUS = Caller(ADDRESS)
ALICE = Caller(ADDRESS, "alice")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for key in list(os.environ):
        if key.startswith("DOCKYARD_"):
            monkeypatch.delenv(key)


def limiter(
    anonymous: str | None = "3/minute",
    authenticated: str | None = "5/minute",
    overrides: dict[str, str] | None = None,
    pushes: str | None = None,
    requests: str | None = None,
) -> RateLimiter:
    return RateLimiter(
        anonymous, authenticated, overrides or {}, pushes, requests, redis_url=None
    )


# Who is counted


def test_ipv4_addresses_are_counted_as_they_are():
    assert network_of(ADDRESS) == ADDRESS


def test_ipv6_addresses_are_counted_per_64():
    one = network_of("2001:db8:1:2:3:4:5:6")

    assert one == "2001:db8:1:2::/64"
    assert network_of("2001:db8:1:2::ffff") == one
    assert network_of("2001:db8:1:3::1") == "2001:db8:1:3::/64"


def test_ipv4_mapped_addresses_are_counted_as_ipv4():
    assert network_of("::ffff:192.0.2.7") == ADDRESS


def test_what_is_no_address_is_counted_as_it_is():
    assert network_of(None) == "unknown"
    assert network_of("testclient") == "testclient"


def test_an_account_is_counted_rather_than_its_address():
    assert ALICE.source == "alice"
    assert Caller("2001:db8::1").source == "2001:db8::/64"


def test_quota_headers_are_what_clients_parse():
    headers = Quota(limit=100, remaining=97, window=21600, source=ADDRESS).headers()

    assert headers == {
        "RateLimit-Limit": "100;w=21600",
        "RateLimit-Remaining": "97;w=21600",
        "Docker-RateLimit-Source": ADDRESS,
    }


def test_parse_limit():
    six_hours = parse_limit("100/6hours")

    assert six_hours is not None
    assert (six_hours.amount, six_hours.get_expiry()) == (100, 21600)
    assert parse_limit("unlimited") is None
    assert parse_limit(None) is None


# Counting


@pytest.mark.anyio
async def test_a_look_does_not_count_and_a_pull_does():
    limits = limiter()

    looks = [await limits.pull(ANONYMOUS, counted=False) for _ in range(5)]
    pulled = await limits.pull(ANONYMOUS, counted=True)

    assert looks == [Quota(3, 3, 60, ADDRESS)] * 5
    assert pulled == Quota(3, 2, 60, ADDRESS)


@pytest.mark.anyio
async def test_past_the_limit_anonymous_callers_are_told_to_log_in_or_wait():
    limits = limiter()
    for _ in range(3):
        await limits.pull(ANONYMOUS, counted=True)

    with pytest.raises(TooManyRequests) as refused:
        await limits.pull(ANONYMOUS, counted=True)
    look = await limits.pull(ANONYMOUS, counted=False)

    assert 0 < refused.value.retry_after <= 60
    assert "pull rate limit of 3 per minute for 192.0.2.7" in refused.value.message
    assert "log in or wait" in refused.value.message
    assert look == Quota(3, 0, 60, ADDRESS)


@pytest.mark.anyio
async def test_accounts_have_their_own_window_and_advice():
    limits = limiter(authenticated="1/minute")
    await limits.pull(ANONYMOUS, counted=True)
    await limits.pull(ALICE, counted=True)

    with pytest.raises(TooManyRequests) as refused:
        await limits.pull(ALICE, counted=True)

    assert "for alice; wait" in refused.value.message
    assert "log in" not in refused.value.message


@pytest.mark.parametrize(
    ("limit", "said"),
    [
        ("1/minute", "1 per minute"),
        ("1/6hours", "1 per 6 hours"),
        ("1/day", "1 per day"),
        ("1/90seconds", "1 per 90 seconds"),
    ],
)
@pytest.mark.anyio
async def test_the_message_says_the_window(limit, said):
    limits = limiter(anonymous=limit)
    await limits.pull(ANONYMOUS, counted=True)

    with pytest.raises(TooManyRequests, match=said):
        await limits.pull(ANONYMOUS, counted=True)


@pytest.mark.anyio
async def test_an_override_replaces_the_account_limit():
    limits = limiter(overrides={"alice": "10/hour", "token:ci": "unlimited"})

    alice = await limits.pull(ALICE, counted=True)
    robot = await limits.pull(Caller(ADDRESS, "token:ci"), counted=True)
    bob = await limits.pull(Caller(ADDRESS, "bob"), counted=True)

    assert alice == Quota(10, 9, 3600, "alice")
    assert robot is None
    assert bob == Quota(5, 4, 60, "bob")


@pytest.mark.anyio
async def test_pushes_and_requests_have_limits_of_their_own():
    limits = limiter(pushes="1/minute", requests="2/minute")
    await limits.push(ANONYMOUS)
    await limits.request(ANONYMOUS)
    await limits.request(ANONYMOUS)

    with pytest.raises(TooManyRequests, match="push rate limit of 1 per minute"):
        await limits.push(ANONYMOUS)
    with pytest.raises(TooManyRequests, match="request rate limit of 2 per minute"):
        await limits.request(ANONYMOUS)
    assert await limits.pull(ANONYMOUS, counted=True) == Quota(3, 2, 60, ADDRESS)


@pytest.mark.anyio
async def test_an_unlimited_account_is_unlimited_in_every_kind():
    limits = limiter(
        overrides={"alice": "unlimited", "bob": "10/hour"},
        pushes="1/minute",
        requests="1/minute",
    )

    for _ in range(3):
        await limits.push(ALICE)
        await limits.request(ALICE)
    await limits.push(Caller(ADDRESS, "bob"))

    with pytest.raises(TooManyRequests):
        await limits.push(Caller(ADDRESS, "bob"))


@pytest.mark.anyio
async def test_usage_reports_each_configured_kind():
    limits = limiter(pushes="10/hour")
    await limits.pull(ANONYMOUS, counted=True)
    await limits.push(ANONYMOUS)
    await limits.push(ANONYMOUS)

    assert await limits.usage(ANONYMOUS) == [
        ("pull", Quota(3, 2, 60, ADDRESS)),
        ("push", Quota(10, 8, 3600, ADDRESS)),
    ]
    assert await limits.usage(Caller(None, "alice")) == [
        ("pull", Quota(5, 5, 60, "alice")),
        ("push", Quota(10, 10, 3600, "alice")),
    ]


@pytest.mark.anyio
async def test_usage_of_an_ipv6_address_is_its_64():
    limits = limiter()
    await limits.pull(Caller("2001:db8:1:2::1"), counted=True)

    shown = await limits.usage(Caller("2001:db8:1:2::99"))

    assert shown == [("pull", Quota(3, 2, 60, "2001:db8:1:2::/64"))]


# Configuration


@pytest.mark.parametrize("key", ["anonymous", "authenticated", "pushes", "requests"])
def test_a_bad_limit_names_its_key(key):
    pattern = f"'rate_limits.{key}' has bad value 'lots'.*COUNT/PERIOD"
    with pytest.raises(ConfigError, match=pattern):
        load_config(rate_limits={key: "lots"})


def test_a_bad_limit_in_the_environment_names_its_key(monkeypatch):
    monkeypatch.setenv("DOCKYARD_RATE_LIMITS__ANONYMOUS", "3/fortnight")
    with pytest.raises(ConfigError, match="'rate_limits.anonymous'.*'3/fortnight'"):
        load_config()


def test_a_bad_override_names_the_overrides_and_the_value():
    with pytest.raises(ConfigError) as caught:
        load_config(rate_limits={"overrides": {"alice": "many/day"}})

    assert "'rate_limits.overrides'" in str(caught.value)
    assert "many/day" in str(caught.value)


def test_an_unknown_rate_limit_key_is_refused():
    with pytest.raises(ConfigError, match="unknown config key 'rate_limits.anonymus'"):
        load_config(rate_limits={"anonymus": "3/minute"})


def test_overrides_come_from_the_environment_as_json(monkeypatch):
    monkeypatch.setenv("DOCKYARD_RATE_LIMITS__OVERRIDES", '{"alice": "unlimited"}')

    settings = load_config().rate_limits

    assert settings.overrides == {"alice": "unlimited"}
    assert settings.enabled


@pytest.mark.parametrize("key", ["anonymous", "authenticated", "pushes", "requests"])
def test_any_one_limit_turns_rate_limits_on(key):
    assert not load_config().rate_limits.enabled
    assert load_config(rate_limits={key: "1/minute"}).rate_limits.enabled


# Found while testing: each of these once went wrong.


@pytest.mark.anyio
async def test_a_token_override_applies_to_a_users_token():
    limits = limiter(overrides={"token:ci": "unlimited"})

    with_token = await limits.pull(Caller(ADDRESS, "alice", "ci"), counted=True)
    without = await limits.pull(ALICE, counted=True)

    assert with_token is None
    assert without == Quota(5, 4, 60, "alice")


@pytest.mark.anyio
async def test_an_account_named_like_an_address_has_its_own_counter():
    limits = limiter(anonymous="3/minute", authenticated="3/minute")
    for _ in range(3):
        await limits.pull(ANONYMOUS, counted=True)

    named = await limits.pull(Caller("198.51.100.1", ADDRESS), counted=True)

    assert named == Quota(3, 2, 60, ADDRESS)


@pytest.mark.anyio
async def test_unreachable_counters_serve_unlimited():
    # Port 1: nothing listens; pulls must not fail because Redis is down.
    limits = RateLimiter("1/minute", None, {}, None, None, "redis://127.0.0.1:1/0")

    first = await limits.pull(ANONYMOUS, counted=True)
    second = await limits.pull(ANONYMOUS, counted=True)

    assert first is None and second is None


def test_a_redis_url_must_be_one():
    with pytest.raises(ConfigError, match="redis_url"):
        load_config(redis_url="http://x")
