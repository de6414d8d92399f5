"""The nightly flow end to end: real services as processes, the real S3 server, Prefect with a database."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from uuid import UUID

import pytest

from nightshift.orchestration.config import NightConfig
from nightshift.orchestration.launcher import LocalNight
from nightshift.orchestration.layout import NightLayout
from nightshift.orchestration.nightly import NightIncomplete, nightly
from nightshift.orchestration.simulate import MALFORMED_INPUT, simulate_night

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _calls(local_night: LocalNight) -> dict[str, int]:
    """RPCs each running service has handled so far, from its Prometheus metrics."""
    counts = {name: s.request_count("Infer") for name, s in local_night.services.items() if name != "ingest"}
    ingest = local_night.services["ingest"]
    counts["ingest"] = ingest.request_count("IngestFits") + ingest.request_count("IngestHealpix")
    return counts


def _run_files(local_night: LocalNight, prefix: str) -> dict[str, bytes]:
    store = local_night.store
    return {key: store.get_bytes(key) for key in store.list_keys(prefix)}


def test_night_end_to_end_then_rerun_does_no_work_and_gives_the_same_catalogues(
    local_night: LocalNight, night_config: Callable[[], NightConfig]
) -> None:
    store, night = local_night.store, "2026-01-01"
    simulate_night(store, night, seed=1, malformed=True)
    before = _calls(local_night)

    summary = nightly(config=night_config(), night=night)

    assert summary.complete
    first = _calls(local_night)
    assert first["ingest"] - before["ingest"] == 4  # three glimpse fields (one malformed) and the planck map
    tasks = {t.task: t for t in summary.tasks}
    assert set(tasks) == {"tilestats"} and tasks["tilestats"].tiles > 0
    assert tasks["tilestats"].rows == tasks["tilestats"].tiles  # one row per tile, a column per quantity
    assert sorted(name for name, _ in summary.inputs) == ["glimpse/l030", "glimpse/l032", "planck/hfi-sky"]
    assert [name for name, _ in summary.quarantined] == [MALFORMED_INPUT]
    assert "not a readable FITS file" in summary.quarantined[0][1]
    layout = NightLayout(store, night)
    assert json.loads(store.get_bytes(layout.latest))["run_id"] == summary.run_id
    manifest = json.loads(store.get_bytes(layout.manifest(summary.run_id)))
    assert manifest["tasks"]["tilestats"]["models"] == ["tilestats-robust:1"]
    assert {i["name"] for i in manifest["inputs"]} == {"glimpse/l030", "glimpse/l032", "planck/hfi-sky"}
    report = store.get_bytes(summary.report_key).decode()
    assert MALFORMED_INPUT in report and "data:image/png;base64," in report
    catalogues = _run_files(local_night, layout.run_prefix(summary.run_id) + "catalogues/")
    assert sorted(k.rsplit("/", 1)[1] for k in catalogues) == ["tilestats.csv", "tilestats.ecsv", "tilestats.fits",
                                                                     "tilestats_galactic.reg", "tilestats_icrs.reg"]

    again = nightly(config=night_config(), night=night)

    assert again.complete and again.run_id == summary.run_id
    assert _calls(local_night) == first  # no ingest and no Infer call the second time
    assert _run_files(local_night, layout.run_prefix(summary.run_id) + "catalogues/") == catalogues
    assert [t.calls for t in again.tasks] == [0]


def test_night_resumes_after_a_service_is_killed(local_night: LocalNight, night_config: Callable[[], NightConfig]) -> None:
    store, night = local_night.store, "2026-01-02"
    simulate_night(store, night, seed=2)
    config = night_config()
    killed = local_night.kill("tilestats-planck")

    with pytest.raises(NightIncomplete, match="tilestats"):
        nightly(config=config, night=night)

    layout = NightLayout(store, night)
    assert not store.exists(layout.latest)  # an incomplete night moves no pointer
    assert any(store.list_keys(store.key("work", "infer", "tilestats") + "/"))  # the glimpse tiles are done
    done = _calls(local_night)
    local_night.restart(killed)

    summary = nightly(config=night_config(), night=night)

    assert summary.complete
    resumed = _calls(local_night)
    assert resumed["ingest"] == done["ingest"]  # nothing ingested twice
    assert resumed["tilestats-glimpse"] == done["tilestats-glimpse"]  # no batch inferred twice
    assert resumed["tilestats-planck"] > 0
    assert json.loads(store.get_bytes(layout.latest))["run_id"] == summary.run_id


def _task_runs(flow_run_id: UUID) -> list[str]:
    """Names of every task run of the flow run, from Prefect's API."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    names: list[str] = []
    with get_client(sync_client=True) as client:
        while page := client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                            offset=len(names), limit=200):
            names += [run.name for run in page]
    return names


def test_task_runs_grow_with_work_items_not_with_tiles_or_calls(local_night: LocalNight,
                                                                  night_config: Callable[[], NightConfig]) -> None:
    store = local_night.store
    counted = {}
    for night, seed, batch_tiles in (("2026-01-03", 3, 1), ("2026-01-04", 4, 4)):
        simulate_night(store, night, seed=seed)
        base = night_config()
        config = base.model_copy(update={"tiles_per_task": 1000, "services": tuple(
            s.model_copy(update={"batch_tiles": batch_tiles}) for s in base.services)})
        state = nightly(config=config, night=night, return_state=True)
        summary = state.result()
        runs = _task_runs(state.state_details.flow_run_id)
        kinds = Counter(name.rsplit("-", 1)[0] for name in runs)
        inputs, services = len(summary.inputs), len(config.services)
        # one work item per (service, input it accepts): each glimpse field to one service, the planck sky to the other
        assert kinds == {"discover_inputs": 1, "quarantine_rejections": 1, "ingest_input": inputs, "describe_service": services,
                         "plan_input": inputs, "infer_work": inputs, "find_references": 1, "write_catalogue": 1,
                         "publish_run": 1, "write_report": 1}, kinds
        counted[batch_tiles] = (len(runs), summary.tasks[0].calls, summary.tasks[0].tiles)
    (runs_1, calls_1, tiles_1), (runs_4, calls_4, tiles_4) = counted[1], counted[4]
    assert calls_1 == tiles_1 == tiles_4 > calls_4 > 0  # one tile per call, then four: the calls differ ...
    assert runs_1 == runs_4  # ... the task runs do not
