"""The persistent orchestration tier: real PostgreSQL, a real Prefect server on it, two real process workers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nightshift.orchestration.config import DEFAULT_NIGHTLY_CRON, NightConfig
from nightshift.orchestration.flowstart import WARM_COMMAND
from nightshift.orchestration.launcher import LocalNight
from nightshift.orchestration.layout import NightLayout
from nightshift.orchestration.prefect_server import PostgresServer, PrefectTier, postgres_bin_dir
from nightshift.orchestration.simulate import simulate_night

pytestmark = pytest.mark.skipif(postgres_bin_dir() is None, reason="PostgreSQL is not installed (no initdb; scripts/setup.sh installs it)")


def _running(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (ended, not yet reaped by whoever inherited it) does not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_night_runs_through_the_server_on_postgres_and_a_process_worker(
    local_night: LocalNight, night_config: Callable[[], NightConfig], tmp_path: Path
) -> None:
    from prefect import get_client

    night = "2026-02-07"
    simulate_night(local_night.store, night, seed=11)
    with PrefectTier(tmp_path / "tier", workers=2) as tier:
        assert tier.online_workers() == ["nightshift-local-0", "nightshift-local-1"]
        tier.deploy(night_config())
        summary, flow_run_id = tier.run_night(night)
        with tier.settings(), get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("nightshift-nightly/nightly")
            pool = client.read_work_pool(tier.pool)
        # The server's records are in PostgreSQL: the flow run a worker completed is a row there.
        state = tier.postgres.query(f"SELECT state_type FROM flow_run WHERE id = '{flow_run_id}'")
        pids = [p.pid for p in tier._processes] + [tier.postgres._process.pid]  # type: ignore[union-attr]
        postgres_dir = tier.postgres.data_dir
        zygote_logs = "".join(path.read_text() for path in (tmp_path / "tier").glob("zygote-*.log"))
    assert summary.complete and summary.night == night and summary.tasks
    store = local_night.store
    assert json.loads(store.get_bytes(NightLayout(store, night).latest))["run_id"] == summary.run_id
    assert state == "COMPLETED"
    assert deployment.work_pool_name == tier.pool and pool.type == "process"
    assert deployment.job_variables["command"] == WARM_COMMAND
    assert f"flow run {flow_run_id}: engine process" in zygote_logs  # the flow run forked from a worker's zygote
    assert deployment.schedules[0].schedule.cron == DEFAULT_NIGHTLY_CRON
    assert not [pid for pid in pids if _running(pid)], "a process of the tier outlived it"
    assert not postgres_dir.exists()


def test_postgres_keeps_its_databases_across_restarts_of_a_given_directory() -> None:
    # /tmp itself, not pytest's root-only tmp_path: when the tests run as root, PostgreSQL runs as another user.
    data_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"nightshift-test-postgres-{os.getpid()}"
    try:
        with PostgresServer(data_dir) as server:
            server.query("CREATE TABLE kept (night text); INSERT INTO kept VALUES ('2026-02-07')")
        with PostgresServer(data_dir) as server:
            assert server.query("SELECT night FROM kept") == "2026-02-07"
            assert server.url.startswith("postgresql+asyncpg://nightshift:")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_the_tier_ends_with_the_process_that_started_it_even_when_killed(tmp_path: Path) -> None:
    starter = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from nightshift.orchestration.prefect_server import PrefectTier\n"
        f"tier = PrefectTier(Path({str(tmp_path / 'tier')!r}), workers=2).__enter__()\n"
        "print(json.dumps({'pids': [p.pid for p in tier._processes] + [tier.postgres._process.pid],\n"
        "                  'postgres_dir': str(tier.postgres.data_dir)}), flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    try:
        started = json.loads(parent.stdout.readline())  # type: ignore[union-attr]
    finally:
        parent.kill()  # SIGKILL: no cleanup code runs in it
        parent.wait()
    deadline = time.monotonic() + 60
    while (left := [pid for pid in started["pids"] if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    shutil.rmtree(started["postgres_dir"], ignore_errors=True)  # its temporary directory is what a SIGKILL leaves
    assert not left, f"processes {left} outlived the killed parent"
