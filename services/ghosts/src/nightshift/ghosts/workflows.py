"""The outer I/O layer of the command line: files and stores in, the pure functions, files out."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.core.command import Inputs
from nightshift.core.devices import torch_device
from nightshift.core.errors import InvalidInput
from nightshift.ghosts.config import GhostsConfig, data_ranges
from nightshift.ghosts.config import preset as config_preset
from nightshift.ghosts.model import save_weights, smoke_check, write_card
from nightshift.ghosts.shipped import load_model, shipped_weights
from nightshift.ghosts.train import EpochReport, train_model

__all__ = [
    "train_and_package", "register_if_configured", "shipped_weights", "load_model", "evaluate_model", "infer_files",
    "write_simulated", "tune_baseline_report",
]

def register_if_configured(weights: Path, card: Path) -> str | None:
    """Register a weights file and its card in the store named by ``NIGHTSHIFT_S3_*``; the version, or None."""
    if not os.environ.get("NIGHTSHIFT_S3_ENDPOINT"):
        return None
    from nightshift.core.registry import ModelRegistry
    from nightshift.core.store import ObjectStore

    info = json.loads(card.read_text())
    store = ObjectStore.from_env()
    store.ensure_bucket()
    model = ModelRegistry(store, "ghosts", smoke=smoke_check).register(
        {weights.name: weights}, name=info["name"], metrics=info["metrics"], config=info["config"], data_seed=info["data_seed"],
    )
    return model.version


def train_and_package(
    *,
    preset: str,
    overrides: Mapping[str, str],
    seed: int,
    output: Path,
    real_dir: Path | None,
    resume: bool = False,
    ship_to: Path | None = None,
) -> dict[str, Any]:
    """Train, score on the held-out simulated set, write weights + card + history, optionally ship/register."""
    from nightshift.ghosts.evaluate import score_simulated
    from nightshift.ghosts.realdata import load_real_images, split_real

    config = config_preset(preset).with_overrides(overrides)
    real_train = []
    if real_dir is not None and config.real_train_images > 0:
        real_train, _ = split_real(load_real_images(real_dir), config.real_train_images)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def report(epoch: EpochReport) -> None:
        line = {"epoch": epoch.epoch, "of": epoch.total_epochs, "stage": epoch.stage, "lr": epoch.learning_rate,
                "seconds": round(epoch.seconds, 1), **{k: round(v, 4) for k, v in epoch.metrics.items()}}
        print(json.dumps(line), flush=True)

    result = train_model(config, seed=seed, real_train=real_train, on_epoch=report, checkpoint=output / "checkpoint.pt", resume=resume)
    train_seconds = time.perf_counter() - started
    held_out = score_simulated(result.detector, config, seed=seed, count=config.test_images, device=torch_device())
    metrics = {**result.metrics, "test_ap50": held_out["ap50"], "test_ap": held_out["ap"], "train_seconds": train_seconds}
    weights = save_weights(result.detector, output / f"{config.name}.safetensors")
    card = write_card(weights.with_suffix(".json"), config=config, metrics=metrics, data_seed=seed,
                      extra={"real_train_images": [r.name for r in real_train]})
    (output / "history.json").write_text(json.dumps([dataclasses.asdict(h) for h in result.history], indent=2) + "\n")
    if ship_to is not None:
        for old in (*ship_to.glob("*.safetensors"), *ship_to.glob("*.json")):
            old.unlink()
        for file in (weights, card):
            shutil.copyfile(file, ship_to / file.name)
            (ship_to / file.name).chmod(0o644)
    return {
        "weights": str(weights), "card": str(card), "metrics": metrics, "seed": seed, "preset": preset,
        "real_train_images": [r.name for r in real_train], "registered_version": register_if_configured(weights, card),
        "parameters": result.detector.parameter_count, "size_mb": weights.stat().st_size / 1e6,
        "data_ranges": data_ranges(config), "shipped": ship_to is not None,
    }


def evaluate_model(
    *, weights: Path | None, seed: int, count: int | None, real_dir: Path | None, output: Path, all_real: bool = False,
    crossval: Path | None = None,
) -> dict[str, Any]:
    """Score a model and the baseline on held-out simulated images (and real ones); write plots; return figures.

    The figures end with ``simulated`` (this model on the held-out simulated exposures) and ``real``:
    the cross-validated real figures read from ``crossval`` (default: the committed
    ``docs/crossval_real.json``; None when that file is absent), not retrained here, with the baseline's
    cross-validated figures (``docs/baseline_tuning.json``) as ``real.baseline``.
    """
    from nightshift.ghosts.crossval import BASELINE_RESULTS, CROSSVAL_RESULTS, fold_intervals, real_headline
    from nightshift.ghosts.evaluate import (
        annotator_agreement, headline, plot_overlays, plot_pr_curves, score_real, score_simulated_with_baseline,
    )
    from nightshift.ghosts.realdata import load_real_images, split_real

    started = time.perf_counter()
    detector, config, card = load_model(weights)
    count = config.test_images if count is None else count
    model_scores, baseline_scores = score_simulated_with_baseline(detector, config, seed=seed, count=count, intervals=True)
    curves = {"simulated": (model_scores, baseline_scores)}
    figures: dict[str, Any] = {
        "model": card["name"], "seed": seed, "simulated_images": count, "score_threshold": config.score_threshold,
        **headline(model_scores), "baseline": headline(baseline_scores),
    }
    if real_dir is not None:
        images = load_real_images(real_dir)
        if "real_train_images" in card:  # the card names the real images the model saw
            held_out = [r for r in images if r.name not in set(card["real_train_images"])]
        else:
            _, held_out = split_real(images, config.real_train_images)
        sets = {**({"real_heldout": held_out} if held_out else {}), **({"real_all": images} if all_real else {})}
        if not held_out:
            figures["real_heldout"] = None  # the model saw every real image: only the cross-validated figure is fair
        for name, subset in sets.items():
            real_model, real_baseline, predictions, _ = score_real(detector, config, subset)
            figures[name] = {**headline(real_model), "baseline": headline(real_baseline),
                             "images_scored": [r.name for r in subset]}
            curves[name] = (real_model, real_baseline)
            if name == "real_heldout":
                plot_overlays([r.image for r in subset], [r.artefacts for r in subset], predictions, [r.name for r in subset],
                              output / "overlays_real_heldout.png", score_threshold=config.score_threshold)
        common = sorted((real_dir / "annotations" / "common_core").glob("*.json"))
        if common:
            figures["annotators_ceiling"] = annotator_agreement(common, [r.name for r in images])
            if held_out:
                figures["annotators_ceiling_heldout"] = annotator_agreement(common, [r.name for r in held_out])
    plot_pr_curves(curves, output / "pr_curves.png")
    figures["seconds"] = round(time.perf_counter() - started, 1)
    figures["simulated"] = {"ap50": model_scores["ap50"], "ap": model_scores["ap"],
                            "per_class": {c: model_scores[f"ap50_{c}"] for c in ("bright", "faint", "rays")},
                            "images": count, "seed": seed, "role": SIMULATED_ROLE}
    source = CROSSVAL_RESULTS if crossval is None else crossval
    report = json.loads(source.read_text()) if source.exists() else None
    figures["real"] = real_headline(report, card, source=source) if report else None
    baseline_real = json.loads(BASELINE_RESULTS.read_text())["real"] if BASELINE_RESULTS.exists() else None
    if report and baseline_real:
        figures["real"]["baseline"] = real_headline(baseline_real, source=BASELINE_RESULTS)
        model_intervals, baseline_intervals = fold_intervals(report, baseline_real)
        figures["real"].update(model_intervals, role=REAL_ROLE, simulator_fit=SIMULATOR_FIT)
        figures["real"]["baseline"].update(baseline_intervals)
    return figures


SIMULATED_ROLE = ("test: exposures of the test index range, never trained or tuned on; the baseline's tuning objective was "
                  "switched after its test figures had been seen (issue 25), so its figure is partly a validation one")
REAL_ROLE = ("test, cross-validated: each image scored by a model fine-tuned on the other 24 and at a threshold chosen on "
             "them; the fine-tuning settings were fixed before the ablations on the same folds")
SIMULATOR_FIT = ("the simulator's focal plane (CCD layout, gap level, CCD 2 off in half the exposures) and display levels "
                 "were measured on all 30 real images, the scored ones included, and the simulated pretraining was not "
                 "redone per fold; the layout is the instrument's and the same in every image (tests/test_focalplane.py: "
                 "each fold's 24 training images alone give the same live-pixel map)")


def tune_baseline_report(*, seed: int, count: int, real_dir: Path | None) -> dict[str, Any]:
    """The classical baseline tuned on ``count`` simulated training exposures and cross-validated on the real images.

    The simulated tuning is what :class:`~nightshift.ghosts.baseline.ResidualBaseline`'s defaults hold (``evaluate``
    and the service's ``Evaluate`` score it on the test range); the real part tunes per fold on the fold's
    training images only (:func:`nightshift.ghosts.crossval.crossval_baseline`).
    """
    from nightshift.ghosts.baseline import significance_maps, tune_baseline
    from nightshift.ghosts.crossval import crossval_baseline
    from nightshift.ghosts.preprocess import image_to_pixels
    from nightshift.ghosts.realdata import load_real_images
    from nightshift.ghosts.simulate import simulate_dataset

    started = time.perf_counter()
    first_index = data_ranges(config_preset("default"))["train"][0]
    exposures = simulate_dataset(count, seed, first_index=first_index)
    maps = significance_maps([image_to_pixels(e.image) for e in exposures])
    _, search = tune_baseline(maps, [e.artefacts for e in exposures])
    report: dict[str, Any] = {"simulated": {**search, "seed": seed, "first_index": first_index,
                                            "seconds": round(time.perf_counter() - started, 1)}}
    report["real"] = crossval_baseline(load_real_images(real_dir)) if real_dir is not None else None
    return report


_MIN_IMAGE_PX = 64
"""The smallest image side searched: the detector's anchors start at 16 px on a 400 px focal plane."""


