"""The README's quick start is exactly two commands, both real, and CI runs the test one."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert block, "the quick start has no command block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_quick_start_is_two_existing_executable_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    for command in commands:
        script = REPO / command.split()[0]
        assert script.is_file() and os.access(script, os.X_OK), f"{command}: not an executable script"


def test_ci_runs_the_readme_test_command() -> None:
    test_command = quick_start_commands()[1]
    assert test_command.split()[0].removeprefix("./") in (REPO / ".ci" / "run").read_text()
