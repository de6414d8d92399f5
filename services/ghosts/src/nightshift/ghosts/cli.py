"""``nightshift-ghosts``: simulate, train, evaluate, infer, serve and benchmark the ghosts service, and its night kit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nightshift.core.command import CommandLine, Inputs
from nightshift.core.errors import InvalidInput, NotFound

__all__ = ["main", "build_parser"]

WEIGHTS_DIR = Path(__file__).parent / "weights"
_PRESETS = ("tiny", "default", "paper")


def _real_dir(args: argparse.Namespace) -> Path | None:
    from nightshift.ghosts.realdata import DEFAULT_REAL_DIR

    if args.no_real:
        return None
    if args.real_dir is not None:
        if not (args.real_dir / "images").is_dir():
            raise NotFound(f"--real-dir {args.real_dir}: expected a directory holding images/ and annotations/")
        return args.real_dir
    return DEFAULT_REAL_DIR if (DEFAULT_REAL_DIR / "images").is_dir() else None


def _synth(args: argparse.Namespace) -> int:
    from nightshift.ghosts.workflows import write_simulated

    paths = write_simulated(args.output, count=args.count, seed=args.seed, first_index=args.first_index)
    print(json.dumps({"images": len(paths), "directory": str(args.output), "truth": str(args.output / "truth.json")}))
    return 0


def _train(args: argparse.Namespace) -> int:
    from nightshift.ghosts.workflows import train_and_package

    config_overrides = args.set
    summary = train_and_package(
        preset=args.preset, overrides=config_overrides, seed=args.seed, output=args.output, real_dir=_real_dir(args),
        resume=args.resume, ship_to=WEIGHTS_DIR if args.ship else None,
    )
    print(json.dumps(summary, sort_keys=True, default=float))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from nightshift.core.bench import report
    from nightshift.ghosts.workflows import evaluate_model

    figures = evaluate_model(
        weights=args.weights, seed=args.seed, count=args.count, real_dir=_real_dir(args), output=args.output,
        all_real=args.all_real, crossval=args.crossval,
    )
    report(figures, args.output / "evaluation.json")
    return 0


def _crossval_real(args: argparse.Namespace) -> int:
    from nightshift.ghosts.crossval import FinetuneConfig
    from nightshift.ghosts.workflows import crossval_real

    real_dir = _real_dir(args)
    if real_dir is None:
        raise NotFound("crossval-real: no real data directory (give --real-dir; /work/shared/data/ghosts is absent)")
    values = FinetuneConfig().to_dict()
    for key, text in args.set.items():
        if key not in values:
            raise InvalidInput(f"--set {key}: not a fine-tuning field (fields: {sorted(values)})")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidInput(f"--set {key}={text}: not a JSON value ({error.msg})") from None
    report = crossval_real(work=args.work, real_dir=real_dir, seed=args.seed, settings=FinetuneConfig.from_dict(values),
                           output=args.output, ship_to=WEIGHTS_DIR if args.ship else None, all_real=not args.folds_only)
    line = {"real": {k: report["summary"][k] for k in ("ap50", "ap50_bright", "ap50_faint", "ap50_rays", "image_recall",
                                                        "ccd_precision", "ccd_recall")},
            "pooled": report["summary"]["pooled"], "all_real": report.get("all_real"), "output": str(args.output),
            "seconds": report["seconds"]}
    print(json.dumps(line, sort_keys=True, default=float))
    return 0


def _tune_baseline(args: argparse.Namespace) -> int:
    from nightshift.ghosts.workflows import tune_baseline_report

    report = tune_baseline_report(seed=args.seed, count=args.count, real_dir=_real_dir(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1, default=float) + "\n")
    real = report["real"]
    print(json.dumps({"simulated": report["simulated"]["parameters"],
                      "real": real and {k: real["summary"][k] for k in ("ap50", "ap50_bright", "ap50_faint", "ap50_rays")},
                      "output": str(args.output)}, sort_keys=True, default=float))
    return 0


def _infer(args: argparse.Namespace) -> int:
    from nightshift.ghosts.workflows import infer_files

    inputs = Inputs(args.inputs)
    print(json.dumps(infer_files(inputs, output=args.output, weights=args.weights, score_threshold=args.threshold), sort_keys=True))
    return inputs.exit_status()


def _serve(port: int | None) -> None:
    from nightshift.core.server import serve_from_environment
    from nightshift.ghosts.servicer import GhostsModel

    serve_from_environment(lambda store: GhostsModel(store=store), service="ghosts", port=port)


def _bench(args: argparse.Namespace) -> int:
    from nightshift.core.bench import report
    from nightshift.ghosts.bench import benchmark

    report(benchmark(tiles=args.tiles, batch_size=args.batch_size, seed=args.seed), args.output / "bench.json")
    return 0


def build_parser() -> CommandLine:
    """The command line."""
    from nightshift.ghosts.night import DEFAULT_EXPOSURES, MAX_EXPOSURES, score_night, simulate_night
    from nightshift.ghosts.realdata import DEFAULT_REAL_DIR

    cli = CommandLine("nightshift-ghosts", __doc__, distribution="nightshift-ghosts")

    synth = cli.command("synth", _synth, "write simulated exposures (JPEG) and their truth masks (COCO RLE JSON)")
    cli.output(synth, "ghosts-synth", "directory for the exposures and truth.json")
    synth.add_argument("--count", type=int, default=16)
    cli.seed(synth, 7)
    synth.add_argument("--first-index", type=int, default=2_000_000, help="first exposure index (default: the test range)")

    train = cli.command("train", _train, "train a model; writes weights, card, history and a resumable checkpoint")
    train.add_argument("--preset", choices=_PRESETS, default="default")
    cli.seed(train, 7)
    cli.overrides(train)
    cli.output(train, "ghosts-train", "run directory")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output")
    train.add_argument("--ship", action="store_true", help="replace the package's shipped default weights and card")
    cli.real_data(train, DEFAULT_REAL_DIR)

    evaluate = cli.command("evaluate", _evaluate, "score a model and the classical baseline; prints one JSON line")
    cli.weights(evaluate)
    cli.seed(evaluate, 7)
    evaluate.add_argument("--count", type=int, default=None, help="held-out simulated images (default: the config's test_images)")
    cli.output(evaluate, "ghosts-evaluation", "directory for evaluation.json and plots")
    evaluate.add_argument("--all-real", action="store_true", help="also score all real images, including those trained on")
    evaluate.add_argument("--crossval", type=Path, default=None,
                          help="crossval-real results whose figures are reported as 'real' (default: services/ghosts/docs/crossval_real.json)")
    cli.real_data(evaluate, DEFAULT_REAL_DIR)

    crossval = cli.command("crossval-real", _crossval_real,
                           "k-fold cross-validation on the real images (sim pretraining, fine-tune per fold); resumable")
    crossval.add_argument("--work", type=Path, default=Path("ghosts-crossval"), help="checkpoints and per-fold results")
    cli.seed(crossval, 7)
    cli.overrides(crossval)
    cli.output(crossval, None, "results JSON (evaluate reads services/ghosts/docs/crossval_real.json)", required=False)
    crossval.add_argument("--folds-only", action="store_true", help="skip the fine-tuning on all real images")
    crossval.add_argument("--ship", action="store_true", help="ship the model fine-tuned on all real images")
    cli.real_data(crossval, DEFAULT_REAL_DIR)

    tune = cli.command("tune-baseline", _tune_baseline,
                       "tune the classical baseline on simulated training exposures and cross-validate it on the real images")
    cli.seed(tune, 7)
    tune.add_argument("--count", type=int, default=48, help="simulated training exposures to tune on")
    cli.output(tune, None, "results JSON (evaluate reads services/ghosts/docs/baseline_tuning.json)")
    cli.real_data(tune, DEFAULT_REAL_DIR)

    infer = cli.command("infer", _infer, "find artefacts in JPEG/PNG/FITS images; writes catalogues, masks, overlays")
    cli.inputs(infer, "JPEG/PNG renderings or FITS images (one plane or R, G, B)")
    cli.output(infer, "ghosts-infer", "directory for ghosts.{fits,ecsv,csv}, ghosts_{galactic,icrs}.reg, instances.json, overlays.png")
    cli.weights(infer)
    cli.threshold(infer)

    cli.serve_command(_serve)

    bench = cli.command("bench", _bench, "service Infer vs bare model throughput; prints one JSON line")
    bench.add_argument("--tiles", type=int, default=32)
    bench.add_argument("--batch-size", type=int, default=4)
    cli.seed(bench, 7)
    cli.output(bench, "ghosts-bench", "directory for bench.json")

    night = cli.night_commands(lambda args: simulate_night(args.output, args.seed, exposures=args.exposures), score_night,
                               "DES exposures, raw FITS per band")
    night.add_argument("--exposures", type=int, default=DEFAULT_EXPOSURES,
                       help=f"exposures (fields, one 400x400 tile each), 1 to {MAX_EXPOSURES} (default {DEFAULT_EXPOSURES})")
    return cli


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    return build_parser().main(argv)


if __name__ == "__main__":
    sys.exit(main())
