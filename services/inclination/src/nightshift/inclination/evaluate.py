"""IncliNET's metrics on held-out simulated galaxies, for the model and the isophote baseline alike.

* ``rms_deg``, ``mae_deg``: root-mean-square and mean absolute difference between predicted and
  true inclination over the accepted galaxies (true inclination 45..90 deg), as the seed scores its
  predictions against the human-measured inclinations. Also per bulge-to-total and inclination bin.
* ``reject_auc``: ROC AUC of the reject score (model: P(reject or face-on)) separating accepted
  galaxies from face-on and rejected ones.
* ``<figure>_ci95_low`` / ``_high``: the 95% bootstrap interval of each headline figure over galaxies.
* Calibration of the uncertainty: the fractions of accepted galaxies whose error lies within one
  and two sigma (0.683 and 0.954 when calibrated) and the RMS of error / sigma (1 when calibrated).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from nightshift.core.stats import bootstrap_interval
from nightshift.inclination.baseline import BaselineEstimates, baseline_estimates
from nightshift.inclination.simulate import SimulatedGalaxies

__all__ = [
    "HELD_OUT_SEED", "BULGE_BINS", "INCLINATION_BINS", "rms", "mae", "roc_auc", "binned_rms", "calibration",
    "score", "EvaluationResult", "evaluate_estimates", "plot_evaluation", "write_report",
]

HELD_OUT_SEED = 8_2021  # the test split of this seed is never used for training
BULGE_BINS = (0.0, 0.1, 0.25, 0.5)
INCLINATION_BINS = (45.0, 55.0, 65.0, 75.0, 90.0)


def rms(residual: np.ndarray) -> float:
    """Root-mean-square of residuals (NaN for none)."""
    residual = np.asarray(residual, dtype=np.float64)
    return float(np.sqrt(np.mean(residual**2))) if residual.size else float("nan")


def mae(residual: np.ndarray) -> float:
    """Mean absolute residual (NaN for none)."""
    residual = np.asarray(residual, dtype=np.float64)
    return float(np.mean(np.abs(residual))) if residual.size else float("nan")


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random negative.

    Ties count one half (Mann-Whitney U). NaN when either class is empty.
    """
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    if scores.shape != positive.shape:
        raise ValueError(f"scores of shape {scores.shape} and labels of shape {positive.shape}: expected equal shapes")
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binned_rms(residual: np.ndarray, values: np.ndarray, edges: Sequence[float]) -> list[tuple[float, float, int, float]]:
    """RMS of residuals in bins of ``values``: (low, high, count, rms) per bin; the last bin includes its top edge."""
    residual, values = np.asarray(residual, dtype=np.float64), np.asarray(values, dtype=np.float64)
    bins = []
    for k, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (values >= low) & ((values <= high) if k == len(edges) - 2 else (values < high))
        bins.append((float(low), float(high), int(inside.sum()), rms(residual[inside])))
    return bins


