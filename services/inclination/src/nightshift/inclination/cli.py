"""``nightshift-inclination``: simulate, train, evaluate, measure files, serve and benchmark.

    nightshift-inclination synth --galaxies 200 --output sims/         simulated tiles + truth (+ FITS with --fits)
    nightshift-inclination train --preset default --seed 0 --ship    train; --ship replaces the bundled model
    nightshift-inclination train --extend-from M.keras --set ensemble_size=2   add members to a trained ensemble
    nightshift-inclination evaluate                                  score the bundled model on held-out galaxies
    nightshift-inclination fit-baseline                              fit the baseline's isophote and q0 on training galaxies
    nightshift-inclination infer galaxy1.fits galaxy2.fits           measure FITS cut-outs, write a catalogue
    nightshift-inclination simulate-night --output kit/              the demo night's mosaic of simulated galaxies + truth
    nightshift-inclination score-night --kit kit/ --catalogue C.fits score the night's catalogue against that truth
    nightshift-inclination serve                                     the gRPC service (store from NIGHTSHIFT_S3_*)
    nightshift-inclination bench                                     service vs bare-model throughput

TensorFlow is imported only by the commands that need it, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from nightshift.core.command import CommandLine, Inputs
from nightshift.core.errors import InvalidInput
from nightshift.core.inputs import check_pixels, has_celestial_wcs, read_fits_image
from nightshift.inclination.config import PRESETS, build_config
from nightshift.inclination.simulate import BANDS, WAVELENGTH_UM, stack_truth

__all__ = ["main"]

FITS_UNIT = "nanomaggy"


def _overrides(pairs: dict[str, str]) -> dict[str, object]:
    try:
        return {name: json.loads(value) for name, value in pairs.items()}
    except json.JSONDecodeError as error:
        raise InvalidInput(f"--set: a value is not JSON ({error.msg}), e.g. epochs=20 or filters=[16,32]") from None


def _synth(args: argparse.Namespace) -> int:
    from nightshift.inclination.train import simulate_split

    config = build_config(preset=args.preset)
    galaxies = simulate_split(config, seed=args.seed, split=args.split, galaxies=args.galaxies)
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    truth = stack_truth(galaxies.parameters)
    np.savez_compressed(out / "galaxies.npz", images=galaxies.images, bands=np.array(BANDS), **truth)
    from astropy.table import Table

    Table(truth).write(out / "truth.ecsv", overwrite=True)
    if args.fits:
        from astropy.io import fits

        from nightshift.inclination.night import tan_wcs

        rng = np.random.default_rng([args.seed, 99])
        for k, (image, p) in enumerate(zip(galaxies.images, galaxies.parameters)):
            size = config.image_size
            header = tan_wcs(size, size, rng.uniform(0, 360), np.degrees(np.arcsin(rng.uniform(-1, 1))), p.pixel_scale_arcsec).to_header()
            header["BUNIT"] = FITS_UNIT
            header["BANDS"] = ",".join(BANDS)
            fits.PrimaryHDU(image, header=header).writeto(out / f"galaxy-{k:05d}.fits", overwrite=True)
    print(json.dumps({"galaxies": len(galaxies), "out": str(out), "labels": {l: int((galaxies.labels == l).sum()) for l in set(galaxies.labels)}}))
    return 0


def _train(args: argparse.Namespace) -> int:
    from nightshift.inclination.servicer import BUNDLED_CARD, BUNDLED_WEIGHTS
    from nightshift.inclination.train import train

    config = build_config(preset=args.preset, **_overrides(args.set))
    registry = None
    if args.register:
        from nightshift.core.registry import ModelRegistry
        from nightshift.core.store import ObjectStore
        from nightshift.inclination.infer import smoke_check

        registry = ModelRegistry(ObjectStore.from_env(), "inclination", smoke=smoke_check)
    result = train(config, seed=args.seed, output_dir=args.output, registry=registry, extend_from=args.extend_from,
                   extend_card=args.extend_card)
    if args.ship:
        shutil.copyfile(result.weights, BUNDLED_WEIGHTS)
        shutil.copyfile(result.card, BUNDLED_CARD)
    print(json.dumps({"weights": str(result.weights), "card": str(result.card), "shipped": args.ship,
                      "registered": result.registered.version if result.registered else None, **result.metrics}, sort_keys=True))
    return 0


def _predictor(args: argparse.Namespace):
    from nightshift.inclination.infer import Predictor
    from nightshift.inclination.servicer import BUNDLED_CARD, BUNDLED_WEIGHTS

    weights = Path(args.weights) if args.weights else BUNDLED_WEIGHTS
    card = Path(args.card) if args.card else weights.with_suffix(".json") if args.weights else BUNDLED_CARD
    return Predictor.from_files(weights, card), str(weights) if args.weights else f"bundled:{weights.name}"


def _evaluate(args: argparse.Namespace) -> int:
    from nightshift.inclination.evaluate import evaluate_estimates, evaluate_robustness, write_report
    from nightshift.inclination.train import ensemble_members, simulate_split

    started = time.perf_counter()
    predictor, model_name = _predictor(args)
    config = predictor.config
    n_galaxies = args.galaxies or config.test_galaxies
    galaxies = simulate_split(config, seed=args.seed, split="test", galaxies=n_galaxies)
    estimates = predictor.measure(galaxies.images)
    result = evaluate_estimates(galaxies, predicted_deg=estimates.inclination_deg, uncertainty_deg=estimates.uncertainty_deg,
                                reject_probability=estimates.reject_probability)
    context = {"model": model_name, "dataset": "simulated-test", "seed": args.seed, "galaxies": len(galaxies),
               "image_size": config.image_size, "augmented_copies": config.augmented_copies, "ensemble_size": config.ensemble_size,
               "members": len(ensemble_members(predictor.ensemble)[0]),
               "seed_published": {"rms_deg": 3.09, "mae_deg": 2.12, "best_single_rms_deg": 3.34},
               "wall_s": round(time.perf_counter() - started, 1)}
    if args.robustness:
        context["robustness"] = evaluate_robustness(
            lambda overrides: simulate_split(config, seed=args.seed, split="test", galaxies=n_galaxies, overrides=overrides),
            predictor.measure)
        context["robustness_wall_s"] = round(time.perf_counter() - started - context["wall_s"], 1)
    figures = write_report(result, args.output, context=context,
                           title=f"{len(galaxies)} held-out simulated galaxies ({config.image_size}x{config.image_size}, seed {args.seed})")
    print(json.dumps(figures, sort_keys=True, default=float))
    return 0


def _fit_baseline(args: argparse.Namespace) -> int:
    from nightshift.inclination.baseline import fit_isophote_and_q0
    from nightshift.inclination.train import simulate_split

    galaxies = simulate_split(build_config(preset="default"), seed=args.seed, split="train", galaxies=args.galaxies)
    fitted = fit_isophote_and_q0(galaxies.images, galaxies.inclination_deg, galaxies.accepted,
                                 levels=np.arange(2.0, 8.01, 0.5), q0s=np.arange(0.0, 0.401, 0.02))
    print(json.dumps({**fitted, "dataset": "simulated-train", "seed": args.seed, "galaxies": len(galaxies)}, sort_keys=True))
    return 0


_MIN_CUTOUT_PX = 16
"""The smallest cut-out side measured: below it the galaxy's shape is a few pixels of PSF."""


