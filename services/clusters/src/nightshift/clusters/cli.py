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
from nightshift.core.command import CommandLine
from nightshift.core.errors import InvalidInput

__all__ = ["main"]

WEIGHTS_DIR = Path(__file__).with_name("weights")


def _config(args: argparse.Namespace) -> ClustersConfig:
    overrides = dict(args.set)
    if args.seed is not None:
        overrides["seed"] = str(args.seed)
    return get_config(args.preset, overrides=overrides)


def _add_config_options(cli: CommandLine, parser: argparse.ArgumentParser, default_preset: str = "default") -> None:
    parser.add_argument("--preset", default=default_preset, choices=sorted(PRESETS), help="configuration preset")
    cli.seed(parser, None)
    cli.overrides(parser)


def _store_from_env():
    from nightshift.core.store import ObjectStore, StoreConfig

    return ObjectStore(StoreConfig.from_env()) if os.environ.get("NIGHTSHIFT_S3_ENDPOINT") else None


def _synth(args: argparse.Namespace) -> None:
    import healpy as hp
    import numpy as np

    from nightshift.clusters.datasets import simulated_sky
    from nightshift.clusters.healpix_files import write_planck_maps
    from nightshift.clusters.patches import build_splits
    from nightshift.clusters.simulate import ClusterTruth
    from nightshift.core.catalog import Column, write_catalog

    config = _config(args)
    if args.map_nside is not None and (not args.planck_files or args.map_nside < 1 or args.map_nside & (args.map_nside - 1)):
        raise InvalidInput(f"--map-nside {args.map_nside}: expected a power of 2, with --planck-files")
    if args.planck_files and any(b.frequency_ghz <= 0 for b in config.bands):
        raise InvalidInput("--planck-files: the bands include y_map, which has no Planck frequency-map layout "
                           "(--set include_y_map=false)")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    sky = simulated_sky(config)
    if args.planck_files:
        maps = write_planck_maps(sky.maps, config.bands, output, nside=args.map_nside)
    else:
        hp.write_map(str(output / "sky_maps.fits"), list(sky.maps), coord="G", column_names=list(config.band_names),
                     column_units=[b.unit for b in config.bands], dtype=np.float32, overwrite=True)
        maps = [output / "sky_maps.fits"]
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
    print(json.dumps({"output": str(output), "maps": [str(p) for p in maps], "clusters": len(truth),
                      **{f"{k}_patches": len(v) for k, v in splits.items()}}))


def _train(args: argparse.Namespace) -> None:
    from nightshift.clusters.bundle import smoke_check
    from nightshift.clusters.train import train_model
    from nightshift.core.registry import ModelRegistry

    config = _config(args)
    store = _store_from_env() if args.register else None
    if args.register and store is None:
        raise InvalidInput("--register needs an object store: set NIGHTSHIFT_S3_ENDPOINT and its credentials")
    registry = ModelRegistry(store, "clusters", smoke=smoke_check) if store is not None else None

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
                               overrides=args.set, seed=args.seed,
                               cells=args.cells, output=Path(args.output))
    print(json.dumps(figures, sort_keys=True, default=float), flush=True)


