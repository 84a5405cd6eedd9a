"""One upstream registry, spoken to as a registry client would.

The upstream's login follows the Docker token protocol: a request answered 401
with a `Bearer` challenge is repeated with a token from the challenge's realm,
fetched anonymously or with the configured credentials. Tokens are kept per
scope until shortly before they expire, so a busy cache logs in once per
repository and token lifetime. A `Basic` challenge gets the credentials
directly.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from dockyard.config import UpstreamConfig
from dockyard.core.digest import Digest
from dockyard.core.errors import DigestInvalid
from dockyard.core.manifest import MANIFEST_MEDIA_TYPES

logger = logging.getLogger(__name__)

# Every manifest kind Dockyard stores, so that the upstream never converts.
ACCEPT = ", ".join(sorted(MANIFEST_MEDIA_TYPES))

# `key="value"` or `key=token` pairs of a WWW-Authenticate challenge.
_PARAM = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')

# Tokens are dropped this many seconds before the upstream says they expire,
# so that none expires on its way there.
_TOKEN_MARGIN = 10.0

# The token spec's lifetime for a token that does not state one.
_DEFAULT_TOKEN_LIFETIME = 60


class UpstreamFailed(Exception):
    """The upstream could not be reached or did not answer as a registry.

    `status` is the upstream's HTTP status, or None when there was no answer;
    the message names the upstream and says what it answered.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class UpstreamManifest:
    digest: Digest | None
    media_type: str
    content: bytes


