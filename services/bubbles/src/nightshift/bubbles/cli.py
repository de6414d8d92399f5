"""``nightshift-bubbles``: simulate, train, tune, evaluate, infer, serve and benchmark the bubbles service; the demo night's kit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

_PRESETS = ("tiny", "default", "paper")


def _overrides(pairs: list[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set {pair!r}: expected FIELD=JSON_VALUE, e.g. train_fields=8")
        key, value = pair.split("=", 1)
        result[key] = value
    return result


def _synth(args: argparse.Namespace) -> int:
    from nightshift.bubbles.workflows import write_simulated

    print(json.dumps(write_simulated(args.output, preset=args.preset, count=args.count, seed=args.seed), sort_keys=True))
    return 0


def _train(args: argparse.Namespace) -> int:
    from nightshift.bubbles.workflows import train_and_package

    summary = train_and_package(preset=args.preset, overrides=_overrides(args.set), seed=args.seed, output=args.output,
                                resume=args.resume, ship=args.ship)
    print(json.dumps(summary, sort_keys=True, default=float))
    return 0


def _tune(args: argparse.Namespace) -> int:
    from nightshift.bubbles.config import preset
    from nightshift.bubbles.tune import tune
    from nightshift.core.bench import report

    config = preset(args.preset).with_overrides(_overrides(args.set))
    report(tune(config, seed=args.seed, trials=args.trials, epochs=args.epochs, storage=args.storage, study_name=args.study_name),
           args.output / "tune.json")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from nightshift.bubbles.workflows import evaluate_model
    from nightshift.core.bench import report

    figures = evaluate_model(weights=args.weights, seed=args.seed, count=args.count, output=args.output,
                             real_dir=None if args.no_real else args.real_dir)
    report(figures, args.output / "evaluation.json")
    return 0


def _register_real(args: argparse.Namespace) -> int:
    from nightshift.bubbles.registration import register_composites

    for fitted in register_composites(args.real_dir, args.output):
        print(json.dumps(fitted, sort_keys=True), flush=True)
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

    print(json.dumps(infer_files(args.files, output=args.output, weights=args.weights, score_threshold=args.threshold), sort_keys=True))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from nightshift.bubbles.servicer import BubblesModel
    from nightshift.core.server import serve_from_environment

    serve_from_environment(lambda store: BubblesModel(store=store), service="bubbles", port=args.port)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from nightshift.bubbles.workflows import benchmark
    from nightshift.core.bench import report

    report(benchmark(tiles=args.tiles, batch_size=args.batch_size, seed=args.seed), args.output / "bench.json")
    return 0


def _simulate_night(args: argparse.Namespace) -> int:
    from nightshift.bubbles.night import simulate_night

    print(json.dumps(simulate_night(args.out, args.seed, fields=args.fields), sort_keys=True))
    return 0


def _score_night(args: argparse.Namespace) -> int:
    from nightshift.bubbles.night import score_night

    print(json.dumps(score_night(args.kit, args.catalogue), sort_keys=True, default=float))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    from nightshift.bubbles.realdata import DEFAULT_REAL_DIR, REGISTRATION_DIR

    parser = argparse.ArgumentParser(prog="nightshift-bubbles", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write simulated fields (FITS per band, Galactic CAR WCS) and their truth catalogues")
    synth.add_argument("--output", type=Path, default=Path("bubbles-synth"))
    synth.add_argument("--preset", choices=_PRESETS, default="default", help="field size and content (default: default)")
    synth.add_argument("--count", type=int, default=4)
    synth.add_argument("--seed", type=int, default=2_000_007, help="simulation seed (default: the held-out test seed of run seed 7)")
    synth.set_defaults(run=_synth)

    train = commands.add_parser("train", help="train a model; writes weights, card, history and a resumable checkpoint")
    train.add_argument("--preset", choices=_PRESETS, default="default")
    train.add_argument("--seed", type=int, default=7)
    train.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field (JSON value)")
    train.add_argument("--output", type=Path, default=Path("bubbles-train"))
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output")
    train.add_argument("--ship", action="store_true", help="replace the package's shipped default weights and card")
    train.set_defaults(run=_train)

    tune = commands.add_parser("tune", help="optuna TPE search of learning rate, weight decay and the two batch sizes for validation F2")
    tune.add_argument("--preset", choices=_PRESETS, default="default")
    tune.add_argument("--seed", type=int, default=7, help="data, training and sampler seed (the same for every trial)")
    tune.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field (JSON value)")
    tune.add_argument("--trials", type=int, default=20, help="finished trials the study should hold (earlier runs' included)")
    tune.add_argument("--epochs", type=int, default=5, help="epochs per trial")
    tune.add_argument("--storage", type=Path, default=None, help="SQLite file keeping the study so a later call resumes it")
    tune.add_argument("--study-name", default=None, help="study name in --storage (default: <model name>-tune)")
    tune.add_argument("--output", type=Path, default=Path("bubbles-tune"))
    tune.set_defaults(run=_tune)

    evaluate = commands.add_parser("evaluate", help="score a model and the classical baseline; prints one JSON line")
    evaluate.add_argument("--weights", type=Path, default=None, help="safetensors file with its .json card beside (default: shipped)")
    evaluate.add_argument("--seed", type=int, default=7, help="run seed: the held-out fields are simulated with seed 2000000 + this")
    evaluate.add_argument("--count", type=int, default=None, help="held-out simulated fields (default: the config's test_fields)")
    evaluate.add_argument("--output", type=Path, default=Path("bubbles-evaluation"))
    evaluate.add_argument("--real-dir", type=Path, default=DEFAULT_REAL_DIR, help="folder of the real composites and MWP DR1 CSV")
    evaluate.add_argument("--no-real", action="store_true", help="skip the real-data check")
    evaluate.set_defaults(run=_evaluate)

    register = commands.add_parser("register-real", help="fit the real composites' scale and centre to MWP DR1 rings; "
                                                         "writes one FITS header per field (default: the package's)")
    register.add_argument("--real-dir", type=Path, default=DEFAULT_REAL_DIR, help="folder of the real composites and MWP DR1 CSV")
    register.add_argument("--output", type=Path, default=REGISTRATION_DIR, help="folder for <composite stem>.hdr")
    register.set_defaults(run=_register_real)

    tune_real = commands.add_parser("finetune-real", help="leave-one-field-out fine-tuning on the real composites (one model per "
                                                           "composite, scored on it); prints one JSON line, ships nothing")
    tune_real.add_argument("--weights", type=Path, default=None, help="starting weights (default: shipped)")
    tune_real.add_argument("--real-dir", type=Path, default=DEFAULT_REAL_DIR)
    tune_real.add_argument("--epochs", type=int, default=10)
    tune_real.add_argument("--simulated-fields", type=int, default=16, help="simulated training fields mixed in, rendered as composites")
    tune_real.add_argument("--seed", type=int, default=7)
    tune_real.add_argument("--output", type=Path, default=Path("bubbles-finetune"))
    tune_real.set_defaults(run=_finetune_real)

    infer = commands.add_parser("infer", help="find bubbles in FITS fields (2 bands) or 8/24 um colour composites; writes a catalogue")
    infer.add_argument("files", type=Path, nargs="+", help="FITS files (one with 2 planes, or pairs given as A.fits,B.fits) or JPEG/PNG composites")
    infer.add_argument("--output", type=Path, default=Path("bubbles-infer"))
    infer.add_argument("--weights", type=Path, default=None)
    infer.add_argument("--threshold", type=float, default=None, help="confidence threshold (default: the model's)")
    infer.set_defaults(run=_infer)

    serve = commands.add_parser("serve", help="serve nightshift.v1.TaskService (store from NIGHTSHIFT_S3_* when set)")
    serve.add_argument("--port", type=int, default=None, help="gRPC port (default: NIGHTSHIFT_GRPC_PORT or 50051)")
    serve.set_defaults(run=_serve)

    bench = commands.add_parser("bench", help="service Infer vs bare model throughput; prints one JSON line")
    bench.add_argument("--tiles", type=int, default=64)
    bench.add_argument("--batch-size", type=int, default=16)
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--output", type=Path, default=Path("bubbles-bench"))
    bench.set_defaults(run=_bench)

    simulate = commands.add_parser("simulate-night", help="write the demo night's kit: raw FITS fields, night.json, MWP DR1 reference, truth")
    simulate.add_argument("--out", type=Path, required=True, help="the kit's directory")
    simulate.add_argument("--seed", type=int, default=0, help="night seed: fields of simulation seed 3000000 + this (default 0)")
    simulate.add_argument("--fields", type=int, default=2, help="simulated fields of 768 x 768 px, 129 tiles each (default 2)")
    simulate.set_defaults(run=_simulate_night)

    score = commands.add_parser("score-night", help="score the night's bubbles catalogue (FITS) against the kit's truth; prints one JSON line")
    score.add_argument("--kit", type=Path, required=True, help="the directory simulate-night wrote")
    score.add_argument("--catalogue", type=Path, required=True, help="the night's merged bubbles catalogue (FITS table)")
    score.set_defaults(run=_score_night)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
