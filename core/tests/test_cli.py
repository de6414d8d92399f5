"""The core's command line: the foundation demo end to end, secrets and tokens."""

from __future__ import annotations

import json

import pytest

from nightshift.core.auth import verify_token
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


def test_new_secret_and_token_make_a_token_the_services_accept(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NIGHTSHIFT_AUTH_SECRET", "NIGHTSHIFT_AUTH_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["token", "--subject", "flow", "--role", "infer"]) == 2  # no secret configured: refused, nothing printed
    assert "NIGHTSHIFT_AUTH_SECRET" in capsys.readouterr().err
    assert main(["new-secret"]) == 0
    secret = capsys.readouterr().out.strip()
    monkeypatch.setenv("NIGHTSHIFT_AUTH_SECRET", secret)
    assert main(["token", "--subject", "flow", "--role", "infer", "--role", "ingest", "--days", "1"]) == 0
    claims = verify_token(secret, capsys.readouterr().out.strip())
    assert claims.subject == "flow" and claims.roles == ("infer", "ingest")
