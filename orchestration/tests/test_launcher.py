"""Local services as processes: started through their commands, health-checked, stopped."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nightshift.orchestration.launcher import LocalNight, ServiceCommand, run_json_command, tilestats_command


def test_a_service_that_cannot_start_is_reported_and_a_good_one_serves_until_stopped(tmp_path: Path) -> None:
    broken = ServiceCommand("broken", (sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)"))
    with LocalNight(tmp_path) as night:
        night.start_s3()
        failed = night.start_services([broken, tilestats_command("stats", ["g"])], timeout_s=60)
        assert failed.keys() == {"broken"} and "status 3" in failed["broken"] and "no model here" in failed["broken"]
        stats = night.services["stats"]
        assert stats.request_count("Infer") == 0
    assert stats.process.poll() is not None  # stopped with the night


def test_a_command_result_is_its_last_json_line_and_a_failure_says_why() -> None:
    python = sys.executable
    assert run_json_command([python, "-c", "print('warming up'); print('{\"rows\": 3}')"], timeout_s=30) == {"rows": 3}
    with pytest.raises(RuntimeError, match=r"exit status 1\): bad kit"):
        run_json_command([python, "-c", "import sys; sys.exit('bad kit')"], timeout_s=30)
    with pytest.raises(RuntimeError, match="not JSON"):
        run_json_command([python, "-c", "print('{not json')"], timeout_s=30)
    with pytest.raises(RuntimeError, match="no result within 0.5 s"):
        run_json_command([python, "-c", "import time; time.sleep(5)"], timeout_s=0.5)
