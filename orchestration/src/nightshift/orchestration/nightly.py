"""The nightly flow: raw files -> ingest -> every science service that applies -> catalogues, run, report.

Stages, each a Prefect task (see :mod:`nightshift.orchestration.layout` for the keys):

1. discover the night's inputs in ``raw/<night>/``; quarantine files that cannot form an input;
2. ingest each input (one task per input) and, at the same time, ask each service what it accepts;
3. plan each input's work (one task per input: the tiles each service accepts, cut into work items
   of a few hundred tiles stored as batch manifests), then send each service its work: one task per
   work item, given the manifest's key (never tiles: task runs grow with work items, not tiles),
   several Infer calls each, at most ``max_concurrent_calls`` calls in flight per replica of a service,
   every call with a deadline, each call's results recorded once (a re-run or a resumed night makes no
   call already made);
4. one catalogue per task (FITS, ECSV, CSV, DS9 regions in Galactic and ICRS) under the run's immutable path, detections cross-matched
   with the task's reference catalogues (``reference/<task>/``), then the manifest, then the
   night's ``LATEST.json``: only a night where every task completed gets a run;
5. the report (Prefect markdown artifact and an HTML page in the store), complete or not.

Retries: only transient failures (UNAVAILABLE, DEADLINE_EXCEEDED, the store unreachable) are retried,
with exponential backoff; a malformed input is quarantined and the rest of the night goes on; a
service that stays down leaves its task incomplete and the flow fails after writing the report.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from nightshift.core.errors import ObjectNotFound
from nightshift.core.store import ObjectStore, sha256_hex
from nightshift.core.version import code_version
from nightshift.orchestration.catalogues import (ReferenceCatalogue, catalogue_columns, catalogue_rows, cross_match,
                                                 write_task_catalogue)
from nightshift.orchestration.config import NightConfig, ServiceEndpoint
from nightshift.orchestration.discovery import NightInput, Rejection, discover, find_quarantined, quarantine
from nightshift.orchestration.fanout import (InferOutcome, ServicePlan, WorkItem, call_batches, describe, infer_batches,
                                             plan_work, recorded_results, work_batches)
from nightshift.orchestration.ingest import IngestClient, ingest_request, ingest_run_id
from nightshift.orchestration.layout import NightLayout, content_digest
from nightshift.orchestration.progress import report_progress
from nightshift.orchestration.report import NightSummary, TaskSummary, overlay_png, render_html, render_markdown, sky_plot_png
from nightshift.orchestration.retries import TRANSIENT_RETRY_OPTIONS
from nightshift.v1 import ingest_service_pb2, task_service_pb2, tile_pb2

__all__ = ["nightly", "NightIncomplete", "IngestedInput", "TaskCatalogue", "run_id_of"]


class NightIncomplete(RuntimeError):
    """Some task of the night did not complete; its report says which and why. Re-run to resume."""


@dataclasses.dataclass(frozen=True)
class IngestedInput:
    """An input, the key of its tile index (a ``TileIndex``) and its tile count (``index_key`` is "" and
    ``rejection`` set when it was quarantined)."""

    night_input: NightInput
    index_key: str
    tile_count: int
    rejection: Rejection | None = None


@dataclasses.dataclass(frozen=True)
class TaskCatalogue:
    """A task's catalogue as written: rows, rows known in its reference catalogues, object keys with
    their SHA-256, the rows' Galactic positions, and example tiles with what was found (PNG, for the report)."""

    rows: int
    known: int
    files: dict[str, str]
    glon: tuple[float, ...]
    glat: tuple[float, ...]
    overlay_png: bytes


# -- tasks ------------------------------------------------------------------------------------


@task(**TRANSIENT_RETRY_OPTIONS)
def discover_inputs(night: str, config: NightConfig) -> tuple[list[NightInput], list[Rejection]]:
    """The inputs of ``night`` in the raw area, and the files that cannot form one (see :func:`discover`)."""
    inputs, rejections = discover(ObjectStore.from_env(), night, config)
    get_run_logger().info("night %s: %d inputs, %d rejected files", night, len(inputs), len(rejections))
    return inputs, rejections


