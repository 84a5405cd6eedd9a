"""Start and stop a real `dockyard serve` process for tests."""

from __future__ import annotations

import os
import signal
import socket
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

    @property
    def host(self) -> str:
        """HOST:PORT as image references spell it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

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
) -> RunningServer:
    """Start a server; without `location_flags`, args must say where it lives."""
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
    server = RunningServer(data_dir, port, process, log_path, args or [])
    _wait_ready(server)
    return server


def _wait_ready(server: RunningServer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"dockyard serve exited:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/v2/", timeout=1).status_code == 200:
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
