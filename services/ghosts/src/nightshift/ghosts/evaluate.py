"""The seed's metrics: COCO mask AP, the clean-versus-artefact confusion matrix, CCD-level precision/recall.

Definitions (DeepGhostBusters, Tanoglidis et al. 2021):

- ``ap50``: COCO average precision of the masks at IoU 0.5 (pycocotools, ``iouType="segm"``,
  101-point interpolation, up to 100 instances per image) for all artefact types together, i.e. with
  the classes merged into one ("all types" of the seed); ``ap50_bright`` / ``ap50_faint`` /
  ``ap50_rays`` per class; ``ap`` the same averaged over IoU 0.50:0.05:0.95.
- Image-level decision: an image "has artefacts" when at least one instance scores at least the
  confidence threshold (0.8); the confusion matrix counts clean/artefact truth against it, and
  ``image_recall`` / ``image_precision`` summarise it.
- CCD level: a CCD is affected when the union of an image's masks covers at least 10 of its pixels
  (:func:`nightshift.ghosts.focalplane.affected_ccds`); precision and recall are pooled over images.
"""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from nightshift.ghosts.artefacts import Artefact, encode_rle
from nightshift.ghosts.baseline import ResidualBaseline
from nightshift.ghosts.config import CLASSES, GhostsConfig, data_ranges
from nightshift.ghosts.infer import Detector, findings
from nightshift.ghosts.model import GhostDetector
from nightshift.ghosts.preprocess import image_to_pixels
from nightshift.ghosts.realdata import DEFAULT_REAL_DIR, RealImage, load_real_images, load_via, split_real, via_regions
from nightshift.ghosts.simulate import simulate_dataset

__all__ = [
    "coco_scores", "pooled_ap", "ap_intervals", "image_confusion", "ccd_scores", "score_all", "score_simulated", "score_simulated_with_baseline",
    "score_real", "score_real_heldout", "annotator_agreement", "headline", "plot_pr_curves", "plot_overlays",
]


def _coco(truths: Sequence[Sequence[Artefact]], predictions: Sequence[Sequence[Artefact]], *, merge_classes: bool):
    categories = [{"id": 1, "name": "artefact"}] if merge_classes else [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
    category = (lambda a: 1) if merge_classes else (lambda a: CLASSES.index(a.label) + 1)
    images, annotations, results = [], [], []
    for image_id, (truth, predicted) in enumerate(zip(truths, predictions, strict=True), start=1):
        shape = next((a.mask.shape for a in (*truth, *predicted)), (1, 1))
        images.append({"id": image_id, "height": shape[0], "width": shape[1]})
        for artefact in truth:
            rle = encode_rle(artefact.mask)
            x0, y0, x1, y1 = artefact.box
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category(artefact), "segmentation": rle,
                "area": float(artefact.area_px), "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0,
            })
        for artefact in predicted:
            results.append({"image_id": image_id, "category_id": category(artefact), "segmentation": encode_rle(artefact.mask),
                            "score": float(artefact.score)})
    with contextlib.redirect_stdout(io.StringIO()):
        ground = COCO()
        ground.dataset = {"images": images, "annotations": annotations, "categories": categories}
        ground.createIndex()
        detected = ground.loadRes(results) if results else None
    return ground, detected


def _evaluate(ground: COCO, detected: COCO | None, category_ids: list[int]) -> tuple[float, float, np.ndarray]:
    """(AP@0.5, AP@[.5:.95], precision at IoU 0.5 over the 101 recall points) for some categories."""
    if detected is None or not ground.getAnnIds(catIds=category_ids):
        no_truth = not ground.getAnnIds(catIds=category_ids)
        value = float("nan") if no_truth else 0.0
        return value, value, np.zeros(101)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(ground, detected, iouType="segm")
        evaluation.params.catIds = category_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"][0, :, :, 0, -1]  # IoU 0.5, all recalls, categories, all areas, 100 dets
    curve = np.where(precision < 0, np.nan, precision)
    curve = np.nanmean(curve, axis=1) if curve.shape[1] else np.zeros(101)
    return max(float(evaluation.stats[1]), 0.0), max(float(evaluation.stats[0]), 0.0), np.nan_to_num(curve)