def read_user_image(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 display image (H, W, 3), tile pixels (3, H, W) float32, WCS header string) of a JPEG/PNG/FITS file.

    A FITS image whose ``BUNIT`` is empty or ``8-bit`` holds display levels; any other unit is linear
    flux, put on the display scale as the service does with tiles (``preprocess.display_pixels``).
    Pictures carry no WCS, so their instances have no sky position (a warning says so).
    """
    from nightshift.core.command import warn_input
    from nightshift.core.inputs import check_pixels, read_fits_image, read_picture
    from nightshift.ghosts.preprocess import display_pixels, image_to_pixels

    if path.suffix.lower() in (".fits", ".fit", ".fz"):
        image = read_fits_image(path)
        check_pixels(path, image.data, min_px=_MIN_IMAGE_PX, header=image.header)
        pixels = np.repeat(image.data[None], 3, axis=0) if image.data.ndim == 2 else image.data
        if pixels.shape[0] != 3:
            raise InvalidInput(f"{path}: image of shape {image.data.shape}; expected one plane or 3 (R, G, B)")
        pixels = display_pixels(pixels, [str(image.header.get("BUNIT", ""))] * pixels.shape[0])
        display = np.nan_to_num(pixels, nan=23.0).clip(0, 255).astype(np.uint8).transpose(1, 2, 0)
        return display, pixels, image.header.tostring()
    picture = read_picture(path)
    check_pixels(path, picture.transpose(2, 0, 1), min_px=_MIN_IMAGE_PX)
    warn_input(path, "a picture has no WCS: its instances have pixel positions only (ra, dec, glon, glat are NaN)")
    return picture, image_to_pixels(picture), ""


def infer_files(inputs: Inputs, *, output: Path, weights: Path | None, score_threshold: float | None) -> dict[str, Any]:
    """Find artefacts in image files; write a catalogue (FITS, ECSV, CSV, DS9), masks as RLE JSON and overlays.
    An image that cannot be read is reported and left out (``inputs.failed``)."""
    from nightshift.ghosts.artefacts import uncompressed_rle
    from nightshift.ghosts.evaluate import plot_overlays
    from nightshift.ghosts.infer import Detector, catalogue_row, findings, write_instance_catalogue

    detector, config, card = load_model(weights)
    threshold = config.score_threshold if score_threshold is None else score_threshold
    read = inputs.each(read_user_image)
    found = Detector(detector).predict([pixels for _, (_, pixels, _) in read], score_threshold=threshold)
    rows, records = [], []
    for (path, (_, _, header)), artefacts in zip(read, found):
        rows += [catalogue_row(path.name, a, header) for a in artefacts]
        summary = findings(artefacts, score_threshold=threshold)
        records.append({"image": path.name, "has_artefacts": summary.has_artefacts, "ccds": summary.ccds, "instances": [
            {"label": a.label, "score": a.score, "box": a.box, "rle": {"size": list(a.mask.shape), "counts": uncompressed_rle(a.mask)}}
            for a in artefacts]})
    output.mkdir(parents=True, exist_ok=True)
    meta = {"MODEL": card["name"], "THRESH": threshold, "INPUT": ",".join(str(p) for p, _ in read)}
    files = write_instance_catalogue(rows, output / "ghosts", meta=meta)
    (output / "instances.json").write_text(json.dumps(records) + "\n")
    plot_overlays([d for _, (d, _, _) in read], [[] for _ in read], found, [p.name for p, _ in read], output / "overlays.png",
                  score_threshold=threshold)
    return {**inputs.summary(), "images": len(read), "instances": len(rows), "with_artefacts": sum(r["has_artefacts"] for r in records),
            "files": [str(f) for f in (*files, output / "instances.json", output / "overlays.png")]}


def write_simulated(output: Path, *, count: int, seed: int, first_index: int) -> list[Path]:
    """Write simulated exposures as JPEGs plus ``truth.json`` (per image: label and COCO uncompressed RLE mask)."""
    from PIL import Image

    from nightshift.ghosts.artefacts import uncompressed_rle
    from nightshift.ghosts.simulate import simulate_dataset

    output.mkdir(parents=True, exist_ok=True)
    paths, truth = [], {}
    for index, exposure in enumerate(simulate_dataset(count, seed, first_index=first_index)):
        path = output / f"sim_{seed}_{first_index + index:07d}.jpg"
        Image.fromarray(exposure.image).save(path, quality=95)  # a second, light compression of the simulated JPEG
        truth[path.name] = [{"label": a.label, "box": a.box, "rle": {"size": list(a.mask.shape), "counts": uncompressed_rle(a.mask)}}
                            for a in exposure.artefacts]
        paths.append(path)
    (output / "truth.json").write_text(json.dumps({"seed": seed, "first_index": first_index, "images": truth}) + "\n")
    return paths



def _pretrained(work: Path, seed: int, preset: str) -> tuple[Path, dict[str, Any]]:
    """The simulated-only pretraining shared by every fold (trained, or resumed, when absent)."""
    directory = work / "pretrain"
    config = config_preset(preset)
    weights = directory / f"{config.name}.safetensors"
    if not weights.exists():
        train_and_package(preset=preset, overrides={}, seed=seed, output=directory, real_dir=None, resume=True)
    card = json.loads(weights.with_suffix(".json").read_text())
    if card.get("real_train_images"):
        raise ValueError(f"{weights}: the pretraining must see no real image")
    return weights, card


def _sim_items(count: int, seed: int) -> list:
    """The first ``count`` exposures of the simulated training range (those the pretraining began with)."""
    from nightshift.ghosts.simulate import simulate_dataset
    from nightshift.ghosts.train import _Item

    return [_Item.of(e.image, e.artefacts) for e in simulate_dataset(count, seed, first_index=0)]


def _log(prefix: str):
    def log(record: dict) -> None:
        print(json.dumps({"stage": prefix, **record}), flush=True)
    return log


def crossval_real(
    *, work: Path, real_dir: Path, seed: int, settings: Any, output: Path | None = None, ship_to: Path | None = None,
    all_real: bool = True, preset: str = "default",
) -> dict[str, Any]:
    """k-fold cross-validation over the real images (see :mod:`nightshift.ghosts.crossval`); resumable in ``work``.

    With ``all_real`` the pretrained network is also fine-tuned the same way on all real images
    (``work/all``), scored on the held-out simulated exposures, and copied to ``ship_to`` when given.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(config_preset(preset).threads or threads)
    try:
        return _crossval_real(work=work, real_dir=real_dir, seed=seed, settings=settings, output=output, ship_to=ship_to,
                              all_real=all_real, preset=preset)
    finally:
        torch.set_num_threads(threads)  # process-wide: give the caller its threads back