def _read_cutout(path: Path, size: int) -> tuple[np.ndarray, str, int]:
    """A g, r, i tile resampled to (3, size, size), its WCS header and its native size, from a FITS
    (3, H, W) cube or three extensions named G, R, I."""
    from astropy.io import fits

    from nightshift.core.inputs import FitsImage
    from nightshift.inclination.preprocess import resample

    image = read_fits_image(path)
    if not (image.data.ndim == 3 and image.data.shape[0] == len(BANDS)):
        with fits.open(path) as hdus:
            names = {h.name.lower() for h in hdus}
        if not set(BANDS) <= names:
            raise InvalidInput(f"{path}: image of shape {image.data.shape}; expected a (3, H, W) g, r, i cube in the primary HDU "
                               "or extensions named G, R, I")
        planes = [read_fits_image(path, extension=band) for band in BANDS]
        if len({p.data.shape for p in planes}) != 1:
            raise InvalidInput(f"{path}: the G, R, I extensions differ in shape ({', '.join(str(p.data.shape) for p in planes)})")
        image = FitsImage(path, np.stack([p.data for p in planes]), planes[1].header)
    check_pixels(path, image.data, min_px=_MIN_CUTOUT_PX, planes=len(BANDS), header=image.header, units=(FITS_UNIT, "nanomaggies"))
    cube = image.data
    if cube.shape[1] != cube.shape[2]:
        raise InvalidInput(f"{path}: a {cube.shape[1]}x{cube.shape[2]} cut-out; expected a square one centred on the galaxy")
    wcs_header = ""
    if has_celestial_wcs(image.header):
        from astropy.wcs import WCS

        wcs_header = WCS(image.header, naxis=2).celestial.to_header().tostring()
    return resample(cube[None], size)[0], wcs_header, cube.shape[-1]


