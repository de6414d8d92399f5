"""The core's command line: the foundation demo end to end, secrets and tokens, the shared-memory check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nightshift.core.auth import verify_token
from nightshift.core.cli import main
from nightshift.core.server import BackgroundServer, ServerOptions
from nightshift.core.tilestats import TileStatisticsModel


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


@pytest.mark.parametrize("service_dir", ["same", "another", "none"])
def test_check_shared_memory_says_whether_the_service_reads_this_callers_regions(capsys, tmp_path: Path, service_dir: str) -> None:
    mine, another = tmp_path / "caller-shm", tmp_path / "other-shm"  # as two pods' in-memory emptyDirs
    mine.mkdir()
    another.mkdir()
    options = ServerOptions(port=0, shared_memory_dir={"same": mine, "another": another, "none": None}[service_dir])
    with BackgroundServer(TileStatisticsModel(bands=("g", "r")), options=options) as server:
        code = main(["check-shared-memory", "--target", server.target, "--shm-dir", str(mine), "--tiles", "3"])
    out, err = capsys.readouterr()
    if service_dir == "same":
        assert code == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["shared_memory"] == "used" and summary["tiles"] == 3 and summary["tile_shape"] == [2, 64, 64]
        assert summary["repeats"] == 3
        assert summary["shared_memory_ms"] > 0 and summary["inline_ms"] > 0
        assert not list(mine.iterdir())  # the caller's region is gone after the check
    else:
        assert code == 1 and not out
        assert {"another": "sees another shared-memory directory", "none": "reads no shared memory"}[service_dir] in err
