"""Start and stop a real `dockyard serve` process for tests."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx


@dataclass
class RunningServer:
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    # The CA that signed the server's certificate; None for plain HTTP.
    ca_file: Path | None = None

    @property
    def host(self) -> str:
        """HOST:PORT as image references spell it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        scheme = "https" if self.ca_file else "http"
        return f"{scheme}://{self.host}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """httpx's `verify=`: trusting exactly the server's CA, if it has one."""
        if self.ca_file is None:
            return True
        return ssl.create_default_context(cafile=self.ca_file)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the server and its workers, as a crash or OOM kill would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(
    data_dir: Path,
    port: int | None = None,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    location_flags: bool = True,
    ca_file: Path | None = None,
) -> RunningServer:
    """Start a server; without `location_flags`, args must say where it lives.

    Give `ca_file` when args make it serve HTTPS: the CA its certificate is
    signed by, which `url` and the readiness check then rely on.
    """
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    command = [
        sys.executable,
        "-m",
        "dockyard",
        "serve",
        *(
            ["--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"]
            if location_flags
            else []
        ),
        *(args or ["--workers", "2"]),
    ]
    log = open(log_path, "ab")  # noqa: SIM115 - the server process owns it
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    server = RunningServer(data_dir, port, process, log_path, args or [], ca_file)
    _wait_ready(server)
    return server


def _wait_ready(server: RunningServer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    verify = server.verify
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"dockyard serve exited:\n{server.log()}")
        try:
            response = httpx.get(f"{server.url}/v2/", timeout=1, verify=verify)
            # 401: the server is up and wants credentials for the API.
            if response.status_code in (200, 401):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"dockyard serve did not answer in {timeout}s:\n{server.log()}")


@contextmanager
def start_server(data_dir: Path, **kwargs: object) -> Iterator[RunningServer]:
    server = launch(data_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