_MAX_DETECTIONS = 100
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _match_records(ground: COCO, detected: COCO | None, category_id: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """Per image (in image order): pycocotools' matches of one category at every IoU threshold, all areas, 100 detections.

    Each record is (scores (D,), matched (T, D) bool, ignored (T, D) bool, truths counted): what ``COCOeval.accumulate``
    pools, kept per image so that a resample of images can be scored without matching again.
    """
    image_ids = sorted(ground.getImgIds())
    empty = (np.zeros(0), np.zeros((10, 0), bool), np.zeros((10, 0), bool), 0)
    if detected is None:
        return [(*empty[:3], len(ground.getAnnIds(imgIds=[i], catIds=[category_id]))) for i in image_ids]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(ground, detected, iouType="segm")
        evaluation.params.catIds = [category_id]
        evaluation.evaluate()
    records = []
    for image in evaluation.evalImgs[:len(image_ids)]:  # the first area range ("all"), this category
        if image is None:
            records.append(empty)
            continue
        scores = np.asarray(image["dtScores"][:_MAX_DETECTIONS], float)
        matched = np.asarray(image["dtMatches"][:, :_MAX_DETECTIONS]) > 0
        ignored = np.asarray(image["dtIgnore"][:, :_MAX_DETECTIONS], bool)
        records.append((scores, matched, ignored, int(np.count_nonzero(np.asarray(image["gtIgnore"]) == 0))))
    return records


def pooled_ap(records: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, int]]) -> tuple[float, float]:
    """(AP@0.5, AP@[.5:.95]) of pooled per-image match records, as ``COCOeval.accumulate`` and ``summarize`` compute them
    (101-point interpolation); NaN without truth."""
    truths = sum(r[3] for r in records)
    if truths == 0:
        return float("nan"), float("nan")
    scores = np.concatenate([r[0] for r in records])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([r[1] for r in records], axis=1)[:, order]
    ignored = np.concatenate([r[2] for r in records], axis=1)[:, order]
    true_positives = np.cumsum(matched & ~ignored, axis=1, dtype=float)
    false_positives = np.cumsum(~matched & ~ignored, axis=1, dtype=float)
    precision_at = np.zeros((len(matched), len(_RECALL_POINTS)))
    for t, (tp, fp) in enumerate(zip(true_positives, false_positives)):
        if not len(tp):
            continue
        precision = np.maximum.accumulate((tp / (tp + fp + np.spacing(1)))[::-1])[::-1]  # the envelope from the right
        found = np.searchsorted(tp / truths, _RECALL_POINTS, side="left")
        inside = found < len(tp)
        precision_at[t, inside] = precision[found[inside]]
    per_threshold = precision_at.mean(axis=1)
    return float(per_threshold[0]), float(per_threshold.mean())


def ap_intervals(truths: Sequence[Sequence[Artefact]], predictions: Sequence[Sequence[Artefact]],
                 baseline_predictions: Sequence[Sequence[Artefact]]) -> tuple[dict[str, float], dict[str, float]]:
    """95% bootstrap intervals over images (resampled together for model and baseline) of the COCO mask APs.

    Returns (model, baseline) dicts of ``<figure>_ci95_low`` / ``_high`` for ``ap50`` and ``ap`` (all types together)
    and ``ap50_<class>``; the model's also ``ap50_over_baseline_ci95_*``, its AP@0.5 minus the baseline's on the same
    resampled images.
    """
    from nightshift.core.stats import bootstrap_interval

    def records(predicted, merge_classes):
        ground, detected = _coco(truths, predicted, merge_classes=merge_classes)
        if merge_classes:
            return {"": _match_records(ground, detected, 1)}
        return {f"_{name}": _match_records(ground, detected, index) for index, name in enumerate(CLASSES, start=1)}

    images = np.arange(len(truths))
    detectors = [{**records(p, True), **records(p, False)} for p in (predictions, baseline_predictions)]
    intervals: tuple[dict[str, float], dict[str, float]] = ({}, {})
    for figures, per_kind in zip(intervals, detectors):
        for suffix, per_image in per_kind.items():
            names = ((f"ap50{suffix}", 0), ("ap", 1)) if not suffix else ((f"ap50{suffix}", 0),)
            for name, which in names:
                low, high = bootstrap_interval(lambda i, r=per_image, w=which: pooled_ap([r[k] for k in i])[w], images)
                figures.update({f"{name}_ci95_low": low, f"{name}_ci95_high": high})
    model, baseline = detectors[0][""], detectors[1][""]
    low, high = bootstrap_interval(lambda i: pooled_ap([model[k] for k in i])[0] - pooled_ap([baseline[k] for k in i])[0], images)
    intervals[0].update(ap50_over_baseline_ci95_low=low, ap50_over_baseline_ci95_high=high)
    return intervals