@task(**TRANSIENT_RETRY_OPTIONS)
def quarantine_rejections(night: str, rejections: list[Rejection]) -> list[Rejection]:
    """Quarantine each rejection not already quarantined; return them all (for the report)."""
    store = ObjectStore.from_env()
    for rejection in rejections:
        if find_quarantined(store, night, rejection.input_key) is None:
            quarantine(store, night, rejection.input_key, rejection)
            get_run_logger().warning("quarantined %s: %s", rejection.name, rejection.reason)
    return rejections


@task(**TRANSIENT_RETRY_OPTIONS)
def ingest_input(night: str, night_input: NightInput, config: NightConfig) -> IngestedInput:
    """Ingest one input through the ingest service, unless its tiles are already recorded.

    A request the service rejects as invalid (INVALID_ARGUMENT) quarantines the input. The tiles
    are recorded at ``work/ingest/<input_key>.pb`` so a re-run neither ingests nor lists again.
    """
    store, logger = ObjectStore.from_env(), get_run_logger()
    layout = NightLayout(store, night)
    record = layout.ingest_record(night_input.input_key)
    if (earlier := find_quarantined(store, night, night_input.input_key)) is not None:
        report_progress("ingest", 1, 0)
        return IngestedInput(night_input, "", 0, earlier)
    try:
        tiles = ingest_service_pb2.TileIndex.FromString(store.get_bytes(record)).tiles
        logger.info("%s: %d tiles already ingested", night_input.name, len(tiles))
        report_progress("ingest", 1, 0)
        return IngestedInput(night_input, record, len(tiles))
    except ObjectNotFound:
        pass
    request = ingest_request(night, night_input, store.bucket)
    with IngestClient(config.ingest_target, timeout_s=config.ingest_timeout_s) as client:
        try:
            summary = client.ingest(request, on_progress=lambda p: logger.debug("%s: %s", night_input.name, p.message))
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            rejection = Rejection(night_input.name, night_input.files, f"ingest rejected {night_input.name}: {exc.details()}")
            quarantine(store, night, night_input.input_key, rejection)
            logger.warning("quarantined %s: %s", night_input.name, rejection.reason)
            report_progress("ingest", 1, 0)
            return IngestedInput(night_input, "", 0, rejection)
        tiles = client.list_tiles(ingest_run_id(night, night_input))
    if len(tiles) != summary.tile_count:
        raise RuntimeError(f"{night_input.name}: ingest reported {summary.tile_count} tiles, ListTiles gave {len(tiles)}")
    store.put_bytes(record, ingest_service_pb2.TileIndex(tiles=tiles).SerializeToString(deterministic=True))
    logger.info("%s: ingested %d tiles (%d bytes written)", night_input.name, len(tiles), summary.bytes_written)
    report_progress("ingest", 1, 0)
    return IngestedInput(night_input, record, len(tiles))


@task(**TRANSIENT_RETRY_OPTIONS)
def describe_service(endpoint: ServiceEndpoint) -> ServicePlan:
    """What ``endpoint`` does, accepts and serves (its ``Describe``), as the night will use it."""
    plan = describe(endpoint)
    get_run_logger().info("%s: task %s, model %s:%s, accepts %s", endpoint.name, plan.task, plan.model_name,
                          plan.model_version, plan.describe_input())
    return plan


@task(**TRANSIENT_RETRY_OPTIONS)
def plan_input(night: str, ingested: IngestedInput, plans: list[ServicePlan], tiles_per_task: int) -> dict[str, list[WorkItem]]:
    """Each service's work items on one input ({endpoint name: items}, none where it accepts no tile): see :func:`plan_work`."""
    store = ObjectStore.from_env()
    layout = NightLayout(store, night)
    tiles = _index_tiles(store, ingested.index_key)
    return {plan.endpoint.name: plan_work(store, layout, plan, ingested.night_input.input_key, tiles, tiles_per_task) for plan in plans}


@task(**TRANSIENT_RETRY_OPTIONS)
def infer_work(night: str, plan: ServicePlan, input_key: str, item_key: str) -> InferOutcome:
    """Send the work item at ``item_key`` (a few Infer calls, a few hundred tiles) to ``plan``'s service; record each call."""
    store = ObjectStore.from_env()
    outcome = infer_batches(store, NightLayout(store, night), plan, input_key, work_batches(store, plan, item_key))
    report_progress(f"infer {plan.endpoint.name}", outcome.tiles_inferred + outcome.tiles_recorded_before, 0)
    return outcome


