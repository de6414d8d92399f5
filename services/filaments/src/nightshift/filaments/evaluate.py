"""Scoring, per pixel: Dice, IoU, average precision and ROC, for the U-Net and the classical baselines.

Definitions (over the evaluated pixels only: those with data):

- Dice = 2 |P & T| / (|P| + |T|), IoU = |P & T| / |P | T|, with P the pixels at or above the
  threshold (0.5 for the U-Net and FilFinder's score; calibrated on training data for the Hessian
  ridge baseline) and T the truth mask; both are 1 when P and T are both empty.
- AP = sum_n (R_n - R_{n-1}) P_n over the score thresholds (scikit-learn's
  ``average_precision_score``: no interpolation); NaN without any true pixel.
- ROC: the false/true positive rates over the score thresholds and the area under them.
- ``dice_ci95_low`` / ``_high``: the 95% bootstrap interval of the Dice, resampling sky blocks of about
  64 px (neighbouring pixels are not independent; the real validation strip gives 16 blocks), and
  ``dice_over_baseline_ci95_*`` that of the model's Dice minus the ridge baseline's on the same blocks.

Datasets: held-out simulated maps (a seed the training never used) and the real Hi-GAL cut-out's
validation columns, inferred from those columns alone. The baselines' free choices (the ridge
threshold, FilFinder's parameters) are made on training data only: simulated training maps, or the
real training columns.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nightshift.core.stats import bootstrap_interval
from nightshift.filaments.baseline import FILFINDER_SEARCH, FilFinderParameters, filfinder_score, ridge_score
from nightshift.filaments.config import HIGAL_BEAM_FWHM_PX, FilamentsConfig
from nightshift.filaments.infer import predict_probability, predict_probability_one_pass
from nightshift.filaments.realdata import RealCutout
from nightshift.filaments.simulate import simulate_maps

__all__ = ["HEADLINE", "TEST_SEED_OFFSET", "dice", "iou", "dice_interval", "dice_difference_interval", "segmentation_scores", "calibrate_threshold",
           "calibrate_filfinder", "Scored", "score_maps", "with_filfinder", "evaluate_simulated", "evaluate_real",
           "border_effect", "stitching_effect", "error_breakdown", "plot_curves", "plot_side_by_side"]

HEADLINE = ("dice", "iou", "ap")
"""The headline metrics, named as the seed's successor code names them."""

TEST_SEED_OFFSET = 1_000_003
"""Held-out simulated maps use ``config.seed + TEST_SEED_OFFSET``: never a training seed."""


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient of two boolean arrays (1 when both are empty)."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * np.sum(predicted & truth) / total)


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean arrays (1 when both are empty)."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    union = np.sum(predicted | truth)
    return 1.0 if union == 0 else float(np.sum(predicted & truth) / union)


