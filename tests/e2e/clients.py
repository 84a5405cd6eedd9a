"""Command lines for skopeo, podman and buildah, confined to one test's tmp dir.

Every file these clients read or write for configuration, credentials,
signature policy, image storage and scratch space lives under the directory
given to `Clients.create`, so a test neither reads the machine's
registries.conf or auth files nor touches its podman storage or ~/.docker.

One thing stays shared: containers/image keeps a blob-location cache in
/var/lib/containers/cache when run as root, and no flag moves it. It only
lets a client try a cross-repository mount before uploading, so tests must
hold whether or not a blob is mounted.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT = 300

# Only fully qualified references are used: no search registries, no aliases.
_REGISTRIES_CONF = """\
unqualified-search-registries = []
short-name-mode = "disabled"
"""

_POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


@dataclass(frozen=True)
class Clients:
    """Builds and runs client commands whose state stays under `base`."""

    base: Path

    @classmethod
    def create(cls, base: Path) -> Clients:
        clients = cls(base)
        for directory in ("home", "tmp", "run", "storage", "storage-run", "net"):
            (base / directory).mkdir(parents=True, exist_ok=True)
        (base / "registries.conf").write_text(_REGISTRIES_CONF)
        (base / "policy.json").write_text(json.dumps(_POLICY))
        (base / "auth.json").write_text('{"auths": {}}')
        (base / "containers.conf").write_text("")
        (base / "storage.conf").write_text(
            "[storage]\n"
            'driver = "vfs"\n'
            f'graphroot = "{base / "storage"}"\n'
            f'runroot = "{base / "storage-run"}"\n'
        )
        return clients

    @property
    def env(self) -> dict[str, str]:
        home = self.base / "home"
        return {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_RUNTIME_DIR": str(self.base / "run"),
            "DOCKER_CONFIG": str(home / ".docker"),
            "TMPDIR": str(self.base / "tmp"),
            "REGISTRY_AUTH_FILE": str(self.base / "auth.json"),
            "CONTAINERS_REGISTRIES_CONF": str(self.base / "registries.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.base / "storage.conf"),
            "CONTAINERS_CONF": str(self.base / "containers.conf"),
        }

    def skopeo(self, *args: str) -> list[str]:
        return [
            "skopeo",
            "--policy",
            str(self.base / "policy.json"),
            "--tmpdir",
            str(self.base / "tmp"),
            *args,
        ]

    def podman(self, *args: str) -> list[str]:
        # podman refuses a runroot over 50 characters (conmon's socket paths
        # must stay short), so it is given relative to `base`, the working
        # directory of every command. As root in a container there is no
        # systemd and no journald: hence cgroupfs and a file for events.
        return [
            "podman",
            "--root",
            str(self.base / "storage"),
            "--runroot",
            "storage-run",
            "--storage-driver",
            "vfs",
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            "--tmpdir",
            str(self.base / "run" / "libpod"),
            "--network-config-dir",
            str(self.base / "net"),
            "--volumepath",
            str(self.base / "storage" / "volumes"),
            *args,
        ]

    def buildah(self, *args: str) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.base / "storage"),
            "--runroot",
            str(self.base / "storage-run"),
            "--storage-driver",
            "vfs",
            *args,
        ]

    def run(self, command: Sequence[str], cwd: Path | None = None) -> str:
        """Run a client command that must succeed; return its stdout.

        Commands run in `base` unless `cwd` says otherwise; podman's must run
        there.
        """
        result = self._run(command, cwd)
        assert result.returncode == 0, _describe(command, result)
        return result.stdout

    def fail(self, command: Sequence[str]) -> str:
        """Run a client command that must fail; return its stderr."""
        result = self._run(command, None)
        assert result.returncode != 0, _describe(command, result)
        return result.stderr

    def _run(
        self, command: Sequence[str], cwd: Path | None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command),
            env=self.env,
            cwd=cwd or self.base,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )


def _describe(command: Sequence[str], result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{' '.join(command)}\nexit status {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


def sha256_file(path: Path) -> str:
    with path.open("rb") as file:
        return f"sha256:{hashlib.file_digest(file, 'sha256').hexdigest()}"


def oci_blob(layout: Path, digest: str) -> Path:
    algorithm, encoded = digest.split(":", 1)
    return layout / "blobs" / algorithm / encoded


def oci_json(layout: Path, digest: str) -> Any:
    """A JSON blob (manifest, index or config) of an OCI layout, parsed."""
    return json.loads(oci_blob(layout, digest).read_bytes())


def oci_ref(layout: Path, tag: str) -> dict[str, Any]:
    """The descriptor an OCI layout's index.json gives for `tag`."""
    index = json.loads((layout / "index.json").read_text())
    for descriptor in index["manifests"]:
        annotations = descriptor.get("annotations", {})
        if annotations.get("org.opencontainers.image.ref.name") == tag:
            return dict(descriptor)
    raise AssertionError(f"{layout} has no manifest tagged {tag}")
