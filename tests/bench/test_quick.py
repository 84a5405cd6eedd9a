"""The benchmark's quick mode runs end to end and reports every workload.

Only that it works is checked: quick numbers are too small to mean anything,
so no timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "push-whole",
    "push-chunked",
    "pull-single",
    "pull-concurrent",
    "manifest-get",
    "manifest-get-p99",
    "manifest-head",
    "manifest-head-p99",
    "tag-puts",
    "tag-list",
    "catalog",
    "skopeo-in",
    "skopeo-out",
    "memory-idle",
    "memory-idle-pss",
    "memory-peak",
}


@pytest.mark.slow
def test_quick_mode_measures_every_workload_on_both_registries(
    tmp_path: Path,
) -> None:
    output = tmp_path / "results.json"
    command = [sys.executable, "-m", "bench", "--quick", "--output", str(output)]
    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads(output.read_text())
    results = {result["key"]: result for result in report["results"]}
    assert report["mode"] == "quick"
    assert set(results) == EXPECTED
    for key, result in results.items():
        assert result["dockyard"] > 0, key
        assert result["distribution"] > 0, key
        assert result["ratio"] > 0, key
