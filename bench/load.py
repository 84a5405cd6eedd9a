"""Load generators written in C, so that the client is not what is measured.

wrk sends the GETs. ab sends the HEADs, because wrk 4.1 waits for the body
that a HEAD answer's Content-Length announces. Both keep their connections
open and report requests/s and the 99th percentile of latency.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.settings import Settings

WRK_SCRIPT = Path(__file__).with_name("manifest.lua")
# The media types of manifest.lua's Accept header, as container clients send.
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)

_WRK_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_WRK_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}

_AB_RATE = re.compile(r"^Requests per second:\s+([\d.]+)", re.MULTILINE)
_AB_P99 = re.compile(r"^\s+99%\s+(\d+)\s*$", re.MULTILINE)
_AB_COUNTS = re.compile(
    r"^(Complete|Failed|Keep-Alive) requests:\s+(\d+)", re.MULTILINE
)
# ab stops at this many requests or at -t seconds, whichever comes first.
_AB_MAX_REQUESTS = "100000000"


def wrk_get(url: str, settings: Settings) -> tuple[float, float]:
    """Requests/s and p99 in ms of GET `url` with manifest.lua's headers."""
    command = [
        "wrk",
        f"-t{settings.wrk_threads}",
        f"-c{settings.wrk_connections}",
        f"-d{settings.wrk_seconds}s",
        "--latency",
        *("-s", str(WRK_SCRIPT)),
        url,
    ]
    return parse_wrk(_run(command))


def parse_wrk(output: str) -> tuple[float, float]:
    """Requests/s and p99 in ms; any answer other than 2xx/3xx is a failure."""
    if _WRK_NON_2XX.search(output):
        raise RuntimeError(f"wrk saw failed requests:\n{output}")
    if "Socket errors" in output:
        print(f"wrk saw socket errors:\n{output}", file=sys.stderr)

    rate, p99 = _WRK_RATE.search(output), _WRK_P99.search(output)
    if rate is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    return float(rate.group(1)), float(p99.group(1)) * _TO_MS[p99.group(2)]


def ab_head(url: str, settings: Settings) -> tuple[float, float]:
    """Requests/s and p99 in ms (whole ms: ab's resolution) of HEAD `url`."""
    command = [
        *("ab", "-q", "-k", "-i"),
        *("-c", str(settings.wrk_connections)),
        *("-t", str(settings.wrk_seconds)),
        *("-n", _AB_MAX_REQUESTS),
        *("-H", f"Accept: {MANIFEST_ACCEPT}"),
        url,
    ]
    return parse_ab(_run(command))


def parse_ab(output: str) -> tuple[float, float]:
    """Requests/s and p99 in ms; failed or non-2xx answers are a failure."""
    counts = {name: int(value) for name, value in _AB_COUNTS.findall(output)}
    if counts.get("Failed") or "Non-2xx responses" in output:
        raise RuntimeError(f"ab saw failed requests:\n{output}")
    if counts.get("Keep-Alive") != counts.get("Complete"):
        print(f"ab could not keep every connection open:\n{output}", file=sys.stderr)

    rate, p99 = _AB_RATE.search(output), _AB_P99.search(output)
    if rate is None or p99 is None:
        raise RuntimeError(f"cannot read ab's output:\n{output}")
    return float(rate.group(1)), float(p99.group(1))


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}:\n{done.stdout}{done.stderr}")
    return done.stdout