def _crossval_real(
    *, work: Path, real_dir: Path, seed: int, settings: Any, output: Path | None, ship_to: Path | None, all_real: bool,
    preset: str,
) -> dict[str, Any]:
    from nightshift.ghosts.crossval import (
        choose_threshold, decode_predictions, encode_predictions, fold_figures, predict, real_folds, summarise, finetune,
    )
    from nightshift.ghosts.model import load_detector
    from nightshift.ghosts.realdata import load_real_images

    started = time.perf_counter()
    images = load_real_images(real_dir)
    by_name = {r.name: r for r in images}
    folds = real_folds(list(by_name), settings.folds)
    pretrained, pretrain_card = _pretrained(work, seed, preset)
    config = GhostsConfig.from_dict(pretrain_card["config"])
    sim_items: list | None = None
    results = []
    for index, scored_names in enumerate(folds):
        directory = work / f"fold-{index}"
        result_file = directory / "result.json"
        train_names = [n for n in by_name if n not in scored_names]
        if result_file.exists():
            result = json.loads(result_file.read_text())
            if result["settings"] == settings.to_dict() and result["scored"] == scored_names:
                results.append(result)
                continue
            raise ValueError(f"{result_file}: made with other settings or folds; use another --work directory")
        if sim_items is None:
            sim_items = _sim_items(settings.sim_pool, seed)
        fold_started = time.perf_counter()
        detector = load_detector(pretrained, config, device=torch_device())
        real_train = [by_name[n] for n in train_names]
        history = finetune(detector, config, settings, real_train=real_train, sim_items=sim_items, seed=seed + index,
                           checkpoint=directory / "checkpoint.pt", log=_log(f"fold-{index}"))
        threshold = choose_threshold([r.artefacts for r in real_train], predict(detector, real_train))
        scored = [by_name[n] for n in scored_names]
        predictions = predict(detector, scored)
        figures = fold_figures([r.artefacts for r in scored], predictions, threshold=threshold, fixed_threshold=config.score_threshold)
        result = {"fold": index, "scored": scored_names, "trained_on": train_names, "settings": settings.to_dict(),
                  "threshold": threshold, "figures": figures, "history": history,
                  "seconds": round(time.perf_counter() - fold_started, 1), "predictions": encode_predictions(predictions)}
        directory.mkdir(parents=True, exist_ok=True)
        result_file.write_text(json.dumps(result) + "\n")
        print(json.dumps({"stage": f"fold-{index}", "threshold": threshold,
                          **{k: v for k, v in figures.items() if isinstance(v, float)}}), flush=True)
        results.append(result)
    truths = [by_name[n].artefacts for r in results for n in r["scored"]]
    predictions = [p for r in results for p in decode_predictions(r["predictions"])]
    thresholds = [r["threshold"] for r in results for _ in r["scored"]]
    summary = summarise(results, truths, predictions, thresholds)
    report: dict[str, Any] = {
        "images": len(images), "folds": [{k: v for k, v in r.items() if k not in ("predictions",)} for r in results],
        "summary": summary, "settings": settings.to_dict(), "seed": seed,
        "pretraining": {"preset": preset, "real_images": 0, "metrics": pretrain_card["metrics"]},
        "threshold_rule": "per fold, the confidence (0.05..0.95) with the best CCD-level F1 on that fold's training images",
        "fold_seconds": [r["seconds"] for r in results],
    }
    if all_real:
        report["all_real"] = _finetune_all(work=work, images=images, pretrained=pretrained, pretrain_card=pretrain_card,
                                           config=config, seed=seed, settings=settings, sim_items=sim_items, ship_to=ship_to,
                                           summary=summary, preset=preset)
    report["misses"] = _plot_misses(work, by_name, results, predictions, output)
    report["seconds"] = round(time.perf_counter() - started, 1)  # this call (finished folds are read back)
    report["compute_seconds"] = round(pretrain_card["metrics"]["train_seconds"] + sum(r["seconds"] for r in results)
                                      + (report.get("all_real") or {}).get("metrics", {}).get("finetune_seconds", 0.0), 1)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=1, default=float) + "\n")
    return report


