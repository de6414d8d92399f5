"""The demo night: everything on this machine, a simulated night, the real nightly flow, one JSON line.

Starts a local S3 server and the services as local processes (the ingest service, the
tile-statistics data-quality service once per survey's band set, and every science service whose
``nightshift-<task>`` command is installed), writes the simulated night (:mod:`.simulate`) into the
raw area, runs the nightly flow in Prefect's ephemeral mode with progress bars, scores the
tile statistics against the simulated truth, says where the catalogues and the report are, and
ends with one JSON line. Everything it started is stopped at the end, also on failure. The store's
files stay in ``<work dir>/s3/<bucket>/`` (rclone serves a directory), so the outputs can be
opened after the servers are gone; running again with the same ``--work-dir`` re-runs the night
(nothing is computed twice).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from nightshift.core.store import ObjectStore
from nightshift.orchestration.config import NightConfig, ServiceEndpoint
from nightshift.orchestration.launcher import LocalNight, ingest_command, science_service_commands, tilestats_command
from nightshift.orchestration.progress import ProgressEvent, listening
from nightshift.orchestration.simulate import DEMO_NIGHT, SIMULATED_SURVEYS, BandTruth, simulate_night

__all__ = ["run_demo", "tilestats_score"]

def tilestats_score(rows: Sequence[dict[str, object]], truth: Sequence[BandTruth]) -> dict[str, float]:
    """Worst error of the measured background and noise against the simulated truth, in noise units.

    ``rows`` are rows of the tile-statistics catalogue (quantity ``<band>.background`` / ``<band>.noise``).
    """
    levels = {(t.survey, t.band): t for t in truth}
    worst = {"background": 0.0, "noise": 0.0}
    for row in rows:
        band, _, quantity = str(row["quantity"]).partition(".")
        expected = levels.get((str(row["survey"]), band))
        if expected is None or quantity not in worst:
            continue
        target = expected.background if quantity == "background" else expected.noise
        worst[quantity] = max(worst[quantity], abs(float(row["value"]) - target) / expected.noise)  # type: ignore[arg-type]
    return {f"worst_{q}_error_in_noise_units": round(v, 4) for q, v in worst.items()}


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


def _read_catalogue_rows(store: ObjectStore, key: str) -> list[dict[str, object]]:
    from astropy.table import Table

    with tempfile.TemporaryDirectory() as directory:
        table = Table.read(store.get_file(key, Path(directory) / "catalogue.fits"))
        return [dict(zip(table.colnames, row)) for row in table.iterrows()]


def run_demo(*, work_dir: Path | None = None, night: str = DEMO_NIGHT, seed: int = 0, startup_timeout_s: float = 300.0) -> int:
    """Run the demo night; print where its outputs are and one JSON line; return the exit status."""
    started = time.perf_counter()
    console = Console(stderr=True)
    work_dir = work_dir or Path(tempfile.mkdtemp(prefix="nightshift-night-"))
    with LocalNight(work_dir) as local:
        store = local.start_s3()
        os.environ.update(store.config.to_env())  # the flow's tasks read the store from the environment
        truth = simulate_night(store, night, seed=seed, malformed=True)
        science, not_installed = science_service_commands()
        commands = [ingest_command(), *(tilestats_command(f"tilestats-{s.name}", s.band_names) for s in SIMULATED_SURVEYS), *science]
        with console.status(f"starting the local S3 server and {len(commands)} services"):
            failed = local.start_services(commands, timeout_s=startup_timeout_s)
        if "ingest" in failed:
            console.print(f"[red]the ingest service did not start:[/red] {failed['ingest']}")
            return 1
        for name, reason in {**not_installed, **failed}.items():
            console.print(f"[yellow]skipping {name}[/yellow]: {reason}")
        config = NightConfig(
            surveys=SIMULATED_SURVEYS,
            ingest_target=local.services["ingest"].target,
            services=tuple(ServiceEndpoint(name=name, target=s.target) for name, s in local.services.items() if name != "ingest"),
            skipped_services={**not_installed, **{name: f"did not start: {reason[:300]}" for name, reason in failed.items()}},
            tiles_per_task=128,
        )
        from nightshift.orchestration.nightly import NightIncomplete, nightly  # imports Prefect: after the services are up

        progress = Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console)
        try:
            with progress, listening(_ProgressBars(progress)):
                summary = nightly(config=config, night=night)
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
        tasks: dict[str, dict[str, object]] = {}
        for task in summary.tasks:
            tasks[task.task] = {"tiles": task.tiles, "rows": task.rows, "infer_calls": task.calls, "model": task.model}
            print(f"  {task.task}: {task.tiles} tiles -> {task.rows} catalogue rows ({task.model})")
            if task.task == "tilestats":
                fits_key = next(k for k in task.catalogue_keys if k.endswith(".fits"))
                tasks[task.task]["score"] = tilestats_score(_read_catalogue_rows(store, fits_key), truth)
    line = {
        "night": night, "complete": summary.complete, "run_id": summary.run_id, "tasks": tasks,
        "inputs": len(summary.inputs), "quarantined": len(summary.quarantined),
        "skipped_services": sorted(name for name, _ in summary.skipped_services),
        "wall_s": round(time.perf_counter() - started, 1), "work_dir": str(work_dir),
    }
    print(json.dumps(line, sort_keys=True))
    sys.stdout.flush()
    return 0
