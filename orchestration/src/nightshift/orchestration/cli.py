"""``nightshift``: the nightly survey flow and its deployments.

    nightshift [night] [--tasks T,...]        the demo night: local S3 + services, a simulated night, one JSON line
    nightshift night --prefect-server [--prefect-workers N]
                                              the same night through a persistent Prefect server on PostgreSQL and
                                              N process workers (default 2), all started and stopped by the command
    nightshift serve --config night.json      serve the nightly (cron) and training deployments from this process
                                              (named nightly-served, train-<service>-served)
    nightshift deploy --config night.json --work-pool NAME [--image IMAGE]
                                              the deployments (nightly, train-<service>) on the Prefect server, run by
                                              the pool's workers from the installed package; creates a missing pool
                                              as a Kubernetes pool with the base job template
    nightshift work-pool-template             print the Kubernetes base job template (GPU, node selector, tolerations)
    nightshift serve-tilestats --bands B ...  serve the tile-statistics data-quality task for tiles of these bands
    nightshift bench [--quick] [--gpu]        every benchmark in one table; writes bench/results/latest.{json,md}

The object store comes from ``NIGHTSHIFT_S3_*`` (see ``nightshift-core local-s3``). A night
configuration file is a JSON ``NightConfig`` (see ``nightshift.orchestration.config``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _prefect_defaults() -> None:
    """Prefect quiet (its INFO lines would drown the progress display; the report keeps the record) and patient."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect's 20 s for its embedded server to start is too short on a loaded 2-core machine (a night timed out so)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _night(args: argparse.Namespace) -> int:
    _prefect_defaults()
    from nightshift.orchestration.demo import run_demo

    tasks = [t for t in args.tasks.split(",") if t]
    return run_demo(work_dir=args.work_dir, night=args.night, seed=args.seed, tasks=tasks, startup_timeout_s=args.startup_timeout_s,
                    prefect_workers=args.prefect_workers if args.prefect_server else 0, record=args.record)


def _load_config(path: Path):  # type: ignore[no-untyped-def]
    from nightshift.orchestration.config import NightConfig

    return NightConfig.model_validate_json(path.read_text())


def _serve(args: argparse.Namespace) -> int:
    from prefect import serve

    from nightshift.orchestration.deployments import flow_deployments

    serve(*flow_deployments(_load_config(args.config), nightly_cron=args.cron, timezone=args.timezone, served=True))
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from prefect import deploy

    from nightshift.orchestration.deployments import base_job_template, flow_deployments

    deployments = flow_deployments(_load_config(args.config), nightly_cron=args.cron, timezone=args.timezone,
                                   job_variables=json.loads(args.job_variables))
    print(asyncio.run(_ensure_work_pool(args.work_pool, base_job_template())), file=sys.stderr)
    deploy(*deployments, work_pool_name=args.work_pool, image=args.image, build=False, push=False)
    return 0


async def _ensure_work_pool(name: str, template: dict[str, object]) -> str:
    """Create the Kubernetes work pool ``name`` with ``template`` unless it exists; say which.

    An existing pool keeps its template: the worker created it from the same file, or its operator
    changed it (``prefect work-pool update``), and a process pool has no Kubernetes template at all.
    """
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=name, type="kubernetes", base_job_template=template))
        except ObjectAlreadyExists:
            pool = await client.read_work_pool(name)
            return f"work pool {name!r} ({pool.type}) exists: its job template is kept"
    return f"work pool {name!r} created (kubernetes) with the base job template"


def _work_pool_template(args: argparse.Namespace) -> int:
    from nightshift.orchestration.deployments import base_job_template

    print(json.dumps(base_job_template(), indent=2))
    return 0


def _serve_tilestats(args: argparse.Namespace) -> int:
    from nightshift.core.logs import configure_logging
    from nightshift.core.server import ServerOptions, run
    from nightshift.core.store import ObjectStore
    from nightshift.core.tilestats import TileStatisticsModel

    configure_logging("tilestats")
    run(TileStatisticsModel(bands=tuple(args.bands)), store=ObjectStore.from_env(), options=ServerOptions.from_env(port=args.port))
    return 0


