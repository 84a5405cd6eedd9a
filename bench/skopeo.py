"""A real client's round trip: `skopeo copy --all` of a multi-arch image."""

from __future__ import annotations

import subprocess
import time

from bench.servers import Server
from bench.workload import Bench, Metric, Workload

SOURCE_TAG = "bookworm"
REPO = "bench/debian"


def copy_in_and_out(server: Server, bench: Bench, run: int) -> dict[str, float]:
    """Seconds to push the image into a new repository, then pull it out.

    Runs once per registry: skopeo remembers where it pushed blobs and would
    mount them on a second push instead of uploading them.
    """
    remote = f"docker://{server.host}/{REPO}:{SOURCE_TAG}"
    local = f"oci:{bench.images / 'debian'}:{SOURCE_TAG}"
    copy_out = f"oci:{bench.workdir / f'skopeo-out-{server.key}'}:{SOURCE_TAG}"
    return {
        "skopeo-in": _copy(local, remote, "--dest-tls-verify=false"),
        "skopeo-out": _copy(remote, copy_out, "--src-tls-verify=false"),
    }


def _copy(source: str, destination: str, tls_flag: str) -> float:
    command = ["skopeo", "copy", "--all", "--quiet", tls_flag, source, destination]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}:\n{done.stderr}")
    return elapsed


WORKLOADS = (
    Workload(
        "skopeo",
        (
            Metric("skopeo-in", "skopeo copy --all debian in", "s", "lower"),
            Metric("skopeo-out", "skopeo copy --all debian out", "s", "lower"),
        ),
        copy_in_and_out,
        repeat=False,
    ),
)
