"""`dockyard serve` over HTTPS: real clients that trust its CA, and some that don't.

No client here is told to skip verification: each either trusts the test CA
through its own flag or must be refused.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.clients import Clients, oci_ref
from tests.server import RunningServer, launch, start_server
from tests.tls import Certificates, write_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return write_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, certs: Certificates
) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("tls-registry") / "data"
    args = ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]
    args += ["--workers", "2"]
    with start_server(data_dir, args=args, ca_file=certs.ca) as running:
        yield running


@pytest.fixture
def clients(tmp_path: Path) -> Clients:
    return Clients.create(tmp_path / "clients")


def push(clients: Clients, certs: Certificates, source: Path, remote: str) -> None:
    """Copy the layout's tag 1.4.2 to `remote`, trusting the test CA alone."""
    trust = str(certs.trust_dir)
    clients.run(
        clients.skopeo("copy", "--dest-cert-dir", trust, f"oci:{source}:1.4.2", remote)
    )


def serve(tmp_path: Path, cert: Path, key: Path) -> subprocess.CompletedProcess[str]:
    """`dockyard serve` with this pair, when it must stop before serving."""
    command = [sys.executable, "-m", "dockyard", "serve"]
    command += ["--data-dir", str(tmp_path / "data")]
    command += ["--tls-cert", str(cert), "--tls-key", str(key)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_clients_that_trust_the_ca_get_the_api(tls_server: RunningServer) -> None:
    response = httpx.get(f"{tls_server.url}/v2/", verify=tls_server.verify)

    assert tls_server.url.startswith("https://")
    assert response.status_code == 200
    assert f"listening on https://127.0.0.1:{tls_server.port}" in tls_server.log()


def test_clients_that_do_not_trust_the_ca_are_refused(
    tls_server: RunningServer, clients: Clients, repo: str
) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.url}/v2/")

    refused = clients.fail(
        clients.skopeo("inspect", f"docker://{tls_server.host}/{repo}:1")
    )
    assert "certificate signed by unknown authority" in refused


def test_skopeo_pushes_and_pulls_over_https(
    tls_server: RunningServer,
    certs: Certificates,
    clients: Clients,
    images: Path,
    repo: str,
    tmp_path: Path,
) -> None:
    source, copy = images / "pyapp", tmp_path / "copy"
    remote = f"docker://{tls_server.host}/{repo}:1.4.2"
    push(clients, certs, source, remote)

    trust = str(certs.trust_dir)
    clients.run(
        clients.skopeo("copy", "--src-cert-dir", trust, remote, f"oci:{copy}:1.4.2")
    )

    assert oci_ref(copy, "1.4.2")["digest"] == oci_ref(source, "1.4.2")["digest"]


def test_podman_pulls_with_the_ca_in_its_cert_dir(
    tls_server: RunningServer,
    certs: Certificates,
    clients: Clients,
    images: Path,
    repo: str,
) -> None:
    source = images / "pyapp"
    pulled = f"{tls_server.host}/{repo}:1.4.2"
    push(clients, certs, source, f"docker://{pulled}")

    trust = str(certs.trust_dir)
    clients.run(clients.podman("pull", "-q", "--cert-dir", trust, pulled))

    found = clients.run(
        clients.podman("image", "inspect", "--format={{.Digest}}", pulled)
    )
    assert found.strip() == oci_ref(source, "1.4.2")["digest"]


@pytest.mark.parametrize(
    ("in_file", "flags"),
    [
        pytest.param(["cert", "key"], [], id="file"),
        pytest.param(["key"], ["cert"], id="file-and-flag"),
    ],
)
def test_config_file_turns_on_tls(
    tmp_path: Path, certs: Certificates, in_file: list[str], flags: list[str]
) -> None:
    paths = {"cert": certs.cert, "key": certs.key}
    config = tmp_path / "dockyard.yml"
    config.write_text("tls:\n" + "".join(f"  {k}: {paths[k]}\n" for k in in_file))
    args = ["--config", str(config), "--workers", "1"]
    args += [arg for k in flags for arg in (f"--tls-{k}", str(paths[k]))]

    server = launch(tmp_path / "data", args=args, ca_file=certs.ca)
    try:
        response = httpx.get(f"{server.url}/v2/", verify=server.verify)
        assert response.status_code == 200
    finally:
        server.stop()


def test_unreadable_key_stops_start_up(tmp_path: Path, certs: Certificates) -> None:
    missing = tmp_path / "missing.key"

    result = serve(tmp_path, certs.cert, missing)

    assert result.returncode == 2
    assert f"dockyard: cannot read tls.key {missing}: No such file" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_key_of_another_certificate_stops_start_up(
    tmp_path: Path, certs: Certificates
) -> None:
    other = write_certificates(tmp_path / "other")

    result = serve(tmp_path, certs.cert, other.key)

    assert result.returncode == 2
    message = "dockyard: tls.cert and tls.key are not a PEM certificate and its key"
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cert_without_key_names_both_keys(tmp_path: Path, certs: Certificates) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", "serve", "--tls-cert", str(certs.cert)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )

    assert result.returncode == 2
    assert "tls.cert and tls.key go together" in result.stderr
