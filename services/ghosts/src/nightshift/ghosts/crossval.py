"""Real-image cross-validation (issue 18): every real image scored by a model that never saw it.

Design (sized for 2 shared CPU cores):

1. *Pretraining* on simulated exposures only (the ``default`` preset with no real image): one run,
   shared by every fold, so no real image is seen before the folds.
2. *Folds*: the real images are ranked by a hash of their file name and dealt round-robin into
   ``folds`` disjoint folds (5 folds of 6 for the 30 images). For each fold the pretrained network is
   fine-tuned (all layers, AdamW) on the other folds' images, augmented as the real data varies
   (:mod:`nightshift.ghosts.realaug`, copy-paste donors from the training folds only), mixed with
   simulated exposures so the simulated skill is kept, then scored on the fold.
3. *Threshold*: each fold's confidence threshold for the image- and CCD-level figures is the one
   that maximises the CCD-level F1 on that fold's *training* images (never the scored fold); the
   seed's fixed 0.8 is reported beside it.
4. *Figures*: per fold and as mean and standard deviation over the folds: AP@0.5 all types and per
   class, image-level recall, CCD-level precision and recall; the same pooled over the 30
   out-of-fold predictions.

Every fold writes its checkpoint after each epoch and its result when done, so an interrupted run
resumes where it stopped (``nightshift-ghosts crossval-real --work DIR``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nightshift.ghosts.artefacts import Artefact, uncompressed_rle
from nightshift.ghosts.config import CLASSES, GhostsConfig
from nightshift.ghosts.evaluate import coco_scores
from nightshift.ghosts.infer import Detector, findings
from nightshift.ghosts.model import GhostDetector
from nightshift.ghosts.preprocess import image_to_pixels, pixels_to_tensor, training_target
from nightshift.ghosts.realaug import RealAugmentation, augment_real
from nightshift.ghosts.realdata import RealImage

__all__ = [
    "FinetuneConfig", "real_folds", "finetune", "choose_threshold", "ccd_counts", "fold_figures", "summarise",
    "THRESHOLD_GRID", "CROSSVAL_RESULTS", "BASELINE_RESULTS", "real_headline", "fold_intervals", "crossval_baseline",
]

CROSSVAL_RESULTS = Path(__file__).resolve().parents[3] / "docs" / "crossval_real.json"
"""The committed results of ``nightshift-ghosts crossval-real`` that ``evaluate`` reports as the real figure."""

BASELINE_RESULTS = Path(__file__).resolve().parents[3] / "docs" / "baseline_tuning.json"
"""The committed results of ``nightshift-ghosts tune-baseline``: the baseline tuned on simulated training exposures, and
cross-validated on the real images like the network."""

THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""Confidence thresholds tried on a fold's training images (0.05 ... 0.95)."""

