"""``nightshift-bubbles``: simulate, train, tune, evaluate, infer, serve and benchmark the bubbles service; the demo night's kit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nightshift.core.command import CommandLine, Inputs

__all__ = ["main", "build_parser"]

_PRESETS = ("tiny", "default", "paper")


def _synth(args: argparse.Namespace) -> int:
    from nightshift.bubbles.workflows import write_simulated

    print(json.dumps(write_simulated(args.output, preset=args.preset, count=args.count, seed=args.seed), sort_keys=True))
    return 0


def _train(args: argparse.Namespace) -> int:
    from nightshift.bubbles.workflows import train_and_package

    summary = train_and_package(preset=args.preset, overrides=args.set, seed=args.seed, output=args.output,
                                resume=args.resume, ship=args.ship)
    print(json.dumps(summary, sort_keys=True, default=float))
    return 0


def _tune(args: argparse.Namespace) -> int:
    from nightshift.bubbles.config import preset
    from nightshift.bubbles.tune import tune
    from nightshift.core.bench import report

    config = preset(args.preset).with_overrides(args.set)
    report(tune(config, seed=args.seed, trials=args.trials, epochs=args.epochs, storage=args.storage, study_name=args.study_name),
           args.output / "tune.json")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from nightshift.bubbles.realdata import DEFAULT_REAL_DIR
    from nightshift.bubbles.workflows import evaluate_model
    from nightshift.core.bench import report

    figures = evaluate_model(weights=args.weights, seed=args.seed, count=args.count, output=args.output,
                             real_dir=None if args.no_real else args.real_dir or DEFAULT_REAL_DIR)
    report(figures, args.output / "evaluation.json")
    return 0


def _register_real(args: argparse.Namespace) -> int:
    from nightshift.bubbles.registration import register_composites

    for fitted in register_composites(args.real_dir, args.output):
        print(json.dumps(fitted, sort_keys=True), flush=True)
    return 0


def _calibrate_real(args: argparse.Namespace) -> int:
    from nightshift.bubbles.calibrate import calibration_report
    from nightshift.core.bench import report

    report(calibration_report(args.real_dir, args.output, count=args.count, seed=args.seed), args.output / "calibration.json")
    return 0


def _finetune_real(args: argparse.Namespace) -> int:
    from nightshift.bubbles.finetune import FinetuneSettings, leave_one_field_out_finetune
    from nightshift.bubbles.workflows import load_model
    from nightshift.core.bench import report

    def load():
        model, config, _ = load_model(args.weights)
        return model, config

    settings = FinetuneSettings(epochs=args.epochs, simulated_fields=args.simulated_fields)
    report(leave_one_field_out_finetune(load, args.real_dir, settings, seed=args.seed, log=lambda line: print(line, file=sys.stderr)),
           args.output / "finetune.json")
    return 0


def _infer(args: argparse.Namespace) -> int:
    from nightshift.bubbles.workflows import infer_files

    inputs = Inputs(args.inputs)
    print(json.dumps(infer_files(inputs, output=args.output, weights=args.weights, score_threshold=args.threshold), sort_keys=True))
    return inputs.exit_status()


def _serve(port: int | None) -> None:
    from nightshift.bubbles.servicer import BubblesModel
    from nightshift.core.server import serve_from_environment

    serve_from_environment(lambda store: BubblesModel(store=store), service="bubbles", port=port)


def _bench(args: argparse.Namespace) -> int:
    from nightshift.bubbles.bench import benchmark
    from nightshift.core.bench import report

    report(benchmark(tiles=args.tiles, batch_size=args.batch_size, seed=args.seed), args.output / "bench.json")
    return 0


def build_parser() -> CommandLine:
    """The command line."""
    from nightshift.bubbles.night import score_night, simulate_night
    from nightshift.bubbles.realdata import DEFAULT_REAL_DIR, REGISTRATION_DIR

    cli = CommandLine("nightshift-bubbles", __doc__, distribution="nightshift-bubbles")

    synth = cli.command("synth", _synth, "write simulated fields (FITS per band, Galactic CAR WCS) and their truth catalogues")
    cli.output(synth, "bubbles-synth", "directory for the fields and truth")
    synth.add_argument("--preset", choices=_PRESETS, default="default", help="field size and content (default: default)")
    synth.add_argument("--count", type=int, default=4)
    cli.seed(synth, 2_000_007)

    train = cli.command("train", _train, "train a model; writes weights, card, history and a resumable checkpoint")
    train.add_argument("--preset", choices=_PRESETS, default="default")
    cli.seed(train, 7)
    cli.overrides(train)
    cli.output(train, "bubbles-train", "run directory")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output")
    train.add_argument("--ship", action="store_true", help="replace the package's shipped default weights and card")

    tune = cli.command("tune", _tune, "optuna TPE search of learning rate, weight decay and the two batch sizes for validation F2")
    tune.add_argument("--preset", choices=_PRESETS, default="default")
    cli.seed(tune, 7)
    cli.overrides(tune)
    tune.add_argument("--trials", type=int, default=20, help="finished trials the study should hold (earlier runs' included)")
    tune.add_argument("--epochs", type=int, default=5, help="epochs per trial")
    tune.add_argument("--storage", type=Path, default=None, help="SQLite file keeping the study so a later call resumes it")
    tune.add_argument("--study-name", default=None, help="study name in --storage (default: <model name>-tune)")
    cli.output(tune, "bubbles-tune", "directory for tune.json")

    evaluate = cli.command("evaluate", _evaluate, "score a model and the classical baseline; prints one JSON line")
    cli.weights(evaluate)
    cli.seed(evaluate, 7)
    evaluate.add_argument("--count", type=int, default=None, help="held-out simulated fields (default: the config's test_fields)")
    cli.output(evaluate, "bubbles-evaluation", "directory for evaluation.json and plots")
    cli.real_data(evaluate, DEFAULT_REAL_DIR)

    register = cli.command("register-real", _register_real, "fit the real composites' scale and centre to MWP DR1 rings; "
                                                            "writes one FITS header per field (default: the package's)")
    register.add_argument("--real-dir", type=Path, default=DEFAULT_REAL_DIR, help="folder of the real composites and MWP DR1 CSV")
    cli.output(register, str(REGISTRATION_DIR), "folder for <composite stem>.hdr")

    calibrate = cli.command("calibrate-real", _calibrate_real, "the simulated sky rendered as composites against the real composites' "
                                                              "statistics, before and after the calibration; writes calibration.json/png")
    calibrate.add_argument("--real-dir", type=Path, default=DEFAULT_REAL_DIR, help="folder of the real composites")
    calibrate.add_argument("--count", type=int, default=6, help="simulated fields per real composite")
    cli.seed(calibrate, 7)
    cli.output(calibrate, "bubbles-calibration", "directory for calibration.json and calibration.png")

    tune_real = cli.command("finetune-real", _finetune_real, "leave-one-field-out fine-tuning on the real composites (one model "
                                                             "per composite, scored on it); prints one JSON line, ships nothing")
    cli.weights(tune_real, "starting weights (default: shipped)")
    tune_real.add_argument("--real-dir", type=Path, default=DEFAULT_REAL_DIR, help="folder of the real composites and MWP DR1 CSV")
    tune_real.add_argument("--epochs", type=int, default=10)
    tune_real.add_argument("--simulated-fields", type=int, default=16, help="simulated training fields mixed in, rendered as composites")
    cli.seed(tune_real, 7)
    cli.output(tune_real, "bubbles-finetune", "directory for finetune.json")

    infer = cli.command("infer", _infer, "find bubbles in FITS fields (2 bands) or 8/24 um colour composites; writes a catalogue")
    cli.inputs(infer, "FITS files (one with 2 planes, or pairs given as A.fits,B.fits) or JPEG/PNG composites")
    cli.output(infer, "bubbles-infer", "directory for bubbles.{fits,ecsv,csv} and bubbles_{galactic,icrs}.reg")
    cli.weights(infer)
    cli.threshold(infer)

    cli.serve_command(_serve)

    bench = cli.command("bench", _bench, "service Infer vs bare model throughput; prints one JSON line")
    bench.add_argument("--tiles", type=int, default=64)
    bench.add_argument("--batch-size", type=int, default=16)
    cli.seed(bench, 7)
    cli.output(bench, "bubbles-bench", "directory for bench.json")

    night = cli.night_commands(lambda args: simulate_night(args.output, args.seed, fields=args.fields), score_night,
                               "GLIMPSE-like 8 + 24 um fields, MWP DR1 reference")
    night.add_argument("--fields", type=int, default=2, help="simulated fields of 768 x 768 px, 129 tiles each (default 2)")
    return cli


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    return build_parser().main(argv)


if __name__ == "__main__":
    sys.exit(main())
