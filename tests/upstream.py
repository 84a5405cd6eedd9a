"""Upstreams for Dockyard's pull-through cache, and a cache in front of them.

`start_distribution` runs Distribution (Debian's `docker-registry` 2.8) on a
free port with a throwaway root directory. Its access log is the record of
what the cache asked it: every request ends in one Apache-style line,
`"GET /v2/NAME/blobs/DIGEST HTTP/1.1" 200 BYTES`, written as the response
completes (a client that hangs up still gets one).

`start_cache` runs `dockyard serve` with an `upstreams:` section in its YAML
config; the same file drives the `dockyard upstream` command line.

`answering` is no registry at all: it gives one answer to every request, for
the answers Distribution cannot be made to give on demand (429, 503, bytes
that are not the blob asked for).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.server import RunningServer, free_port, launch

READY_TIMEOUT = 30
ACCESS_LINE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) '
)


@dataclass
class Distribution:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def requests(self, method: str, uri_part: str = "") -> list[str]:
        """URIs of the `method` requests so far whose URI contains `uri_part`."""
        matches = (ACCESS_LINE.search(line) for line in self.log().splitlines())
        return [
            m["uri"]
            for m in matches
            if m and m["method"] == method and uri_part in m["uri"]
        ]

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def distribution_config(root: Path, port: int) -> str:
    # Info level is what logs each request; delete lets tests remove blobs.
    return (
        "version: 0.1\n"
        "log:\n"
        "  level: info\n"
        "storage:\n"
        "  filesystem:\n"
        f"    rootdirectory: {root}\n"
        "  delete:\n"
        "    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
    )


@contextmanager
def start_distribution(workdir: Path) -> Iterator[Distribution]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "distribution.yml"
    config.write_text(distribution_config(workdir / "root", port))
    log_path = workdir / "distribution.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    registry = Distribution(workdir / "root", port, process, log_path)
    try:
        _wait_ready(registry)
        yield registry
    finally:
        registry.stop()


def _wait_ready(registry: Distribution) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited:\n{registry.log()}")
        try:
            if httpx.get(f"{registry.url}/v2/", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"docker-registry did not answer:\n{registry.log()}")


def push_blob(registry_url: str, repo: str, data: bytes) -> str:
    """Upload `data` to `repo` with a POST and one PUT; return its digest.

    Distribution 2.8 ignores `?digest=` on the POST, so the upload is opened
    and closed in two requests.
    """
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=registry_url, timeout=60) as client:
        opened = client.post(f"/v2/{repo}/blobs/uploads/")
        assert opened.status_code == 202, opened.text
        # Location carries Distribution's upload state in its query string.
        location = httpx.URL(opened.headers["Location"])
        closed = client.put(
            location.copy_merge_params({"digest": digest}),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
    assert closed.status_code == 201, closed.text
    return digest


# Dockyard as the cache


@dataclass
class Cache:
    """A running `dockyard serve` with upstreams, and its config file."""

    server: RunningServer
    config: Path

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kwargs)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`dockyard ARGS --config CONFIG`, as an administrator would run it."""
        return subprocess.run(
            [sys.executable, "-m", "dockyard", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def upstream(
    registry_url: str, name: str = "upstream", tag_ttl: int = 2, **options: Any
) -> dict[str, Any]:
    """One entry of the `upstreams:` list."""
    return {"name": name, "url": registry_url, "tag_ttl": tag_ttl, **options}


@contextmanager
def start_cache(workdir: Path, upstreams: list[dict[str, Any]]) -> Iterator[Cache]:
    """`dockyard serve` (two workers) caching `upstreams`."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    config = workdir / "dockyard.yml"
    settings = {"data_dir": str(data_dir), "upstreams": upstreams}
    config.write_text(yaml.safe_dump(settings))
    server = launch(data_dir, args=["--config", str(config), "--workers", "2"])
    try:
        yield Cache(server, config)
    finally:
        server.stop()


# Answers no registry gives on demand


@dataclass
class Answering:
    url: str
    status: int
    seen: list[str]


ERROR_BODY = b'{"errors":[{"code":"UNKNOWN","message":"answering","detail":null}]}'


@contextmanager
def answering(
    status: int, headers: dict[str, str] | None = None, body: bytes = ERROR_BODY
) -> Iterator[Answering]:
    """An HTTP server giving `status`, `headers` and `body` to everything."""
    seen: list[str] = []
    content_type = (
        "application/json" if body is ERROR_BODY else "application/octet-stream"
    )

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _answer

        def log_message(self, *args: Any) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as http:
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        try:
            yield Answering(f"http://127.0.0.1:{http.server_port}", status, seen)
        finally:
            http.shutdown()


# An upstream that misbehaves on purpose


def _listed() -> tuple[bytes, bytes, bytes]:
    """An OCI image manifest, its config and its one layer."""
    config = b'{"architecture": "amd64", "os": "linux"}'
    layer = os.urandom(4096)

    def described(media_type: str, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": described("application/vnd.oci.image.config.v1+json", config),
        "layers": [described("application/vnd.oci.image.layer.v1.tar", layer)],
    }
    return json.dumps(manifest).encode(), config, layer


HOSTILE_MANIFEST = (
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}'
)
MEBIBYTE = 1024 * 1024


@dataclass
class Hostile:
    """What the hostile upstream did: bytes it got out per behaviour before
    the client stopped reading, and the blob `slow` serves."""

    url: str
    blob: bytes
    # The manifest `listing` serves, and the config and layer it lists.
    listed: tuple[bytes, bytes, bytes]
    # Set to let `slow` send the rest of its blob.
    release: threading.Event
    # `held` sends a blob of its own, the rest once this is set.
    release_held: threading.Event
    held: bytes
    written: dict[str, int]
    finished: dict[str, threading.Event]
    # `shared` likewise.
    release_shared: threading.Event = field(default_factory=threading.Event)
    shared: bytes = field(default_factory=lambda: os.urandom(MEBIBYTE))
    # Set to make `silenced` take requests and never answer them.
    silence: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.blob).hexdigest()


@contextmanager
def hostile() -> Iterator[Hostile]:
    """An upstream whose first path component says how it misbehaves:

    - `bigerror/`: a 500 whose body goes on for 256 MiB;
    - `drip/`: a status line, then one header byte every 0.2 s for a minute;
    - `endless/`: blobs of no stated length that go on for 1 GiB;
    - `empty/`: blobs said to be 100 bytes that end before their first byte;
    - `liar/`: blob HEADs claim 5 bytes; GETs find nothing;
    - `slow/`: `blob`, its first 64 KiB at once and the rest once released;
    - `badmanifest/`: a manifest no registry would store;
    - `bomb/`: a manifest of 100 KiB gzip that unpacks to 100 MiB;
    - `listing/`: a good manifest, its blobs 503 as if the upstream were
      down;
    - `listed/`: the blobs of that manifest;
    - `held/`: as `slow` with a blob of its own, `held`, released by
      `release_held`; `shared/` likewise, with `shared` and `release_shared`;
    - `silenced/`: as `listing/` until `silence` is set, then no answer at
      all, as from behind a firewall that drops packets;
    - anything else: 404.
    """
    blob = os.urandom(MEBIBYTE)
    state = Hostile(
        "",
        blob,
        _listed(),
        threading.Event(),
        threading.Event(),
        os.urandom(MEBIBYTE),
        {},
        {},
    )

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            behaviour = self.path.removeprefix("/v2/").split("/", 1)[0]
            state.finished.setdefault(behaviour, threading.Event())
            try:
                getattr(self, f"_{behaviour}", self._missing)()
            except OSError:
                pass  # the client hung up, as a cache should
            finally:
                state.finished[behaviour].set()

        do_GET = do_HEAD = _answer

        def _missing(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _stream(self, behaviour: str, total: int) -> None:
            state.written[behaviour] = 0
            chunk = b"x" * MEBIBYTE
            while state.written[behaviour] < total:
                self.wfile.write(chunk)
                state.written[behaviour] += len(chunk)

        def _bigerror(self) -> None:
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self._stream("bigerror", 256 * MEBIBYTE)

        def _drip(self) -> None:
            self.wfile.write(b"HTTP/1.0 200 OK\r\n")
            for _ in range(300):
                self.wfile.write(b"X")
                self.wfile.flush()
                time.sleep(0.2)

        def _endless(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if self.command == "GET":
                self._stream("endless", 1024 * MEBIBYTE)

        def _empty(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()

        def _liar(self) -> None:
            if self.command != "HEAD":
                return self._missing()
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()

        def _gated(self, data: bytes, release: threading.Event) -> None:
            """`data`, its first 64 KiB at once and the rest once released."""
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(data[: 64 * 1024])
                release.wait(60)
                self.wfile.write(data[64 * 1024 :])

        def _slow(self) -> None:
            self._gated(blob, state.release)

        def _held(self) -> None:
            self._gated(state.held, state.release_held)

        def _shared(self) -> None:
            self._gated(state.shared, state.release_shared)

        def _listed(self) -> None:
            wanted = self.path.rsplit("/", 1)[-1]
            found = [
                data
                for data in state.listed[1:]
                if wanted == "sha256:" + hashlib.sha256(data).hexdigest()
            ]
            if not found:
                return self._missing()
            self.send_response(200)
            self.send_header("Content-Length", str(len(found[0])))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(found[0])

        def _bomb(self) -> None:
            body = gzip.compress(bytes(100 * MEBIBYTE), compresslevel=9)
            self.send_response(200)
            self.send_header(
                "Content-Type", "application/vnd.oci.image.manifest.v1+json"
            )
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def _badmanifest(self) -> None:
            digest = "sha256:" + hashlib.sha256(HOSTILE_MANIFEST).hexdigest()
            self.send_response(200)
            self.send_header(
                "Content-Type", "application/vnd.oci.image.manifest.v1+json"
            )
            self.send_header("Content-Length", str(len(HOSTILE_MANIFEST)))
            self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(HOSTILE_MANIFEST)

        def _silenced(self) -> None:
            if state.silence.is_set():
                state.stopped.wait(120)
                return
            self._listing()

        def _listing(self) -> None:
            manifest = state.listed[0]
            if "/blobs/" in self.path:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
            self.send_response(200)
            self.send_header(
                "Content-Type", "application/vnd.oci.image.manifest.v1+json"
            )
            self.send_header("Content-Length", str(len(manifest)))
            self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(manifest)

        def log_message(self, *args: Any) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as http:
        http.daemon_threads = True
        http.block_on_close = False
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        state.url = f"http://127.0.0.1:{http.server_port}"
        try:
            yield state
        finally:
            state.release.set()
            state.release_held.set()
            state.release_shared.set()
            state.stopped.set()
            http.shutdown()
