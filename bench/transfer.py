"""Blob pushes (one PUT, or PATCH chunks) and pulls (one and many clients)."""

from __future__ import annotations

import subprocess
import time
from typing import BinaryIO

from bench.client import Client, with_query
from bench.servers import Server
from bench.workload import Bench, Metric, Workload

PULL_REPO = "bench/pull"
PULL_BLOB = 0


def push_whole(server: Server, bench: Bench, run: int) -> dict[str, float]:
    """POST to open a session, then one PUT ?digest= with the whole blob."""
    blob = 1 + run
    bench.blobs.digest(blob)  # the file is made and hashed before the clock starts
    started = time.perf_counter()
    with Client(server.url) as client, open(bench.blobs.path, "rb") as file:
        _push_whole(client, f"bench/push-whole-{run}", bench, blob, file)
    return {"push-whole": _mb_per_s(bench.blobs.size, started)}


def _push_whole(
    client: Client, repo: str, bench: Bench, blob: int, file: BinaryIO
) -> None:
    session = client.request("POST", f"/v2/{repo}/blobs/uploads/", expect=[202])
    target = with_query(session.location(), digest=bench.blobs.digest(blob))
    client.send_file("PUT", target, file, bench.blobs.span(blob), expect=[201])


def push_chunked(server: Server, bench: Bench, run: int) -> dict[str, float]:
    """POST, one PATCH per chunk with its Content-Range, then PUT ?digest=."""
    blob = 1 + bench.settings.repeats + run
    bench.blobs.digest(blob)  # the file is made and hashed before the clock starts
    started = time.perf_counter()
    with Client(server.url) as client, open(bench.blobs.path, "rb") as file:
        _push_chunked(client, f"bench/push-chunked-{run}", bench, blob, file)
    return {"push-chunked": _mb_per_s(bench.blobs.size, started)}


def _push_chunked(
    client: Client, repo: str, bench: Bench, blob: int, file: BinaryIO
) -> None:
    answer = client.request("POST", f"/v2/{repo}/blobs/uploads/", expect=[202])
    blob_start = bench.blobs.span(blob)[0]
    for start, count in _chunks(bench, blob):
        first = start - blob_start
        answer = client.send_file(
            "PATCH",
            answer.location(),
            file,
            (start, count),
            expect=[202],
            headers={"Content-Range": f"{first}-{first + count - 1}"},
        )

    target = with_query(answer.location(), digest=bench.blobs.digest(blob))
    client.request("PUT", target, expect=[201])


def _chunks(bench: Bench, blob: int) -> list[tuple[int, int]]:
    """(file offset, size) of each chunk of blob `blob`."""
    offset, size = bench.blobs.span(blob)
    step = bench.settings.chunk_bytes
    return [(offset + at, min(step, size - at)) for at in range(0, size, step)]


def prepare_pull(server: Server, bench: Bench) -> None:
    """Push the blob to pull, unless an earlier workload already did."""
    with Client(server.url) as client, open(bench.blobs.path, "rb") as file:
        path = f"/v2/{PULL_REPO}/blobs/{bench.blobs.digest(PULL_BLOB)}"
        if client.request("HEAD", path, expect=[200, 404]).status == 404:
            _push_whole(client, PULL_REPO, bench, PULL_BLOB, file)


def pull_single(server: Server, bench: Bench, run: int) -> dict[str, float]:
    return {"pull-single": _pull(server, bench, clients=1)}


def pull_concurrent(server: Server, bench: Bench, run: int) -> dict[str, float]:
    clients = bench.settings.pull_clients
    return {"pull-concurrent": _pull(server, bench, clients)}


def _pull(server: Server, bench: Bench, clients: int) -> float:
    """MB/s over all clients: curl processes that each GET the whole blob."""
    url = f"{server.url}/v2/{PULL_REPO}/blobs/{bench.blobs.digest(PULL_BLOB)}"
    command = ["curl", "-sS", "--fail", "-L", "-o", "/dev/null"]
    command += ["-w", "%{size_download}", url]

    started = time.perf_counter()
    curls = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(clients)
    ]
    outputs = [curl.communicate() for curl in curls]
    megabytes = _mb_per_s(clients * bench.blobs.size, started)

    for curl, (out, err) in zip(curls, outputs, strict=True):
        if curl.returncode != 0 or int(out or 0) != bench.blobs.size:
            raise RuntimeError(f"curl {url}: {curl.returncode} {out!r} {err!r}")
    return megabytes


def _mb_per_s(size: int, started: float) -> float:
    return size / (time.perf_counter() - started) / 1e6


def _throughput(key: str, title: str, target: float) -> tuple[Metric, ...]:
    return (Metric(key, title, "MB/s", "higher", target),)


WORKLOADS = (
    Workload(
        "push-whole",
        _throughput("push-whole", "push {blob} blob, one PUT", 2.0),
        push_whole,
    ),
    Workload(
        "push-chunked",
        _throughput("push-chunked", "push {blob} blob, {chunk} PATCHes", 2.0),
        push_chunked,
    ),
    Workload(
        "pull-single",
        _throughput("pull-single", "pull {blob} blob, 1 client", 1.0),
        pull_single,
        prepare=prepare_pull,
    ),
    Workload(
        "pull-concurrent",
        _throughput("pull-concurrent", "pull {blob} blob, {clients} clients", 1.0),
        pull_concurrent,
        prepare=prepare_pull,
    ),
)
