"""IncliNET's metrics on held-out simulated galaxies, for the model and the isophote baseline alike.

* ``rms_deg``, ``mae_deg``: root-mean-square and mean absolute difference between predicted and
  true inclination over the accepted galaxies (true inclination 45..90 deg), as the seed scores its
  predictions against the human-measured inclinations. Also per bin (``rms_deg_<q>_<low>_<high>``
  with its count ``n_<q>_<low>_<high>`` and signed mean error ``bias_deg_<q>_...``) of true inclination, bulge-to-total, optical diameter D25,
  resolution D25 / seeing FWHM and integrated S/N: fixed edges over the simulator's ranges
  (``BIN_QUANTITIES``), never fitted to a test set.
* ``reject_auc``: ROC AUC of the reject score (model: P(reject or face-on)) separating accepted
  galaxies from face-on and rejected ones.
* ``<figure>_ci95_low`` / ``_high``: the 95% bootstrap interval of each headline figure over galaxies.
* Calibration of the uncertainty: the fractions of accepted galaxies whose error lies within one
  and two sigma (0.683 and 0.954 when calibrated) and the RMS of error / sigma (1 when calibrated).
* Robustness (``ROBUSTNESS_SETS``): the same held-out galaxies re-simulated with the seeing or the sky
  noise 1.5 times the training values, scored alike.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from nightshift.core.stats import bootstrap_interval
from nightshift.inclination.baseline import BaselineEstimates, baseline_estimates
from nightshift.inclination.simulate import SimulatedGalaxies, SimulationOverrides

__all__ = [
    "HELD_OUT_SEED", "BULGE_BINS", "INCLINATION_BINS", "D25_BINS_ARCSEC", "RESOLUTION_BINS", "SNR_BINS", "BIN_QUANTITIES",
    "ROBUSTNESS_SETS", "rms", "mae", "roc_auc", "binned_rms", "calibration", "bin_values", "score", "per_bin_table",
    "EvaluationResult", "evaluate_estimates", "evaluate_robustness", "plot_evaluation", "write_report",
]

HELD_OUT_SEED = 8_2021  # the test split of this seed is never used for training
BULGE_BINS = (0.0, 0.1, 0.25, 0.5)
INCLINATION_BINS = (45.0, 55.0, 65.0, 75.0, 90.0)
D25_BINS_ARCSEC = (40.0, 60.0, 90.0, 135.0, 200.0)  # steps of 1.5x over the simulated 40..200
RESOLUTION_BINS = (20.0, 40.0, 80.0, 240.0)  # seeing FWHMs across D25 (22..220 simulated): the PSF's share of the shape
SNR_BINS = (40.0, 80.0, 160.0, 400.0)  # steps of 2x over the accepted 40..400
# key in the metric names: (what is binned, edges, number format of the edges)
BIN_QUANTITIES = {
    "i": ("true inclination [deg]", INCLINATION_BINS, "{:.0f}"),
    "bt": ("bulge-to-total ratio", BULGE_BINS, "{:.2f}"),
    "d25": ("optical diameter D25 [arcsec]", D25_BINS_ARCSEC, "{:.0f}"),
    "res": ("D25 / seeing FWHM", RESOLUTION_BINS, "{:.0f}"),
    "snr": ("integrated S/N inside D25", SNR_BINS, "{:.0f}"),
}
# beyond the training ranges (seeing 0.9..1.8 arcsec; sky noise for S/N 40..400)
ROBUSTNESS_SETS = {"psf_1.5x": SimulationOverrides(psf_scale=1.5), "sky_noise_1.5x": SimulationOverrides(sky_noise_scale=1.5)}


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


def _bins(values: np.ndarray, edges: Sequence[float]) -> list[tuple[float, float, np.ndarray]]:
    """(low, high, membership) per bin of ``values``; the last bin includes its top edge."""
    values = np.asarray(values, dtype=np.float64)
    return [(float(low), float(high), (values >= low) & ((values <= high) if k == len(edges) - 2 else (values < high)))
            for k, (low, high) in enumerate(zip(edges[:-1], edges[1:]))]


def binned_rms(residual: np.ndarray, values: np.ndarray, edges: Sequence[float]) -> list[tuple[float, float, int, float]]:
    """RMS of residuals in bins of ``values``: (low, high, count, rms) per bin; the last bin includes its top edge."""
    residual = np.asarray(residual, dtype=np.float64)
    return [(low, high, int(inside.sum()), rms(residual[inside])) for low, high, inside in _bins(values, edges)]


def calibration(residual: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """Coverage of the one- and two-sigma intervals and the RMS of the normalised residuals."""
    z = np.asarray(residual, dtype=np.float64) / np.asarray(sigma, dtype=np.float64)
    if z.size == 0:
        return {"coverage_1sigma": float("nan"), "coverage_2sigma": float("nan"), "z_rms": float("nan")}
    return {"coverage_1sigma": float(np.mean(np.abs(z) <= 1)), "coverage_2sigma": float(np.mean(np.abs(z) <= 2)), "z_rms": rms(z)}


def bin_values(galaxies: SimulatedGalaxies) -> dict[str, np.ndarray]:
    """The truth binned beyond inclination and B/T, per galaxy: D25, D25 / seeing FWHM (r band), S/N."""
    d25 = np.array([p.d25_arcsec for p in galaxies.parameters])
    seeing = np.array([p.psf_fwhm_px * p.pixel_scale_arcsec for p in galaxies.parameters])
    return {"d25": d25, "res": d25 / seeing, "snr": np.array([p.snr for p in galaxies.parameters])}


def score(
    predicted_deg: np.ndarray, reject_score: np.ndarray, *, true_deg: np.ndarray, accepted: np.ndarray, bulge_to_total: np.ndarray,
    binned_by: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Headline and binned metrics of one method on one set (arrays over all galaxies).

    Regression metrics use the accepted galaxies only; the AUC uses all of them (positive = not accepted).
    ``binned_by`` adds bins of further ``BIN_QUANTITIES`` (values over all galaxies, e.g. ``bin_values``).
    """
    accepted = np.asarray(accepted, dtype=bool)
    residual = np.asarray(predicted_deg)[accepted] - np.asarray(true_deg)[accepted]
    metrics = {"rms_deg": rms(residual), "mae_deg": mae(residual), "reject_auc": roc_auc(reject_score, ~accepted),
               "n_accepted": float(accepted.sum()), "n_not_accepted": float((~accepted).sum())}
    # 95% bootstrap intervals over galaxies: how far each figure would move on another draw of this many
    for name, interval in (("rms_deg", bootstrap_interval(rms, residual)), ("mae_deg", bootstrap_interval(mae, residual)),
                           ("reject_auc", bootstrap_interval(roc_auc, np.asarray(reject_score), ~accepted))):
        metrics[f"{name}_ci95_low"], metrics[f"{name}_ci95_high"] = interval
    values = {"i": true_deg, "bt": bulge_to_total, **(binned_by or {})}
    for key, quantity in values.items():
        _, edges, number = BIN_QUANTITIES[key]
        for low, high, in_cell in _bins(np.asarray(quantity)[accepted], edges):
            cell = f"{key}_{number.format(low)}_{number.format(high)}"
            count = int(in_cell.sum())
            metrics[f"rms_deg_{cell}"], metrics[f"n_{cell}"] = rms(residual[in_cell]), float(count)
            # the signed mean error: the part of the RMS that is a bias of the method in this cell
            metrics[f"bias_deg_{cell}"] = float(np.mean(residual[in_cell])) if count else float("nan")
    return metrics