def _cells(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        cells = [int(c) for c in text.split(",")]
    except ValueError:
        raise InvalidInput(f"--cells {text!r}: expected comma-separated nside-2 NESTED cells, 0 to 47") from None
    if not all(0 <= c < 48 for c in cells):
        raise InvalidInput(f"--cells {text!r}: nside-2 cells are 0 to 47")
    return cells


def _infer(args: argparse.Namespace) -> None:
    from nightshift.clusters.infer import infer_healpix_file

    summary = infer_healpix_file(args.maps, weights=args.weights, cells=_cells(args.cells),
                                 output=Path(args.output), nest=args.nest, overrides=args.set)
    print(json.dumps(summary, sort_keys=True), flush=True)


def _serve(port: int | None) -> None:
    from nightshift.clusters.servicer import ClustersModel
    from nightshift.core.server import serve_from_environment

    serve_from_environment(lambda store: ClustersModel(store=store), service="clusters", port=port)


def _bench(args: argparse.Namespace) -> None:
    from nightshift.clusters.bundle import bundled_weights
    from nightshift.core import bench

    nside = args.full_sky_nside
    if nside < 0 or nside & (nside - 1):
        raise InvalidInput(f"--full-sky-nside {nside}: expected a power of 2 (or 0: not run)")
    figures: dict = {}
    if not args.full_sky_only:
        figures = _bench_service(args)
    if args.full_sky_nside:
        from nightshift.clusters.fullsky import full_sky_bench

        config = ClustersConfig.from_dict(json.loads(bundled_weights().with_suffix(".json").read_text())["config"])
        figures["full_sky_files"] = full_sky_bench(config, nside=nside, cells=_cells(args.full_sky_cells),
                                                   output=Path(args.output), gnomview_patches=args.gnomview_patches)
    figures["weights"] = bundled_weights().name
    bench.report(figures, Path(args.output) / "bench.json")


def _bench_service(args: argparse.Namespace) -> dict:
    import dataclasses

    from nightshift.clusters.datasets import simulated_data
    from nightshift.clusters.patches import image_tiles
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
        return bench.benchmark_service(model, tiles, store=store, batch_size=args.batch_size)


def build_parser() -> CommandLine:
    """The command line."""
    cli = CommandLine("nightshift-clusters", __doc__, distribution="nightshift-clusters")

    synth = cli.command("synth", _synth, "simulate a sky: HEALPix maps, truth catalogue and patch splits")
    _add_config_options(cli, synth, "tiny")
    synth.add_argument("--planck-files", action="store_true",
                       help="write the maps as one Planck-layout file per band (HFI_SkyMap_<GHz>_<nside>_SIM_full.fits, "
                            "NESTED, I_STOKES + II_COV) instead of sky_maps.fits")
    synth.add_argument("--map-nside", type=int, default=None,
                       help="nside of the --planck-files maps (default: the preset's; others are healpy.ud_grade'd, one band at a time)")
    cli.output(synth, "clusters-synth", "output directory")

    train = cli.command("train", _train, "train a model on the simulated sky")
    _add_config_options(cli, train)
    cli.output(train, "clusters-model", "directory of the model file and its JSON card")
    train.add_argument("--checkpoints", default=None, help="per-epoch checkpoints (default runs/clusters-PRESET-seedN)")
    train.add_argument("--resume", default=None, help="checkpoint directory to resume from")
    train.add_argument("--register", action="store_true", help="register the model in the object store's registry")

    evaluate = cli.command("evaluate", _evaluate, "completeness and purity on held-out simulated cells, vs the baseline")
    cli.seed(evaluate, None)
    cli.overrides(evaluate)
    cli.weights(evaluate, "a .keras model file with its JSON card beside it (default: the shipped model)")
    evaluate.add_argument("--cells", choices=("test", "held-out"), default="held-out",
                          help="score on the test cells only or on validation + test cells")
    cli.output(evaluate, "clusters-eval", "directory of the plot, JSON and catalogues")

    infer = cli.command("infer", _infer, "detect clusters in HEALPix maps (FITS) and write a catalogue")
    infer.add_argument("maps", type=Path, nargs="+",
                       help="one HEALPix FITS file with one column per band, or one Planck-layout file per band "
                            "(I_STOKES column, K_CMB to 353 GHz, MJy/sr at 545/857), both in the model's band order "
                            "(100 143 217 353 545 857 GHz)")
    cli.weights(infer, "a .keras model file with its JSON card beside it (default: the shipped model)")
    cli.overrides(infer)
    infer.add_argument("--cells", default=None, help="comma-separated nside-2 NESTED cells (default: whole sky)")
    infer.add_argument("--nest", action="store_true", help="the file is NESTED even if its header says otherwise")
    cli.output(infer, "clusters-infer", "directory for clusters.{fits,ecsv,csv} and clusters_{galactic,icrs}.reg")

    cli.serve_command(_serve)

    bench = cli.command("bench", _bench, "service vs bare-model throughput on a local S3 server; the whole sky from six files")
    bench.add_argument("--tiles", type=int, default=256, help="tiles to send")
    bench.add_argument("--batch-size", type=int, default=32, help="tiles per Infer call")
    bench.add_argument("--full-sky-nside", type=int, default=0,
                       help="also infer the whole simulated sky from six Planck-layout files at this nside (e.g. 2048; "
                            "written once and cached): wall time, peak RSS, gnomview baseline (default 0: not run)")
    bench.add_argument("--full-sky-cells", default=None, help="only these nside-2 NESTED cells of it (full-sky time extrapolated)")
    bench.add_argument("--full-sky-only", action="store_true", help="skip the gRPC service benchmark")
    bench.add_argument("--gnomview-patches", type=int, default=10, help="patches the per-patch gnomview loop cuts (all bands)")
    cli.output(bench, "clusters-bench", "directory for bench.json")

    from nightshift.clusters.night import DEFAULT_RADIUS_DEG, score_night, simulate_night

    night = cli.night_commands(
        lambda args: simulate_night(args.output, args.seed, radius_deg=args.radius_deg, overrides=args.set), score_night,
        "partial-sky HEALPix maps, real reference catalogues")
    night.add_argument("--radius-deg", type=float, default=DEFAULT_RADIUS_DEG, help=f"radius of the observed disc (default {DEFAULT_RADIUS_DEG} deg)")
    cli.overrides(night)
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line."""
    return build_parser().main(argv)


if __name__ == "__main__":
    sys.exit(main())