def _plot_misses(work: Path, by_name: dict, results: list, predictions: list, output: Path | None) -> dict[str, Any]:
    """Out-of-fold overlays (every image in ``work``; the six with most missed instances beside ``output``) and miss counts.

    An annotated instance is missed when no prediction at its fold's threshold overlaps it with mask IoU >= 0.5.
    """
    from nightshift.ghosts.evaluate import plot_overlays

    names = [n for r in results for n in r["scored"]]
    thresholds = [r["threshold"] for r in results for _ in r["scored"]]
    missed: dict[str, int] = {c: 0 for c in ("bright", "faint", "rays")}
    annotated = dict.fromkeys(missed, 0)
    per_image = []
    for name, predicted, threshold in zip(names, predictions, thresholds):
        kept = [p for p in predicted if p.score >= threshold]
        count = 0
        for artefact in by_name[name].artefacts:
            annotated[artefact.label] += 1
            union = lambda p: np.logical_or(p.mask, artefact.mask).sum()  # noqa: E731
            if not any(np.logical_and(p.mask, artefact.mask).sum() >= 0.5 * union(p) for p in kept):
                missed[artefact.label] += 1
                count += 1
        per_image.append(count)
    plot_overlays([by_name[n].image for n in names], [by_name[n].artefacts for n in names], predictions, names,
                  work / "overlays_crossval.png", score_threshold=float(np.median(thresholds)))
    if output is not None:
        worst = sorted(range(len(names)), key=lambda i: -per_image[i])[:6]
        plot_overlays([by_name[names[i]].image for i in worst], [by_name[names[i]].artefacts for i in worst],
                      [[p for p in predictions[i] if p.score >= thresholds[i]] for i in worst],
                      [f"{names[i]} (fold {next(r['fold'] for r in results if names[i] in r['scored'])}, "
                       f"shown at its threshold {thresholds[i]:g})" for i in worst],
                      output.parent / "overlays_crossval_misses.png", score_threshold=0.0)
    return {"annotated": annotated, "missed_at_fold_threshold": missed}