class Upstream:
    """The HTTP client of one upstream, with its credentials and tokens."""

    def __init__(
        self, config: UpstreamConfig, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.name = config.name
        self.url = config.url
        self._credentials = (
            (config.username, config.password or "") if config.username else None
        )
        self._http = httpx.AsyncClient(
            base_url=config.url,
            timeout=config.timeout,
            follow_redirects=True,
            transport=transport,
            headers={"User-Agent": "dockyard-pull-through-cache"},
        )
        self._tokens: dict[str, tuple[str, float]] = {}

    async def close(self) -> None:
        await self._http.aclose()

    def describe(self) -> str:
        return f"upstream {self.name} ({self.url})"

    # Registry requests

    async def ping(self) -> int:
        """The status of GET /v2/: 200 or 401 from a live registry."""
        response = await self._send("GET", "/v2/", None)
        return response.status_code

    async def head_manifest(
        self, name: str, reference: str
    ) -> tuple[bool, Digest | None]:
        """Whether the upstream has the manifest, and its digest if it says.

        A HEAD does not count against Docker Hub's pull limit.
        """
        response = await self._registry("HEAD", name, f"manifests/{reference}")
        if response.status_code == 404:
            return False, None
        self._check(response, f"manifest {name}:{reference}")
        return True, _digest_header(response)

    async def get_manifest(
        self, name: str, reference: str, limit: int
    ) -> UpstreamManifest | None:
        """The manifest, None if the upstream lacks it; refused past `limit`
        bytes, the most Dockyard stores."""
        response = await self._registry(
            "GET", name, f"manifests/{reference}", stream=True
        )
        try:
            if response.status_code == 404:
                return None
            await self._check_streamed(response, f"manifest {name}:{reference}")
            content = await _read_limited(response, limit, self.describe())
        finally:
            await response.aclose()
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return UpstreamManifest(_digest_header(response), media_type, content)

    async def blob_size(self, name: str, digest: Digest) -> int | None:
        """The blob's size upstream, None if the upstream lacks it."""
        response = await self._registry("HEAD", name, f"blobs/{digest}")
        if response.status_code == 404:
            return None
        self._check(response, f"blob {digest} of {name}")
        return _content_length(response)

    @asynccontextmanager
    async def blob(self, name: str, digest: Digest) -> AsyncIterator[httpx.Response]:
        """The upstream's answer to a blob GET, its body not yet read.

        The body is asked for as stored (`identity`): the cache verifies the
        digest of exactly the bytes it keeps.
        """
        headers = {"Accept-Encoding": "identity"}
        response = await self._registry(
            "GET", name, f"blobs/{digest}", headers, stream=True
        )
        try:
            if response.status_code != 404:
                await self._check_streamed(response, f"blob {digest} of {name}")
            yield response
        finally:
            await response.aclose()

    async def _registry(
        self,
        method: str,
        name: str,
        path: str,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        headers = {"Accept": ACCEPT, **(headers or {})}
        scope = f"repository:{name}:pull"
        return await self._send(method, f"/v2/{name}/{path}", scope, headers, stream)

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code == 200:
            return
        raise UpstreamFailed(
            f"{self.describe()} answered {what} with {_explain(response)}",
            response.status_code,
        )

    async def _check_streamed(self, response: httpx.Response, what: str) -> None:
        if response.status_code != 200:
            # An error body is small; its message is worth passing on.
            await response.aread()
        self._check(response, what)

    # Sending, with the upstream's login

    async def _send(
        self,
        method: str,
        path: str,
        scope: str | None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        headers = dict(headers or {})
        token = self._tokens.get(scope or "")
        if token is not None and token[1] > time.monotonic():
            headers["Authorization"] = f"Bearer {token[0]}"

        response = await self._request(method, path, headers, stream)
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code != 401 or not challenge:
            return response

        await response.aclose()
        headers["Authorization"] = await self._answer(challenge, scope)
        return await self._request(method, path, headers, stream)

    async def _request(
        self, method: str, path: str, headers: dict[str, str], stream: bool
    ) -> httpx.Response:
        try:
            request = self._http.build_request(method, path, headers=headers)
            return await self._http.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise UpstreamFailed(
                f"{self.describe()} did not answer: {_reason(exc)}"
            ) from None

    async def _answer(self, challenge: str, scope: str | None) -> str:
        """The Authorization header that answers a 401's challenge."""
        kind, _, params = challenge.partition(" ")
        if kind.lower() == "basic":
            if self._credentials is None:
                raise UpstreamFailed(
                    f"{self.describe()} wants a login; set its username and password",
                    401,
                )
            return httpx.BasicAuth(*self._credentials)._auth_header
        if kind.lower() != "bearer":
            raise UpstreamFailed(
                f"{self.describe()} asks for {kind} authentication, which Dockyard "
                "does not speak",
                401,
            )

        values = _challenge_params(params)
        token, lifetime = await self._fetch_token(values, scope)
        self._tokens[scope or ""] = (token, time.monotonic() + lifetime - _TOKEN_MARGIN)
        return f"Bearer {token}"

    async def _fetch_token(
        self, challenge: dict[str, str], scope: str | None
    ) -> tuple[str, float]:
        realm = challenge.get("realm")
        if not realm:
            raise UpstreamFailed(f"{self.describe()} sent a challenge with no realm")
        params = {"service": challenge.get("service", "")}
        if scope or challenge.get("scope"):
            params["scope"] = scope or challenge["scope"]
        auth = httpx.BasicAuth(*self._credentials) if self._credentials else None

        try:
            response = await self._http.get(realm, params=params, auth=auth)
        except httpx.HTTPError as exc:
            raise UpstreamFailed(
                f"the login of {self.describe()} at {realm} did not answer: "
                f"{_reason(exc)}"
            ) from None
        if response.status_code != 200:
            raise UpstreamFailed(
                f"the login of {self.describe()} refused Dockyard's "
                f"{'credentials' if auth else 'anonymous request'}: "
                f"{_explain(response)}",
                401,
            )
        return _token_of(response, self.describe())


def _challenge_params(text: str) -> dict[str, str]:
    params = {}
    for key, quoted, bare in _PARAM.findall(text):
        params[key.lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted else bare
    return params


def _token_of(response: httpx.Response, upstream: str) -> tuple[str, float]:
    try:
        body = response.json()
        token = body.get("token") or body.get("access_token")
        lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
    except (ValueError, AttributeError, TypeError):
        token = None
    if not isinstance(token, str) or not token:
        raise UpstreamFailed(f"the login of {upstream} sent no token", 401)
    return token, lifetime


async def _read_limited(response: httpx.Response, limit: int, upstream: str) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise UpstreamFailed(
                f"{upstream} sent a manifest of over {limit} bytes, Dockyard's limit"
            )
    return bytes(body)


def _digest_header(response: httpx.Response) -> Digest | None:
    value = response.headers.get("docker-content-digest")
    if value is None:
        return None
    try:
        return Digest.parse(value)
    except DigestInvalid:
        return None


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() else None


def _explain(response: httpx.Response) -> str:
    """`429 TOOMANYREQUESTS: you have reached your pull rate limit`, or as near."""
    text = f"{response.status_code}"
    try:
        error = response.json()["errors"][0]
        return f"{text} {error.get('code', '')}: {error.get('message', '')}".strip()
    except Exception:
        return f"{text} {response.reason_phrase}".strip()


def _reason(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__
