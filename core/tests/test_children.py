"""Children that end with their parent, also when they run as another user."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nightshift.core.children import end_with_parent


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="switching users needs root on Linux")
def test_a_child_run_as_another_user_still_ends_with_its_killed_parent() -> None:
    # A change of user clears the parent-death signal: it must be set after the switch, or this child outlives its parent.
    parent_code = (
        "import subprocess, sys\n"
        "from nightshift.core.children import end_with_parent\n"
        "child = subprocess.Popen(end_with_parent(['sleep', '120'], user='nobody'))\n"
        "print(child.pid, flush=True)\n"
        "child.wait()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())  # type: ignore[union-attr]
    while Path(f"/proc/{child}/comm").read_text().strip() != "sleep":  # setpriv has switched the user and exec'd
        time.sleep(0.01)
    uid = next(line.split()[1] for line in Path(f"/proc/{child}/status").read_text().splitlines() if line.startswith("Uid:"))
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uid == "65534" and not _alive(child)


def test_without_a_user_the_command_is_unchanged_but_for_the_signal() -> None:
    argv = end_with_parent(["sleep", "1"])
    assert argv[-2:] == ["sleep", "1"] and "--reuid" not in argv