def per_bin_table(metrics: Mapping[str, float], baseline_metrics: Mapping[str, float]) -> list[dict[str, Any]]:
    """One row per scored bin: quantity, edges, count and both methods' RMS and bias, in ``BIN_QUANTITIES`` order."""
    rows = []
    for key, (name, edges, number) in BIN_QUANTITIES.items():
        for low, high in zip(edges[:-1], edges[1:]):
            cell = f"{key}_{number.format(low)}_{number.format(high)}"
            if f"rms_deg_{cell}" in metrics:
                rows.append({"quantity": name, "key": key, "low": number.format(low), "high": number.format(high),
                             "n": int(metrics[f"n_{cell}"]), "rms_deg": metrics[f"rms_deg_{cell}"],
                             "bias_deg": metrics[f"bias_deg_{cell}"], "baseline_rms_deg": baseline_metrics[f"rms_deg_{cell}"],
                             "baseline_bias_deg": baseline_metrics[f"bias_deg_{cell}"]})
    return rows


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
        """The JSON report: the model's metrics, with the baseline's under ``baseline`` and the bins under ``per_bin``."""
        return {**self.metrics, "baseline": self.baseline_metrics, "per_bin": per_bin_table(self.metrics, self.baseline_metrics)}


def evaluate_estimates(galaxies: SimulatedGalaxies, *, predicted_deg: np.ndarray, uncertainty_deg: np.ndarray,
                       reject_probability: np.ndarray) -> EvaluationResult:
    """Score model estimates of a simulated set, and the baseline on the same images."""
    truth = dict(true_deg=galaxies.inclination_deg, accepted=galaxies.accepted, bulge_to_total=galaxies.bulge_to_total)
    baseline = baseline_estimates(galaxies.images)
    binned_by = bin_values(galaxies)
    metrics = score(predicted_deg, reject_probability, **truth, binned_by=binned_by)
    accepted = truth["accepted"]
    metrics.update(calibration(predicted_deg[accepted] - truth["true_deg"][accepted], uncertainty_deg[accepted]))
    return EvaluationResult(
        metrics=metrics, baseline_metrics=score(baseline.inclination_deg, baseline.reject_score, **truth, binned_by=binned_by),
        predicted_deg=np.asarray(predicted_deg), uncertainty_deg=np.asarray(uncertainty_deg),
        reject_probability=np.asarray(reject_probability), baseline=baseline, **truth,
    )


