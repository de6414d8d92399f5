"""A SIGKILLed ``nightshift night`` takes every process it started with it: nothing of the night runs on.

Before, the services (started from a helper thread, so without a parent-death signal) and Prefect's own
temporary server outlived it: about 5 GB of orphans per killed night.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from nightshift.orchestration.launcher import console_script

pytestmark = [pytest.mark.reliability,
              pytest.mark.skipif(sys.platform != "linux", reason="reads the process tree from Linux's /proc")]

# The night's processes, by a part of their command line: the S3 server, the ingest and filaments services, Prefect's server.
EXPECTED = ("rclone serve s3", "nightshift-ingest serve", "nightshift-filaments serve", "prefect server start")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if parent == pid:
            found.append(int(stat.parent.name))
    return found


def _descendants(pid: int) -> dict[int, str]:
    found: dict[int, str] = {}
    pending = [pid]
    while pending:
        for child in _children(pending.pop()):
            try:
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except FileNotFoundError:
                continue
            pending.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_sigkilled_night_leaves_no_process_of_its_own_running(tmp_path: Path) -> None:
    command = console_script("nightshift")
    assert command is not None, "the orchestration package is not installed"
    night = subprocess.Popen([command, "night", "--tasks", "filaments", "--work-dir", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and night.poll() is None:
            seen.update(_descendants(night.pid))
            if all(any(part in line for line in seen.values()) for part in EXPECTED):
                break
            time.sleep(0.5)
        missing = [part for part in EXPECTED if not any(part in line for line in seen.values())]
        assert not missing, f"the night ended or stalled before starting {missing} (exit {night.poll()})"
        night.kill()  # SIGKILL: no cleanup code of the night runs
        night.wait()
        deadline = time.monotonic() + 30  # a service's SIGTERM drain takes up to its 5 s grace
        while time.monotonic() < deadline and any(_alive(pid) for pid in seen):
            time.sleep(0.2)
        left = {pid: line[:100] for pid, line in seen.items() if _alive(pid)}
        assert not left, f"still running after the night was killed: {left}"
    finally:
        for pid in seen:
            if _alive(pid):
                subprocess.run(["kill", "-9", str(pid)], check=False)
        if night.poll() is None:
            night.kill()