@task(**TRANSIENT_RETRY_OPTIONS)
def find_references(night: str, task_names: list[str]) -> dict[str, dict[str, str]]:
    """Each task's reference catalogues in the store (``reference/<task>/*.ecsv|.fits``): {task: {key: SHA-256}}."""
    store = ObjectStore.from_env()
    layout = NightLayout(store, night)
    return {
        name: {key: sha256_hex(store.get_bytes(key)) for key in sorted(store.list_keys(layout.reference_prefix(name)))
               if key.endswith(_REFERENCE_SUFFIXES)}
        for name in task_names
    }


@task(**TRANSIENT_RETRY_OPTIONS)
def write_catalogue(
    night: str, run_id: str, task_name: str, work: list[tuple[ServicePlan, str, str]], references: dict[str, str],
) -> TaskCatalogue:
    """Merge ``task_name``'s recorded results into one catalogue, cross-match it, and store it under the run.

    ``work`` lists (service plan, input key, key of the input's tile index) of everything the task did tonight;
    ``references`` the keys and SHA-256 of its reference catalogues (as :func:`find_references`
    found them: one changed since is an error, the run id depends on them). A run is immutable: a
    file already stored must have the same bytes, or this fails.
    """
    store = ObjectStore.from_env()
    layout = NightLayout(store, night)
    responses, tiles = [], {}
    for plan, input_key, index_key in work:
        batches = call_batches(plan, _index_tiles(store, index_key))
        responses += recorded_results(store, layout, plan, input_key, batches)
        tiles.update((t.tile_id, t) for batch in batches for t in batch)
    plan = work[0][0]
    rows = catalogue_rows(task_name, plan.output_kind, responses, tiles,
                          duplicate_radius_arcsec=plan.endpoint.duplicate_radius_arcsec)
    if plan.output_kind != task_service_pb2.OUTPUT_KIND_MEASUREMENTS:
        cross_match(rows, _read_references(store, references), plan.endpoint.crossmatch_radius_arcsec)
    meta = {"NIGHT": night, "RUNID": run_id, "TASK": task_name, "MODEL": plan.model_name, "MODELVER": plan.model_version,
            "CODEVER": code_version()}
    files = {}
    with tempfile.TemporaryDirectory(prefix="nightshift-catalogue-") as directory:
        columns = catalogue_columns(plan.output_kind, responses)
        for path in write_task_catalogue(task_name, plan.output_kind, rows, columns, Path(directory), meta):
            key = layout.run_prefix(run_id) + f"catalogues/{path.name}"
            data = path.read_bytes()
            files[key] = _put_immutable(store, key, data)
    positions = sorted({(r["glon"], r["glat"]) for r in rows})
    return TaskCatalogue(rows=len(rows), known=sum(1 for r in rows if r.get("known_in")), files=files,
                         glon=tuple(p[0] for p in positions), glat=tuple(p[1] for p in positions),
                         overlay_png=_overlay(store, task_name, rows, tiles))


@task(**TRANSIENT_RETRY_OPTIONS)
def publish_run(night: str, run_id: str, manifest: dict[str, Any], inputs: list[IngestedInput]) -> str:
    """Write the run's manifest (once: a run is immutable), then point the night's ``LATEST.json`` at it.

    ``manifest`` is completed with ``inputs``: each one's files and tile ids (read from its tile index here,
    so the flow never holds a night's tile list).
    """
    store = ObjectStore.from_env()
    layout = NightLayout(store, night)
    key = layout.manifest(run_id)
    if not store.exists(key):  # the manifest is the run's completion mark: written last, never rewritten
        manifest = {**manifest, "inputs": [
            {"name": i.night_input.name, "input_key": i.night_input.input_key,
             "files": [dataclasses.asdict(f) for f in i.night_input.files],
             "tile_ids": sorted(t.tile_id for t in _index_tiles(store, i.index_key))}
            for i in inputs
        ]}
        store.put_bytes(key, json.dumps(manifest, indent=1, sort_keys=True).encode(), content_type="application/json")
    latest = {"night": night, "run_id": run_id, "manifest": key}
    store.put_bytes(layout.latest, json.dumps(latest, sort_keys=True).encode(), content_type="application/json")
    return key


