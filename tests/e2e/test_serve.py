"""`dockyard serve`: start-up, configuration faults and the access log."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.server import free_port, launch


def serve(*args: str, env: dict[str, str] | None = None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dockyard", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--listen", "nowhere"], "config key 'listen' has bad value 'nowhere'"),
        (["--workers", "-1"], "config key 'workers' has bad value -1"),
    ],
)
def test_bad_flag_stops_start_up_naming_key_and_value(tmp_path, args, message):
    result = serve("--data-dir", str(tmp_path), *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_bad_environment_value_stops_start_up(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_LOG_FORMAT", "xml")
    result = serve("--data-dir", str(tmp_path))
    assert result.returncode != 0
    assert "'log_format' has bad value 'xml'" in result.stderr


def test_bad_config_file_stops_start_up(tmp_path):
    config = tmp_path / "dockyard.yml"
    config.write_text("storage:\n  driver: tape\n")
    result = serve("--config", str(config))
    assert result.returncode != 0
    assert "'storage.driver' has bad value 'tape'" in result.stderr


def test_a_file_in_place_of_the_data_dir_is_named_and_not_called_a_stop(tmp_path):
    in_the_way = tmp_path / "data"
    in_the_way.write_text("notes\n")

    result = serve(
        "--data-dir", str(in_the_way), "--listen", f"127.0.0.1:{free_port()}"
    )

    assert result.returncode == 2
    assert (
        f"cannot create data directory {in_the_way}: not a directory" in result.stderr
    )
    assert "stopped" not in result.stderr
    assert in_the_way.read_text() == "notes\n"


def test_start_up_says_where_data_lives_and_where_it_listens(tmp_path):
    server = launch(tmp_path / "data")
    try:
        log = server.log()
        assert str(tmp_path / "data" / "dockyard.db") in log
        assert str(tmp_path / "data" / "storage") in log
        assert f"listening on http://127.0.0.1:{server.port}" in log
    finally:
        server.stop()
    # Stopped by SIGTERM, as a service manager stops it.
    assert server.log().rstrip().endswith("dockyard.serve: stopped")


def test_config_file_sets_where_data_lives_and_the_address(tmp_path):
    port = free_port()
    config = tmp_path / "dockyard.yml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\nlisten: 127.0.0.1:{port}\nworkers: 1\n"
    )
    server = launch(
        tmp_path / "data",
        port=port,
        args=["--config", str(config)],
        location_flags=False,
    )
    try:
        assert (tmp_path / "data" / "dockyard.db").exists()
    finally:
        server.stop()


def test_access_log_line_per_request(server, client, repo):
    response = client.get(f"/v2/{repo}/manifests/latest")
    assert response.status_code == 404

    line = _find_line(server, f"/v2/{repo}/manifests/latest")
    assert '"GET' in line
    assert "404" in line
    assert f"repository={repo}" in line
    assert "127.0.0.1" in line
    assert "ms" in line


def test_json_access_log_carries_fields(tmp_path, repo):
    server = launch(tmp_path / "data", args=["--workers", "1", "--log-format", "json"])
    try:
        data = b"hello"
        digest = (
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        )
        with httpx.Client(base_url=server.url) as http:
            http.post(
                f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data
            )
            http.get(f"/v2/{repo}/blobs/{digest}")
    finally:
        server.stop()

    # Read once the server has stopped, so every line has been written.
    records = [
        json.loads(line) for line in server.log().splitlines() if line.startswith("{")
    ]

    pulls = [
        r for r in records if r.get("method") == "GET" and digest in r.get("path", "")
    ]
    assert pulls, records
    pull = pulls[0]
    assert pull["repository"] == repo
    assert pull["status"] == 200
    assert pull["bytes_out"] == len(data)
    assert pull["client"] == "127.0.0.1"
    assert isinstance(pull["duration_ms"], float)
    pushes = [r for r in records if r.get("method") == "POST"]
    assert pushes and pushes[0]["bytes_in"] == len(data)


def test_access_log_tells_a_pull_broken_off_by_its_client(tmp_path, repo):
    data = os.urandom(64 << 20)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    server = launch(tmp_path / "data", args=["--workers", "1", "--log-format", "json"])
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            pushed = http.post(
                f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data
            )
            assert pushed.status_code == 201, pushed.text
            with http.stream("GET", f"/v2/{repo}/blobs/{digest}") as response:
                next(response.iter_raw(1 << 20))
            # Gone before the body ended; then one pull to the end.
            whole = http.get(f"/v2/{repo}/blobs/{digest}")
        _find_line(server, '"bytes_out": 67108864')
    finally:
        server.stop()

    records = [
        json.loads(line) for line in server.log().splitlines() if line.startswith("{")
    ]
    pulls = [r for r in records if r.get("method") == "GET" and digest in r["path"]]
    assert whole.content == data
    assert [r["status"] for r in pulls] == [200, 200]
    broken, finished = sorted(pulls, key=lambda r: r["bytes_out"])
    assert broken["broken_off"] is True
    assert broken["bytes_out"] < len(data)
    assert finished["broken_off"] is False
    assert finished["bytes_out"] == len(data)
    assert "Traceback" not in server.log()


def _find_line(server, needle: str, timeout: float = 10.0) -> str:
    # The line is written after the answer is sent, so it may lag a little.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.log().splitlines():
            if needle in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no log line with {needle!r}")


def test_a_second_registry_on_a_busy_port_refuses_to_start(server, tmp_path):
    # Granian binds with SO_REUSEPORT: without the check, both would serve.
    result = serve("--data-dir", str(tmp_path / "data"), "--listen", server.host)

    assert result.returncode == 2
    assert f"cannot listen on {server.host}" in result.stderr
    assert "Traceback" not in result.stderr


def _start_without_waiting(data_dir, port):
    log_path = data_dir.parent / f"{data_dir.name}.log"
    command = [sys.executable, "-m", "dockyard", "serve", "--data-dir", str(data_dir)]
    command += ["--listen", f"127.0.0.1:{port}", "--workers", "2"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return process, log_path


@pytest.mark.parametrize("delay", [0.0, 0.03, 0.06, 0.1, 0.15, 0.25])
def test_a_stop_signal_while_workers_start_stops_the_server(tmp_path, delay):
    # A worker forked but not yet handling signals used to lose the main
    # process's SIGTERM, and the main process waited for it forever.
    process, log_path = _start_without_waiting(tmp_path / "data", free_port())
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in log_path.read_text():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.005)
        time.sleep(delay)
        process.terminate()

        # Well before the 30 s after which stuck workers are killed.
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()

    log = log_path.read_text()
    assert log.rstrip().endswith("dockyard.serve: stopped")
    assert "Traceback" not in log
    assert "refused to gracefully stop" not in log


@pytest.mark.parametrize("signum", [2, 15])
def test_a_stop_signal_during_migration_stops_quietly(tmp_path, signum):
    process, log_path = _start_without_waiting(tmp_path / "data", free_port())
    try:
        # While the migration runs in its child, before Granian starts. (A
        # fixed delay hit a loaded machine's start before serve's handlers.)
        deadline = time.monotonic() + 30
        while not psutil.Process(process.pid).children():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.002)
        os.killpg(process.pid, signum)
        returncode = process.wait(timeout=15)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()

    log = log_path.read_text()
    assert returncode == 0, log
    assert "Traceback" not in log
