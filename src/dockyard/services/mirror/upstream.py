"""One upstream registry, spoken to as a registry client would.

The upstream's login follows the Docker token protocol: a request answered 401
with a `Bearer` challenge is repeated with a token from the challenge's realm,
fetched anonymously or with the configured credentials. Tokens are kept per
scope until shortly before they expire, so a busy cache logs in once per
repository and token lifetime. A `Basic` challenge gets the credentials
directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections import OrderedDict
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
_ACCEPT = {"Accept": ACCEPT}

# `key="value"` or `key=token` pairs of a WWW-Authenticate challenge.
_PARAM = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')

# Tokens are dropped this many seconds before the upstream says they expire,
# so that none expires on its way there.
_TOKEN_MARGIN = 10.0

# The token spec's lifetime for a token that does not state one.
_DEFAULT_TOKEN_LIFETIME = 60

# The most read of an error's or a login's answer: far more than any
# registry's message or token, and little enough that no upstream can fill
# Dockyard's memory with one.
SMALL_ANSWER = 64 * 1024

# Upstream tokens kept per process: one per repository pulled lately.
MAX_TOKENS = 1024


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
        self._timeout = config.timeout
        self.max_blob_bytes = config.max_blob_bytes
        self._http = httpx.AsyncClient(
            base_url=config.url,
            timeout=config.timeout,
            follow_redirects=True,
            transport=transport,
            # Bytes as stored: a blob's digest is of exactly those, and a
            # compressed answer could unpack to far more than was sent.
            headers={
                "User-Agent": "dockyard-pull-through-cache",
                "Accept-Encoding": "identity",
            },
        )
        # Tokens by scope, the most recently used last.
        self._tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()
        # An upstream that left a request unanswered is not asked again
        # before this (monotonic) time: one that drops every packet would
        # otherwise cost each request, even for cached content, a timeout.
        self._quiet_until = 0.0

    async def close(self) -> None:
        await self._http.aclose()

    def describe(self) -> str:
        return f"upstream {self.name} ({self.url})"

    # Registry requests

    async def ping(self) -> int:
        """The status of GET /v2/: 200 or 401 from a live registry."""
        async with self._deadline("GET /v2/"):
            response, _ = await self._brief("GET", "/v2/", None)
        return response.status_code

    async def head_manifest(
        self, name: str, reference: str
    ) -> tuple[bool, Digest | None]:
        """Whether the upstream has the manifest, and its digest if it says.

        A HEAD does not count against Docker Hub's pull limit.
        """
        what = f"manifest {name}:{reference}"
        async with self._deadline(what):
            response, body = await self._registry(
                "HEAD", name, f"manifests/{reference}"
            )
        if response.status_code == 404:
            return False, None
        self._check(response, body, what)
        return True, _digest_header(response)

    async def get_manifest(
        self, name: str, reference: str, limit: int
    ) -> UpstreamManifest | None:
        """The manifest, None if the upstream lacks it; refused past `limit`
        bytes, the most Dockyard stores."""
        what = f"manifest {name}:{reference}"
        path = f"/v2/{name}/manifests/{reference}"
        async with self._deadline(what):
            response = await self._send("GET", path, _pull(name), _ACCEPT)
            try:
                if response.status_code == 404:
                    return None
                await self._check_streamed(response, what)
                content = await _read_limited(response, limit, self.describe())
            finally:
                await response.aclose()
        if content is None:
            raise UpstreamFailed(
                f"{self.describe()} sent a manifest of over {limit} bytes, "
                "Dockyard's limit"
            )
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return UpstreamManifest(_digest_header(response), media_type, content)

    async def blob_head(self, name: str, digest: Digest) -> tuple[bool, int | None]:
        """Whether the upstream has the blob, and its size if it says."""
        what = f"blob {digest} of {name}"
        async with self._deadline(what):
            response, body = await self._registry("HEAD", name, f"blobs/{digest}")
        if response.status_code == 404:
            return False, None
        self._check(response, body, what)
        return True, content_length(response)

    @asynccontextmanager
    async def blob(self, name: str, digest: Digest) -> AsyncIterator[httpx.Response]:
        """The upstream's answer to a blob GET, its body not yet read.

        Only the wait for the answer has a deadline: a large blob takes what
        it takes, as long as bytes keep coming.
        """
        what = f"blob {digest} of {name}"
        path = f"/v2/{name}/blobs/{digest}"
        async with self._deadline(what):
            response = await self._send("GET", path, _pull(name), _ACCEPT)
        try:
            if response.status_code != 404:
                async with self._deadline(what):
                    await self._check_streamed(response, what)
            yield response
        finally:
            await response.aclose()

    async def _registry(
        self, method: str, name: str, path: str
    ) -> tuple[httpx.Response, bytes]:
        """An answer read in full if short; an error's start otherwise."""
        return await self._brief(method, f"/v2/{name}/{path}", _pull(name), _ACCEPT)

    async def _brief(
        self,
        method: str,
        path: str,
        scope: str | None,
        headers: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, bytes]:
        """An answer whose body is wanted only to explain an error: at most
        SMALL_ANSWER bytes of it."""
        response = await self._send(method, path, scope, headers)
        try:
            body = await _read_at_most(response, SMALL_ANSWER)
        finally:
            await response.aclose()
        return response, body

    def _check(self, response: httpx.Response, body: bytes, what: str) -> None:
        if response.status_code == 200:
            return
        raise UpstreamFailed(
            f"{self.describe()} answered {what} with {_explain(response, body)}",
            response.status_code,
        )

    async def _check_streamed(self, response: httpx.Response, what: str) -> None:
        if response.status_code != 200:
            body = await _read_at_most(response, SMALL_ANSWER)
            self._check(response, body, what)

    @asynccontextmanager
    async def _deadline(self, what: str) -> AsyncIterator[None]:
        """At most `timeout` seconds in all: the client's own timeout counts
        only the wait for each next piece, which an upstream sending a byte
        at a time would never exceed. After a timeout, the upstream is left
        alone for as long."""
        self._check_not_quiet(what)
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except (TimeoutError, httpx.TimeoutException):
            self._fall_quiet()
            raise UpstreamFailed(
                f"{self.describe()} took over {self._timeout:g} s to answer {what}"
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamFailed(
                f"{self.describe()} broke off its answer to {what}: {_reason(exc)}"
            ) from None

    def _check_not_quiet(self, what: str) -> None:
        left = self._quiet_until - time.monotonic()
        if left > 0:
            raise UpstreamFailed(
                f"{self.describe()} left a request unanswered for "
                f"{self._timeout:g} s; not asking it for {what} for another "
                f"{math.ceil(left)} s"
            )

    def _fall_quiet(self) -> None:
        if self._quiet_until <= time.monotonic():
            logger.warning(
                "%s did not answer within %g s; not asked again for as long",
                self.describe(),
                self._timeout,
            )
        self._quiet_until = time.monotonic() + self._timeout

    # Sending, with the upstream's login

    async def _send(
        self,
        method: str,
        path: str,
        scope: str | None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = dict(headers or {})
        token = self._tokens.get(scope or "")
        if token is not None and token[1] > time.monotonic():
            headers["Authorization"] = f"Bearer {token[0]}"
            self._tokens.move_to_end(scope or "")

        response = await self._request(method, path, headers)
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code != 401 or not challenge:
            return response

        await response.aclose()
        headers["Authorization"] = await self._answer(challenge, scope)
        return await self._request(method, path, headers)

    async def _request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
        auth: httpx.BasicAuth | None = None,
    ) -> httpx.Response:
        """The answer, its body left to read (and close) by the caller."""
        try:
            request = self._http.build_request(
                method, path, headers=headers, params=params
            )
            return await self._http.send(request, stream=True, auth=auth)
        except httpx.PoolTimeout:
            # Dockyard's own connections to it were all busy: no sign that
            # the upstream stopped answering.
            raise UpstreamFailed(
                f"{self.describe()} is asked too much at once; no connection "
                "to it came free in time"
            ) from None
        except httpx.TimeoutException:
            raise  # a timeout: `_deadline` leaves the upstream alone a while
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
        self._keep_token(scope or "", token, lifetime)
        return f"Bearer {token}"

    def _keep_token(self, scope: str, token: str, lifetime: float) -> None:
        """Keep the token for its scope; at most MAX_TOKENS, the least
        recently used dropped first, so that clients asking for ever new
        names cannot grow the store without end."""
        self._tokens[scope] = (token, time.monotonic() + lifetime - _TOKEN_MARGIN)
        self._tokens.move_to_end(scope)
        while len(self._tokens) > MAX_TOKENS:
            self._tokens.popitem(last=False)

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
            response = await self._request("GET", realm, {}, params, auth)
        except UpstreamFailed as exc:
            raise UpstreamFailed(f"the login at {realm} failed: {exc}") from None
        try:
            body = await _read_limited(response, SMALL_ANSWER, self.describe())
        finally:
            await response.aclose()
        if response.status_code != 200:
            raise UpstreamFailed(
                f"the login of {self.describe()} refused Dockyard's "
                f"{'credentials' if auth else 'anonymous request'}: "
                f"{_explain(response, body or b'')}",
                401,
            )
        return _token_of(body, self.describe())


def _pull(name: str) -> str:
    return f"repository:{name}:pull"


def _challenge_params(text: str) -> dict[str, str]:
    params = {}
    for key, quoted, bare in _PARAM.findall(text):
        params[key.lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted else bare
    return params


def _token_of(body: bytes | None, upstream: str) -> tuple[str, float]:
    """The token and its lifetime from a login's answer; None is an answer
    too long to be one."""
    try:
        answer = json.loads(body or b"")
        token = answer.get("token") or answer.get("access_token")
        lifetime = float(answer.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
    except (ValueError, AttributeError, TypeError):
        token = None
    if not isinstance(token, str) or not token:
        raise UpstreamFailed(f"the login of {upstream} sent no token", 401)
    return token, lifetime


def _encoded(response: httpx.Response) -> str | None:
    """The answer's Content-Encoding, None for identity.

    Dockyard asks for uncompressed answers and reads bodies raw: a few KiB
    of gzip can unpack to gigabytes in one step.
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    return None if encoding in ("", "identity") else encoding


async def _read_limited(
    response: httpx.Response, limit: int, upstream: str
) -> bytes | None:
    """The whole body, or None if it runs past `limit` bytes."""
    encoding = _encoded(response)
    if encoding is not None:
        raise UpstreamFailed(
            f"{upstream} sent a {encoding}-encoded answer, though asked "
            "for none; Dockyard reads only uncompressed ones"
        )
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The body's first `limit` bytes, none if it is compressed; the rest is
    left unread."""
    if _encoded(response) is not None:
        return b""
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk[: limit - len(body)]
        if len(body) >= limit:
            break
    return bytes(body)


def _digest_header(response: httpx.Response) -> Digest | None:
    value = response.headers.get("docker-content-digest")
    if value is None:
        return None
    try:
        return Digest.parse(value)
    except DigestInvalid:
        return None


def content_length(response: httpx.Response) -> int | None:
    """The answer's Content-Length, None if it states none or a bad one."""
    value = response.headers.get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() else None


def _explain(response: httpx.Response, body: bytes) -> str:
    """`429 TOOMANYREQUESTS: you have reached your pull rate limit`, or as near."""
    text = f"{response.status_code}"
    try:
        error = json.loads(body)["errors"][0]
        return f"{text} {error.get('code', '')}: {error.get('message', '')}".strip()
    except Exception:
        return f"{text} {response.reason_phrase}".strip()


def _reason(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__