@task(**TRANSIENT_RETRY_OPTIONS)
def write_report(summary: NightSummary, sky: dict[str, tuple[tuple[float, ...], tuple[float, ...]]], sky_map_key: str,
                 overlays: dict[str, bytes]) -> str:
    """Store the HTML report of this attempt and publish the markdown as a Prefect artifact; return the HTML key.

    ``sky_map_key`` is a HEALPix map of the night drawn under the sky plot ("" for none).
    """
    store = ObjectStore.from_env()
    key = summary.report_key
    sky_png = sky_plot_png(sky, _sky_map(store, sky_map_key) if sky_map_key else None)
    store.put_bytes(key, render_html(summary, sky_png, overlays).encode(), content_type="text/html")
    create_markdown_artifact(render_markdown(summary), key=f"night-{summary.night}", description=f"Nightshift night {summary.night}")
    return key


# -- helpers of the flow ----------------------------------------------------------------------

_REFERENCE_SUFFIXES = (".ecsv", ".fits")
_OVERLAY_EXAMPLES = 3
_SKY_MAP_NSIDE = 64  # the report's sky map: plenty for a page, quick to draw


def _index_tiles(store: ObjectStore, index_key: str) -> list[tile_pb2.ImageTile]:
    """The tiles of the tile index at ``index_key``."""
    return list(ingest_service_pb2.TileIndex.FromString(store.get_bytes(index_key)).tiles)


def _read_references(store: ObjectStore, references: dict[str, str]) -> list[ReferenceCatalogue]:
    catalogues = []
    with tempfile.TemporaryDirectory(prefix="nightshift-reference-") as directory:
        for key, digest in sorted(references.items()):
            data = store.get_bytes(key)
            if sha256_hex(data) != digest:
                raise RuntimeError(f"reference catalogue {key} changed during the night: re-run the night")
            path = Path(directory) / key.rsplit("/", 1)[-1]
            path.write_bytes(data)
            catalogues.append(ReferenceCatalogue.read(path.stem, path))
    return catalogues


def _overlay(store: ObjectStore, task_name: str, rows: list[dict[str, Any]], tiles: dict[str, tile_pb2.ImageTile]) -> bytes:
    """A few tiles with the catalogue's rows drawn over them: the best-scored detections', or the first measured tiles'."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from nightshift.core.tiles import decode_tile

    chosen: list[str] = []
    for row in sorted(rows, key=lambda r: -float(r.get("score", 0.0))) if rows and "score" in rows[0] else rows:
        if row["tile_id"] not in chosen:
            chosen.append(str(row["tile_id"]))
        if len(chosen) == _OVERLAY_EXAMPLES:
            break
    examples = []
    for tile_id in chosen:
        tile = tiles[tile_id]
        wcs = WCS(fits.Header.fromstring("".join(tile.wcs_cards))).celestial if tile.wcs_cards else None
        examples.append((decode_tile(tile, store=store).pixels[0], wcs, [r for r in rows if r["tile_id"] == tile_id]))
    return overlay_png(task_name, examples) if examples else b""


def _sky_map(store: ObjectStore, key: str) -> Any:
    """The HEALPix map at ``key``, degraded to the report's resolution (missing pixels UNSEEN)."""
    import healpy as hp

    with tempfile.TemporaryDirectory(prefix="nightshift-sky-") as directory:
        values = hp.read_map(str(store.get_file(key, Path(directory) / "map.fits")), dtype=float)
    return hp.ud_grade(values, min(_SKY_MAP_NSIDE, hp.npix2nside(values.size)))


def _put_immutable(store: ObjectStore, key: str, data: bytes) -> str:
    """Write ``data`` at ``key`` unless it is there already with the same bytes; return its SHA-256.

    Raises
    ------
    RuntimeError
        ``key`` holds other bytes: the outputs of a run are not reproducible, or someone wrote into a run.
    """
    digest = sha256_hex(data)
    if store.size_of(key) is None:
        store.put_bytes(key, data)
    elif sha256_hex(store.get_bytes(key)) != digest:
        raise RuntimeError(f"{key} exists with other content: runs are immutable and their outputs must be reproducible")
    return digest