CCD_AREAS = (10, 50, 100, 200, 400, 800)
"""CCD-area thresholds (pixels of a 58 x 29 px CCD covered) of the pooled CCD precision/recall sweep."""


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning of a pretrained network on real images.

    Parameters
    ----------
    folds : int
        Cross-validation folds over the real images.
    epochs : int
        Fine-tuning epochs; the last ``low_lr_epochs`` of them at a tenth of ``learning_rate``.
    learning_rate : float
        AdamW learning rate of the first epochs.
    real_repeats : int
        Times each real training image is drawn (differently augmented) per epoch.
    sim_per_epoch : int
        Simulated exposures (drawn from the first ``sim_pool`` of the pretraining set) per epoch.
    augmentation : RealAugmentation
        Strengths of the real-image augmentation.
    """

    folds: int = 5
    epochs: int = 8
    low_lr_epochs: int = 2
    learning_rate: float = 5e-4
    real_repeats: int = 5
    sim_per_epoch: int = 32
    sim_pool: int = 160
    augmentation: RealAugmentation = RealAugmentation()

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneConfig:
        values = dict(values)
        augmentation = values.pop("augmentation", None)
        if augmentation is not None:
            augmentation = RealAugmentation(**{k: tuple(v) if isinstance(v, list) else v for k, v in augmentation.items()})
            values["augmentation"] = augmentation
        return cls(**values)


def real_folds(names: Sequence[str], folds: int) -> list[list[str]]:
    """Disjoint folds covering every name: ranked by SHA-256 of the name, dealt round-robin."""
    if folds < 2 or folds > len(names):
        raise ValueError(f"{folds} folds over {len(names)} images: expected 2 to {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError("image names must be unique")
    ranked = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    return [sorted(ranked[i::folds]) for i in range(folds)]


def _sample_tensors(image: np.ndarray, artefacts: Sequence[Artefact]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    target = training_target(artefacts, image.shape[0], image.shape[1])
    keep = (target["boxes"][:, 2] > target["boxes"][:, 0]) & (target["boxes"][:, 3] > target["boxes"][:, 1])
    return pixels_to_tensor(image_to_pixels(image)), {k: v[keep] for k, v in target.items()}


def finetune(
    detector: GhostDetector, config: GhostsConfig, settings: FinetuneConfig, *, real_train: Sequence[RealImage],
    sim_items: Sequence[Any], seed: int, checkpoint: Path | None = None, log: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Fine-tune ``detector`` in place on augmented real images mixed with simulated ones; the per-epoch history.

    ``sim_items`` are :class:`nightshift.ghosts.train._Item` of simulated exposures (the seed's flips
    and rotation as augmentation). With ``checkpoint`` the state is written after each epoch and a
    run resumes from it.
    """
    from nightshift.ghosts.preprocess import draw_augmentation

    device = next(detector.parameters()).device
    detector.freeze_body(False)
    optimizer = torch.optim.AdamW(detector.parameters(), lr=settings.learning_rate, weight_decay=config.weight_decay)
    history: list[dict] = []
    first = 1
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        detector.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first, history = int(state["epoch"]) + 1, json.loads(state["history"])
    for epoch in range(first, settings.epochs + 1):
        lr = settings.learning_rate * (0.1 if epoch > settings.epochs - settings.low_lr_epochs else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rng = np.random.default_rng([seed, 18, epoch])
        jobs = [("real", i) for i in range(len(real_train)) for _ in range(settings.real_repeats)]
        if sim_items and settings.sim_per_epoch:
            jobs += [("sim", int(i)) for i in rng.choice(len(sim_items), size=min(settings.sim_per_epoch, len(sim_items)), replace=False)]
        order = rng.permutation(len(jobs))
        detector.train()
        started, total, batches = time.perf_counter(), 0.0, 0
        for start in range(0, len(order), config.batch_size):
            samples = []
            for index in order[start:start + config.batch_size]:
                kind, item = jobs[index]
                if kind == "real":
                    samples.append(_sample_tensors(*augment_real(real_train[item], rng, donors=real_train, settings=settings.augmentation)))
                else:
                    samples.append(sim_items[item].sample(draw_augmentation(rng)))
            losses = detector.losses([s[0].to(device) for s in samples], [{k: v.to(device) for k, v in s[1].items()} for s in samples])
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(detector.parameters(), 10.0)
            optimizer.step()
            total, batches = total + float(loss.detach()), batches + 1
        record = {"epoch": epoch, "lr": lr, "loss": total / max(batches, 1), "seconds": round(time.perf_counter() - started, 1)}
        history.append(record)
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": detector.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                        "history": json.dumps(history)}, checkpoint)
        if log is not None:
            log(record)
    detector.eval()
    return history


def _ccds(artefacts: Sequence[Artefact], threshold: float, min_pixels: int) -> set[int]:
    from nightshift.ghosts.focalplane import affected_ccds

    kept = [a.mask for a in artefacts if a.score >= threshold]
    return set(affected_ccds(np.logical_or.reduce(kept), min_pixels=min_pixels)) if kept else set()


def ccd_counts(
    truths: Sequence[Sequence[Artefact]], predictions: Sequence[Sequence[Artefact]], threshold: float, *, min_pixels: int = 10,
) -> dict[str, int]:
    """CCD-level true positives, false positives and false negatives, and image-level hits, at a threshold.

    A CCD is affected when the union of the masks covers at least ``min_pixels`` of its pixels (the
    CCD-area threshold), in the truth and in the predictions alike.
    """
    counts = {"tp": 0, "fp": 0, "fn": 0, "images_with_artefacts": 0, "images_found": 0, "clean_images": 0, "clean_flagged": 0}
    for truth, predicted in zip(truths, predictions, strict=True):
        true_ccds = _ccds(truth, 0.0, min_pixels)
        found = findings(predicted, score_threshold=threshold)
        found_ccds = _ccds(predicted, threshold, min_pixels)
        counts["tp"] += len(true_ccds & found_ccds)
        counts["fp"] += len(found_ccds - true_ccds)
        counts["fn"] += len(true_ccds - found_ccds)
        if truth:
            counts["images_with_artefacts"] += 1
            counts["images_found"] += int(found.has_artefacts)
        else:
            counts["clean_images"] += 1
            counts["clean_flagged"] += int(found.has_artefacts)
    return counts


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _rates(counts: dict[str, int]) -> dict[str, float]:
    precision, recall = _ratio(counts["tp"], counts["tp"] + counts["fp"]), _ratio(counts["tp"], counts["tp"] + counts["fn"])
    return {"ccd_precision": precision, "ccd_recall": recall, "ccd_f1": _ratio(2 * precision * recall, precision + recall),
            "image_recall": _ratio(counts["images_found"], counts["images_with_artefacts"])}


def choose_threshold(truths: Sequence[Sequence[Artefact]], predictions: Sequence[Sequence[Artefact]]) -> float:
    """The threshold of :data:`THRESHOLD_GRID` with the highest CCD-level F1 (ties: the higher threshold)."""
    best, best_f1 = THRESHOLD_GRID[-1], -1.0
    for threshold in THRESHOLD_GRID:
        f1 = _rates(ccd_counts(truths, predictions, threshold))["ccd_f1"]
        f1 = -1.0 if np.isnan(f1) else f1
        if f1 >= best_f1:
            best, best_f1 = threshold, f1
    return best


def predict(detector: GhostDetector, images: Sequence[RealImage]) -> list[list[Artefact]]:
    """All instances (confidence >= 0) the detector finds in real images."""
    return Detector(detector).predict([image_to_pixels(r.image) for r in images], score_threshold=0.0)


def fold_figures(
    truths: Sequence[Sequence[Artefact]], predictions: Sequence[Sequence[Artefact]], *, threshold: float, fixed_threshold: float,
) -> dict[str, Any]:
    """A scored fold's figures: COCO AP@0.5 (all, per class), image and CCD figures at both thresholds, raw counts."""
    scores = coco_scores(truths, predictions)
    figures: dict[str, Any] = {"ap50": scores["ap50"], "ap": scores["ap"], **{f"ap50_{c}": scores[f"ap50_{c}"] for c in CLASSES}}
    counts = ccd_counts(truths, predictions, threshold)
    fixed = ccd_counts(truths, predictions, fixed_threshold)
    figures.update({"threshold": threshold, **_rates(counts), "counts": counts,
                    "fixed_threshold": fixed_threshold, "at_fixed": {**_rates(fixed), "counts": fixed},
                    "instances": sum(len(t) for t in truths),
                    "instances_per_class": {c: sum(a.label == c for t in truths for a in t) for c in CLASSES}})
    return figures


def encode_predictions(predictions: Sequence[Sequence[Artefact]]) -> list[list[dict]]:
    """Predictions as JSON (label, score, uncompressed RLE)."""
    return [[{"label": a.label, "score": float(a.score), "size": list(a.mask.shape), "counts": uncompressed_rle(a.mask)} for a in p]
            for p in predictions]


def decode_predictions(records: Sequence[Sequence[dict]]) -> list[list[Artefact]]:
    """The inverse of :func:`encode_predictions`."""
    from nightshift.ghosts.artefacts import decode_rle

    return [[Artefact(r["label"], decode_rle(r["counts"], *r["size"]).astype(bool), float(r["score"])) for r in p]
            for p in records]


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    defined = [float(v) for v in values if v is not None and not np.isnan(v)]
    if not defined:
        return {"mean": float("nan"), "std": float("nan"), "folds": 0}
    return {"mean": float(np.mean(defined)), "std": float(np.std(defined, ddof=1)) if len(defined) > 1 else 0.0, "folds": len(defined)}


def summarise(folds: Sequence[dict], pooled_truths, pooled_predictions, pooled_thresholds: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation over folds, and the pooled out-of-fold figures."""
    keys = ("ap50", "ap", *(f"ap50_{c}" for c in CLASSES), "image_recall", "ccd_precision", "ccd_recall", "ccd_f1")
    summary: dict[str, Any] = {key: _mean_std([f["figures"][key] for f in folds]) for key in keys}
    summary["at_fixed"] = {key: _mean_std([f["figures"]["at_fixed"][key] for f in folds])
                           for key in ("image_recall", "ccd_precision", "ccd_recall", "ccd_f1")}
    pooled = coco_scores(pooled_truths, pooled_predictions)
    counts = {k: 0 for k in ("tp", "fp", "fn", "images_with_artefacts", "images_found", "clean_images", "clean_flagged")}
    for truth, predicted, threshold in zip(pooled_truths, pooled_predictions, pooled_thresholds, strict=True):
        for key, value in ccd_counts([truth], [predicted], threshold).items():
            counts[key] += value
    summary["pooled"] = {"ap50": pooled["ap50"], "ap": pooled["ap"], **{f"ap50_{c}": pooled[f"ap50_{c}"] for c in CLASSES},
                         **_rates(counts), "counts": counts}
    by_area = []
    for min_pixels in CCD_AREAS:
        area_counts = {"tp": 0, "fp": 0, "fn": 0, "images_with_artefacts": 0, "images_found": 0}
        for truth, predicted, threshold in zip(pooled_truths, pooled_predictions, pooled_thresholds, strict=True):
            for key, value in ccd_counts([truth], [predicted], threshold, min_pixels=min_pixels).items():
                if key in area_counts:
                    area_counts[key] += value
        rates = _rates(area_counts)
        by_area.append({"min_pixels": min_pixels, "ccd_precision": rates["ccd_precision"], "ccd_recall": rates["ccd_recall"]})
    summary["pooled"]["ccd_by_area"] = by_area
    return summary


def crossval_baseline(images: Sequence[RealImage], *, folds: int = 5) -> dict[str, Any]:
    """The classical baseline cross-validated on the real images in the network's folds.

    Each fold's baseline is tuned (:func:`nightshift.ghosts.baseline.tune_baseline`) on the other folds'
    images only and scored on the fold at its tuned ``score_threshold``; figures per fold, mean and
    spread over folds and pooled, as :func:`summarise` gives the network's.
    """
    from nightshift.ghosts.baseline import significance_maps, tune_baseline

    started = time.perf_counter()
    maps = significance_maps([image_to_pixels(r.image) for r in images])  # each image's maps, shared by the folds
    index = {r.name: i for i, r in enumerate(images)}
    records, pooled_truths, pooled_predictions, pooled_thresholds = [], [], [], []
    for fold, scored in enumerate(real_folds([r.name for r in images], folds)):
        train = [index[n] for n in index if n not in scored]
        tuned, search = tune_baseline({k: [v[i] for i in train] for k, v in maps.items()}, [images[i].artefacts for i in train])
        test = [index[n] for n in scored]
        key = (tuned.degree, tuned.ccd_offset_sigma, tuned.smoothing_px)
        truths, predictions = [images[i].artefacts for i in test], [tuned.regions(maps[key][i]) for i in test]
        figures = fold_figures(truths, predictions, threshold=tuned.score_threshold, fixed_threshold=0.8)
        records.append({"fold": fold, "scored": list(scored), "threshold": tuned.score_threshold, "parameters": search["parameters"],
                        "train_ap50": search["train_ap50"], "train_class_ap50": search["train_class_ap50"], "figures": figures})
        pooled_truths += truths
        pooled_predictions += predictions
        pooled_thresholds += [tuned.score_threshold] * len(test)
    return {"images": len(images), "folds": records,
            "summary": summarise(records, pooled_truths, pooled_predictions, pooled_thresholds),
            "seconds": round(time.perf_counter() - started, 1)}


def _comparable(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in ("history", "seconds", "real_images")}


def real_headline(report: dict, card: dict | None = None, *, source: Path | None = None) -> dict[str, Any]:
    """The ``real`` block of ``evaluate``: cross-validated means and spreads from a ``crossval-real`` report.

    ``model_matches_crossval`` says whether ``card`` (the evaluated model's card) was fine-tuned with
    the cross-validated settings on the real images (so the figure is that procedure's).
    """
    summary = report["summary"]
    block: dict[str, Any] = {
        "ap50": summary["ap50"]["mean"], "ap50_std": summary["ap50"]["std"],
        "per_class": {c: {"ap50": summary[f"ap50_{c}"]["mean"], "ap50_std": summary[f"ap50_{c}"]["std"]} for c in CLASSES},
        "ap": summary["ap"]["mean"], "ap_std": summary["ap"]["std"],
        "image_recall": summary["image_recall"]["mean"], "image_recall_std": summary["image_recall"]["std"],
        "ccd_precision": summary["ccd_precision"]["mean"], "ccd_precision_std": summary["ccd_precision"]["std"],
        "ccd_recall": summary["ccd_recall"]["mean"], "ccd_recall_std": summary["ccd_recall"]["std"],
        "thresholds": [f["threshold"] for f in report["folds"]],
        "at_fixed_threshold": {k: v["mean"] for k, v in summary["at_fixed"].items()},
        "folds": len(report["folds"]), "images": report["images"],
        "per_fold_ap50": [f["figures"]["ap50"] for f in report["folds"]],
        "pooled": {k: v for k, v in summary["pooled"].items() if k != "counts"},
        "cross_validated": True, "source": str(source) if source else None,
    }
    if card is not None:
        finetune = card.get("training", {}).get("finetune")
        block["model_matches_crossval"] = bool(finetune) and _comparable(finetune) == _comparable(report["settings"])
    return block


FOLD_INTERVAL_UNIT = ("folds: the 5 folds' figures resampled (per-image resampling needs the fold models' per-image predictions, "
                      "which the cross-validation did not keep; recomputing them means retraining every fold)")


def fold_intervals(model_report: dict, baseline_report: dict) -> tuple[dict[str, float], dict[str, float]]:
    """95% bootstrap intervals over folds of the cross-validated mean AP@0.5 (all types and per class) of the model
    and the baseline, and, when both reports scored the same folds (:func:`real_folds` deals them from the file
    names), of the model's minus the baseline's on the same resampled folds (``ap50_over_baseline_ci95_*``).
    """
    from nightshift.core.stats import bootstrap_interval

    intervals: tuple[dict[str, float], dict[str, float]] = ({}, {})
    for figures, report in zip(intervals, (model_report, baseline_report)):
        for name in ("ap50", *(f"ap50_{c}" for c in CLASSES)):
            low, high = bootstrap_interval(np.mean, [f["figures"][name] for f in report["folds"]])
            figures.update({f"{name}_ci95_low": low, f"{name}_ci95_high": high})
        figures["interval_unit"] = FOLD_INTERVAL_UNIT
    same_folds = [sorted(f["scored"]) for f in model_report["folds"]] == [sorted(f["scored"]) for f in baseline_report["folds"]]
    if same_folds:
        difference = [m["figures"]["ap50"] - b["figures"]["ap50"] for m, b in zip(model_report["folds"], baseline_report["folds"])]
        low, high = bootstrap_interval(np.mean, difference)
        intervals[0].update(ap50_over_baseline_ci95_low=low, ap50_over_baseline_ci95_high=high)
    return intervals
