"""A night across several hosts of one machine, and the loss of a replica's host and of a worker's host mid-night.

The hosts are network namespaces (:mod:`nightshift.orchestration.topology`): the S3 server, the ingest
service, PostgreSQL with the Prefect server, two worker hosts and two replicas of each of two
tile-statistics services (the cheapest services: the night's measure of its background and noise),
all real processes reaching each other by address. The night runs through the Prefect server on a
worker; mid-night one replica's host is killed (every process at once), then the host of the worker
running the flow run. The night is re-run on the other worker by :meth:`PrefectTier.run_night` (the
project's own logic: the lost worker's run is marked CRASHED; the flow's content-keyed records make the
re-run call only what was not recorded), and its outputs are compared byte for byte with those of the
same night run before without faults (its records and run removed in between, so the faulted night
computes everything again).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest

from nightshift.core.store import ObjectStore
from nightshift.orchestration.config import NightConfig, ServiceEndpoint
from nightshift.orchestration.hosts import Host, namespaces_refused
from nightshift.orchestration.launcher import tilestats_command
from nightshift.orchestration.layout import NightLayout
from nightshift.orchestration.prefect_server import postgres_bin_dir
from nightshift.orchestration.simulate import SIMULATED_SURVEYS, simulate_night
from nightshift.orchestration.topology import MultiHostNight
from nightshift.v1 import task_service_pb2

_REFUSED = namespaces_refused()
pytestmark = [
    pytest.mark.skipif(bool(_REFUSED), reason=_REFUSED or "network namespaces work"),
    pytest.mark.skipif(postgres_bin_dir() is None, reason="PostgreSQL is not installed (no initdb; scripts/setup.sh installs it)"),
]

NIGHT = "2026-03-14"
# Every Infer call waits this long for company in the server's batcher: one tile per call, the night
# lasts long enough (tens of seconds) for the faults to land in the middle of it.
CALL_DELAY_MS = "150"
REPLICA_FAULT_AFTER_RECORDS = 4
WORKER_FAULT_AFTER_RECORDS = 12


@dataclasses.dataclass
class Faults:
    """What the fault thread did: each fault with the number of Infer records in the store when it struck."""

    replica_host: str = ""
    replica_records: int = 0
    worker_host: str = ""
    worker_records: int = 0
    killed_flow_run: str = ""
    error: str = ""


def _infer_records(store: ObjectStore) -> list[str]:
    return list(store.list_keys(store.key("work", "infer") + "/"))


def _flow_run_on(host: Host) -> str:
    """The id of the Prefect flow run whose process runs on ``host``, or ""."""
    for pid in host.pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        for entry in environ:
            if entry.startswith(b"PREFECT__FLOW_RUN_ID="):
                return entry.split(b"=", 1)[1].decode()
    return ""


def _inject(store: ObjectStore, faults: Faults, replica: Host, workers: list[Host],
            done: threading.Event) -> None:
    """Kill ``replica``'s host once the night has a few records, then the host of the worker running the flow run."""
    try:
        while len(records := _infer_records(store)) < REPLICA_FAULT_AFTER_RECORDS:
            if done.wait(0.1):
                raise RuntimeError(f"the night ended before {REPLICA_FAULT_AFTER_RECORDS} Infer records")
        replica.kill_all()
        faults.replica_host, faults.replica_records = replica.name, len(records)
        while len(records := _infer_records(store)) < WORKER_FAULT_AFTER_RECORDS:
            if done.wait(0.1):
                raise RuntimeError(f"the night ended before {WORKER_FAULT_AFTER_RECORDS} Infer records")
        running = [(host, flow_run) for host in workers if (flow_run := _flow_run_on(host))]
        if len(running) != 1:
            raise RuntimeError(f"expected the flow run on one worker host, found {running}")
        host, flow_run = running[0]
        host.kill_all()
        faults.worker_host, faults.worker_records, faults.killed_flow_run = host.name, len(records), flow_run
    except Exception as exc:  # noqa: BLE001 - reported by the test
        faults.error = repr(exc)


def _outputs(store: ObjectStore) -> tuple[dict, dict[str, bytes]]:
    """The night's manifest and its catalogue files by key."""
    layout = NightLayout(store, NIGHT)
    manifest = json.loads(store.get_bytes(json.loads(store.get_bytes(layout.latest))["manifest"]))
    return manifest, {key: store.get_bytes(key) for task in manifest["tasks"].values() for key in task["catalogue"]}


