"""``nightshift-core``: the shared runtime's own commands.

    nightshift-core local-s3 [--kind rclone|ceph] [--data-dir DIR]   run a local S3 server, print its settings
    nightshift-core demo [--tiles N]                                  the foundation slice, end to end
    nightshift-core new-secret                                        print a new token-signing secret
    nightshift-core token --subject NAME --role ROLE [--role ...]     print a token signed with NIGHTSHIFT_AUTH_SECRET
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from nightshift.core.auth import ROLES, issue_token, make_secret, secret_from_env
from nightshift.core.client import TaskClient
from nightshift.core.s3server import start_local_s3
from nightshift.core.server import BackgroundServer
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
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
