"""The paper's scoring: hits by box coverage, detection rate, precision, F2 and the confidence sweep.

A detection hits a bubble when it covers at least 1/3 of the bubble's truth box (centre +- 1.3 x
radius): area of the intersection over the area of the truth box. Detection rate: the fraction of
bubbles hit (clear bubbles: the paper's headline; all bubbles: reported beside it). Precision: the
fraction of detections that hit some bubble, clear or not (a detection of a real but faint bubble is
not a false one). F2 = 5 P R / (4 P + R) with R the clear-bubble detection rate. Conventions for empty
sets: no bubbles gives a rate of 1 (nothing missed), no detections a precision of 1 (nothing wrong).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HIT_COVERAGE", "SWEEP_THRESHOLDS", "Counts", "coverage_matrix", "count_covered", "count_hits", "truth_hits", "f_beta", "headline",
           "score_sweep", "plot_sweep", "write_json"]

HIT_COVERAGE = 1.0 / 3.0
"""Fraction of a truth box a detection must cover to hit it."""
SWEEP_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.5, 0.951, 0.05), 2))
"""The paper's confidence sweep, 0.5 to 0.95."""


def coverage_matrix(detections: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """Fraction of each truth box covered by each detection box.

    Parameters
    ----------
    detections : ndarray
        (n, 4) boxes ``[x_min, y_min, x_max, y_max]``.
    truths : ndarray
        (m, 4) boxes in the same coordinates.

    Returns
    -------
    ndarray
        (n, m): area(detection & truth) / area(truth).
    """
    detections = np.asarray(detections, float).reshape(-1, 4)
    truths = np.asarray(truths, float).reshape(-1, 4)
    width = np.clip(np.minimum(detections[:, None, 2], truths[None, :, 2]) - np.maximum(detections[:, None, 0], truths[None, :, 0]), 0, None)
    height = np.clip(np.minimum(detections[:, None, 3], truths[None, :, 3]) - np.maximum(detections[:, None, 1], truths[None, :, 1]), 0, None)
    area = (truths[:, 2] - truths[:, 0]) * (truths[:, 3] - truths[:, 1])
    return width * height / np.where(area > 0, area, np.inf)[None, :]


@dataclasses.dataclass(frozen=True)
class Counts:
    """Hit counts of one field or a sum of fields."""

    clear_hit: int = 0
    clear_total: int = 0
    all_hit: int = 0
    all_total: int = 0
    true_detections: int = 0
    detections: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    @property
    def detection_rate(self) -> float:
        """Fraction of clear bubbles hit."""
        return self.clear_hit / self.clear_total if self.clear_total else 1.0

    @property
    def detection_rate_all(self) -> float:
        """Fraction of all bubbles hit."""
        return self.all_hit / self.all_total if self.all_total else 1.0

    @property
    def precision(self) -> float:
        """Fraction of detections that hit a bubble."""
        return self.true_detections / self.detections if self.detections else 1.0

    @property
    def f2(self) -> float:
        return f_beta(self.precision, self.detection_rate, beta=2.0)


def f_beta(precision: float, recall: float, *, beta: float = 2.0) -> float:
    """The F-beta score; 0 when precision and recall are both 0."""
    denominator = beta**2 * precision + recall
    return (1 + beta**2) * precision * recall / denominator if denominator > 0 else 0.0


def count_hits(detection_boxes: np.ndarray, truth_boxes: np.ndarray, clear: Sequence[bool]) -> Counts:
    """Hits of one field's detections (n, 4) on its truth boxes (m, 4), each truth flagged clear or not."""
    return count_covered(coverage_matrix(detection_boxes, truth_boxes), clear)


def count_covered(coverage: np.ndarray, clear: Sequence[bool]) -> Counts:
    """Hits from a coverage matrix of shape (n detections, m truths) (:func:`coverage_matrix`), each truth flagged clear or not."""
    clear = np.asarray(clear, bool).reshape(-1)
    covered = np.asarray(coverage, float) >= HIT_COVERAGE
    truth_hit = covered.any(axis=0)
    return Counts(
        clear_hit=int(truth_hit[clear].sum()), clear_total=int(clear.sum()),
        all_hit=int(truth_hit.sum()), all_total=len(clear),
        true_detections=int(covered.any(axis=1).sum()), detections=len(covered),
    )


def truth_hits(detection_boxes: np.ndarray, truth_boxes: np.ndarray) -> np.ndarray:
    """(m,) bool: which truth boxes (m, 4) some detection box (n, 4) hits."""
    covered = coverage_matrix(detection_boxes, truth_boxes) >= HIT_COVERAGE
    return covered.any(axis=0).reshape(-1)


def headline(counts: Counts) -> dict[str, float]:
    """The named figures of a set of counts."""
    return {
        "detection_rate": counts.detection_rate, "precision": counts.precision, "f2": counts.f2,
        "detection_rate_all": counts.detection_rate_all, "bubbles_clear": float(counts.clear_total),
        "bubbles_all": float(counts.all_total), "detections": float(counts.detections),
    }


def score_sweep(fields: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, Sequence[bool]]],
                thresholds: Sequence[float] = SWEEP_THRESHOLDS) -> dict[float, Counts]:
    """Counts at each confidence threshold, summed over fields.

    Parameters
    ----------
    fields : sequence of (detection boxes (n, 4), scores (n,), truth boxes (m, 4), clear flags (m,))
        Detections already merged (NMS) at the lowest threshold; keeping those above a threshold is
        then the same as running the NMS on them alone.
    thresholds : sequence of float
        Confidence thresholds.
    """
    sweep = {}
    for threshold in thresholds:
        total = Counts()
        for boxes, scores, truths, clear in fields:
            keep = np.asarray(scores) >= threshold
            total = total + count_hits(np.asarray(boxes).reshape(-1, 4)[keep], truths, clear)
        sweep[float(threshold)] = total
    return sweep


def plot_sweep(curves: dict[str, dict[float, Counts]], path: Path) -> Path:
    """Detection rate (clear, all) and precision against the confidence threshold, one colour per detector."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for (name, sweep), colour in zip(curves.items(), ("C0", "C1", "C2")):
        thresholds = list(sweep)
        axes[0].plot(thresholds, [sweep[t].detection_rate for t in thresholds], "-o", color=colour, label=f"{name}: clear")
        axes[0].plot(thresholds, [sweep[t].detection_rate_all for t in thresholds], "--", color=colour, label=f"{name}: all")
        axes[1].plot(thresholds, [sweep[t].precision for t in thresholds], "-o", color=colour, label=name)
    axes[0].axhline(0.98, color="grey", lw=0.8, ls=":", label="paper: 98% (clear)")
    axes[1].axhline(0.9, color="grey", lw=0.8, ls=":", label="target precision 0.9")
    for axis, label in zip(axes, ("detection rate", "precision")):
        axis.set_xlabel("confidence threshold")
        axis.set_ylabel(label)
        axis.set_ylim(0, 1.02)
        axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_json(figures: dict[str, Any], path: Path) -> Path:
    """Write figures as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=True, default=float) + "\n")
    return path
