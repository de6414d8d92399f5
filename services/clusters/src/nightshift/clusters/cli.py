"""``nightshift-clusters``: synth, train, evaluate, infer, serve, bench, simulate-night and score-night.

Run ``nightshift-clusters COMMAND --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from nightshift.clusters.config import PRESETS, ClustersConfig, get_config

__all__ = ["main"]

WEIGHTS_DIR = Path(__file__).with_name("weights")


def _config(args: argparse.Namespace) -> ClustersConfig:
    overrides = dict(item.split("=", 1) for item in args.set)
    if args.seed is not None:
        overrides["seed"] = str(args.seed)
    return get_config(args.preset, overrides=overrides)


def _add_config_options(parser: argparse.ArgumentParser, default_preset: str = "default") -> None:
    parser.add_argument("--preset", default=default_preset, choices=sorted(PRESETS), help="configuration preset")
    parser.add_argument("--seed", type=int, default=None, help="seed of the simulated sky and the training")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field (JSON value), e.g. --set epochs=5 --set 'filters=[8,16]'")


def _store_from_env():
    from nightshift.core.store import ObjectStore, StoreConfig

    return ObjectStore(StoreConfig.from_env()) if os.environ.get("NIGHTSHIFT_S3_ENDPOINT") else None


def _synth(args: argparse.Namespace) -> None:
    import healpy as hp
    import numpy as np

    from nightshift.clusters.datasets import simulated_sky
    from nightshift.clusters.patches import build_splits
    from nightshift.clusters.simulate import ClusterTruth
    from nightshift.core.catalog import Column, write_catalog

    config = _config(args)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    sky = simulated_sky(config)
    hp.write_map(str(output / "sky_maps.fits"), list(sky.maps), coord="G", column_names=list(config.band_names),
                 column_units=[b.unit for b in config.bands], dtype=np.float32, overwrite=True)
    truth: ClusterTruth = sky.truth
    columns = [Column("glon", "deg"), Column("glat", "deg"), Column("m500_msun", "solMass"), Column("z"),
               Column("theta500_arcmin", "arcmin"), Column("y5r500_arcmin2", "arcmin2"), Column("snr"),
               Column("base_cell"), Column("psz2_analogue"), Column("radius_arcsec", "arcsec")]
    arrays = truth.to_arrays()
    rows = [{**{k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in arrays.items()},
             "radius_arcsec": float(truth.theta500_arcmin[i] * 60.0)} for i in range(len(truth))]
    write_catalog(rows, columns, output / "truth", frame="galactic", radius_arcsec="radius_arcsec",
                  meta={"PRESET": config.preset, "SEED": config.seed, "NSIDE": config.nside})
    splits = build_splits(sky, config)
    arrays = {}
    for name, patches in splits.items():
        arrays.update(patches.to_arrays(f"{name}_"))
    np.savez_compressed(output / "patches.npz", **arrays)
    (output / "config.json").write_text(config.to_json() + "\n")
    print(json.dumps({"output": str(output), "clusters": len(truth), **{f"{k}_patches": len(v) for k, v in splits.items()}}))


def _train(args: argparse.Namespace) -> None:
    from nightshift.clusters.train import train_model
    from nightshift.core.registry import ModelRegistry

    config = _config(args)
    store = _store_from_env() if args.register else None
    if args.register and store is None:
        sys.exit("--register needs an object store: set NIGHTSHIFT_S3_ENDPOINT and its credentials")
    registry = ModelRegistry(store, "clusters") if store is not None else None

    def report(epoch: int, total: int, metrics: dict[str, float]) -> None:
        print(json.dumps({"epoch": epoch, "total_epochs": total, **metrics}), flush=True)

    checkpoints = Path(args.checkpoints or f"runs/clusters-{config.preset}-seed{config.seed}")
    result = train_model(config, output_dir=Path(args.output), checkpoint_dir=checkpoints,
                         resume_dir=Path(args.resume) if args.resume else None, progress=report, registry=registry, cache=True)
    print(json.dumps({"weights": str(result.weights_path), "card": str(result.card_path), "version": result.version,
                      **result.metrics}))


def _evaluate(args: argparse.Namespace) -> None:
    from nightshift.clusters.evaluate import evaluate_command

    figures = evaluate_command(weights=Path(args.weights) if args.weights else None,
                               overrides=dict(item.split("=", 1) for item in args.set), seed=args.seed,
                               cells=args.cells, output=Path(args.output))
    print(json.dumps(figures, sort_keys=True, default=float), flush=True)


def _infer(args: argparse.Namespace) -> None:
    from nightshift.clusters.infer import infer_healpix_file

    summary = infer_healpix_file(Path(args.maps), weights=Path(args.weights) if args.weights else None,
                                    cells=[int(c) for c in args.cells.split(",")] if args.cells else None,
                                    output=Path(args.output), nest=args.nest)
    print(json.dumps(summary, sort_keys=True), flush=True)


def _serve(args: argparse.Namespace) -> None:
    from nightshift.clusters.servicer import ClustersModel
    from nightshift.core.server import serve_from_environment

    serve_from_environment(lambda store: ClustersModel(store=store), service="clusters", port=args.port)


def _bench(args: argparse.Namespace) -> None:
    import dataclasses

    from nightshift.clusters.datasets import simulated_data
    from nightshift.clusters.patches import image_tiles
    from nightshift.clusters.bundle import bundled_weights
    from nightshift.clusters.servicer import ClustersModel
    from nightshift.core import bench
    from nightshift.core.s3server import start_local_s3

    with start_local_s3("rclone") as server:
        store = server.store()
        model = ClustersModel(store=store)
        config = dataclasses.replace(model.config, validation_cells=())
        patches = simulated_data(config, ("test",), cache=True).splits["test"]
        count = min(args.tiles, len(patches))
        subset = dataclasses.replace(patches, **{f.name: getattr(patches, f.name)[:count] for f in dataclasses.fields(patches)})
        tiles = image_tiles(subset, config, field="bench", store=store, inline_limit_bytes=0)
        figures = bench.benchmark_service(model, tiles, store=store, batch_size=args.batch_size)
    figures["weights"] = bundled_weights().name
    bench.report(figures, Path(args.output) / "bench.json")


def _simulate_night(args: argparse.Namespace) -> None:
    from nightshift.clusters.night import DEFAULT_RADIUS_DEG, DEFAULT_SEED, simulate_night

    overrides = dict(item.split("=", 1) for item in args.set)
    summary = simulate_night(Path(args.out), DEFAULT_SEED if args.seed is None else args.seed,
                             radius_deg=DEFAULT_RADIUS_DEG if args.radius_deg is None else args.radius_deg, overrides=overrides)
    print(json.dumps(summary), flush=True)


def _score_night(args: argparse.Namespace) -> None:
    from nightshift.clusters.night import score_night

    print(json.dumps(score_night(Path(args.kit), Path(args.catalogue))), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nightshift-clusters", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="simulate a sky: HEALPix maps, truth catalogue and patch splits")
    _add_config_options(synth, "tiny")
    synth.add_argument("--output", default="clusters-synth", help="output directory")
    synth.set_defaults(run=_synth)

    train = commands.add_parser("train", help="train a model on the simulated sky")
    _add_config_options(train)
    train.add_argument("--output", default="clusters-model", help="directory of the model file and its JSON card")
    train.add_argument("--checkpoints", default=None, help="per-epoch checkpoints (default runs/clusters-PRESET-seedN)")
    train.add_argument("--resume", default=None, help="checkpoint directory to resume from")
    train.add_argument("--register", action="store_true", help="register the model in the object store's registry")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="completeness and purity on held-out simulated cells, vs the baseline")
    evaluate.add_argument("--seed", type=int, default=None, help="seed of the simulated sky (default: the model's)")
    evaluate.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                          help="override a field of the model's config for the scored sky, e.g. --set random_clusters=8000")
    evaluate.add_argument("--weights", default=None, help="a .keras model file (default: the shipped model)")
    evaluate.add_argument("--cells", choices=("test", "held-out"), default="held-out",
                          help="score on the test cells only or on validation + test cells")
    evaluate.add_argument("--output", default="clusters-eval", help="directory of the plot, JSON and catalogues")
    evaluate.set_defaults(run=_evaluate)

    infer = commands.add_parser("infer", help="detect clusters in HEALPix maps (FITS) and write a catalogue")
    infer.add_argument("maps", help="HEALPix FITS file with one column per band, in the model's band order")
    infer.add_argument("--weights", default=None, help="a .keras model file (default: the shipped model)")
    infer.add_argument("--cells", default=None, help="comma-separated nside-2 NESTED cells (default: whole sky)")
    infer.add_argument("--nest", action="store_true", help="the file is NESTED even if its header says otherwise")
    infer.add_argument("--output", default="clusters-infer", help="output directory")
    infer.set_defaults(run=_infer)

    serve = commands.add_parser("serve", help="serve nightshift.v1.TaskService over gRPC")
    serve.add_argument("--port", type=int, default=int(os.environ.get("NIGHTSHIFT_GRPC_PORT", "50051")))
    serve.set_defaults(run=_serve)

    bench = commands.add_parser("bench", help="service vs bare-model throughput on a local S3 server")
    bench.add_argument("--tiles", type=int, default=256, help="tiles to send")
    bench.add_argument("--batch-size", type=int, default=32, help="tiles per Infer call")
    bench.add_argument("--output", default="clusters-bench", help="directory of the JSON figures")
    bench.set_defaults(run=_bench)

    simulate_night = commands.add_parser("simulate-night", help="write the demo night's partial-sky HEALPix maps, night.json and truth")
    simulate_night.add_argument("--out", required=True, help="directory of the night kit")
    simulate_night.add_argument("--seed", type=int, default=None,
                                help="seed of the night, default 0 (its sky is the simulator's seed N + 1, never the training sky 0)")
    simulate_night.add_argument("--radius-deg", type=float, default=None, help="radius of the observed disc, default 12 deg")
    simulate_night.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                                help="override a field of the shipped model's config for the sky, e.g. --set nside=256")
    simulate_night.set_defaults(run=_simulate_night)

    score_night = commands.add_parser("score-night", help="score the night's merged cluster catalogue against the kit's truth")
    score_night.add_argument("--kit", required=True, help="directory simulate-night wrote")
    score_night.add_argument("--catalogue", required=True, help="the night's cluster catalogue (FITS table)")
    score_night.set_defaults(run=_score_night)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