def calibration(residual: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """Coverage of the one- and two-sigma intervals and the RMS of the normalised residuals."""
    z = np.asarray(residual, dtype=np.float64) / np.asarray(sigma, dtype=np.float64)
    if z.size == 0:
        return {"coverage_1sigma": float("nan"), "coverage_2sigma": float("nan"), "z_rms": float("nan")}
    return {"coverage_1sigma": float(np.mean(np.abs(z) <= 1)), "coverage_2sigma": float(np.mean(np.abs(z) <= 2)), "z_rms": rms(z)}


def score(
    predicted_deg: np.ndarray, reject_score: np.ndarray, *, true_deg: np.ndarray, accepted: np.ndarray, bulge_to_total: np.ndarray,
) -> dict[str, float]:
    """Headline and binned metrics of one method on one set (arrays over all galaxies).

    Regression metrics use the accepted galaxies only; the AUC uses all of them (positive = not accepted).
    """
    accepted = np.asarray(accepted, dtype=bool)
    residual = np.asarray(predicted_deg)[accepted] - np.asarray(true_deg)[accepted]
    metrics = {"rms_deg": rms(residual), "mae_deg": mae(residual), "reject_auc": roc_auc(reject_score, ~accepted),
               "n_accepted": float(accepted.sum()), "n_not_accepted": float((~accepted).sum())}
    # 95% bootstrap intervals over galaxies: how far each figure would move on another draw of this many
    for name, interval in (("rms_deg", bootstrap_interval(rms, residual)), ("mae_deg", bootstrap_interval(mae, residual)),
                           ("reject_auc", bootstrap_interval(roc_auc, np.asarray(reject_score), ~accepted))):
        metrics[f"{name}_ci95_low"], metrics[f"{name}_ci95_high"] = interval
    for low, high, count, value in binned_rms(residual, np.asarray(bulge_to_total)[accepted], BULGE_BINS):
        metrics[f"rms_deg_bt_{low:.2f}_{high:.2f}"] = value
    for low, high, count, value in binned_rms(residual, np.asarray(true_deg)[accepted], INCLINATION_BINS):
        metrics[f"rms_deg_i_{low:.0f}_{high:.0f}"] = value
    return metrics


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """Model and baseline scored on one simulated set, with the per-galaxy values the plot needs."""

    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    true_deg: np.ndarray
    accepted: np.ndarray
    bulge_to_total: np.ndarray
    predicted_deg: np.ndarray
    uncertainty_deg: np.ndarray
    reject_probability: np.ndarray
    baseline: BaselineEstimates

    def figures(self) -> dict[str, Any]:
        """The JSON report: the model's metrics, with the baseline's under ``baseline``."""
        return {**self.metrics, "baseline": self.baseline_metrics}


def evaluate_estimates(galaxies: SimulatedGalaxies, *, predicted_deg: np.ndarray, uncertainty_deg: np.ndarray,
                       reject_probability: np.ndarray) -> EvaluationResult:
    """Score model estimates of a simulated set, and the baseline on the same images."""
    truth = dict(true_deg=galaxies.inclination_deg, accepted=galaxies.accepted, bulge_to_total=galaxies.bulge_to_total)
    baseline = baseline_estimates(galaxies.images)
    metrics = score(predicted_deg, reject_probability, **truth)
    accepted = truth["accepted"]
    metrics.update(calibration(predicted_deg[accepted] - truth["true_deg"][accepted], uncertainty_deg[accepted]))
    return EvaluationResult(
        metrics=metrics, baseline_metrics=score(baseline.inclination_deg, baseline.reject_score, **truth),
        predicted_deg=np.asarray(predicted_deg), uncertainty_deg=np.asarray(uncertainty_deg),
        reject_probability=np.asarray(reject_probability), baseline=baseline, **truth,
    )


def _roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="stable")
    hits = positive[order]
    tpr = np.concatenate([[0], np.cumsum(hits) / max(hits.sum(), 1)])
    fpr = np.concatenate([[0], np.cumsum(~hits) / max((~hits).sum(), 1)])
    return fpr, tpr


def plot_evaluation(result: EvaluationResult, path: str | Path, *, title: str = "") -> Path:
    """Residual plot (model and baseline against truth), RMS per bulge-to-total bin and ROC curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accepted = result.accepted
    true = result.true_deg[accepted]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ax = axes[0]
    ax.scatter(true, result.baseline.inclination_deg[accepted] - true, s=6, c="tab:orange", alpha=0.45,
               label=f"isophote + Hubble baseline (RMS {result.baseline_metrics['rms_deg']:.2f} deg)")
    ax.errorbar(true, result.predicted_deg[accepted] - true, yerr=result.uncertainty_deg[accepted], fmt="o", ms=2.5,
                c="k", elinewidth=0.4, alpha=0.7, label=f"CNN (RMS {result.metrics['rms_deg']:.2f} deg)")
    ax.axhline(0, c="tab:blue", lw=1)
    ax.set(xlabel="true inclination $i$ [deg] (90 = edge-on)", ylabel="$i_{pred} - i$ [deg]", ylim=(-25, 25), xlim=(44, 91))
    ax.legend(loc="lower left", fontsize=8)
    ax = axes[1]
    keys = [k for k in result.metrics if k.startswith("rms_deg_bt_")]
    centres = np.arange(len(keys))
    ax.bar(centres - 0.2, [result.metrics[k] for k in keys], 0.4, label="CNN", color="k")
    ax.bar(centres + 0.2, [result.baseline_metrics[k] for k in keys], 0.4, label="baseline", color="tab:orange")
    ax.set_xticks(centres, [k.removeprefix("rms_deg_bt_").replace("_", "-") for k in keys])
    ax.set(xlabel="bulge-to-total ratio", ylabel="RMS [deg]")
    ax.axhline(3.09, ls="--", c="gray", lw=1, label="IncliNET published (3.09 deg)")
    ax.legend(fontsize=8)
    ax = axes[2]
    positive = ~accepted
    for scores, name, colour in ((result.reject_probability, "CNN", "k"), (result.baseline.reject_score, "baseline", "tab:orange")):
        fpr, tpr = _roc_curve(np.asarray(scores), positive)
        ax.plot(fpr, tpr, c=colour, label=f"{name} (AUC {roc_auc(scores, positive):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", c="gray")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="reject / face-on")
    ax.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(result: EvaluationResult, out_dir: str | Path, *, context: dict[str, Any], title: str = "") -> dict[str, Any]:
    """Write ``evaluation.json`` and ``residuals.png`` into ``out_dir``; return the figures."""
    out_dir = Path(out_dir)
    plot = plot_evaluation(result, out_dir / "residuals.png", title=title)
    figures = {**result.figures(), **context, "plot": str(plot)}
    (out_dir / "evaluation.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return figures