def _finetune_all(
    *, work: Path, images: list, pretrained: Path, pretrain_card: dict, config: GhostsConfig, seed: int, settings: Any,
    sim_items: list | None, ship_to: Path | None, summary: dict, preset: str,
) -> dict[str, Any]:
    """The pretrained network fine-tuned on every real image as in the folds; weights + card in ``work/all``."""
    from nightshift.ghosts.crossval import choose_threshold, finetune, predict
    from nightshift.ghosts.evaluate import score_simulated
    from nightshift.ghosts.model import load_detector

    directory = work / "all"
    weights = directory / f"{config.name}.safetensors"
    if not weights.exists():
        sim_items = sim_items if sim_items is not None else _sim_items(settings.sim_pool, seed)
        started = time.perf_counter()
        detector = load_detector(pretrained, config, device=torch_device())
        history = finetune(detector, config, settings, real_train=images, sim_items=sim_items, seed=seed + 1000,
                           checkpoint=directory / "checkpoint.pt", log=_log("all"))
        threshold = choose_threshold([r.artefacts for r in images], predict(detector, images))
        seconds = time.perf_counter() - started
        shipped_config = dataclasses.replace(config, score_threshold=threshold, real_train_images=len(images))
        held_out = score_simulated(detector, shipped_config, seed=seed, count=shipped_config.test_images, device=torch_device())
        metrics = {"test_ap50": held_out["ap50"], "test_ap": held_out["ap"],
                   **{f"test_ap50_{c}": held_out[f"ap50_{c}"] for c in ("bright", "faint", "rays")},
                   "finetune_seconds": seconds, "pretrain_seconds": pretrain_card["metrics"]["train_seconds"],
                   "real_crossval_ap50": summary["ap50"]["mean"], "real_crossval_ap50_std": summary["ap50"]["std"]}
        save_weights(detector, weights)
        write_card(weights.with_suffix(".json"), config=shipped_config, metrics=metrics, data_seed=seed, extra={
            "real_train_images": [r.name for r in images],
            "training": {
                "pretraining": {"preset": preset, "simulated_exposures": config.train_images, "real_images": 0,
                                "epochs": config.epochs, "seconds": pretrain_card["metrics"]["train_seconds"]},
                "finetune": {**settings.to_dict(), "real_images": len(images), "history": history, "seconds": seconds},
                "threshold_rule": "confidence (0.05..0.95) with the best CCD-level F1 on the real training images",
                "command": f"nightshift-ghosts crossval-real --work WORK --seed {seed} --ship",
            },
            "real_figures": "cross-validated, see services/ghosts/docs/crossval_real.json (the model itself saw all real images)",
        })
    card = json.loads(weights.with_suffix(".json").read_text())
    if ship_to is not None:
        for old in (*ship_to.glob("*.safetensors"), *ship_to.glob("*.json")):
            old.unlink()
        for file in (weights, weights.with_suffix(".json")):
            shutil.copyfile(file, ship_to / file.name)
            (ship_to / file.name).chmod(0o644)
    return {"weights": str(weights), "metrics": card["metrics"], "score_threshold": card["config"]["score_threshold"],
            "size_mb": weights.stat().st_size / 1e6, "shipped": ship_to is not None}