def run_id_of(night: str, inputs: Sequence[IngestedInput], plans: Sequence[ServicePlan],
              references: dict[str, dict[str, str]] | None = None) -> str:
    """The run's id: a digest of everything its outputs depend on (inputs, models, parameters, reference catalogues, code)."""
    return content_digest({
        "night": night,
        "inputs": sorted(i.night_input.input_key for i in inputs),
        "services": sorted((p.task, p.model_name, p.model_version, p.endpoint.duplicate_radius_arcsec,
                            p.endpoint.crossmatch_radius_arcsec) for p in plans),
        "references": references or {},
        "code": code_version(),
    })


def _outcome(future: PrefectFuture[Any]) -> tuple[Any, str]:
    """(result, "") of a future once completed, or (None, the error) once failed."""
    future.wait()
    state = future.state
    if state.is_completed():
        return future.result(), ""
    return None, state.message or state.name


def _manifest(night: str, run_id: str, quarantined: Sequence[Rejection], tasks: dict[str, list[ServicePlan]],
              catalogues: dict[str, TaskCatalogue], config: NightConfig, references: dict[str, dict[str, str]],
              timings: dict[str, float]) -> dict[str, Any]:
    """The run's manifest but its ``inputs`` (:func:`publish_run` adds them from the tile indexes)."""
    return {
        "night": night,
        "run_id": run_id,
        "code_version": code_version(),
        "completed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "parameters": {"tiles_per_task": config.tiles_per_task,
                       "services": {e.name: e.model_dump(exclude={"target"}) for e in config.services}},
        "quarantined": [{"name": r.name, "reason": r.reason, "files": [dataclasses.asdict(f) for f in r.files]} for r in quarantined],
        "tasks": {
            name: {"models": sorted({f"{p.model_name}:{p.model_version}" for p in plans}),
                   "services": sorted(p.endpoint.name for p in plans),
                   "rows": catalogues[name].rows, "known": catalogues[name].known, "catalogue": catalogues[name].files,
                   "reference_catalogues": references.get(name, {})}
            for name, plans in sorted(tasks.items())
        },
        "timings_s": timings,
    }


# -- the flow ---------------------------------------------------------------------------------


