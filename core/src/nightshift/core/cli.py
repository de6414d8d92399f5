"""``nightshift-core``: the shared runtime's own commands.

    nightshift-core local-s3 [--kind rclone|ceph] [--data-dir DIR]   run a local S3 server, print its settings
    nightshift-core demo [--tiles N]                                  the foundation slice, end to end
    nightshift-core new-secret                                        print a new token-signing secret
    nightshift-core token --subject NAME --role ROLE [--role ...]     print a token signed with NIGHTSHIFT_AUTH_SECRET
    nightshift-core check-shared-memory --target HOST:PORT            can this caller send a service pixels in shared memory?
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import grpc
import numpy as np

from nightshift.core.auth import ROLES, issue_token, make_secret, secret_from_env
from nightshift.core.client import TaskClient
from nightshift.core.codec import dtype_from_proto
from nightshift.core.s3server import start_local_s3
from nightshift.core.server import TASK_SERVICE_NAME, BackgroundServer
from nightshift.core.shm import DEFAULT_SHARED_MEMORY_DIR, SharedMemoryRegion, shared_memory_domain
from nightshift.core.tiles import make_tile
from nightshift.core.tilestats import TileStatisticsModel
from nightshift.v1 import tile_pb2

__all__ = ["main"]


def _local_s3(args: argparse.Namespace) -> int:
    server = start_local_s3(args.kind, args.data_dir)
    try:
        server.store()  # creates the bucket
        for name, value in server.config.to_env().items():
            print(f"export {name}={value}")
        print(f"# {args.kind} S3 server on 127.0.0.1:{server.port}; Ctrl-C stops it", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        server.stop()
    return 0


def _simulated_field(rng: np.random.Generator, size: int, background: float, noise: float, missing_rows: int) -> np.ndarray:
    """One band with a known background and Gaussian noise level, and a stripe of missing rows."""
    band = rng.normal(background, noise, size=(size, size)).astype(np.float32)
    band[:missing_rows] = np.nan
    return band


def _demo(args: argparse.Namespace) -> int:
    """Store simulated tiles in a real S3 server, measure them through a real gRPC service, check the truth."""
    rng = np.random.default_rng(args.seed)
    bands = [tile_pb2.Band(name="g", wavelength_um=0.48, unit="adu"), tile_pb2.Band(name="r", wavelength_um=0.62, unit="adu")]
    truth = {}
    started = time.perf_counter()
    with start_local_s3("rclone") as s3:
        store = s3.store()
        tiles = []
        for index in range(args.tiles):
            levels = {"g": (100.0 + index, 5.0), "r": (200.0 + 2 * index, 8.0)}
            pixels = np.stack([_simulated_field(rng, 256, *levels[b.name], missing_rows=32) for b in bands])
            tile = make_tile(pixels, bands=bands, survey="demo", field=f"field-{index:03d}", store=store, inline_limit_bytes=0)
            tiles.append(tile)
            truth[tile.tile_id] = levels
        model = TileStatisticsModel(bands=("g", "r"))
        with BackgroundServer(model, store=store) as server, TaskClient(server.target) as client:
            response = client.infer(tiles)
        print(f"{'tile':<26}{'band':<6}{'background (true)':>22}{'noise (true)':>18}{'missing':>9}")
        worst = 0.0
        for result in response.results:
            values = {m.quantity: m.value for m in result.measurements}
            for band in ("g", "r"):
                background, noise = truth[result.tile_id][band]
                got_bg, got_noise = values[f"{band}.background"], values[f"{band}.noise"]
                worst = max(worst, abs(got_bg - background) / noise, abs(got_noise - noise) / noise)
                print(f"{result.tile_id:<26}{band:<6}{got_bg:>12.2f} ({background:>6.1f}){got_noise:>10.2f} ({noise:>4.1f})"
                      f"{values[f'{band}.missing_fraction']:>9.3f}")
        summary = {
            "tiles": len(tiles), "model": f"{response.model.name}:{response.model.version}",
            "worst_error_in_noise_units": round(worst, 4), "seconds": round(time.perf_counter() - started, 2),
        }
    print(json.dumps(summary))
    if worst > 0.1:
        print("demo: measured statistics disagree with the simulated truth", file=sys.stderr)
        return 1
    return 0


def _new_secret(args: argparse.Namespace) -> int:
    print(make_secret())
    return 0


def _token(args: argparse.Namespace) -> int:
    secret = secret_from_env()
    if secret is None:
        print("nightshift-core token: set NIGHTSHIFT_AUTH_SECRET (or NIGHTSHIFT_AUTH_SECRET_FILE) to the services' secret",
              file=sys.stderr)
        return 2
    print(issue_token(secret, subject=args.subject, roles=args.role, lifetime_s=args.days * 86400))
    return 0


_CHECK_TILE_PX = 64  # the side of the check's tiles where the service takes any size


def _check_shared_memory(args: argparse.Namespace) -> int:
    """Describe the service, compare its shared-memory domain with this caller's, then send the same random tiles
    in shared memory (no inline fallback: a refusal fails the check) and inline, and say each one's fastest call."""
    if args.tiles < 1 or args.repeats < 1:
        print("check-shared-memory: --tiles and --repeats must be at least 1", file=sys.stderr)
        return 2
    mine = shared_memory_domain(args.shm_dir)
    with TaskClient(args.target, timeout_s=args.timeout_s) as client:
        try:
            client.wait_until_serving(timeout_s=args.timeout_s, service=TASK_SERVICE_NAME)
            described = client.describe()
        except (TimeoutError, grpc.RpcError) as error:
            details = error.details() if isinstance(error, grpc.RpcError) else str(error)
            print(f"check-shared-memory: {args.target} did not answer: {details}", file=sys.stderr)
            return 1
        theirs = described.shared_memory_domain
        problem = ("the service reads no shared memory (NIGHTSHIFT_SHM_DIR=off, or its directory does not exist)" if not theirs
                   else f"{args.shm_dir} does not exist here" if not mine
                   else f"the service sees another shared-memory directory than {args.shm_dir} (its domain {theirs}, this "
                        f"caller's {mine}): run both on one host, or in one pod with one emptyDir (medium: Memory) mounted "
                        f"at {args.shm_dir} in both containers" if theirs != mine else "")
        if problem:
            print(f"check-shared-memory: {problem}", file=sys.stderr)
            return 1
        spec = described.input
        shape = (len(spec.bands), spec.height or _CHECK_TILE_PX, spec.width or _CHECK_TILE_PX)
        rng = np.random.default_rng(0)
        arrays = [rng.random(shape).astype(dtype_from_proto(spec.dtype)) for _ in range(args.tiles)]
        seconds = {}
        with SharedMemoryRegion(args.shm_dir) as region:
            for carrier, extra in (("shared_memory", {"shared_memory": region}), ("inline", {"inline_limit_bytes": 1 << 62})):
                tiles = [make_tile(a, bands=list(spec.bands), survey="check", field=f"tile-{i}", **extra) for i, a in enumerate(arrays)]
                timings = []
                for _ in range(1 + args.repeats):  # the first call of each carrier warms up, untimed
                    started = time.perf_counter()
                    try:
                        response = client.infer(tiles, inline_fallback=False)
                    except grpc.RpcError as error:
                        print(f"check-shared-memory: the service refused the tiles sent {carrier.replace('_', ' ')}: "
                              f"{error.code().name}: {error.details()}", file=sys.stderr)
                        return 1
                    timings.append(time.perf_counter() - started)
                    if len(response.results) != len(tiles):
                        print(f"check-shared-memory: {len(response.results)} results for {len(tiles)} tiles", file=sys.stderr)
                        return 1
                seconds[carrier] = min(timings[1:])
    print(json.dumps({"target": args.target, "shared_memory": "used", "domain": mine, "task": described.task,
                      "tiles": args.tiles, "tile_shape": list(shape), "bytes": int(sum(a.nbytes for a in arrays)),
                      "repeats": args.repeats,
                      "shared_memory_ms": round(1000 * seconds["shared_memory"], 2), "inline_ms": round(1000 * seconds["inline"], 2)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nightshift-core", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser("local-s3", help="run a local S3 server and print the NIGHTSHIFT_S3_* settings")
    local.add_argument("--kind", choices=("rclone", "ceph"), default="rclone")
    local.add_argument("--data-dir", type=Path, help="directory the server keeps its data in (default: a temporary one)")
    local.set_defaults(run=_local_s3)
    demo = commands.add_parser("demo", help="simulated tiles -> local S3 -> tile-statistics service -> checked against truth")
    demo.add_argument("--tiles", type=int, default=8, help="number of simulated tiles")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    commands.add_parser("new-secret", help="print a new random token-signing secret").set_defaults(run=_new_secret)
    token = commands.add_parser("token", help="print a bearer token signed with the services' secret (NIGHTSHIFT_AUTH_SECRET)")
    token.add_argument("--subject", required=True, help="who the token is for, e.g. nightly-flow")
    token.add_argument("--role", action="append", required=True, choices=ROLES, help="a role the token carries; repeat for several")
    token.add_argument("--days", type=float, default=30.0, help="validity in days")
    token.set_defaults(run=_token)
    check = commands.add_parser("check-shared-memory", help="send a service random tiles in shared memory and inline; "
                                "fails, saying why, when the service cannot read this caller's shared memory")
    check.add_argument("--target", required=True, help="the service, e.g. 127.0.0.1:50051 (its token: NIGHTSHIFT_AUTH_TOKEN)")
    check.add_argument("--shm-dir", type=Path, default=DEFAULT_SHARED_MEMORY_DIR, help="where this caller puts its regions")
    check.add_argument("--tiles", type=int, default=4, help="tiles per call")
    check.add_argument("--repeats", type=int, default=3, help="timed calls per carrier, after one untimed; the fastest is printed")
    check.add_argument("--timeout-s", type=float, default=300.0, help="how long to wait for the service to be SERVING, and per call")
    check.set_defaults(run=_check_shared_memory)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
