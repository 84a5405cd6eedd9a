"""What a server process loads when no feature asks for more.

Every server process pays for each library it imports, about 5 to 10 MiB
each for these: a registry without upstreams, logins, rate limits or
PostgreSQL must not load them (docs/performance.md, memory).
"""

import json
import subprocess
import sys

OPTIONAL = ["httpx", "jwt", "cryptography", "limits", "sqlalchemy.dialects.postgresql"]


def test_the_default_server_loads_no_optional_library(tmp_path):
    script = (
        "import json, sys\n"
        "from dockyard.bootstrap import build_registry\n"
        "from dockyard.config import Config\n"
        "import dockyard.api.app\n"
        f"build_registry(Config(data_dir={str(tmp_path)!r}))\n"
        f"print(json.dumps([m for m in {OPTIONAL!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert json.loads(result.stdout) == []


# Libraries that only other commands, or the one-off migration at start, use.
NOT_IN_SERVER = ["alembic", "rich", "httpx", "dockyard.cli.accounts"]


def test_serve_migrates_in_a_child_and_loads_no_other_command(tmp_path):
    # What `dockyard serve` holds when Granian forks its workers from it.
    script = (
        "import json, sys\n"
        "from dockyard.cli.main import main\n"
        "from dockyard.cli.serve import _prepare_storage\n"
        "from dockyard.config import Config\n"
        "main.get_command(None, 'serve')\n"
        f"_prepare_storage(Config(data_dir={str(tmp_path)!r}))\n"
        "import dockyard.api.app\n"
        f"print(json.dumps([m for m in {NOT_IN_SERVER!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert json.loads(result.stdout) == []
    assert (tmp_path / "dockyard.db").stat().st_size > 0
