"""The ``nightshift`` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from nightshift.orchestration.cli import main
from nightshift.orchestration.config import NightConfig
from nightshift.orchestration.launcher import LocalNight, console_script
from nightshift.orchestration.layout import NightLayout
from nightshift.orchestration.simulate import SIMULATED_SURVEYS, simulate_night


def test_help_lists_the_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "nightshift.orchestration.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("night", "serve", "deploy", "work-pool-template", "serve-tilestats"):
        assert command in result.stdout


def test_work_pool_template_prints_the_gpu_template() -> None:
    result = subprocess.run([sys.executable, "-m", "nightshift.orchestration.cli", "work-pool-template"],
                            capture_output=True, text=True, check=True)
    assert "gpu_count" in json.loads(result.stdout)["variables"]["properties"]


@pytest.mark.usefixtures("prefect_harness")
def test_deploy_creates_a_missing_pool_as_kubernetes_with_the_base_job_template(tmp_path: Path) -> None:
    from prefect import get_client

    from nightshift.orchestration.deployments import base_job_template

    config = tmp_path / "night.json"
    config.write_text(NightConfig(surveys=SIMULATED_SURVEYS, ingest_target="dns:///ingest:50051").model_dump_json())
    image = "registry.example.org/nightshift/nightshift-orchestration:test"
    assert main(["deploy", "--config", str(config), "--work-pool", "kubernetes-test", "--image", image]) == 0
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool("kubernetes-test")
        deployment = client.read_deployment_by_name("nightshift-nightly/nightly")
    assert pool.type == "kubernetes" and pool.base_job_template == base_job_template()
    assert deployment.work_pool_name == "kubernetes-test" and deployment.job_variables["image"] == image


@pytest.mark.usefixtures("prefect_harness")
def test_served_and_deployed_deployments_do_not_replace_each_other(tmp_path: Path) -> None:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    config = tmp_path / "night.json"
    config.write_text(NightConfig(surveys=SIMULATED_SURVEYS, ingest_target="dns:///ingest:50051").model_dump_json())
    assert main(["deploy", "--config", str(config), "--work-pool", "kubernetes-test"]) == 0
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log, get_client(sync_client=True) as client:
        serving = subprocess.Popen([console_script("nightshift"), "serve", "--config", str(config)], stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())})
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    served = client.read_deployment_by_name("nightshift-nightly/nightly-served")
                    break
                except ObjectNotFound:
                    assert serving.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                    time.sleep(0.5)
            deployed = client.read_deployment_by_name("nightshift-nightly/nightly")
        finally:
            serving.terminate()
            serving.wait(timeout=30)
    assert served.work_pool_name is None and deployed.work_pool_name == "kubernetes-test"
    assert served.entrypoint == deployed.entrypoint == "nightshift.orchestration.nightly.nightly"


@pytest.mark.usefixtures("prefect_harness")
def test_deploy_then_a_process_worker_in_another_directory_completes_the_nightly_run(
    local_night: LocalNight, night_config: Callable[[], NightConfig], tmp_path: Path
) -> None:
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    run = partial(subprocess.run, env=env, capture_output=True, text=True, timeout=120)
    # The operator deploys from deeper down than the worker runs: an entrypoint relative to the caller would not resolve.
    operator, worker_dir = tmp_path / "operator" / "clone", tmp_path / "worker"
    operator.mkdir(parents=True)
    worker_dir.mkdir()
    (operator / "night.json").write_text(night_config().model_dump_json())
    pool, night = "process-test", "2026-01-05"

    created = run([console_script("prefect"), "work-pool", "create", pool, "--type", "process"])
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = run([console_script("nightshift"), "deploy", "--config", "night.json", "--work-pool", pool], cwd=operator)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert f"work pool '{pool}' (process) exists: its job template is kept" in deployed.stderr

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("nightshift-nightly/nightly")
    assert deployment.entrypoint == "nightshift.orchestration.nightly.nightly" and deployment.work_pool_name == pool
    assert deployment.path is None and not deployment.pull_steps  # nothing is copied from the flow run's directory

    simulate_night(local_night.store, night, seed=5)
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen([console_script("prefect"), "worker", "start", "--pool", pool], cwd=worker_dir, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            flow_run = run_deployment("nightshift-nightly/nightly", parameters={"night": night}, timeout=300, poll_interval=1)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:  # still waiting on a flow run that did not finish: the state check says why
                worker.kill()
                worker.wait()
    assert flow_run.state is not None and flow_run.state.is_completed(), f"{flow_run.state}\n{log_path.read_text()[-4000:]}"
    store = local_night.store
    assert json.loads(store.get_bytes(NightLayout(store, night).latest))["night"] == night