def _recorded_tiles(store: ObjectStore, records: list[str]) -> collections.Counter[tuple[str, str]]:
    """How many recorded Infer results each (input key, tile id) has."""
    recorded: collections.Counter[tuple[str, str]] = collections.Counter()
    for key in records:
        input_key = key.rsplit("/", 2)[-2]  # work/infer/<task>/<model>/<version>/<input_key>/<batch>.pb
        for result in task_service_pb2.InferResponse.FromString(store.get_bytes(key)).results:
            recorded[(input_key, result.tile_id)] += 1
    return recorded


def _forget_the_night(store: ObjectStore) -> None:
    """Remove what the flow recorded and published (work records, runs, reports), so the night starts again from its inputs."""
    for area in ("work", f"runs/{NIGHT}", f"reports/{NIGHT}"):
        for key in list(store.list_keys(store.key(area) + "/")):
            store.delete(key)


def test_a_night_across_hosts_survives_losing_a_replica_host_and_then_the_flow_runs_worker_host(tmp_path: Path) -> None:
    from prefect import get_client

    services = [tilestats_command(f"tilestats-{s.name}", s.band_names) for s in SIMULATED_SURVEYS]
    with MultiHostNight(tmp_path, services, replicas=2, workers=2,
                        service_env={"NIGHTSHIFT_BATCH_MAX_DELAY_MS": CALL_DELAY_MS}) as topology:
        tier = topology.tier
        assert tier is not None and topology.ingest is not None
        assert tier.online_workers() == ["nightshift-local-0", "nightshift-local-1"]
        config = NightConfig(
            surveys=SIMULATED_SURVEYS, ingest_target=topology.ingest.target,
            services=tuple(ServiceEndpoint(name=name, target=s.target, timeout_s=20, batch_tiles=1, max_concurrent_calls=1)
                           for name, s in sorted(topology.services.items())),
        )
        tier.deploy(config)
        store = topology.store
        simulate_night(store, NIGHT, seed=11)

        clean_started = time.monotonic()
        clean_summary, _ = tier.run_night(NIGHT, timeout_s=300)
        clean_wall_s = time.monotonic() - clean_started
        reference_manifest, reference_files = _outputs(store)
        _forget_the_night(store)
        assert _infer_records(store) == []

        faults, done = Faults(), threading.Event()
        replica = topology.services["tilestats-glimpse"].hosts[0]
        workers = [topology.host(f"worker-{n}") for n in range(2)]
        injector = threading.Thread(target=_inject, args=(store, faults, replica, workers, done), daemon=True)
        started = time.monotonic()
        injector.start()
        try:
            summary, flow_run_id = tier.run_night(NIGHT, timeout_s=300)
        finally:
            done.set()
            injector.join(timeout=30)
        wall_s = time.monotonic() - started
        with tier.settings(), get_client(sync_client=True) as client:
            killed = client.read_flow_run(faults.killed_flow_run) if faults.killed_flow_run else None
            final = client.read_flow_run(flow_run_id)
        online_after = tier.online_workers()
        records = _infer_records(store)
        recorded = _recorded_tiles(store, records)
        manifest, files = _outputs(store)

    assert not faults.error, faults.error
    # Both faults struck mid-night: calls were still to be made after each.
    assert faults.replica_records < faults.worker_records < len(records), (faults, len(records))
    # The lost worker's run was marked CRASHED and the night completed in a new run on the other worker.
    assert killed is not None and killed.state is not None and killed.state.is_crashed()
    assert final.id != killed.id and final.state is not None and final.state.is_completed()
    lost_worker = f"nightshift-local-{faults.worker_host.rsplit('-', 1)[1]}"
    assert killed.work_queue_name == lost_worker and final.work_queue_name != lost_worker
    assert online_after == sorted({"nightshift-local-0", "nightshift-local-1"} - {lost_worker})
    assert summary.complete and summary.run_id == clean_summary.run_id
    # It resumed: the new run made only the calls the lost one had not recorded.
    resumed_calls = sum(t.calls for t in summary.tasks)
    assert 0 < resumed_calls < len(records), (resumed_calls, len(records))

    # Every tile of the manifest is in exactly one recorded result.
    expected = {(i["input_key"], tile_id) for i in manifest["inputs"] for tile_id in i["tile_ids"]}
    assert expected and set(recorded) == expected
    assert [item for item, count in recorded.items() if count != 1] == []

    # The outputs are the clean night's, byte for byte.
    assert files.keys() == reference_files.keys() and files == reference_files
    assert manifest["run_id"] == reference_manifest["run_id"] and manifest["inputs"] == reference_manifest["inputs"]
    print(f"clean night: {clean_wall_s:.1f} s; faulted night: {wall_s:.1f} s, {len(records)} Infer records, the replica"
          f" host lost at {faults.replica_records}, the worker host at {faults.worker_records}, {resumed_calls} calls after")