def segmentation_scores(score: np.ndarray, truth: np.ndarray, valid: np.ndarray, threshold: float) -> dict[str, Any]:
    """Dice, IoU, AP and ROC of a score map against a truth mask, over the valid pixels.

    Parameters
    ----------
    score : numpy.ndarray
        Per-pixel scores (probabilities), any shape.
    truth, valid : numpy.ndarray
        Boolean truth mask and pixels evaluated, the shape of ``score``.
    threshold : float
        Score at or above which a pixel is predicted filament.

    Returns
    -------
    dict
        ``dice``, ``iou``, ``ap``, ``roc_auc`` (floats; AP and AUC NaN when undefined), and the
        curves ``pr`` = (precision, recall) and ``roc`` = (fpr, tpr) as arrays.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    if not (score.shape == truth.shape == valid.shape):
        raise ValueError(f"shapes differ: score {score.shape}, truth {truth.shape}, valid {valid.shape}")
    valid = np.asarray(valid, bool)
    s, t = np.asarray(score, float)[valid], np.asarray(truth, bool)[valid]
    scores: dict[str, Any] = {"dice": dice(s >= threshold, t), "iou": iou(s >= threshold, t)}
    if t.any() and not t.all():
        scores["ap"] = float(average_precision_score(t, s))
        scores["roc_auc"] = float(roc_auc_score(t, s))
        precision, recall, _ = precision_recall_curve(t, s)
        fpr, tpr, _ = roc_curve(t, s)
        scores["pr"], scores["roc"] = (precision, recall), (fpr, tpr)
    else:
        scores["ap"] = float(average_precision_score(t, s)) if t.any() else float("nan")
        scores["roc_auc"] = float("nan")
        scores["pr"] = scores["roc"] = (np.zeros(0), np.zeros(0))
    return scores


INTERVAL_BLOCK_PX = 64
"""Side of the sky blocks the Dice interval resamples (the training patch): neighbouring pixels are not independent."""


def _block_counts(predicted: Sequence[np.ndarray], truths: Sequence[np.ndarray], valids: Sequence[np.ndarray]) -> np.ndarray:
    """(3, blocks) true positive, false positive and false negative pixel counts per sky block of every map."""
    counts = []
    for mask, truth, valid in zip(predicted, truths, valids):
        mask, truth, valid = np.asarray(mask, bool), np.asarray(truth, bool), np.asarray(valid, bool)
        row_blocks = np.array_split(np.arange(mask.shape[0]), max(1, round(mask.shape[0] / INTERVAL_BLOCK_PX)))
        col_blocks = np.array_split(np.arange(mask.shape[1]), max(1, round(mask.shape[1] / INTERVAL_BLOCK_PX)))
        for rows in row_blocks:
            for cols in col_blocks:
                block = np.ix_(rows, cols)
                m, t = mask[block][valid[block]], truth[block][valid[block]]
                counts.append((np.sum(m & t), np.sum(m & ~t), np.sum(~m & t)))
    return np.asarray(counts, dtype=np.float64).T


def _pooled_dice(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    total = 2 * tp.sum() + fp.sum() + fn.sum()
    return 1.0 if total == 0 else float(2 * tp.sum() / total)


def dice_interval(predicted: Sequence[np.ndarray], truths: Sequence[np.ndarray], valids: Sequence[np.ndarray]) -> list[float]:
    """The 95% bootstrap interval of the pooled Dice, resampling blocks of about ``INTERVAL_BLOCK_PX`` of every map."""
    return bootstrap_interval(_pooled_dice, *_block_counts(predicted, truths, valids))


def dice_difference_interval(predicted: Sequence[np.ndarray], other: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                             valids: Sequence[np.ndarray]) -> list[float]:
    """The 95% interval of Dice(``predicted``) - Dice(``other``), the same sky blocks resampled for both (paired)."""
    return bootstrap_interval(lambda *c: _pooled_dice(*c[:3]) - _pooled_dice(*c[3:]),
                              *_block_counts(predicted, truths, valids), *_block_counts(other, truths, valids))


def _with_dice_interval(scores: dict[str, Any], maps: Sequence[np.ndarray], threshold: float, truths: Sequence[np.ndarray],
                        valids: Sequence[np.ndarray]) -> dict[str, Any]:
    low, high = dice_interval([m >= threshold for m in maps], truths, valids)
    return {**scores, "dice_ci95_low": low, "dice_ci95_high": high}


def calibrate_threshold(scores: Sequence[np.ndarray], truths: Sequence[np.ndarray], valids: Sequence[np.ndarray]) -> float:
    """The threshold in 0.02..0.98 maximising Dice over all the given maps together (for the baseline)."""
    s = np.concatenate([np.asarray(x, float)[v] for x, v in zip(scores, valids)])
    t = np.concatenate([np.asarray(x, bool)[v] for x, v in zip(truths, valids)])
    grid = np.arange(0.02, 0.99, 0.02)
    return float(grid[int(np.argmax([dice(s >= g, t) for g in grid]))])


def calibrate_filfinder(column_densities: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                        valids: Sequence[np.ndarray], *, beam_fwhm_px: float = HIGAL_BEAM_FWHM_PX,
                        search: dict[str, tuple[float, ...]] = FILFINDER_SEARCH, sweeps: int = 2) -> FilFinderParameters:
    """FilFinder's parameters maximising Dice over all the given maps together (for training data).

    A coordinate search: each parameter in turn takes the value of its ``search`` range that maximises
    the pooled Dice, the others held, from :class:`FilFinderParameters`' defaults; ``sweeps`` rounds
    at most, fewer when a round changes nothing (the full grid would take 405 FilFinder runs per map).
    """
    truth = _stacked(truths).astype(bool)
    valid = _stacked(valids).astype(bool)

    @functools.cache
    def pooled_dice(parameters: FilFinderParameters) -> float:
        scores = [filfinder_score(c, parameters, beam_fwhm_px=beam_fwhm_px) for c in column_densities]
        return dice(_stacked(scores)[valid] >= 0.5, truth[valid])

    best = FilFinderParameters()
    for _ in range(sweeps):
        start = best
        for name, values in search.items():
            # The current choice first: a tie keeps it.
            best = max([best, *(dataclasses.replace(best, **{name: value}) for value in values)], key=pooled_dice)
        if best == start:
            break
    return best


@dataclasses.dataclass(frozen=True)
class Scored:
    """Scores of the model and the baselines on one dataset, with what the plots need."""

    dataset: str
    model: dict[str, Any]
    baseline: dict[str, Any]
    baseline_threshold: float
    dice_over_baseline_ci95: list[float] | None = None
    stitching: dict[str, Any] | None = None
    filfinder: dict[str, Any] | None = None
    filfinder_parameters: FilFinderParameters | None = None

    def figures(self) -> dict[str, Any]:
        """The numbers (no curves): the model's metrics, the Hessian ridge baseline's under ``baseline``,
        FilFinder's (with its parameters) under ``filfinder`` and the border effect under ``stitching``
        when they were measured."""
        numbers = {k: v for k, v in self.model.items() if isinstance(v, float)}
        numbers["baseline"] = {k: v for k, v in self.baseline.items() if isinstance(v, float)}
        numbers["baseline"]["threshold"] = self.baseline_threshold
        if self.dice_over_baseline_ci95 is not None:
            numbers["dice_over_baseline_ci95_low"], numbers["dice_over_baseline_ci95_high"] = self.dice_over_baseline_ci95
        if self.filfinder is not None and self.filfinder_parameters is not None:
            numbers["filfinder"] = {k: v for k, v in self.filfinder.items() if isinstance(v, float)}
            numbers["filfinder"]["parameters"] = dataclasses.asdict(self.filfinder_parameters)
        if self.stitching is not None:
            numbers["stitching"] = self.stitching
        return numbers


def score_maps(
    dataset: str,
    probabilities: Sequence[np.ndarray],
    column_densities: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    valids: Sequence[np.ndarray],
    config: FilamentsConfig,
    baseline_threshold: float,
) -> Scored:
    """Score the model's probability maps and the baseline's ridge maps on the same pixels."""
    ridges = [ridge_score(c, config.baseline_sigmas_px) for c in column_densities]
    truth, valid = _stacked(truths).astype(bool), _stacked(valids).astype(bool)
    return Scored(
        dataset,
        _with_dice_interval(segmentation_scores(_stacked(probabilities), truth, valid, config.threshold),
                            probabilities, config.threshold, truths, valids),
        _with_dice_interval(segmentation_scores(_stacked(ridges), truth, valid, baseline_threshold),
                            ridges, baseline_threshold, truths, valids),
        baseline_threshold,
        dice_over_baseline_ci95=dice_difference_interval([p >= config.threshold for p in probabilities],
                                                         [r >= baseline_threshold for r in ridges], truths, valids),
    )


def with_filfinder(scored: Scored, calibration: tuple[Sequence[np.ndarray], ...],
                   test: tuple[Sequence[np.ndarray], ...]) -> Scored:
    """``scored`` with FilFinder's scores on the ``test`` maps, its parameters chosen on the
    ``calibration`` maps (:func:`calibrate_filfinder`); each is (column densities, truths, valids)."""
    parameters = calibrate_filfinder(*calibration)
    column_densities, truths, valids = test
    scores = [filfinder_score(c, parameters, beam_fwhm_px=HIGAL_BEAM_FWHM_PX) for c in column_densities]
    figures = _with_dice_interval(segmentation_scores(_stacked(scores), _stacked(truths).astype(bool), _stacked(valids).astype(bool), 0.5),
                                  scores, 0.5, truths, valids)
    return dataclasses.replace(scored, filfinder=figures, filfinder_parameters=parameters)


def _stacked(maps: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.ravel(m) for m in maps])


def _baseline_threshold(column_densities: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                        valids: Sequence[np.ndarray], config: FilamentsConfig) -> float:
    return calibrate_threshold([ridge_score(c, config.baseline_sigmas_px) for c in column_densities], truths, valids)


def evaluate_simulated(network: torch.nn.Module, config: FilamentsConfig, *, maps: int | None = None,
                       seed: int | None = None, measure_border: bool = False,
                       filfinder: bool = False) -> tuple[Scored, np.ndarray]:
    """Score on held-out simulated maps (seed ``config.seed + TEST_SEED_OFFSET`` unless given).

    The baseline's threshold is calibrated on the first training maps (at most 4); with
    ``measure_border`` the stitching's border effect (:func:`stitching_effect`) is measured too;
    with ``filfinder`` FilFinder is scored too, its parameters chosen on the same training maps.

    Returns
    -------
    scored : Scored
    probabilities : numpy.ndarray
        (maps, H, W) the model's probability maps.
    """
    test = simulate_maps(maps or config.test_maps, config.map_px, config.seed + TEST_SEED_OFFSET if seed is None else seed)
    calibration = simulate_maps(min(config.train_maps, 4), config.map_px, config.seed)
    calibration_maps = ([m.column_density for m in calibration], [m.mask for m in calibration],
                        [m.usable for m in calibration])
    threshold = _baseline_threshold(*calibration_maps, config)
    probabilities = predict_probability(network, np.stack([m.column_density for m in test]), config)
    images, truths, valids = [m.column_density for m in test], [m.mask for m in test], [m.usable for m in test]
    scored = score_maps("simulated-test", list(probabilities), images, truths, valids, config, threshold)
    if filfinder:
        scored = with_filfinder(scored, calibration_maps, (images, truths, valids))
    if measure_border:
        scored = dataclasses.replace(scored, stitching=stitching_effect(network, config, images, truths, valids, probabilities))
    return scored, probabilities


def evaluate_real(network: torch.nn.Module, config: FilamentsConfig, cutout: RealCutout, *,
                  measure_border: bool = False, filfinder: bool = False) -> tuple[Scored, np.ndarray]:
    """Score on the real cut-out's validation columns, inferred from those columns alone.

    The baseline's threshold is calibrated on the training columns; with ``measure_border`` the
    stitching's border effect (:func:`stitching_effect`) is measured too; with ``filfinder``
    FilFinder is scored too, its parameters chosen on the training columns (it runs on each part alone).

    Returns
    -------
    scored : Scored
    probability : numpy.ndarray
        (H, W) the model's probability over the validation columns.
    """
    train, validation = cutout.columns(config.real_train_columns), cutout.columns(config.real_validation_columns)
    threshold = _baseline_threshold([train.column_density], [train.mask], [train.usable], config)
    probability = predict_probability(network, validation.column_density, config)
    scored = score_maps("real-validation", [probability], [validation.column_density], [validation.mask],
                        [validation.usable], config, threshold)
    if filfinder:
        scored = with_filfinder(scored, ([train.column_density], [train.mask], [train.usable]),
                                ([validation.column_density], [validation.mask], [validation.usable]))
    if measure_border:
        scored = dataclasses.replace(scored, stitching=stitching_effect(
            network, config, [validation.column_density], [validation.mask], [validation.usable], [probability]))
    return scored, probability


def error_breakdown(probability: np.ndarray, truth: np.ndarray, valid: np.ndarray, threshold: float) -> dict[str, float]:
    """Where a predicted mask's errors lie (a diagnosis: nothing is chosen with it).

    Over the pixels with data: precision, recall, the predicted and true mask fractions; the share of
    false positives within 1 px of the truth and of false negatives within 1 px of the prediction
    (boundary errors), the Dice with those boundary errors forgiven; the true filaments (8-connected
    components) missed entirely and their share of the true pixels; the predicted components touching
    no true pixel and their share of the false positives.
    """
    from scipy import ndimage

    valid = np.asarray(valid, bool)
    t = np.asarray(truth, bool) & valid
    p = (np.asarray(probability) >= threshold) & valid
    tp, fp, fn = p & t, p & ~t, t & ~p
    ring = np.ones((3, 3), bool)
    near_truth, near_prediction = ndimage.binary_dilation(t, ring), ndimage.binary_dilation(p, ring)
    figures = {"precision": float(tp.sum() / max(p.sum(), 1)), "recall": float(tp.sum() / max(t.sum(), 1)),
               "predicted_fraction": float(p[valid].mean()), "truth_fraction": float(t[valid].mean()),
               "fp_within_1px_of_truth": float((fp & near_truth).sum() / max(fp.sum(), 1)),
               "fn_within_1px_of_prediction": float((fn & near_prediction).sum() / max(fn.sum(), 1))}
    far = 2 * tp.sum() + (fp & ~near_truth).sum() + (fn & ~near_prediction).sum()
    figures["dice_forgiving_1px_boundary_errors"] = float(2 * tp.sum() / far) if far else 1.0
    for name, mask, other, share_of in (("truth", t, p, t), ("predicted", p, t, fp)):
        labels, count = ndimage.label(mask, ring)
        index = np.arange(1, count + 1)
        touched = np.asarray(ndimage.maximum(other, labels, index)) if count else np.zeros(0)
        sizes = np.asarray(ndimage.sum(mask, labels, index)) if count else np.zeros(0)
        figures[f"{name}_components"] = float(count)
        figures[f"{name}_components_alone"] = float(np.sum(touched == 0))  # missed (truth) or spurious (predicted)
        figures[f"{name}_alone_pixel_share"] = float(sizes[touched == 0].sum() / max(share_of.sum(), 1))
    return figures


def border_effect(
    stitched: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    valids: Sequence[np.ndarray],
    *,
    border_px: int,
    threshold: float,
) -> dict[str, dict[str, float]]:
    """How two probability maps of the same sky differ near the map's edges and away from them.

    Parameters
    ----------
    stitched, reference : sequence of numpy.ndarray
        (H, W) probability maps, e.g. stitched windows and a one-pass inference of the same maps.
    truths, valids : sequence of numpy.ndarray
        (H, W) truth masks and pixels with data.
    border_px : int
        Pixels within this distance of a map's edge form the border; the rest is the interior.
    threshold : float
        Probability at or above which a pixel is predicted filament.

    Returns
    -------
    dict
        For ``"border"`` and ``"interior"`` (pixels with data, pooled over the maps): ``pixels``,
        ``max_abs_diff`` and ``mean_abs_diff`` of the probabilities, ``dice_between`` (the two
        predicted masks against each other) and ``dice_stitched``, ``dice_reference`` (each against
        the truth).
    """
    regions: dict[str, list[tuple[np.ndarray, ...]]] = {"border": [], "interior": []}
    for a, b, truth, valid in zip(stitched, reference, truths, valids):
        rows, cols = np.indices(a.shape)
        edge = np.minimum.reduce([rows, cols, a.shape[0] - 1 - rows, a.shape[1] - 1 - cols]) < border_px
        for name, where in (("border", edge & valid), ("interior", ~edge & valid)):
            regions[name].append((a[where], b[where], np.asarray(truth, bool)[where]))
    figures = {}
    for name, parts in regions.items():
        a, b, truth = (np.concatenate(column) for column in zip(*parts))
        difference = np.abs(a.astype(float) - b)
        figures[name] = {
            "pixels": int(a.size),
            "max_abs_diff": float(difference.max()) if a.size else float("nan"),
            "mean_abs_diff": float(difference.mean()) if a.size else float("nan"),
            "dice_between": dice(a >= threshold, b >= threshold),
            "dice_stitched": dice(a >= threshold, truth),
            "dice_reference": dice(b >= threshold, truth),
        }
    return figures


def stitching_effect(network: torch.nn.Module, config: FilamentsConfig, column_densities: Sequence[np.ndarray],
                     truths: Sequence[np.ndarray], valids: Sequence[np.ndarray],
                     stitched: Sequence[np.ndarray]) -> dict[str, Any]:
    """The border effect of the stitched inference: :func:`border_effect` of the stitched maps
    against one forward pass over each whole map, with a border of a quarter patch (the pixels that
    only a window's tapered edge sees)."""
    one_pass = [predict_probability_one_pass(network, c, config) for c in column_densities]
    border_px = config.patch_px // 4
    return {"border_px": border_px, "reference": "one forward pass over the whole map",
            **border_effect(stitched, one_pass, truths, valids, border_px=border_px, threshold=config.threshold)}


def plot_curves(results: Sequence[Scored], path: Path) -> Path:
    """Precision-recall and ROC curves of the model and the baselines, one row per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(results), 2, figsize=(10, 4.2 * len(results)), squeeze=False)
    for row, scored in zip(axes, results):
        curves = [("U-Net", scored.model, "-"), ("Hessian ridge baseline", scored.baseline, "--")]
        if scored.filfinder is not None:
            curves.append(("FilFinder", scored.filfinder, ":"))
        for name, scores, style in curves:
            precision, recall = scores["pr"]
            fpr, tpr = scores["roc"]
            row[0].plot(recall, precision, style, label=f"{name} (AP {scores['ap']:.3f})")
            row[1].plot(fpr, tpr, style, label=f"{name} (AUC {scores['roc_auc']:.3f})")
        row[0].set(xlabel="recall", ylabel="precision", title=f"{scored.dataset}: precision-recall per pixel", xlim=(0, 1), ylim=(0, 1))
        row[1].set(xlabel="false positive rate", ylabel="true positive rate", title=f"{scored.dataset}: ROC per pixel", xlim=(0, 1), ylim=(0, 1))
        row[0].legend(loc="lower left")
        row[1].legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_side_by_side(column_density: np.ndarray, truth: np.ndarray, predicted: np.ndarray, path: Path,
                      title: str = "Hi-GAL validation columns", filfinder_mask: np.ndarray | None = None) -> Path:
    """The real N(H2) map, the real mask and the predicted mask (and FilFinder's mask when given), side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    masks = [("real mask (Schisano+2020)", truth), ("predicted mask (U-Net)", predicted)]
    if filfinder_mask is not None:
        masks.append(("FilFinder mask", filfinder_mask))
    figure, axes = plt.subplots(1, 1 + len(masks), figsize=(3 * (1 + len(masks)), 10), sharey=True)
    shown = axes[0].imshow(np.log10(column_density), origin="lower", cmap="inferno")
    figure.colorbar(shown, ax=axes[0], fraction=0.08, label="log10 N(H2) [cm^-2]")
    axes[0].set_title("N(H2) (Hi-GAL)")
    for axis, (name, mask) in zip(axes[1:], masks):
        axis.imshow(mask, origin="lower", cmap="gray")
        axis.set_title(name)
    for axis in axes:
        axis.set_xlabel("column (pixels)")
    axes[0].set_ylabel("row (pixels)")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

