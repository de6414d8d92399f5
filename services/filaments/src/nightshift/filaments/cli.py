"""``nightshift-filaments``: simulate, train, evaluate, infer, serve and benchmark the filaments service,
compare the simulated sky with the real one (``sky-match``), and simulate and score a night for the demo
(``simulate-night``, ``score-night``)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from nightshift.core.command import CommandLine, Inputs
from nightshift.core.errors import NotFound
from nightshift.core.inputs import FitsImage, check_pixels, read_fits_image

__all__ = ["main", "build_parser"]


def _store_from_env():
    from nightshift.core.store import ObjectStore

    return ObjectStore.from_env() if os.environ.get("NIGHTSHIFT_S3_ENDPOINT") else None


def _synth(args: argparse.Namespace) -> int:
    from astropy.io import fits

    from nightshift.filaments.config import default_real_data_dir, preset
    from nightshift.filaments.realdata import load_real_cutout, real_data_available
    from nightshift.filaments.simulate import map_statistics, simulate_maps

    args.output.mkdir(parents=True, exist_ok=True)
    statistics = []
    for index, sky in enumerate(simulate_maps(args.count, args.size, args.seed)):
        header = fits.Header({"BUNIT": "cm-2", "SEED": args.seed, "INDEX": index})
        fits.PrimaryHDU(sky.column_density, header=header).writeto(args.output / f"map_{index:04d}_nh2.fits", overwrite=True)
        fits.PrimaryHDU(sky.mask.astype("uint8"), header=header).writeto(args.output / f"map_{index:04d}_mask.fits", overwrite=True)
        statistics.append(map_statistics(sky.column_density, sky.mask))
    summary = {"maps": args.count, "size_px": args.size, "seed": args.seed, "directory": str(args.output),
               "simulated": {k: sorted(s[k] for s in statistics)[len(statistics) // 2] for k in statistics[0]} if statistics else {}}
    if real_data_available(default_real_data_dir()):
        real = load_real_cutout(default_real_data_dir()).columns(preset("default").real_train_columns)  # never the scored columns
        summary["real"] = map_statistics(real.column_density, real.mask)
    (args.output / "statistics.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(json.dumps(summary, sort_keys=True))
    return 0


def _sky_match(args: argparse.Namespace) -> int:
    import numpy as np

    from nightshift.core.bench import report
    from nightshift.filaments.config import default_real_data_dir, preset
    from nightshift.filaments.realdata import RealCutout, load_real_cutout, real_data_available
    from nightshift.filaments.simulate import simulate_maps
    from nightshift.filaments.skymatch import histogram_overlap, plot_sky_match, sky_statistics

    real_dir = args.real_dir or default_real_data_dir()
    if not real_data_available(real_dir):
        raise NotFound(f"sky-match needs the real Hi-GAL cut-out: none in {real_dir} (use --real-dir)")
    cutout, config = load_real_cutout(real_dir), preset("default")

    def statistics(part: RealCutout) -> dict:
        return sky_statistics([np.where(part.usable, part.column_density, np.nan)], [part.mask])

    # The simulator is matched to the training columns only; the validation columns, which score the
    # model, are shown beside them as a check that was never tuned on.
    real, real_validation = statistics(cutout.columns(config.real_train_columns)), statistics(cutout.columns(config.real_validation_columns))
    maps = simulate_maps(args.count, args.size, args.seed)
    simulated = sky_statistics([m.column_density for m in maps], [m.mask for m in maps])
    label = f"simulated ({args.count} maps {args.size} px, seed {args.seed})"
    plot = plot_sky_match(real, simulated, args.output / "sky_match.png", simulated_label=label)
    figures: dict = {name: {k: v for k, v in stats.items() if isinstance(v, float)}
                     for name, stats in (("real", real), ("real_validation", real_validation), ("simulated", simulated))}
    figures["real_columns"], figures["real_validation_columns"] = list(config.real_train_columns), list(config.real_validation_columns)
    for name, reference in (("", real), ("validation_", real_validation)):
        figures[f"{name}histogram_overlap"] = histogram_overlap(reference["histogram"], simulated["histogram"])
        figures[f"{name}background_histogram_overlap"] = histogram_overlap(reference["histogram_background"], simulated["histogram_background"])
    figures["k"] = [float(k) for k in real["k"]]
    figures["power_ratio_simulated_over_real"] = [float(r) for r in simulated["power"] / real["power"]]
    figures.update(maps=args.count, size_px=args.size, seed=args.seed, plot=str(plot))
    report(figures, args.output / "sky_match.json")
    return 0


def _train(args: argparse.Namespace) -> int:
    from nightshift.core.registry import ModelRegistry
    from nightshift.filaments.config import preset
    from nightshift.filaments.model import WEIGHTS_DIR, smoke_check
    from nightshift.filaments.train import train_model

    overrides = dict(args.set)
    if args.seed is not None:
        overrides["seed"] = str(args.seed)
    if args.no_real:
        overrides["use_real"] = "false"
    config = preset(args.preset, **overrides)
    store = _store_from_env()
    registry = ModelRegistry(store, "filaments", smoke=smoke_check) if store is not None else None
    output = args.output or Path("runs") / f"filaments-{args.preset}"
    result = train_model(config, output_dir=output, registry=registry, real_data_dir=args.real_dir, evaluate=not args.no_evaluate)
    if args.ship:
        for old in [*WEIGHTS_DIR.glob("*.safetensors"), *WEIGHTS_DIR.glob("*.json")]:
            old.unlink()
        shutil.copy2(result.weights, WEIGHTS_DIR / result.weights.name)
        shutil.copy2(result.weights.with_suffix(".json"), WEIGHTS_DIR / result.weights.with_suffix(".json").name)
    print(json.dumps({"weights": str(result.weights), "version": result.version, "shipped": args.ship,
                      "metrics": result.card["metrics"]}, sort_keys=True, default=float))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from nightshift.core.bench import report
    from nightshift.core.devices import torch_device
    from nightshift.filaments.baseline import filfinder_score
    from nightshift.filaments.config import HIGAL_BEAM_FWHM_PX, default_real_data_dir
    from nightshift.filaments.evaluate import (dice, error_breakdown, evaluate_real, evaluate_simulated, plot_curves,
                                               plot_side_by_side)
    from nightshift.filaments.infer import find_filaments, predict_probability
    from nightshift.filaments.model import load_checkpoint
    from nightshift.filaments.realdata import load_real_cutout, real_data_available

    network, config, card = load_checkpoint(args.weights, torch_device())
    config = _with_views(config, args.test_time_views)
    simulated, _ = evaluate_simulated(network, config, maps=args.test_maps, measure_border=True, filfinder=True)
    results = [simulated]
    # Headline figures at the top level are the simulated ones; ``simulated``/``real`` hold each dataset's,
    # ``baseline`` (Hessian ridge) and ``filfinder`` each baseline's simulated ones with the real ones
    # under ``baseline.real`` and ``filfinder.real``.
    figures = {"model": card["name"], "weights": str(args.weights or "bundled"), "test_time_views": config.test_time_views,
               "threshold": config.threshold, "simulated": simulated.figures()}
    figures.update({k: simulated.figures()[k] for k in ("dice", "iou", "ap")})
    figures["baseline"] = dict(simulated.figures()["baseline"])
    figures["filfinder"] = dict(simulated.figures()["filfinder"])
    real_dir = args.real_dir or default_real_data_dir()
    args.output.mkdir(parents=True, exist_ok=True)
    if not args.no_real and real_data_available(real_dir):
        cutout = load_real_cutout(real_dir)
        real, probability = evaluate_real(network, config, cutout, measure_border=True, filfinder=True)
        results.append(real)
        figures["real"] = {**real.figures(), "columns": list(config.real_validation_columns)}
        figures["baseline"]["real"] = real.figures()["baseline"]
        figures["filfinder"]["real"] = real.figures()["filfinder"]
        validation = cutout.columns(config.real_validation_columns)
        train = cutout.columns(config.real_train_columns)  # trained on: the generalisation gap, beside the validation's errors
        figures["real"]["errors"] = error_breakdown(probability, validation.mask, validation.usable, config.threshold)
        trained = predict_probability(network, train.column_density, config)
        figures["real"]["errors_training_columns"] = {
            "dice": dice((trained >= config.threshold)[train.usable], train.mask[train.usable]),
            **error_breakdown(trained, train.mask, train.usable, config.threshold)}
        roi, _ = find_filaments(probability, validation.column_density, threshold=config.threshold, min_area_px=0)
        filfinder_mask = filfinder_score(validation.column_density, real.filfinder_parameters,
                                         beam_fwhm_px=HIGAL_BEAM_FWHM_PX) >= 0.5
        figures["side_by_side"] = str(plot_side_by_side(
            validation.column_density, validation.mask, roi, args.output / "real_side_by_side.png",
            title=f"Hi-GAL cut-out, validation columns {config.real_validation_columns[0]}-{config.real_validation_columns[1] - 1}",
            filfinder_mask=filfinder_mask))
    figures["curves"] = str(plot_curves(results, args.output / "curves.png"))
    report(figures, args.output / "evaluation.json")
    return 0


def _select_inference(args: argparse.Namespace) -> int:
    from nightshift.core.bench import report
    from nightshift.core.devices import torch_device
    from nightshift.filaments.config import default_real_data_dir
    from nightshift.filaments.model import load_checkpoint
    from nightshift.filaments.realdata import load_real_cutout, real_data_available
    from nightshift.filaments.selection import VIEWS_TOLERANCE, choose, selection_scores

    network, config, card = load_checkpoint(args.weights, torch_device())
    real_dir = args.real_dir or default_real_data_dir()
    cutout = load_real_cutout(real_dir) if not args.no_real and real_data_available(real_dir) else None
    figures = {"model": card["name"], "weights": str(args.weights or "bundled"),
               "shipped": {"test_time_views": config.test_time_views, "threshold": config.threshold},
               **selection_scores(network, config, cutout, maps=args.maps)}
    views, threshold = choose(figures)
    figures["best"] = {"test_time_views": views, "threshold": threshold}
    views, threshold = choose(figures, tolerance=VIEWS_TOLERANCE)
    figures["chosen"] = {"test_time_views": views, "threshold": threshold, "views_tolerance": VIEWS_TOLERANCE}
    figures["best_threshold_by_views"] = {str(v): choose(figures, views=v)[1] for v in sorted(map(int, figures["simulated_selection"]))}
    args.output.mkdir(parents=True, exist_ok=True)
    report(figures, args.output / "inference_selection.json")
    return 0


def _select_training(args: argparse.Namespace) -> int:
    from nightshift.core.bench import report
    from nightshift.core.devices import torch_device
    from nightshift.filaments.config import default_real_data_dir
    from nightshift.filaments.model import load_checkpoint
    from nightshift.filaments.realdata import load_real_cutout, real_data_available
    from nightshift.filaments.selection import compare_training_runs

    real_dir = args.real_dir or default_real_data_dir()
    if not real_data_available(real_dir):
        raise NotFound(f"select-training needs the real Hi-GAL cut-out: none in {real_dir} (use --real-dir)")
    _, shipped, _ = load_checkpoint()
    runs: dict[str, list[Path]] = {}
    for variant, weights in args.runs:
        runs.setdefault(variant, []).append(Path(weights))
    figures = compare_training_runs(runs, load_real_cutout(real_dir), test_time_views=shipped.test_time_views,
                                    threshold=shipped.threshold, maps=args.maps, device=torch_device())
    args.output.mkdir(parents=True, exist_ok=True)
    report(figures, args.output / "training_selection.json")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from nightshift.filaments.config import default_real_data_dir
    from nightshift.filaments.finetune import finetune
    from nightshift.filaments.realdata import load_real_cutout, real_data_available

    real_dir = args.real_dir or default_real_data_dir()
    if not real_data_available(real_dir):
        raise NotFound(f"finetune needs the real Hi-GAL cut-out: none in {real_dir} (use --real-dir)")
    result = finetune(args.weights, load_real_cutout(real_dir), args.output, epochs=args.epochs, learning_rate=args.learning_rate,
                      progress=lambda h: print(json.dumps(h, sort_keys=True), file=sys.stderr))
    print(json.dumps(result, sort_keys=True))
    return 0


def _with_views(config, views: int | None):
    """``config`` with ``--test-time-views`` when given (else the model's own setting)."""
    return config if views is None else config.with_overrides({"test_time_views": views})


def _read_map(path: Path, min_px: int) -> FitsImage:
    from nightshift.filaments.config import UNIT

    image = read_fits_image(path)
    check_pixels(path, image.data, min_px=min_px, planes=1, header=image.header, units=(UNIT, "cm^-2", "cm**-2", "1/cm2"), needs_wcs=False)  # write_outputs warns
    return image


def _infer(args: argparse.Namespace) -> int:
    from nightshift.core.devices import torch_device
    from nightshift.filaments.infer import find_filaments, predict_probability, write_outputs
    from nightshift.filaments.model import bundled_weights, load_checkpoint

    weights = args.weights or bundled_weights()
    network, config, card = load_checkpoint(weights, torch_device())
    config = _with_views(config, args.test_time_views)
    inputs = Inputs(args.inputs)
    maps = []
    for path, image in inputs.each(lambda path: _read_map(path, config.patch_px)):
        probability = predict_probability(network, image.data, config)
        roi, filaments = find_filaments(probability, image.data, threshold=config.threshold, min_area_px=config.min_instance_px)
        meta = {"MODEL": card["name"], "WEIGHTS": Path(weights).name, "THRESH": config.threshold,
                "MINAREA": config.min_instance_px, "TTAVIEWS": config.test_time_views, "INPUT": str(path)}
        written = write_outputs(args.output / path.stem, probability, roi, filaments, image.header.tostring(), meta=meta)
        maps.append({"input": str(path), "filaments": len(filaments), "roi_fraction": float(roi.mean()),
                     "outputs": [str(p) for p in written]})
    print(json.dumps({**inputs.summary(), "maps": maps}, sort_keys=True))
    return inputs.exit_status()


def _serve(port: int | None) -> None:
    from nightshift.core.server import serve_from_environment
    from nightshift.filaments.servicer import FilamentsModel

    serve_from_environment(lambda store: FilamentsModel(store=store), service="filaments", port=port)


def _bench(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from nightshift.core.bench import benchmark_service, report
    from nightshift.core.devices import device_label
    from nightshift.core.s3server import start_local_s3
    from nightshift.core.tiles import make_tile
    from nightshift.filaments.config import BAND, UNIT
    from nightshift.filaments.servicer import FilamentsModel
    from nightshift.filaments.simulate import simulate_maps
    from nightshift.v1 import tile_pb2

    model = FilamentsModel(test_time_views=args.test_time_views)
    size = model.spec.height
    with start_local_s3("rclone") as server:
        store = server.store()
        store.ensure_bucket()
        model.store = store
        maps = simulate_maps(args.tiles, size, seed=7)
        tiles = [make_tile(m.column_density[None], bands=[tile_pb2.Band(name=BAND, wavelength_um=0.0, unit=UNIT)],
                           survey="simulated", field=f"bench-{i}", store=store, inline_limit_bytes=0)
                 for i, m in enumerate(maps)]
        device = device_label()
        figures = benchmark_service(model, tiles, store=store, batch_size=args.batch_size or model.spec.preferred_batch_tiles,
                                    rounds=args.rounds, device=device)
    figures["tile_px"] = size
    figures["test_time_views"] = model.config.test_time_views
    figures["torch_threads"] = torch.get_num_threads()
    figures["pixels_per_s"] = float(np.round(figures["tiles_per_s"] * size * size))
    report(figures, args.output / "bench.json")
    return 0


def build_parser() -> CommandLine:
    """The command line."""
    from nightshift.filaments.config import TEST_TIME_VIEWS, default_real_data_dir
    from nightshift.filaments.night import DEFAULT_FIELD_PX, DEFAULT_FIELDS, score_night, simulate_night

    cli = CommandLine("nightshift-filaments", __doc__, distribution="nightshift-filaments")
    real_dir = default_real_data_dir()

    def views(command) -> None:
        command.add_argument("--test-time-views", type=int, choices=TEST_TIME_VIEWS,
                             help="dihedral views averaged per inference patch (default: the model config's test_time_views)")

    synth = cli.command("synth", _synth, "write simulated N(H2) maps with their true filament masks (FITS)")
    cli.output(synth, None, "directory for map_NNNN_{nh2,mask}.fits and statistics.json")
    synth.add_argument("--count", type=int, default=8, help="maps to write (default 8)")
    synth.add_argument("--size", type=int, default=256, help="side of each map in pixels (default 256)")
    cli.seed(synth)

    match = cli.command("sky-match", _sky_match, "compare simulated maps with the real cut-out: log N(H2) histograms, background power spectra")
    cli.output(match, None, "directory for sky_match.png and sky_match.json")
    match.add_argument("--count", type=int, default=8, help="simulated maps (default 8)")
    match.add_argument("--size", type=int, default=256, help="side of each simulated map in pixels (default 256)")
    cli.seed(match)
    match.add_argument("--real-dir", type=Path, help=f"the real Hi-GAL cut-out (default: {real_dir})")

    train = cli.command("train", _train, "train a U-Net (registers it when NIGHTSHIFT_S3_ENDPOINT is set)")
    train.add_argument("--preset", choices=("tiny", "default", "paper"), default="default")
    cli.overrides(train)
    cli.seed(train, default=None)
    cli.output(train, None, "run directory: weights, card, checkpoint.pt (resumes from it; default runs/filaments-<preset>)",
               required=False)
    cli.real_data(train, real_dir)
    train.add_argument("--ship", action="store_true", help="replace the package's shipped default model with the result")
    train.add_argument("--no-evaluate", action="store_true",
                       help="score nothing after training (runs compared by select-training: their cards hold no test figure)")

    evaluate = cli.command("evaluate", _evaluate, "score a model and the classical baselines, Hessian ridge and FilFinder "
                                                  "(simulated test maps, real validation columns)")
    cli.weights(evaluate)
    evaluate.add_argument("--test-maps", type=int, help="held-out simulated maps (default: the model config's test_maps)")
    views(evaluate)
    cli.real_data(evaluate, real_dir)
    cli.output(evaluate, "filaments-evaluation", "directory for evaluation.json, curves.png, real_side_by_side.png")

    select = cli.command("select-inference", _select_inference,
                         "Dice by test-time views and threshold on data evaluate never reports (simulated selection maps, "
                         "real training columns)")
    cli.weights(select)
    select.add_argument("--maps", type=int, default=16, help="simulated selection maps (default 16)")
    cli.real_data(select, real_dir)
    cli.output(select, "filaments-selection", "directory for inference_selection.json")

    compare = cli.command("select-training", _select_training,
                          "compare trainings on the real training columns held out from them and simulated selection maps, "
                          "at the shipped model's test-time views and threshold (never the validation columns)")
    compare.add_argument("--run", dest="runs", nargs=2, action="append", required=True, metavar=("VARIANT", "WEIGHTS"),
                         help="a trained run's .safetensors (card beside it) under a variant's name; repeat (seeds of one variant "
                              "share its name)")
    compare.add_argument("--maps", type=int, default=8, help="simulated selection maps (default 8)")
    compare.add_argument("--real-dir", type=Path, default=None, metavar="DIR", help=f"the real data (default: {real_dir})")
    cli.output(compare, "filaments-training-selection", "directory for training_selection.json")

    tune = cli.command("finetune", _finetune, "a short fine-tune on the real training columns, the epoch chosen on a held-out "
                                               "block of them and the simulated selection maps (epoch 0: the starting weights)")
    cli.weights(tune)
    tune.add_argument("--epochs", type=int, default=4, help="epochs (default 4)")
    tune.add_argument("--learning-rate", type=float, default=3e-4, help="Adam's step, cosine-annealed (default 3e-4)")
    tune.add_argument("--real-dir", type=Path, default=None, metavar="DIR", help=f"the real data (default: {real_dir})")
    cli.output(tune, "filaments-finetune", "directory for epoch_<k>.safetensors with their cards and finetune.json")

    infer = cli.command("infer", _infer, "find filaments in your own N(H2) FITS maps (cm^-2)")
    cli.inputs(infer, "FITS files, each one 2-D N(H2) map (its WCS is used when present)")
    cli.output(infer, "filaments-infer", "directory for <stem>_probability.fits, _roi.fits, _filaments.{fits,ecsv,csv} "
                                         "and _filaments_{galactic,icrs}.reg")
    cli.weights(infer)
    views(infer)

    cli.serve_command(_serve)

    bench = cli.command("bench", _bench, "service Infer over gRPC (tiles by S3 reference) against the bare model")
    bench.add_argument("--tiles", type=int, default=32, help="tiles per pass (default 32)")
    bench.add_argument("--batch-size", type=int, help="tiles per call (default: the service's preferred batch)")
    bench.add_argument("--rounds", type=int, default=3, help="passes per path; the best is reported")
    views(bench)
    cli.output(bench, "filaments-bench", "directory for bench.json")

    night = cli.night_commands(lambda args: simulate_night(args.output, args.seed, fields=args.fields, size_px=args.size), score_night,
                               "Hi-GAL-like N(H2) fields")
    night.add_argument("--fields", type=int, default=DEFAULT_FIELDS, help=f"fields (default {DEFAULT_FIELDS})")
    night.add_argument("--size", type=int, default=DEFAULT_FIELD_PX, help=f"side of each field in pixels (default {DEFAULT_FIELD_PX})")
    return cli


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    return build_parser().main(argv)


if __name__ == "__main__":
    sys.exit(main())
