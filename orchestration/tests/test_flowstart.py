"""Warm flow-run starts: the client runs Prefect's engine in a fork of a zygote, or cold when none answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
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


def _engine_pid(log: Path, flow_run: str) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith(f"flow run {flow_run}: engine process ") and line.endswith(" forked"):
                return int(line.split()[-2])
        time.sleep(0.1)
    raise AssertionError(f"the zygote forked no engine process for {flow_run}: {log.read_text()}")


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # reaped before, or while, its stat was read
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGKILL])
def test_a_flow_run_ends_with_its_client(zygote: tuple[Path, Path], signal_number: int) -> None:
    socket_path, log = zygote
    with socket.create_server(("127.0.0.1", 0)) as silent_api:  # accepts connections, never answers: the engine waits
        flow_run = str(uuid.uuid4())
        client = subprocess.Popen([sys.executable, "-m", "nightshift.orchestration.flowstart"],
                                  env={**os.environ, ZYGOTE_ENV: str(socket_path), "PREFECT__FLOW_RUN_ID": flow_run,
                                       "PREFECT_API_URL": f"http://127.0.0.1:{silent_api.getsockname()[1]}/api"},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        engine = _engine_pid(log, flow_run)
        time.sleep(1)
        assert not _gone(engine, 0), "the engine process ended before its client was signalled"
        client.send_signal(signal_number)  # SIGTERM is forwarded; after SIGKILL the supervisor sees the connection close
        client.wait(timeout=30)
        assert _gone(engine, 20), f"engine process {engine} outlived its client ({signal.Signals(signal_number).name})"
