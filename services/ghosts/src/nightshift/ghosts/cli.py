"""``nightshift-ghosts``: simulate, train, evaluate, infer, serve and benchmark the ghosts service, and its night kit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

WEIGHTS_DIR = Path(__file__).parent / "weights"
_PRESETS = ("tiny", "default", "paper")


def _overrides(pairs: list[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set {pair!r}: expected FIELD=JSON_VALUE, e.g. train_images=8")
        key, value = pair.split("=", 1)
        result[key] = value
    return result


def _real_dir(args: argparse.Namespace) -> Path | None:
    from nightshift.ghosts.realdata import DEFAULT_REAL_DIR

    if args.no_real:
        return None
    if args.real_dir is not None:
        if not (args.real_dir / "images").is_dir():
            raise SystemExit(f"--real-dir {args.real_dir}: expected a directory holding images/ and annotations/")
        return args.real_dir
    return DEFAULT_REAL_DIR if (DEFAULT_REAL_DIR / "images").is_dir() else None


def _synth(args: argparse.Namespace) -> int:
    from nightshift.ghosts.workflows import write_simulated

    paths = write_simulated(args.output, count=args.count, seed=args.seed, first_index=args.first_index)
    print(json.dumps({"images": len(paths), "directory": str(args.output), "truth": str(args.output / "truth.json")}))
    return 0


def _train(args: argparse.Namespace) -> int:
    from nightshift.ghosts.workflows import train_and_package

    config_overrides = _overrides(args.set)
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
        raise SystemExit("crossval-real: no real data directory (give --real-dir; /work/shared/data/ghosts is absent)")
    values = FinetuneConfig().to_dict()
    for key, text in _overrides(args.set).items():
        if key not in values:
            raise SystemExit(f"--set {key}: not a fine-tuning field (fields: {sorted(values)})")
        values[key] = json.loads(text)
    report = crossval_real(work=args.work, real_dir=real_dir, seed=args.seed, settings=FinetuneConfig.from_dict(values),
                           output=args.output, ship_to=WEIGHTS_DIR if args.ship else None, all_real=not args.folds_only)
    line = {"real": {k: report["summary"][k] for k in ("ap50", "ap50_bright", "ap50_faint", "ap50_rays", "image_recall",
                                                        "ccd_precision", "ccd_recall")},
            "pooled": report["summary"]["pooled"], "all_real": report.get("all_real"), "output": str(args.output),
            "seconds": report["seconds"]}
    print(json.dumps(line, sort_keys=True, default=float))
    return 0


def _infer(args: argparse.Namespace) -> int:
    from nightshift.ghosts.workflows import infer_files

    summary = infer_files(args.images, output=args.output, weights=args.weights, score_threshold=args.threshold)
    print(json.dumps(summary, sort_keys=True))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from nightshift.core.server import serve_from_environment
    from nightshift.ghosts.servicer import GhostsModel

    serve_from_environment(lambda store: GhostsModel(store=store), service="ghosts", port=args.port)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from nightshift.core.bench import report
    from nightshift.ghosts.bench import benchmark

    report(benchmark(tiles=args.tiles, batch_size=args.batch_size, seed=args.seed), args.output / "bench.json")
    return 0


def _simulate_night(args: argparse.Namespace) -> int:
    from nightshift.ghosts.night import simulate_night

    print(json.dumps(simulate_night(args.out, args.seed, exposures=args.exposures), sort_keys=True))
    return 0


def _score_night(args: argparse.Namespace) -> int:
    from nightshift.ghosts.night import score_night

    print(json.dumps(score_night(args.kit, args.catalogue), sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    parser = argparse.ArgumentParser(prog="nightshift-ghosts", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def real_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--real-dir", type=Path, default=None,
                             help="directory of real DES images/ and annotations/ (default: /work/shared/data/ghosts when present)")
        command.add_argument("--no-real", action="store_true", help="use no real images")

    synth = commands.add_parser("synth", help="write simulated exposures (JPEG) and their truth masks (COCO RLE JSON)")
    synth.add_argument("--output", type=Path, default=Path("ghosts-synth"))
    synth.add_argument("--count", type=int, default=16)
    synth.add_argument("--seed", type=int, default=7)
    synth.add_argument("--first-index", type=int, default=2_000_000, help="first exposure index (default: the test range)")
    synth.set_defaults(run=_synth)

    train = commands.add_parser("train", help="train a model; writes weights, card, history and a resumable checkpoint")
    train.add_argument("--preset", choices=_PRESETS, default="default")
    train.add_argument("--seed", type=int, default=7)
    train.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field (JSON value)")
    train.add_argument("--output", type=Path, default=Path("ghosts-train"))
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output")
    train.add_argument("--ship", action="store_true", help="replace the package's shipped default weights and card")
    real_options(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="score a model and the classical baseline; prints one JSON line")
    evaluate.add_argument("--weights", type=Path, default=None, help="safetensors file with its .json card beside (default: shipped)")
    evaluate.add_argument("--seed", type=int, default=7)
    evaluate.add_argument("--count", type=int, default=None, help="held-out simulated images (default: the config's test_images)")
    evaluate.add_argument("--output", type=Path, default=Path("ghosts-evaluation"))
    evaluate.add_argument("--all-real", action="store_true", help="also score all real images, including those trained on")
    evaluate.add_argument("--crossval", type=Path, default=None,
                          help="crossval-real results whose figures are reported as 'real' (default: services/ghosts/docs/crossval_real.json)")
    real_options(evaluate)
    evaluate.set_defaults(run=_evaluate)

    crossval = commands.add_parser(
        "crossval-real", help="k-fold cross-validation on the real images (sim pretraining, fine-tune per fold); resumable")
    crossval.add_argument("--work", type=Path, default=Path("ghosts-crossval"), help="checkpoints and per-fold results")
    crossval.add_argument("--seed", type=int, default=7)
    crossval.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                          help="override a fine-tuning field (JSON value), e.g. epochs=2")
    crossval.add_argument("--output", type=Path, default=None, help="results JSON (evaluate reads services/ghosts/docs/crossval_real.json)")
    crossval.add_argument("--folds-only", action="store_true", help="skip the fine-tuning on all real images")
    crossval.add_argument("--ship", action="store_true", help="ship the model fine-tuned on all real images")
    real_options(crossval)
    crossval.set_defaults(run=_crossval_real)

    infer = commands.add_parser("infer", help="find artefacts in JPEG/PNG/FITS images; writes catalogues, masks, overlays")
    infer.add_argument("images", type=Path, nargs="+")
    infer.add_argument("--output", type=Path, default=Path("ghosts-infer"))
    infer.add_argument("--weights", type=Path, default=None)
    infer.add_argument("--threshold", type=float, default=None, help="confidence threshold (default: the model's, 0.8)")
    infer.set_defaults(run=_infer)

    serve = commands.add_parser("serve", help="serve nightshift.v1.TaskService (store from NIGHTSHIFT_S3_* when set)")
    serve.add_argument("--port", type=int, default=None, help="gRPC port (default: NIGHTSHIFT_GRPC_PORT or 50051)")
    serve.set_defaults(run=_serve)

    bench = commands.add_parser("bench", help="service Infer vs bare model throughput; prints one JSON line")
    bench.add_argument("--tiles", type=int, default=32)
    bench.add_argument("--batch-size", type=int, default=4)
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--output", type=Path, default=Path("ghosts-bench"))
    bench.set_defaults(run=_bench)

    from nightshift.ghosts.night import DEFAULT_EXPOSURES, MAX_EXPOSURES

    night = commands.add_parser("simulate-night", help="write a simulated DES night (raw FITS per band, night.json, truth); prints one JSON line")
    night.add_argument("--out", type=Path, required=True, help="kit directory")
    night.add_argument("--seed", type=int, default=7)
    night.add_argument("--exposures", type=int, default=DEFAULT_EXPOSURES,
                       help=f"exposures (fields, one 400x400 tile each), 1 to {MAX_EXPOSURES} (default {DEFAULT_EXPOSURES})")
    night.set_defaults(run=_simulate_night)

    score = commands.add_parser("score-night", help="score the night's ghosts catalogue (FITS) against the kit's truth; prints one JSON line")
    score.add_argument("--kit", type=Path, required=True, help="the directory simulate-night wrote")
    score.add_argument("--catalogue", type=Path, required=True, help="the night's merged ghosts catalogue (FITS table)")
    score.set_defaults(run=_score_night)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
