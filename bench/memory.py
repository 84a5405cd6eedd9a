"""Peak resident memory of the registries, sampled while the benchmark runs."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from bench.servers import Server

INTERVAL = 0.2


class PeakSampler:
    """Samples every server's RSS in a background thread, keeping the peak."""

    def __init__(self, servers: Sequence[Server]) -> None:
        self.servers = servers
        self.peak = {server.key: 0 for server in servers}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stopped.wait(INTERVAL):
            self._sample()

    def _sample(self) -> None:
        for server in self.servers:
            self.peak[server.key] = max(self.peak[server.key], server.rss())