def coco_scores(truths: Sequence[Sequence[Artefact]], predictions: Sequence[Sequence[Artefact]]) -> dict:
    """COCO mask AP of predictions against truth, over a set of images.

    Parameters
    ----------
    truths, predictions : sequence of sequence of Artefact
        Per image (same order and length): the true and the predicted artefacts (predictions with
        their scores; all of them, the AP sweeps the threshold).

    Returns
    -------
    dict
        ``ap50``, ``ap`` (all types together), ``ap50_<class>`` and ``ap_<class>`` per class (NaN for
        a class without truth), and ``pr_curve`` / ``pr_curve_<class>``: precision at IoU 0.5 at
        recall 0, 0.01, ..., 1 (lists). No truth at all gives NaN scores.
    """
    if len(truths) != len(predictions):
        raise ValueError(f"{len(truths)} truth images and {len(predictions)} prediction images: expected equal counts")
    scores: dict = {}
    ground, detected = _coco(truths, predictions, merge_classes=True)
    scores["ap50"], scores["ap"], curve = _evaluate(ground, detected, [1])
    scores["pr_curve"] = curve.tolist()
    ground, detected = _coco(truths, predictions, merge_classes=False)
    for index, name in enumerate(CLASSES, start=1):
        scores[f"ap50_{name}"], scores[f"ap_{name}"], curve = _evaluate(ground, detected, [index])
        scores[f"pr_curve_{name}"] = curve.tolist()
    return scores


def image_confusion(truths: Sequence[Sequence[Artefact]], predictions: Sequence[Sequence[Artefact]], *, score_threshold: float) -> dict[str, int]:
    """Clean-versus-artefact confusion counts over images.

    Returns
    -------
    dict
        ``clean_as_clean``, ``clean_as_artefact``, ``artefact_as_clean``, ``artefact_as_artefact``.
    """
    counts = {"clean_as_clean": 0, "clean_as_artefact": 0, "artefact_as_clean": 0, "artefact_as_artefact": 0}
    for truth, predicted in zip(truths, predictions, strict=True):
        said = findings(predicted, score_threshold=score_threshold).has_artefacts
        counts[f"{'artefact' if truth else 'clean'}_as_{'artefact' if said else 'clean'}"] += 1
    return counts


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def ccd_scores(truths: Sequence[Sequence[Artefact]], predictions: Sequence[Sequence[Artefact]], *, score_threshold: float) -> dict[str, float]:
    """CCD-level precision, recall and F1, pooled over images (affected CCDs of truth vs predictions)."""
    true_positive = false_positive = false_negative = 0
    for truth, predicted in zip(truths, predictions, strict=True):
        true_ccds = set(findings(truth, score_threshold=0.0).ccds)
        found_ccds = set(findings(predicted, score_threshold=score_threshold).ccds)
        true_positive += len(true_ccds & found_ccds)
        false_positive += len(found_ccds - true_ccds)
        false_negative += len(true_ccds - found_ccds)
    precision = _ratio(true_positive, true_positive + false_positive)
    recall = _ratio(true_positive, true_positive + false_negative)
    return {"ccd_precision": precision, "ccd_recall": recall, "ccd_f1": _ratio(2 * precision * recall, precision + recall)}


def score_all(truths: Sequence[Sequence[Artefact]], predictions: Sequence[Sequence[Artefact]], *, score_threshold: float) -> dict:
    """Every metric of the module: COCO APs and PR curves, confusion matrix, image and CCD precision/recall."""
    scores = coco_scores(truths, predictions)
    confusion = image_confusion(truths, predictions, score_threshold=score_threshold)
    scores["confusion"] = confusion
    scores["image_recall"] = _ratio(confusion["artefact_as_artefact"], confusion["artefact_as_artefact"] + confusion["artefact_as_clean"])
    scores["image_precision"] = _ratio(confusion["artefact_as_artefact"], confusion["artefact_as_artefact"] + confusion["clean_as_artefact"])
    scores.update(ccd_scores(truths, predictions, score_threshold=score_threshold))
    scores["images"] = len(truths)
    return scores