@flow(name="nightshift-nightly", task_runner=ThreadPoolTaskRunner(max_workers=8), log_prints=True)
def nightly(config: NightConfig, night: str = "") -> NightSummary:
    """Process the night ``night`` (YYYY-MM-DD; default: today in UTC): ingest what arrived, run every science service that applies.

    Returns the night's summary; raises :class:`NightIncomplete` (after writing the report) when a
    task did not complete, so the flow run is marked failed and a later run resumes it.
    """
    night = night or time.strftime("%Y-%m-%d", time.gmtime())
    store = ObjectStore.from_env()
    layout = NightLayout(store, night)
    attempt = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{str(flow_run.id or 'local')[:8]}"
    timings: dict[str, float] = {}
    started = time.perf_counter()

    night_inputs, rejections = discover_inputs(night, config)
    quarantined = list(quarantine_rejections(night, rejections))
    timings["discover"] = time.perf_counter() - started

    stage = time.perf_counter()
    report_progress("ingest", 0, len(night_inputs))
    ingests = [ingest_input.submit(night, i, config) for i in night_inputs]
    describes = {e.name: describe_service.submit(e) for e in config.services}
    wait(ingests)
    timings["ingest"] = time.perf_counter() - stage
    ingested: list[IngestedInput] = []
    failures: dict[str, str] = {}
    for night_input, future in zip(night_inputs, ingests):
        result, error = _outcome(future)
        if error:
            failures[f"ingest {night_input.name}"] = error
        elif result.rejection is not None:
            quarantined.append(result.rejection)
        else:
            ingested.append(result)

    stage = time.perf_counter()
    wait(list(describes.values()))
    plans: list[ServicePlan] = []
    skipped = dict(config.skipped_services)
    for name, future in describes.items():
        plan, error = _outcome(future)
        if error:
            failures[name] = f"Describe failed: {error}"
        else:
            plans.append(plan)
    planning = [plan_input.submit(night, i, plans, config.tiles_per_task) for i in ingested] if plans else []
    wait(planning)
    planned: list[tuple[IngestedInput, dict[str, list[WorkItem]]]] = []
    for ingested_input, future in zip(ingested, planning):
        items, error = _outcome(future)
        if error:
            failures[f"plan {ingested_input.night_input.name}"] = error
        else:
            planned.append((ingested_input, items))
    work: dict[str, list[tuple[ServicePlan, str, str]]] = defaultdict(list)
    task_tiles: dict[str, int] = defaultdict(int)
    submitted: dict[str, list[PrefectFuture[InferOutcome]]] = defaultdict(list)
    for plan in plans:
        per_input = [(i, items[plan.endpoint.name]) for i, items in planned if items[plan.endpoint.name]]
        if not per_input:
            skipped[plan.endpoint.name] = f"no tile of the night fits it (it accepts {plan.describe_input()})"
            continue
        tiles = sum(item.tiles for _, items in per_input for item in items)
        report_progress(f"infer {plan.endpoint.name}", 0, tiles)
        task_tiles[plan.task] += tiles
        for ingested_input, items in per_input:
            input_key = ingested_input.night_input.input_key
            work[plan.task].append((plan, input_key, ingested_input.index_key))
            submitted[plan.task] += [infer_work.submit(night, plan, input_key, item.key) for item in items]
    tasks: dict[str, list[ServicePlan]] = defaultdict(list)
    for plan, _, _ in (w for items in work.values() for w in items):
        if plan not in tasks[plan.task]:
            tasks[plan.task].append(plan)
    calls: dict[str, int] = {}
    for name, futures in submitted.items():
        wait(futures)
        outcomes = [_outcome(f) for f in futures]
        calls[name] = sum(o.calls for o, error in outcomes if not error)
        if errors := [error for _, error in outcomes if error]:
            failures[name] = f"{len(errors)} of {len(futures)} work items failed; first: {errors[0]}"
    timings["infer"] = time.perf_counter() - stage

    complete = not failures
    references = find_references(night, sorted(work)) if complete else {}
    run_id = run_id_of(night, ingested, [p for plans_ in tasks.values() for p in plans_], references) if complete else ""
    catalogues: dict[str, TaskCatalogue] = {}
    if complete:
        stage = time.perf_counter()
        futures = {name: write_catalogue.submit(night, run_id, name, items, references[name]) for name, items in sorted(work.items())}
        for name, future in futures.items():
            catalogue, error = _outcome(future)
            if error:
                failures[name] = f"catalogue failed: {error}"
            else:
                catalogues[name] = catalogue
        timings["catalogues"] = time.perf_counter() - stage
        complete = not failures
    if complete:
        stage = time.perf_counter()
        publish_run(night, run_id, _manifest(night, run_id, quarantined, tasks, catalogues, config, references, timings), ingested)
        timings["publish"] = time.perf_counter() - stage
    timings["total"] = time.perf_counter() - started

    summary = NightSummary(
        night=night, attempt=attempt, complete=complete, run_id=run_id if complete else "",
        run_prefix=layout.run_prefix(run_id) if complete else "", report_key=layout.report(attempt),
        inputs=tuple((i.night_input.name, i.tile_count) for i in ingested),
        quarantined=tuple((r.name, r.reason) for r in quarantined),
        skipped_services=tuple(sorted(skipped.items())),
        tasks=tuple(
            TaskSummary(
                task=name, endpoints=tuple(p.endpoint.name for p in tasks[name]),
                model=", ".join(sorted({f"{p.model_name}:{p.model_version}" for p in tasks[name]})),
                tiles=task_tiles[name],
                rows=catalogues[name].rows if name in catalogues else 0,
                known=catalogues[name].known if name in catalogues else 0, calls=calls.get(name, 0),
                catalogue_keys=tuple(sorted(catalogues[name].files)) if name in catalogues else (),
                error=failures.get(name, ""),
            )
            for name in sorted(tasks)
        ) + tuple(TaskSummary(task=name, endpoints=(), model="", tiles=0, error=error)
                  for name, error in sorted(failures.items()) if name not in tasks),
        timings_s={k: round(v, 3) for k, v in timings.items()},
        code_version=code_version(),
    )
    sky = {name: (c.glon, c.glat) for name, c in catalogues.items()}
    sky_maps = [i.night_input.files[0].key for i in ingested if i.night_input.survey.tiling.kind == "healpix"]
    write_report(summary, sky, sky_maps[0] if sky_maps else "", {name: c.overlay_png for name, c in catalogues.items() if c.overlay_png})
    print(f"night {night}: report at s3://{store.bucket}/{summary.report_key}")
    if not complete:
        raise NightIncomplete(f"night {night} incomplete: " + "; ".join(f"{k}: {v}" for k, v in sorted(failures.items())))
    return summary
