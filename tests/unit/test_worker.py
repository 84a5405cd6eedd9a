"""What a server worker does once, when it starts."""

import json
import os
import subprocess
import sys

from dockyard.api.app import WORKER_CONFIG_ENV
from dockyard.config import Config
from dockyard.metadata.migrate import upgrade
from dockyard.metadata.store import create_db_engine


def test_a_worker_leaves_what_start_up_made_out_of_full_collections(tmp_path):
    config = Config(data_dir=tmp_path)
    engine = create_db_engine(config.resolved_database_url)
    upgrade(engine)
    engine.dispose()
    script = (
        "import gc, json\n"
        "from dockyard.api.app import worker_app\n"
        "worker_app()\n"
        "gc.collect()\n"
        "print(json.dumps([gc.get_freeze_count(), len(gc.get_objects())]))\n"
    )
    environment = {WORKER_CONFIG_ENV: json.dumps(config.model_dump(mode="json"))}

    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **environment},
    )

    # A full collection walks only what came after: a small share.
    frozen, walked = json.loads(result.stdout)
    assert frozen > 20_000
    assert walked < frozen / 10
