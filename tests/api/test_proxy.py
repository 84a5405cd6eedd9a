"""X-Forwarded-* headers: believed from trusted proxies, ignored from anyone else."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import Message, Scope

from dockyard.api.proxy import ForwardedHeaders, behind_proxies
from tests.server import RunningServer, start_server

PROXY = "10.0.0.2"
FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "registry.example.com",
    "X-Forwarded-For": "203.0.113.7",
}


def behind_proxy(
    *headers: tuple[str, str], peer: str | None = PROXY, trusted: str = "10.0.0.0/8"
) -> Request:
    """The request an application behind the middleware sees."""
    seen: list[Scope] = []

    async def app(scope: Scope, receive: object, send: object) -> None:
        seen.append(scope)

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    async def discard(message: Message) -> None:
        pass

    scope = {
        "type": "http",
        "scheme": "http",
        "method": "GET",
        "path": "/v2/",
        "query_string": b"",
        "server": ("127.0.0.1", 5000),
        "client": (peer, 40000) if peer else None,
        "headers": [
            (b"host", b"127.0.0.1:5000"),
            *((name.lower().encode(), value.encode()) for name, value in headers),
        ],
    }
    asyncio.run(ForwardedHeaders(app, [trusted])(scope, nothing, discard))
    return Request(seen[0])


def client_behind_proxy(forwarded_for: str) -> str:
    request = behind_proxy(("X-Forwarded-For", forwarded_for))
    assert request.client is not None
    return request.client.host


# The middleware alone


def test_trusted_proxy_sets_scheme_host_and_client() -> None:
    request = behind_proxy(*FORWARDED.items())

    assert str(request.base_url) == "https://registry.example.com/"
    assert str(request.url) == "https://registry.example.com/v2/"
    assert request.client is not None
    assert request.client.host == "203.0.113.7"


def test_untrusted_peer_cannot_pick_its_address_or_host() -> None:
    request = behind_proxy(*FORWARDED.items(), peer="198.51.100.9")

    assert str(request.base_url) == "http://127.0.0.1:5000/"
    assert request.client is not None
    assert request.client.host == "198.51.100.9"


def test_no_peer_address_is_not_trusted() -> None:
    request = behind_proxy(*FORWARDED.items(), peer=None, trusted="0.0.0.0/0")

    assert str(request.base_url) == "http://127.0.0.1:5000/"
    assert request.client is None


def test_ipv4_mapped_peer_is_matched_as_ipv4() -> None:
    request = behind_proxy(*FORWARDED.items(), peer=f"::ffff:{PROXY}")

    assert str(request.base_url) == "https://registry.example.com/"


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        pytest.param("203.0.113.7", "203.0.113.7", id="one-hop"),
        # A client may write anything left of what the trusted proxies add.
        pytest.param("198.51.100.1, 203.0.113.7", "203.0.113.7", id="spoofed-left"),
        pytest.param("203.0.113.7, 10.0.0.3", "203.0.113.7", id="proxy-chain"),
        pytest.param("10.0.0.5, 10.0.0.3", "10.0.0.5", id="all-trusted"),
        pytest.param("nonsense, 203.0.113.7", "203.0.113.7", id="junk-left"),
        # What lies beyond a malformed hop is not vouched for.
        pytest.param("203.0.113.7, nonsense", PROXY, id="junk-right"),
        pytest.param("203.0.113.7, unknown, 10.0.0.3", "10.0.0.3", id="junk-middle"),
        pytest.param("", PROXY, id="empty"),
        pytest.param(" , ", PROXY, id="blank-entries"),
        pytest.param("203.0.113.7:4711", "203.0.113.7", id="v4-port"),
        pytest.param("[2001:db8::1]:443", "2001:db8::1", id="v6-port"),
        pytest.param("2001:db8::1", "2001:db8::1", id="v6"),
        pytest.param("999.1.1.1", PROXY, id="bad-v4"),
    ],
)
def test_client_is_the_right_most_untrusted_hop(
    forwarded_for: str, client: str
) -> None:
    assert client_behind_proxy(forwarded_for) == client


def test_repeated_forwarded_for_headers_are_one_list() -> None:
    request = behind_proxy(
        ("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "203.0.113.7")
    )

    assert request.client is not None
    assert request.client.host == "203.0.113.7"


@pytest.mark.parametrize(
    ("proto", "base_url"),
    [
        ("HTTPS", "https://127.0.0.1:5000/"),
        ("http", "http://127.0.0.1:5000/"),
        ("http, https", "https://127.0.0.1:5000/"),
        ("ftp", "http://127.0.0.1:5000/"),
        ("https://", "http://127.0.0.1:5000/"),
    ],
)
def test_only_http_or_https_is_a_scheme(proto: str, base_url: str) -> None:
    request = behind_proxy(("X-Forwarded-Proto", proto))

    assert str(request.base_url) == base_url


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        ("registry.example.com:8443", "http://registry.example.com:8443/"),
        ("[2001:db8::1]:5000", "http://[2001:db8::1]:5000/"),
        ("a.example, registry.example.com", "http://registry.example.com/"),
        ("evil.example/path", "http://127.0.0.1:5000/"),
        ("evil.example\r\nX-Injected: 1", "http://127.0.0.1:5000/"),
        ("", "http://127.0.0.1:5000/"),
    ],
)
def test_forwarded_host_must_look_like_a_host(host: str, base_url: str) -> None:
    request = behind_proxy(("X-Forwarded-Host", host))

    assert str(request.base_url) == base_url


def test_middleware_is_installed_only_with_trusted_proxies() -> None:
    app = PlainTextResponse("ok")

    assert behind_proxies(app, []) is app
    assert isinstance(behind_proxies(app, [PROXY]), ForwardedHeaders)


# A real server


@pytest.fixture(scope="module")
def proxied_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("proxied") / "data"
    env = {"DOCKYARD_TRUSTED_PROXIES": '["127.0.0.1"]'}
    with start_server(data_dir, args=["--workers", "1"], env=env) as running:
        yield running


def test_upload_location_uses_the_proxy_scheme_and_host(
    proxied_server: RunningServer, repo: str
) -> None:
    url = f"{proxied_server.url}/v2/{repo}/blobs/uploads/"

    response = httpx.post(url, headers=FORWARDED)

    assert response.status_code == 202
    location = response.headers["location"]
    assert location.startswith(f"https://registry.example.com/v2/{repo}/blobs/uploads/")
    assert "203.0.113.7" in wait_for_line(proxied_server, f"/v2/{repo}/blobs/uploads/")


def test_without_trusted_proxies_the_headers_are_ignored(
    server: RunningServer, client: httpx.Client, repo: str
) -> None:
    response = client.post(f"/v2/{repo}/blobs/uploads/", headers=FORWARDED)

    assert response.status_code == 202
    location = response.headers["location"]
    assert location.startswith(f"{server.url}/v2/{repo}/blobs/uploads/")
    assert "203.0.113.7" not in wait_for_line(server, f"/v2/{repo}/blobs/uploads/")


def wait_for_line(server: RunningServer, needle: str, timeout: float = 10) -> str:
    """The server's access line for `needle`, written just after it answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.log().splitlines():
            if needle in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no log line with {needle!r}")