def _infer(args: argparse.Namespace) -> int:
    from nightshift.inclination.infer import merge_duplicates, tile_centre_sky, write_measurements

    predictor, model_name = _predictor(args)
    size = predictor.config.image_size
    inputs = Inputs(args.inputs)
    tiles = inputs.each(lambda path: _read_cutout(path, size))
    estimates = predictor.measure(np.stack([tile for _, (tile, _, _) in tiles]))
    rows = []
    for k, (path, (_, header, native_size)) in enumerate(tiles):
        sky = tile_centre_sky(header, native_size)
        rows.append({"name": path.stem, "ra": sky[0] if sky else float("nan"), "dec": sky[1] if sky else float("nan"),
                     "inclination": float(estimates.inclination_deg[k]), "inclination_err": float(estimates.uncertainty_deg[k]),
                     "reject_probability": float(estimates.reject_probability[k]), "n_tiles": 1})
    located = [r for r in rows if np.isfinite(r["ra"])]
    merged = merge_duplicates(located, radius_arcsec=args.merge_radius_arcsec) + [r for r in rows if not np.isfinite(r["ra"])]
    meta = {"MODEL": model_name, "MERGEARC": args.merge_radius_arcsec, "INPUT": ",".join(str(p) for p, _ in tiles)}
    files = write_measurements(merged, args.output / "inclination", meta=meta)
    print(json.dumps({**inputs.summary(), "tiles": len(rows), "galaxies": len(merged), "files": [str(f) for f in files]}))
    return inputs.exit_status()


def _serve(port: int | None) -> None:
    from nightshift.core.server import serve_from_environment
    from nightshift.inclination.servicer import InclinationModel

    serve_from_environment(lambda store: InclinationModel(store=store), service="inclination", port=port)


def _bench(args: argparse.Namespace) -> int:
    from nightshift.core import bench
    from nightshift.core.s3server import start_local_s3
    from nightshift.core.tiles import make_tile
    from nightshift.core.devices import configure_tensorflow
    from nightshift.inclination.infer import Predictor
    from nightshift.inclination.servicer import BUNDLED_CARD, BUNDLED_WEIGHTS, InclinationModel
    from nightshift.inclination.train import simulate_split
    from nightshift.v1 import tile_pb2

    device = configure_tensorflow()
    bands = [tile_pb2.Band(name=b, wavelength_um=WAVELENGTH_UM[b], unit=FITS_UNIT) for b in BANDS]
    with start_local_s3("rclone") as s3:
        store = s3.store()
        model = InclinationModel(store=store)
        galaxies = simulate_split(build_config(preset="default", image_size=model.spec.height), seed=args.seed, split="bench",
                                  galaxies=args.tiles)
        tiles = [make_tile(image, bands=bands, survey="simulated", field=f"bench-{k:05d}", store=store, inline_limit_bytes=0)
                 for k, image in enumerate(galaxies.images)]
        figures = bench.benchmark_service(model, tiles, store=store, batch_size=args.batch_size, device=device)
        # the served model is unloaded when the benchmark's server stops: the shipped ensemble, loaded again
        figures.update(_member_cost(Predictor.from_files(BUNDLED_WEIGHTS, BUNDLED_CARD), galaxies.images, batch_size=args.batch_size))
    bench.report(figures, args.output / "bench.json")
    return 0


def _member_cost(predictor, images: np.ndarray, *, batch_size: int, rounds: int = 3) -> dict[str, object]:
    """Seconds per galaxy of the whole ensemble (its members in one batched pass) against its first member alone,
    bare (tiles in memory), on the same batches, best of ``rounds`` interleaved passes."""
    from nightshift.inclination.infer import Predictor
    from nightshift.inclination.model import build_ensemble
    from nightshift.inclination.train import ensemble_members

    regressors, classifiers = ensemble_members(predictor.ensemble)
    config = predictor.config
    single = Predictor(build_ensemble(regressors[:1], classifiers[:1], image_size=config.image_size),
                       config=config.with_overrides(ensemble_size=1), uncertainty_scale=predictor.uncertainty_scale)
    batches = [images[k : k + batch_size] for k in range(0, len(images), batch_size)]
    timings: dict[str, list[float]] = {"ensemble": [], "one": []}
    for which in (predictor, single):
        which.measure(batches[0])  # untimed: graph tracing
    for _ in range(rounds):
        for name, which in (("ensemble", predictor), ("one", single)):
            started = time.perf_counter()
            for batch in batches:
                which.measure(batch)
            timings[name].append(time.perf_counter() - started)
    ensemble_s, one_s = min(timings["ensemble"]) / len(images), min(timings["one"]) / len(images)
    return {"members": len(regressors), "ensemble_ms_per_galaxy": 1e3 * ensemble_s, "one_member_ms_per_galaxy": 1e3 * one_s,
            "member_cost_ratio": ensemble_s / one_s}


