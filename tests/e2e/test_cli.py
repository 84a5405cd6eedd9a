"""Management commands other than `serve`."""

import subprocess
import sys

from dockyard.metadata.migrate import upgrade
from dockyard.metadata.store import create_db_engine


def dockyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dockyard", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_wrong_data_dir_is_named_and_left_untouched(tmp_path):
    missing = tmp_path / "nowhere"

    result = dockyard("referrers", "--data-dir", str(missing), "library/x:1")

    assert result.returncode == 2
    assert f"no up-to-date Dockyard database at sqlite:///{missing}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not missing.exists()


def test_empty_database_file_is_not_mistaken_for_a_registry(tmp_path):
    (tmp_path / "dockyard.db").touch()

    result = dockyard("referrers", "--data-dir", str(tmp_path), "library/x:1")

    assert result.returncode == 2
    assert "no up-to-date Dockyard database" in result.stderr


def test_help_lists_the_commands():
    result = dockyard("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout
    assert "referrers" in result.stdout


def test_a_password_without_a_terminal_asks_for_password_stdin(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'dockyard.db'}")
    upgrade(engine)
    engine.dispose()

    added = dockyard("user", "add", "alice", "--data-dir", str(tmp_path))
    listed = dockyard("user", "list", "--data-dir", str(tmp_path))

    assert added.returncode == 2
    assert added.stderr == (
        "dockyard: no terminal to ask for the password on: "
        "give it with --password-stdin\n"
    )
    assert "alice" not in listed.stdout