def main(argv: list[str] | None = None) -> int:
    from nightshift.orchestration.config import DEFAULT_NIGHTLY_CRON
    from nightshift.orchestration.demo import DEMO_NIGHT
    from nightshift.orchestration.launcher import SCIENCE_TASKS
    from nightshift.core.server import reuse_freed_memory
    from nightshift.orchestration import benchmarks, results

    parser = argparse.ArgumentParser(prog="nightshift", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    night = commands.add_parser("night", help="the demo night, end to end on this machine (the default command)")
    night.add_argument("--night", default=DEMO_NIGHT, help="night to simulate and process, YYYY-MM-DD (default: %(default)s)")
    night.add_argument("--work-dir", type=Path, help="keeps the store's files and the service logs (default: a new temporary directory); "
                                                     "the same directory again re-runs the night")
    night.add_argument("--seed", type=int, default=0, help="seed of the simulated night")
    night.add_argument("--tasks", default=",".join(SCIENCE_TASKS), help="science tasks to run, comma-separated (default: %(default)s)")
    night.add_argument("--startup-timeout-s", type=float, default=300.0, help="time the services get to become SERVING")
    night.add_argument("--prefect-server", action="store_true",
                       help="run the flow through a persistent Prefect server on PostgreSQL and process workers started for the "
                            "night (default: in this process, Prefect's embedded server)")
    night.add_argument("--prefect-workers", type=int, default=2, help="process workers with --prefect-server (default: %(default)s)")
    night.add_argument("--record", type=Path, help="also write the night's JSON summary here, with the code version, date and machine "
                                                   "load (the README's demo-night row is rendered from bench/results/night.json)")
    night.set_defaults(run=_night)
    for name, handler, help_text in (("serve", _serve, "serve the nightly and training deployments from this process"),
                                     ("deploy", _deploy, "the deployments on the Prefect server, for a work pool's workers")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", type=Path, required=True, help="JSON NightConfig: surveys, ingest and service addresses")
        sub.add_argument("--cron", default=DEFAULT_NIGHTLY_CRON, help="schedule of the nightly run (default: %(default)s)")
        sub.add_argument("--timezone", default="UTC", help="time zone of the schedule (default: %(default)s)")
        sub.set_defaults(run=handler)
        if name == "deploy":
            sub.add_argument("--work-pool", required=True, help="work pool of the deployments (a missing one is created as a "
                                                                "Kubernetes pool with the base job template)")
            sub.add_argument("--image", help="image of the flow runs, with nightshift-orchestration installed "
                                             "(default: the pool template's image; not for a process pool)")
            sub.add_argument("--job-variables", default="{}", help='JSON job variables, e.g. \'{"gpu_count": 1}\'')
    template = commands.add_parser("work-pool-template", help="print the Kubernetes base job template with GPU variables")
    template.set_defaults(run=_work_pool_template)
    tilestats = commands.add_parser("serve-tilestats", help="serve the tile-statistics data-quality task (TaskService)")
    tilestats.add_argument("--bands", nargs="+", required=True, help="band names of the tiles it accepts, in order")
    tilestats.add_argument("--port", type=int, default=None, help="port (default: NIGHTSHIFT_GRPC_PORT or 50051; 0: any free)")
    tilestats.set_defaults(run=_serve_tilestats)
    bench = commands.add_parser("bench", help="every benchmark: services, ingest, transport, batching, store, the night; "
                                              "one table, bench/results/latest.{json,md}")
    benchmarks.add_arguments(bench)
    bench.set_defaults(run=benchmarks.main)
    table = commands.add_parser("results", help="the README's results table, rendered from the committed results files "
                                                "(--check: only compare)")
    results.add_arguments(table)
    table.set_defaults(run=results.main)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] or ["night"])
    reuse_freed_memory()  # this process calls the services with megabyte requests, as they receive them
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
