"""The demo night: everything on this machine, a simulated night, the real nightly flow, one JSON line.

Starts a local S3 server, the ingest service and every science service installed here, as local
processes. Each science service simulates its own small night with known truth through its
command line (``nightshift-<task> simulate-night``: the raw files of its survey, how they are
tiled, the service's merge and cross-match radii, real reference catalogues when the service finds
them, and the truth), so the orchestration imports no service. The night's files go into the raw
area, the nightly flow runs in Prefect's ephemeral mode with progress bars (or, with
``prefect_workers``, through a persistent Prefect server on PostgreSQL and that many process workers:
:class:`~nightshift.orchestration.prefect_server.PrefectTier`), and each task's
catalogue is scored against its truth by the service (``nightshift-<task> score-night``). It says
where the catalogues and the report are and ends with one JSON line. Everything it started is
stopped at the end, also on failure. The store's files stay in ``<work dir>/s3/<bucket>/`` (rclone
serves a directory), so the outputs can be opened after the servers are gone; running again with
the same ``--work-dir`` re-runs the night (nothing is computed twice).

The night is authenticated without set-up: a new signing secret per run (``<work dir>/auth/secret``,
0600) that every service is started with, and the flow calls with an ``infer`` and an ``ingest`` token
only (:class:`~nightshift.orchestration.launcher.LocalNight` with ``auth=True``); an anonymous caller of any
of its services is UNAUTHENTICATED.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from nightshift.core.store import ObjectStore
from nightshift.core.version import code_version
from nightshift.orchestration.config import NightConfig, ServiceEndpoint, SurveyConfig
from nightshift.orchestration.launcher import (SCIENCE_TASKS, LocalNight, console_script, ingest_command, run_json_command,
                                               science_service_commands)
from nightshift.orchestration.layout import NightLayout
from nightshift.orchestration.prefect_server import PrefectTier
from nightshift.orchestration.progress import ProgressEvent, listening
from nightshift.orchestration.report import add_scores

if TYPE_CHECKING:
    from nightshift.orchestration.report import NightSummary

__all__ = ["DEMO_NIGHT", "NightKit", "simulate_kit", "upload_kit", "score_kit", "run_demo"]

DEMO_NIGHT = "2026-11-21"
"""The night the demo simulates and processes by default."""

_KIT_TIMEOUT_S = 600.0
_MALFORMED_FIELD = "corrupt-transfer"


@dataclasses.dataclass(frozen=True)
class NightKit:
    """A science service's simulated night (``nightshift-<task> simulate-night``) in ``directory``.

    ``directory`` holds ``night.json`` (the survey and the service's radii), ``raw/<field>/<band>.fits``,
    optionally ``reference/<catalogue>.ecsv``, and the service's private ``truth/``.
    """

    task: str
    directory: Path
    survey: SurveyConfig
    duplicate_radius_arcsec: float
    crossmatch_radius_arcsec: float
    summary: dict[str, Any]


def simulate_kit(task: str, directory: Path, seed: int) -> NightKit:
    """Have ``task``'s service simulate its night into ``directory``."""
    script = console_script(f"nightshift-{task}")
    if script is None:
        raise FileNotFoundError(f"nightshift-{task} is not installed")
    summary = run_json_command([script, "simulate-night", "--output", str(directory), "--seed", str(seed)], timeout_s=_KIT_TIMEOUT_S)
    night = json.loads((directory / "night.json").read_text())
    service = night.get("service", {})
    return NightKit(task, directory, SurveyConfig.model_validate(night["survey"]),
                    float(service.get("duplicate_radius_arcsec", 0.0)), float(service.get("crossmatch_radius_arcsec", 0.0)), summary)


def upload_kit(store: ObjectStore, night: str, kit: NightKit) -> int:
    """Deliver ``kit``'s raw files into the night's raw area and its reference catalogues; return files written."""
    layout = NightLayout(store, night)
    written = 0
    for path in sorted((kit.directory / "raw").glob("*/*.fits")):
        store.put_file(f"{layout.raw_prefix}{kit.survey.name}/{path.parent.name}/{path.name}", path)
        written += 1
    for path in sorted((kit.directory / "reference").glob("*.ecsv")):
        store.put_file(layout.reference_prefix(kit.task) + path.name, path)
        written += 1
    return written


def deliver_malformed(store: ObjectStore, night: str, survey: SurveyConfig) -> str:
    """A transfer gone wrong: a field of ``survey`` whose first band is not a FITS file. Returns the input's name."""
    prefix = f"{NightLayout(store, night).raw_prefix}{survey.name}/{_MALFORMED_FIELD}/"
    for number, band in enumerate(survey.bands):
        body = b"SIMPLE  = truncated by the transfer\n" if number == 0 else b"\0" * 2880
        store.put_bytes(f"{prefix}{band.name}.fits", body)
    return f"{survey.name}/{_MALFORMED_FIELD}"


def score_kit(kit: NightKit, store: ObjectStore, catalogue_key: str) -> dict[str, Any]:
    """``task``'s score of the night's catalogue at ``catalogue_key`` (FITS) against the kit's truth."""
    script = console_script(f"nightshift-{kit.task}")
    assert script is not None  # the kit was made by it
    with tempfile.TemporaryDirectory(prefix="nightshift-score-") as directory:
        path = store.get_file(catalogue_key, Path(directory) / f"{kit.task}.fits")
        return run_json_command([script, "score-night", "--kit", str(kit.directory), "--catalogue", str(path)],
                                timeout_s=_KIT_TIMEOUT_S)


class _ProgressBars:
    """A rich progress bar per stage, fed by the flow's progress events (from its worker threads)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.bars: dict[str, TaskID] = {}

    def __call__(self, event: ProgressEvent) -> None:
        if event.bar not in self.bars:
            self.bars[event.bar] = self.progress.add_task(event.bar, total=event.total or None)
        bar = self.bars[event.bar]
        if event.total:
            self.progress.update(bar, total=event.total)
        self.progress.advance(bar, event.done)


def _make_kits(tasks: Sequence[str], work_dir: Path, seed: int) -> tuple[dict[str, NightKit], dict[str, str]]:
    """Every task's night, simulated in parallel processes: (kits, {task: why it has none})."""
    kits, failed = {}, {}
    with ThreadPoolExecutor(max_workers=max(1, len(tasks))) as pool:
        futures = {task: pool.submit(simulate_kit, task, work_dir / "kits" / task, seed) for task in tasks}
        for task, future in futures.items():
            try:
                kits[task] = future.result()
            except (RuntimeError, FileNotFoundError, ValueError) as exc:
                failed[task] = f"its simulated night failed: {exc}"
    return kits, failed


def _run_embedded(config: NightConfig, night: str, console: Console, prefect_api_url: str) -> NightSummary:
    """The flow in this process, on the night's temporary Prefect server, with a progress bar per stage."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from nightshift.orchestration.nightly import nightly  # imports Prefect: after the services are up

    progress = Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console)
    with progress, listening(_ProgressBars(progress)), temporary_settings({PREFECT_API_URL: prefect_api_url}):
        return nightly(config=config, night=night)


def run_demo(*, work_dir: Path | None = None, night: str = DEMO_NIGHT, seed: int = 0, tasks: Sequence[str] = SCIENCE_TASKS,
             startup_timeout_s: float = 300.0, prefect_workers: int = 0, record: Path | None = None) -> int:
    """Run the demo night for ``tasks``; print where its outputs are and one JSON line; return the exit status.

    ``record`` also gets that line as a file, with the code version, the date and the load average at the
    start (wall times from a loaded machine are not comparable).

    ``prefect_workers`` > 0 runs the flow through a persistent Prefect server on PostgreSQL and that
    many process workers (logs under ``<work dir>/prefect/``) instead of in this process.
    """
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    console = Console(stderr=True)
    work_dir = work_dir or Path(tempfile.mkdtemp(prefix="nightshift-night-"))
    with LocalNight(work_dir, auth=True) as local, contextlib.ExitStack() as stack:
        store = local.start_s3()
        os.environ.update(store.config.to_env())  # the flow's tasks read the store from the environment
        # ... and their tokens (infer, ingest; no admin), before the Prefect tier's workers inherit it
        os.environ.update(local.flow_environment())
        science, not_installed = science_service_commands(tasks)
        with console.status(f"starting the local S3 server and {len(science) + 1} services; the services simulate their nights"):
            # Every process is started by this (the main) thread, so that each ends with this one if it is killed.
            spawned = local.spawn_services([ingest_command(), *science])
            with ThreadPoolExecutor(max_workers=1) as pool:
                starting = pool.submit(local.wait_services, spawned, timeout_s=startup_timeout_s)
                kits, kit_failed = _make_kits([c.name for c in science], work_dir, seed)
                tier = stack.enter_context(PrefectTier(work_dir / "prefect", workers=prefect_workers)) if prefect_workers else None
                failed = starting.result()
            prefect_api_url = "" if tier else local.start_prefect_server()
        if "ingest" in failed:
            console.print(f"[red]the ingest service did not start:[/red] {failed['ingest']}")
            return 1
        skipped = {**not_installed, **kit_failed, **{name: f"did not start: {reason[:300]}" for name, reason in failed.items()}}
        for name, reason in skipped.items():
            console.print(f"[yellow]skipping {name}[/yellow]: {reason}")
        kits = {task: kit for task, kit in kits.items() if task in local.services}
        for kit in kits.values():
            upload_kit(store, night, kit)
        malformed = deliver_malformed(store, night, next(iter(kits.values())).survey) if kits else ""
        config = NightConfig(
            surveys=tuple(kit.survey for kit in kits.values()),
            ingest_target=local.services["ingest"].target,
            services=tuple(ServiceEndpoint(name=task, target=local.services[task].target,
                                           duplicate_radius_arcsec=kit.duplicate_radius_arcsec,
                                           crossmatch_radius_arcsec=kit.crossmatch_radius_arcsec)
                           for task, kit in kits.items()),
            skipped_services={name: reason for name, reason in skipped.items() if name != "ingest"},
            tiles_per_task=128,
        )
        from nightshift.orchestration.nightly import NightIncomplete

        try:
            if tier is None:
                summary = _run_embedded(config, night, console, prefect_api_url)
            else:
                # The flow runs in a worker's process: its progress events do not reach this one.
                with console.status(f"night {night} through the Prefect server at {tier.api_url}, {prefect_workers} workers"):
                    tier.deploy(config)
                    summary, _ = tier.run_night(night)
        except NightIncomplete as exc:
            console.print(f"[red]{exc}[/red]")
            return 1
        files_root = work_dir / "s3" / store.bucket
        print(f"night {night}: {'complete' if summary.complete else 'incomplete'}, run {summary.run_id}")
        print(f"  catalogues: {files_root / summary.run_prefix / 'catalogues'}")
        print(f"  manifest:   {files_root / summary.run_prefix / 'manifest.json'}")
        print(f"  report:     {files_root / summary.report_key}")
        for name, reason in summary.quarantined:
            print(f"  quarantined {name}: {reason}")
        results: dict[str, dict[str, object]] = {}
        for task in summary.tasks:
            results[task.task] = {"tiles": task.tiles, "rows": task.rows, "known": task.known, "infer_calls": task.calls,
                                  "model": task.model}
            fits_keys = [k for k in task.catalogue_keys if k.endswith(".fits")]
            if task.task in kits and fits_keys:
                try:
                    results[task.task]["score"] = score_kit(kits[task.task], store, fits_keys[0])
                except RuntimeError as exc:
                    results[task.task]["score"] = {"error": str(exc)[:300]}
            print(f"  {task.task}: {task.tiles} tiles -> {task.rows} catalogue rows, {task.known} known ({task.model}); "
                  f"score {json.dumps(results[task.task].get('score', {}), sort_keys=True)}")
        scores = {task: result["score"] for task, result in results.items() if "score" in result}
        if scores:
            page = add_scores(store.get_bytes(summary.report_key).decode(), scores)
            store.put_bytes(summary.report_key, page.encode(), content_type="text/html")
    line = {
        "night": night, "complete": summary.complete, "run_id": summary.run_id, "tasks": results,
        "inputs": len(summary.inputs), "quarantined": [name for name, _ in summary.quarantined],
        "malformed_delivered": malformed, "skipped_services": sorted(name for name, _ in summary.skipped_services),
        "wall_s": round(time.perf_counter() - started, 1), "work_dir": str(work_dir),
    }
    print(json.dumps(line, sort_keys=True))
    sys.stdout.flush()
    if record is not None:
        command = "nightshift night" + ("" if list(tasks) == list(SCIENCE_TASKS) else f" --tasks {','.join(tasks)}")
        provenance = {"code_version": code_version(), "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                      "load_average_at_start": round(load_at_start, 2), "cores": os.cpu_count(), "seed": seed, "command": command}
        line.pop("work_dir")  # a temporary directory of this machine
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({**line, **provenance}, indent=2, sort_keys=True) + "\n")
    return 0