def score_simulated(detector: GhostDetector, config: GhostsConfig, *, seed: int, count: int, device=None) -> dict:
    """:func:`score_all` of a detector on ``count`` held-out simulated exposures (the test index range)."""
    return score_simulated_with_baseline(detector, config, seed=seed, count=count, device=device, baseline=None)[0]


def _score_images(
    detector: GhostDetector, config: GhostsConfig, images: Sequence[np.ndarray], truths: Sequence[Sequence[Artefact]],
    *, device=None, baseline: ResidualBaseline | None = ResidualBaseline(),
) -> tuple[dict, dict | None, list[list[Artefact]], list[list[Artefact]] | None]:
    pixels = [image_to_pixels(im) for im in images]
    predictions = Detector(detector, device=device).predict(pixels, score_threshold=0.0)
    model_scores = score_all(truths, predictions, score_threshold=config.score_threshold)
    if baseline is None:
        return model_scores, None, predictions, None
    baseline_predictions = [baseline.find(p) for p in pixels]
    baseline_scores = score_all(truths, baseline_predictions, score_threshold=baseline.score_threshold)  # each at its own tuned threshold
    return model_scores, baseline_scores, predictions, baseline_predictions


def score_simulated_with_baseline(
    detector: GhostDetector, config: GhostsConfig, *, seed: int, count: int, device=None,
    baseline: ResidualBaseline | None = ResidualBaseline(), intervals: bool = False,
) -> tuple[dict, dict | None]:
    """(model scores, baseline scores) on ``count`` held-out simulated exposures; with ``intervals`` (and a baseline)
    each also holds the 95% bootstrap intervals over exposures of :func:`ap_intervals`."""
    exposures = simulate_dataset(count, seed, first_index=data_ranges(config)["test"][0])
    truths = [e.artefacts for e in exposures]
    model_scores, baseline_scores, predictions, baseline_predictions = _score_images(
        detector, config, [e.image for e in exposures], truths, device=device, baseline=baseline)
    if intervals and baseline_scores is not None and baseline_predictions is not None:
        model_intervals, baseline_intervals = ap_intervals(truths, predictions, baseline_predictions)
        model_scores.update(model_intervals)
        baseline_scores.update(baseline_intervals)
    return model_scores, baseline_scores


def score_real(
    detector: GhostDetector, config: GhostsConfig, images: Sequence[RealImage], *, device=None,
) -> tuple[dict, dict, list[list[Artefact]], list[list[Artefact]]]:
    """(model scores, baseline scores, model predictions, baseline predictions) on annotated real images."""
    model_scores, baseline_scores, predictions, baseline_predictions = _score_images(
        detector, config, [r.image for r in images], [r.artefacts for r in images], device=device)
    assert baseline_scores is not None and baseline_predictions is not None
    return model_scores, baseline_scores, predictions, baseline_predictions


def score_real_heldout(detector: GhostDetector, config: GhostsConfig, directory: Path = DEFAULT_REAL_DIR) -> tuple[dict, dict]:
    """(model scores, baseline scores) on the real images not used in training.

    Raises
    ------
    NotFound
        If the real data directory is absent.
    FailedPrecondition
        If the model was trained on every real image (its real figure is the cross-validated one).
    """
    from nightshift.core.errors import FailedPrecondition, NotFound

    if not (Path(directory) / "images").is_dir():
        raise NotFound(f"ghosts: real data directory {directory} is not available here")
    _, held_out = split_real(load_real_images(directory), config.real_train_images)
    if not held_out:
        raise FailedPrecondition("ghosts: the model was trained on every real image, so none is held out; "
                                 "its real figure is cross-validated (dataset 'real-crossval')")
    model_scores, baseline_scores, _, _ = score_real(detector, config, held_out)
    return model_scores, baseline_scores


