"""Start Dockyard and Distribution as their users would, and measure them.

Both listen on loopback, keep blobs on the local filesystem under the
benchmark's work folder and write their own default logs to a file there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

READY_TIMEOUT = 60


@dataclass
class Server:
    """One running registry; `key` is how results name it."""

    key: str
    title: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def rss(self) -> int:
        """Resident bytes of the server process and all its children."""
        return sum(_memory(process, "rss") for process in self._processes())

    def pss(self) -> int:
        """Like `rss`, but pages shared between processes are counted once."""
        return sum(_memory(process, "pss") for process in self._processes())

    def _processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def start_dockyard(workdir: Path) -> Server:
    """`dockyard serve` with its default workers and log level."""
    port = free_port()
    command = [
        sys.executable,
        *("-m", "dockyard", "serve"),
        *("--data-dir", str(workdir / "dockyard-data")),
        *("--listen", f"127.0.0.1:{port}"),
    ]
    return _launch("dockyard", "Dockyard", command, port, workdir)


def start_distribution(workdir: Path) -> Server:
    """Distribution's `docker-registry serve` with a generated config."""
    port = free_port()
    config = workdir / "distribution.yml"
    config.write_text(distribution_config(workdir / "distribution-data", port))
    command = ["docker-registry", "serve", str(config)]
    return _launch("distribution", "Distribution", command, port, workdir)


def distribution_config(root: Path, port: int) -> str:
    return (
        "version: 0.1\n"
        "storage:\n"
        "  filesystem:\n"
        f"    rootdirectory: {root}\n"
        "  delete:\n"
        "    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(
    key: str, title: str, command: list[str], port: int, workdir: Path
) -> Server:
    log_path = workdir / f"{key}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(key, title, port, process, log_path)
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.title} exited; see {server.log_path}")
        if _answers(f"{server.url}/v2/"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{server.title} did not answer; see {server.log_path}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _memory(process: psutil.Process, kind: str) -> int:
    try:
        if kind == "pss":
            return int(process.memory_full_info().pss)
        return int(process.memory_info().rss)
    except psutil.NoSuchProcess:
        return 0
