"""The client, scheme and host a trusted reverse proxy reports."""

from __future__ import annotations

import ipaddress
import re

from starlette.types import ASGIApp, Receive, Scope, Send

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


def behind_proxies(app: ASGIApp, trusted_proxies: list[str]) -> ASGIApp:
    """`app`, believing these proxies; `app` itself, at no cost, if there are none."""
    return ForwardedHeaders(app, trusted_proxies) if trusted_proxies else app


class ForwardedHeaders:
    """ASGI middleware: believes `X-Forwarded-*` from trusted proxies only.

    When the connection comes from a trusted proxy, `X-Forwarded-Proto` and
    `X-Forwarded-Host` become the scheme and host of every URL the registry
    hands out, and the client is the right-most `X-Forwarded-For` address that
    is not a trusted proxy. From any other peer the headers are ignored, so a
    client can pick neither its own address nor the registry's URLs.
    """

    def __init__(self, app: ASGIApp, trusted_proxies: list[str]) -> None:
        self.app = app
        self.networks = [
            ipaddress.ip_network(entry, strict=False) for entry in trusted_proxies
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and client and self._trusted(client[0]):
            scope = self._forwarded(scope)
        await self.app(scope, receive, send)

    def _trusted(self, text: str) -> bool:
        address = _parse_address(text)
        return address is not None and any(address in n for n in self.networks)

    def _forwarded(self, scope: Scope) -> Scope:
        scope = dict(scope)
        headers = _header_values(scope["headers"])

        proto = _last(headers.get(b"x-forwarded-proto", "")).lower()
        if proto in ("http", "https"):
            scope["scheme"] = proto

        host = _last(headers.get(b"x-forwarded-host", ""))
        if _HOST.fullmatch(host):
            scope["headers"] = [
                *(item for item in scope["headers"] if item[0] != b"host"),
                (b"host", host.encode("ascii")),
            ]

        client = self._client(headers.get(b"x-forwarded-for", ""))
        if client is not None:
            scope["client"] = (client, 0)
        return scope

    def _client(self, forwarded_for: str) -> str | None:
        """The nearest hop that is not a trusted proxy, walking right to left.

        A malformed entry ends the walk: what lies left of it is not vouched
        for, so the last trusted hop read stands instead.
        """
        client = None
        for entry in reversed(forwarded_for.split(",")):
            address = _parse_address(entry.strip())
            if address is None:
                break
            client = str(address)
            if not any(address in n for n in self.networks):
                break
        return client


def _header_values(headers: list[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """Values by lower-case name; repeated headers joined with commas."""
    values: dict[bytes, str] = {}
    for name, value in headers:
        text = value.decode("latin-1")
        values[name] = f"{values[name]},{text}" if name in values else text
    return values


def _last(value: str) -> str:
    # Each proxy appends: the right-most entry is the one our peer wrote.
    return value.rsplit(",", 1)[-1].strip()


def _parse_address(text: str) -> IPAddress | None:
    """An address, with any port or brackets dropped; None if malformed."""
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address