def annotator_agreement(annotation_files: Sequence[Path], image_names: Sequence[str]) -> dict:
    """The human ceiling: every annotator scored against every other one on the same images.

    For each ordered pair (reference A, candidate B) B's regions are scored as predictions of
    confidence 1 against A's with :func:`coco_scores`, and the mean mask IoU of A's instances with
    their best-matching B instance of any class is computed.

    Returns
    -------
    dict
        Means over the ordered pairs of ``ap50``, ``ap50_<class>`` and ``mask_iou``, the number of
        annotators and ``pairs``.
    """
    annotators = []
    for path in annotation_files:
        records = load_via(path)
        annotators.append([via_regions(records[name]) if name in records else [] for name in image_names])
    per_pair: dict[str, list[float]] = {}
    for reference, candidate in itertools.permutations(annotators, 2):
        scores = coco_scores(reference, candidate)
        for key in ("ap50", "ap", *(f"ap50_{c}" for c in CLASSES)):
            per_pair.setdefault(key, []).append(scores[key])
        ious = [max((_iou(a.mask, b.mask) for b in other), default=0.0)
                for truth, other in zip(reference, candidate) for a in truth]
        per_pair.setdefault("mask_iou", []).append(float(np.mean(ious)) if ious else float("nan"))
    result = {key: _mean_of_defined(values) for key, values in per_pair.items()}
    result.update(annotators=len(annotators), pairs=len(per_pair.get("ap50", [])), images=len(image_names))
    return result


def _mean_of_defined(values: Sequence[float]) -> float:
    """Mean over the values that are not NaN (a class absent from both annotators gives NaN)."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def headline(scores: dict) -> dict[str, float]:
    """The scalar figures of :func:`score_all` output (curves dropped, confusion counts flattened)."""
    flat = {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}
    flat.update({f"confusion_{k}": float(v) for k, v in scores.get("confusion", {}).items()})
    return flat


def plot_pr_curves(curves: dict[str, tuple[dict, dict]], path: Path) -> Path:
    """Precision-recall curves at IoU 0.5 (all types and per class), model vs baseline, per data set.

    Parameters
    ----------
    curves : dict
        Data set name to (model scores, baseline scores) as returned by :func:`score_all`.
    path : Path
        PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recall = np.linspace(0, 1, 101)
    keys = ["pr_curve", *(f"pr_curve_{c}" for c in CLASSES)]
    figure, axes = plt.subplots(len(curves), len(keys), figsize=(4 * len(keys), 3.4 * len(curves)), squeeze=False)
    for row, (dataset, (model_scores, baseline_scores)) in enumerate(curves.items()):
        for column, key in enumerate(keys):
            axis = axes[row, column]
            name = key.replace("pr_curve", "all types").replace("all types_", "")
            ap_key = key.replace("pr_curve", "ap50")
            axis.plot(recall, model_scores[key], label=f"Mask R-CNN (AP50 {model_scores[ap_key]:.2f})")
            axis.plot(recall, baseline_scores[key], "--", label=f"residual baseline ({baseline_scores[ap_key]:.2f})")
            axis.set(title=f"{dataset}: {name}", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
            axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


_COLOURS = {"bright": (1.0, 0.2, 0.2), "faint": (0.2, 0.9, 1.0), "rays": (1.0, 0.9, 0.1)}


def _outline(image: np.ndarray, artefacts: Sequence[Artefact], threshold: float) -> np.ndarray:
    from scipy import ndimage

    canvas = image.astype(float) / 255.0
    for artefact in artefacts:
        if artefact.score >= threshold:
            edge = artefact.mask & ~ndimage.binary_erosion(artefact.mask, iterations=2)
            canvas[edge] = _COLOURS[artefact.label]
    return canvas


def plot_overlays(
    images: Sequence[np.ndarray], truths: Sequence[Sequence[Artefact]], predictions: Sequence[Sequence[Artefact]],
    names: Sequence[str], path: Path, *, score_threshold: float,
) -> Path:
    """Annotated (left) and predicted (right, at the confidence threshold) mask outlines per image.

    Colours: red bright, cyan faint, yellow rays.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(images), 2, figsize=(7, 3.5 * len(images)), squeeze=False)
    for row, (image, truth, predicted, name) in enumerate(zip(images, truths, predictions, names)):
        axes[row, 0].imshow(_outline(image, truth, 0.0))
        axes[row, 0].set_title(f"{name}: annotated", fontsize=8)
        axes[row, 1].imshow(_outline(image, predicted, score_threshold))
        axes[row, 1].set_title(f"predicted (score >= {score_threshold:g})", fontsize=8)
        for axis in axes[row]:
            axis.axis("off")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
