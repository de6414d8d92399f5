"""The README's quick start is exactly two commands; each runs what the README says, and CI runs the test one.

What is run here, and why not more: the night on the embedded default starts the six services and
takes about 140 s, and the test command is the whole suite, which this test is part of. So the
night command is run exactly as the README writes it up to the point where the night would start:
its own set-up runs, then a ``sitecustomize`` put on ``PYTHONPATH`` records the command line of
the ``nightshift`` process it execs and stops it: this checkout's ``nightshift night`` with nothing
added; and ``--help`` shows the defaults that command runs on. The test
command runs with arguments (set-up, then one pytest run): it passes a passing test and fails a
failing one. The night itself, through the same console script on one task with its record naming
the command, is ``orchestration/tests/test_demo.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from nightshift.orchestration.launcher import SCIENCE_TASKS

REPO = Path(__file__).resolve().parents[1]
# Imported by every Python the night command starts: the ``nightshift`` one records its command line and exits.
_RECORD_NIGHTSHIFT_ARGV = """import json, os, sys
from pathlib import Path
if Path(sys.argv[0]).name == "nightshift":
    Path(os.environ["QUICKSTART_ARGV"]).write_text(json.dumps(sys.argv))
    os._exit(0)
"""


def quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert block, "the quick start has no command block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _run(command: str, *arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One quick-start command as the README writes it, from the repository root, with ``arguments`` added."""
    return subprocess.run([*command.split(), *arguments], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_quick_start_is_two_existing_executable_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    for command in commands:
        script = REPO / command.split()[0]
        assert script.is_file() and os.access(script, os.X_OK), f"{command}: not an executable script"


def test_the_night_command_runs_the_night_on_the_embedded_default(tmp_path) -> None:
    night_command = quick_start_commands()[0]
    (tmp_path / "sitecustomize.py").write_text(_RECORD_NIGHTSHIFT_ARGV)
    argv_file = tmp_path / "argv.json"
    python_path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    done = _run(night_command, env={"PYTHONPATH": python_path, "QUICKSTART_ARGV": str(argv_file)})
    assert done.returncode == 0 and argv_file.exists(), done.stderr[-2000:]
    program, *arguments = json.loads(argv_file.read_text())
    assert (REPO / program).resolve() == (REPO / ".venv" / "bin" / "nightshift").resolve(), program
    assert arguments == ["night"], arguments
    usage = _run(night_command, "--help")
    assert usage.returncode == 0 and usage.stdout.startswith("usage: nightshift night"), usage.stderr[-2000:]
    defaults = " ".join(usage.stdout.split())
    assert f"(default: {','.join(SCIENCE_TASKS)})" in defaults
    assert "(default: in this process, Prefect's embedded server)" in defaults


def test_the_test_command_passes_a_passing_test_and_fails_a_failing_one(tmp_path) -> None:
    test_command = quick_start_commands()[1]
    passing = _run(test_command, f"{__file__}::test_quick_start_is_two_existing_executable_commands")
    assert passing.returncode == 0 and " 1 passed" in passing.stdout, passing.stdout[-2000:]
    failing = tmp_path / "test_failing.py"
    failing.write_text("def test_fails():\n    assert False\n")
    failed = _run(test_command, str(failing), "-p", "no:cacheprovider")
    assert failed.returncode == 1 and " 1 failed" in failed.stdout, failed.stdout[-2000:]


def test_ci_runs_the_readme_test_command() -> None:
    test_command = quick_start_commands()[1]
    assert test_command.split()[0].removeprefix("./") in (REPO / ".ci" / "run").read_text()