def _parser() -> CommandLine:
    from nightshift.inclination.evaluate import HELD_OUT_SEED
    from nightshift.inclination.night import DEFAULT_GALAXIES, score_night, simulate_night

    cli = CommandLine("nightshift-inclination", __doc__, distribution="nightshift-inclination")

    synth = cli.command("synth", _synth, "write simulated galaxies with their truth")
    synth.add_argument("--preset", choices=sorted(PRESETS), default="default", help="configuration giving the image size")
    synth.add_argument("--galaxies", type=int, default=100, help="number of galaxies (default 100)")
    synth.add_argument("--split", choices=("train", "validation", "test", "bench"), default="test", help="random stream of the seed")
    cli.seed(synth)
    synth.add_argument("--fits", action="store_true", help="also write one FITS cube (g, r, i) with a TAN WCS per galaxy")
    cli.output(synth, "inclination-sims", "output directory")

    train = cli.command("train", _train, "train on simulated galaxies")
    train.add_argument("--preset", choices=sorted(PRESETS), default="default")
    cli.seed(train)
    cli.overrides(train)
    cli.output(train, "inclination-model", "directory for the model, its card and checkpoints (resumes)")
    train.add_argument("--register", action="store_true", help="register in the object store of NIGHTSHIFT_S3_*")
    train.add_argument("--ship", action="store_true", help="replace the model bundled in the package")
    train.add_argument("--extend-from", type=Path, metavar="ENSEMBLE.keras",
                       help="keep this ensemble's members as they are and train only the new ones up to --set ensemble_size=N "
                            "(same preset, overrides and --seed as its card; e.g. the bundled "
                            "src/nightshift/inclination/weights/inclinet.keras)")
    train.add_argument("--extend-card", type=Path, metavar="CARD.json", help="its card (default: beside it, .json)")

    evaluate = cli.command("evaluate", _evaluate, "score a model on held-out simulated galaxies")
    infer = cli.command("infer", _infer, "measure FITS cut-outs and write a catalogue")
    for command in (evaluate, infer):
        cli.weights(command, "model file (default: the bundled model)")
        command.add_argument("--card", type=Path, help="its JSON card (default: beside the weights)")
    evaluate.add_argument("--galaxies", type=int, help="held-out galaxies (default: the model's test_galaxies)")
    evaluate.add_argument("--robustness", action="store_true",
                          help="also score the same galaxies re-simulated with 1.5x seeing and 1.5x sky noise (about 3x the time)")
    cli.seed(evaluate, HELD_OUT_SEED)
    cli.output(evaluate, "inclination-evaluation", "directory for evaluation.json and residuals.png")
    cli.inputs(infer, "FITS files: a (3, H, W) g, r, i cube or extensions G, R, I")
    infer.add_argument("--merge-radius-arcsec", type=float, default=5.0, help="tiles closer than this are one galaxy")
    cli.output(infer, "inclination-infer", "directory for inclination.{fits,ecsv,csv} and inclination_{galactic,icrs}.reg")

    fit_baseline = cli.command("fit-baseline", _fit_baseline, "fit the baseline's isophote level and q0 on training galaxies; one JSON line")
    fit_baseline.add_argument("--galaxies", type=int, default=2000, help="training galaxies (default 2000)")
    cli.seed(fit_baseline)

    night = cli.night_commands(lambda args: simulate_night(args.output, args.seed, galaxies=args.galaxies), score_night,
                               "a g, r, i mosaic of simulated galaxies")
    night.add_argument("--galaxies", type=int, default=DEFAULT_GALAXIES,
                       help=f"galaxies, rounded up to fill a square-ish grid (default {DEFAULT_GALAXIES})")

    cli.serve_command(_serve)

    bench = cli.command("bench", _bench, "service vs bare-model throughput over gRPC with tiles by reference")
    bench.add_argument("--tiles", type=int, default=256)
    bench.add_argument("--batch-size", type=int, default=32)
    cli.seed(bench)
    cli.output(bench, "inclination-bench", "directory for bench.json")
    return cli


def main(argv: list[str] | None = None) -> int:
    return _parser().main(argv)


if __name__ == "__main__":
    sys.exit(main())