_ROBUSTNESS_KEYS = ("rms_deg", "mae_deg", "reject_auc", "coverage_1sigma", "coverage_2sigma", "rms_deg_ci95_low", "rms_deg_ci95_high")


def evaluate_robustness(simulate: Callable[[SimulationOverrides], SimulatedGalaxies],
                        measure: Callable[[np.ndarray], Any]) -> dict[str, dict[str, Any]]:
    """Model and baseline on each of ``ROBUSTNESS_SETS``: ``simulate(overrides)`` gives the set, ``measure(images)``
    the model's estimates (``inclination_deg``, ``uncertainty_deg``, ``reject_probability``).

    Each set also holds the model's per-bin cells and ``rms_deg_<res|snr>_below`` / ``n_..._below``: the galaxies
    the scaling moved below the lowest resolution or S/N edge (outside the training ranges)."""
    report = {}
    for name, overrides in ROBUSTNESS_SETS.items():
        galaxies = simulate(overrides)
        estimates = measure(galaxies.images)
        result = evaluate_estimates(galaxies, predicted_deg=estimates.inclination_deg, uncertainty_deg=estimates.uncertainty_deg,
                                    reject_probability=estimates.reject_probability)
        cells = {k: v for k, v in result.metrics.items() if k.startswith(("rms_deg_", "bias_deg_", "n_")) and "_ci95_" not in k}
        # galaxies pushed below the lowest S/N or resolution edge, i.e. outside the training ranges
        accepted, values = result.accepted, bin_values(galaxies)
        residual = result.predicted_deg[accepted] - result.true_deg[accepted]
        for key in ("res", "snr"):
            below = values[key][accepted] < BIN_QUANTITIES[key][1][0]
            cells[f"rms_deg_{key}_below"], cells[f"n_{key}_below"] = rms(residual[below]), float(below.sum())
        report[name] = {**{k: result.metrics[k] for k in _ROBUSTNESS_KEYS}, **cells, **dataclasses.asdict(overrides),
                        "baseline": {k: result.baseline_metrics[k] for k in _ROBUSTNESS_KEYS if k in result.baseline_metrics}}
    return report


def _roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="stable")
    hits = positive[order]
    tpr = np.concatenate([[0], np.cumsum(hits) / max(hits.sum(), 1)])
    fpr = np.concatenate([[0], np.cumsum(~hits) / max((~hits).sum(), 1)])
    return fpr, tpr


def plot_evaluation(result: EvaluationResult, path: str | Path, *, title: str = "") -> Path:
    """Residual plot (model and baseline against truth), RMS per bin with counts and ROC curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accepted = result.accepted
    true = result.true_deg[accepted]
    fig, axes = plt.subplots(1, 3, figsize=(19, 5.2), gridspec_kw={"width_ratios": [1, 2, 1]})
    ax = axes[0]
    ax.scatter(true, result.baseline.inclination_deg[accepted] - true, s=6, c="tab:orange", alpha=0.45,
               label=f"isophote + Hubble baseline (RMS {result.baseline_metrics['rms_deg']:.2f} deg)")
    ax.errorbar(true, result.predicted_deg[accepted] - true, yerr=result.uncertainty_deg[accepted], fmt="o", ms=2.5,
                c="k", elinewidth=0.4, alpha=0.7, label=f"CNN (RMS {result.metrics['rms_deg']:.2f} deg)")
    ax.axhline(0, c="tab:blue", lw=1)
    ax.set(xlabel="true inclination $i$ [deg] (90 = edge-on)", ylabel="$i_{pred} - i$ [deg]", ylim=(-25, 25), xlim=(44, 91))
    ax.legend(loc="lower left", fontsize=8)
    ax = axes[1]
    rows = per_bin_table(result.metrics, result.baseline_metrics)
    centres = np.arange(len(rows))
    ax.bar(centres - 0.2, [r["rms_deg"] for r in rows], 0.4, label="CNN", color="k")
    ax.bar(centres + 0.2, [r["baseline_rms_deg"] for r in rows], 0.4, label="baseline", color="tab:orange")
    ax.set_xticks(centres, [f"{r['key']}\n{r['low']}-\n{r['high']}\nn={r['n']}" for r in rows], fontsize=7)
    ax.set(xlabel="bin (i: inclination deg, bt: B/T, d25: D25 arcsec, res: D25 / seeing FWHM, snr: integrated S/N)",
           ylabel="RMS [deg]")
    ax.axhline(3.09, ls="--", c="gray", lw=1, label="IncliNET published (3.09 deg)")
    ax.set_ylim(0, 1.2 * max(max(r["baseline_rms_deg"], r["rms_deg"]) for r in rows) if rows else 1)
    ax.legend(fontsize=8, loc="upper center", ncols=3)
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
    figures = _strict_json({**result.figures(), **context, "plot": str(plot)})
    (out_dir / "evaluation.json").write_text(json.dumps(figures, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return figures


def _strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (an empty cell's NaN) as None, so the file and the printed line are strict JSON."""
    if isinstance(value, Mapping):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
