"""The core's command line: the foundation demo end to end."""

from __future__ import annotations

import json

import pytest

from nightshift.core.cli import main


def test_demo_measures_the_simulated_truth(capsys) -> None:
    assert main(["demo", "--tiles", "3"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["tiles"] == 3 and summary["model"] == "tilestats-robust:1"
    assert summary["worst_error_in_noise_units"] < 0.1


def test_help_lists_the_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "local-s3" in out and "demo" in out
