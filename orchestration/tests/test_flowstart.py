"""Warm flow-run starts: the client runs Prefect's engine in a fork of a zygote, or cold when none answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nightshift.orchestration.flowstart import ZYGOTE_ENV


@pytest.fixture
def zygote(tmp_path: Path):
    socket_path, log = tmp_path / "z.sock", tmp_path / "zygote.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "nightshift.orchestration.flowstart", "--serve", str(socket_path)],
                                   stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not socket_path.exists():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the zygote did not start"
        time.sleep(0.1)
    yield socket_path, log
    process.terminate()
    process.wait(timeout=30)


def _client(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nightshift.orchestration.flowstart"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_a_warm_flow_run_answers_as_the_cold_engine_does_from_a_fork_of_the_zygote(zygote: tuple[Path, Path]) -> None:
    socket_path, log = zygote
    cold = subprocess.run([sys.executable, "-m", "prefect.engine"], env={**os.environ, "PREFECT__FLOW_RUN_ID": "not-a-uuid"},
                          capture_output=True, text=True, timeout=120)
    warm = _client({ZYGOTE_ENV: str(socket_path), "PREFECT__FLOW_RUN_ID": "not-a-uuid"})
    assert cold.returncode == warm.returncode == 1
    assert "Invalid flow run id" in cold.stderr + cold.stdout
    assert "Invalid flow run id" in warm.stderr + warm.stdout  # the engine wrote to the client's own streams
    assert "flow run not-a-uuid: engine process" in log.read_text()  # ... from a process the zygote forked
    # the zygote serves the next run too
    again = _client({ZYGOTE_ENV: str(socket_path), "PREFECT__FLOW_RUN_ID": "still-not-a-uuid"})
    assert again.returncode == 1 and "flow run still-not-a-uuid: engine process" in log.read_text()


def test_without_a_zygote_the_client_starts_the_cold_engine(tmp_path: Path) -> None:
    result = _client({ZYGOTE_ENV: str(tmp_path / "missing.sock"), "PREFECT__FLOW_RUN_ID": "not-a-uuid"})
    assert result.returncode == 1
    assert "Invalid flow run id" in result.stderr + result.stdout
