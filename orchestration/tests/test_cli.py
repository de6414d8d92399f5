"""The ``nightshift`` command line."""

from __future__ import annotations

import json
import subprocess
import sys


def test_help_lists_the_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "nightshift.orchestration.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("night", "serve", "deploy", "work-pool-template", "serve-tilestats"):
        assert command in result.stdout


def test_work_pool_template_prints_the_gpu_template() -> None:
    result = subprocess.run([sys.executable, "-m", "nightshift.orchestration.cli", "work-pool-template"],
                            capture_output=True, text=True, check=True)
    assert "gpu_count" in json.loads(result.stdout)["variables"]["properties"]
