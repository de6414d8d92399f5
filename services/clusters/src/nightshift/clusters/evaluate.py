"""Completeness and purity on held-out cells of the simulated sky, for the model and the baseline.

Definitions (the seed's cross-match, at ``match_radius_arcmin`` = 7'):

- completeness: the fraction of injected clusters in the scored cells, outside the Galactic mask
  (``galactic_mask_deg``), with a (merged) detection within 7'; quoted for clusters with truth S/N >= ``headline_snr`` and as curves against S/N
  and M500;
- purity: the fraction of detections in the scored cells, outside the mask, with an injected
  cluster (of any S/N) within 7'.

The baseline (:mod:`nightshift.clusters.matched_filter`) goes through the same detection rule,
merging and matching with its S/N map in place of the probability map. It is reported at the
S/N threshold where its purity first reaches the model's (equal purity), or at its highest
purity when it never does, and at its fixed threshold ``baseline_snr_threshold`` under
``baseline_fixed_threshold``. On the real catalogues, ``psz2_named_fraction`` is the fraction of
detected clusters injected at PSZ2 positions whose detection the cross-match names correctly.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.clusters.catalogues import crossmatch, read_references
from nightshift.clusters.config import ClustersConfig, catalogue_dir
from nightshift.clusters.infer import Detections, field_detections, predict_probabilities
from nightshift.clusters.matched_filter import multifrequency_snr
from nightshift.clusters.patches import PatchSet, patch_wcs
from nightshift.clusters.simulate import ClusterTruth

__all__ = [
    "SNR_BINS",
    "M500_BINS_MSUN",
    "match_to_truth",
    "completeness_curve",
    "detection_scores",
    "Evaluation",
    "evaluate_field",
    "plot_evaluation",
    "evaluate_command",
]

SNR_BINS = (0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 1e9)
M500_BINS_MSUN = (0.0, 2e14, 3e14, 4e14, 6e14, 8e14, 1.2e15, 1e17)
_BASELINE_THRESHOLDS = np.arange(3.0, 12.01, 0.25)


def _unit_vectors(lon_deg: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(np.asarray(lon_deg, float)), np.radians(np.asarray(lat_deg, float))
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def match_to_truth(
    det_glon: np.ndarray, det_glat: np.ndarray, truth_glon: np.ndarray, truth_glat: np.ndarray, *, radius_arcmin: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Which truth clusters have a detection within ``radius_arcmin``, and which detections have a cluster.

    Returns
    -------
    detected : ndarray of bool, shape (truth,)
    true_detection : ndarray of bool, shape (detections,)
    """
    if len(det_glon) == 0 or len(truth_glon) == 0:
        return np.zeros(len(truth_glon), bool), np.zeros(len(det_glon), bool)
    close = _unit_vectors(det_glon, det_glat) @ _unit_vectors(truth_glon, truth_glat).T >= math.cos(math.radians(radius_arcmin / 60.0))
    return close.any(axis=0), close.any(axis=1)


def completeness_curve(values: np.ndarray, detected: np.ndarray, bins: tuple[float, ...]) -> dict[str, list[float]]:
    """Completeness in bins of ``values``: lower edges, upper edges, clusters and completeness (NaN when empty)."""
    index = np.digitize(values, bins) - 1
    counts, found = [], []
    for b in range(len(bins) - 1):
        members = index == b
        counts.append(int(members.sum()))
        found.append(int(detected[members].sum()))
    return {
        "low": list(bins[:-1]), "high": list(bins[1:]), "clusters": counts, "detected": found,
        "completeness": [f / c if c else math.nan for f, c in zip(found, counts)],
    }


def detection_scores(
    detections: Detections, truth: ClusterTruth, config: ClustersConfig, cells: tuple[int, ...],
) -> dict[str, Any]:
    """Completeness (above ``headline_snr`` and overall), purity and the curves of detections in ``cells``."""
    import healpy as hp

    in_cells = np.isin(hp.ang2pix(2, detections.glon, detections.glat, lonlat=True, nest=True), cells) if len(detections) else np.zeros(0, bool)
    kept = detections.select(in_cells & (np.abs(detections.glat) >= config.galactic_mask_deg))
    scored = truth.in_cells(cells)
    scored = scored.select(np.abs(scored.glat) >= config.galactic_mask_deg)
    detected, true_detection = match_to_truth(kept.glon, kept.glat, scored.glon, scored.glat,
                                              radius_arcmin=config.match_radius_arcmin)
    bright = scored.snr >= config.headline_snr
    return {
        "completeness": float(detected[bright].mean()) if bright.any() else math.nan,
        "completeness_all": float(detected.mean()) if len(detected) else math.nan,
        "purity": float(true_detection.mean()) if len(true_detection) else math.nan,
        "detections": int(len(kept)),
        "clusters": int(len(scored)),
        "clusters_above_headline_snr": int(bright.sum()),
        "completeness_vs_snr": completeness_curve(scored.snr, detected, SNR_BINS),
        "completeness_vs_m500": completeness_curve(scored.m500_msun, detected, M500_BINS_MSUN),
        "_detected": detected,
        "_kept": kept,
    }


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Scores of the model and the baseline on one field, with what the plot needs."""

    metrics: dict[str, Any]
    model_scores: dict[str, Any]
    baseline_scores: dict[str, Any]
    truth: ClusterTruth
    example: dict[str, np.ndarray]


def _public(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scores.items() if not k.startswith("_")}


def evaluate_field(model, patches: PatchSet, truth: ClusterTruth, config: ClustersConfig, cells: tuple[int, ...]) -> Evaluation:
    """Score ``model`` and the matched-filter baseline on the tiles ``patches`` covering ``cells``."""
    wcs_list = [patch_wcs(lon, lat, patch_px=config.patch_px, pixel_arcmin=config.pixel_scale_arcmin)
                for lon, lat in zip(patches.lon, patches.lat)]
    probability = predict_probabilities(model, patches.pixels)
    model_scores = detection_scores(field_detections(probability, wcs_list, config), truth, config, cells)
    snr_maps = np.concatenate([  # in chunks: the filter works in float64 on (n, bands, P, P)
        multifrequency_snr(patches.pixels[i:i + 512], config.bands, pixel_arcmin=config.pixel_scale_arcmin)
        for i in range(0, len(patches), 512)] or [np.zeros((0, config.patch_px, config.patch_px))])
    sweep = {float(q): detection_scores(field_detections(snr_maps, wcs_list, config, threshold=q), truth, config, cells)
             for q in _BASELINE_THRESHOLDS}
    reaching = [q for q, s in sweep.items() if not math.isnan(s["purity"]) and s["purity"] >= model_scores["purity"]]
    equal_purity_q = min(reaching) if reaching else max(sweep, key=lambda q: np.nan_to_num(sweep[q]["purity"]))
    fixed_q = min(sweep, key=lambda q: abs(q - config.baseline_snr_threshold))
    baseline = sweep[equal_purity_q]
    metrics: dict[str, Any] = {
        "completeness": model_scores["completeness"], "purity": model_scores["purity"],
        "completeness_all": model_scores["completeness_all"], "headline_snr": config.headline_snr,
        "threshold": config.threshold, "detections": model_scores["detections"], "clusters": model_scores["clusters"],
        "clusters_above_headline_snr": model_scores["clusters_above_headline_snr"], "cells": list(cells),
        "baseline": {"completeness": baseline["completeness"], "purity": baseline["purity"],
                     "completeness_all": baseline["completeness_all"], "snr_threshold": equal_purity_q,
                     "reaches_model_purity": bool(reaching)},
        "baseline_fixed_threshold": {"completeness": sweep[fixed_q]["completeness"], "purity": sweep[fixed_q]["purity"],
                                     "snr_threshold": fixed_q},
    }
    unmasked = truth.in_cells(cells)
    metrics.update(_psz2_naming(model_scores["_kept"], unmasked.select(np.abs(unmasked.glat) >= config.galactic_mask_deg), config))
    best_tile = int(np.argmax(patches.targets.reshape(len(patches), -1).sum(axis=1))) if len(patches) else 0
    example = {"pixels": patches.pixels[best_tile], "probability": probability[best_tile],
               "target": patches.targets[best_tile], "snr": snr_maps[best_tile]} if len(patches) else {}
    return Evaluation(metrics, model_scores, baseline, truth.in_cells(cells), example)


def _psz2_naming(kept: Detections, truth: ClusterTruth, config: ClustersConfig) -> dict[str, Any]:
    """Of the PSZ2-position clusters detected, the fraction whose detection is labelled with their PSZ2 name."""
    directory = catalogue_dir()
    at_psz2 = truth.select(truth.psz2_name != "")
    if directory is None or len(at_psz2) == 0 or len(kept) == 0:
        return {}
    matches = crossmatch(kept.glon, kept.glat, read_references(directory), radius_arcmin=config.match_radius_arcmin)
    close = (_unit_vectors(at_psz2.glon, at_psz2.glat) @ _unit_vectors(kept.glon, kept.glat).T
             >= math.cos(math.radians(config.match_radius_arcmin / 60.0)))
    detected = close.any(axis=1)
    named = [name in set(matches.name[close[i]]) for i, name in enumerate(at_psz2.psz2_name) if detected[i]]
    known = matches.known
    return {"psz2_detected": int(detected.sum()), "psz2_named_fraction": float(np.mean(named)) if named else math.nan,
            "known_detections": int(known.sum()), "new_detections": int((~known).sum())}


def plot_evaluation(evaluation: Evaluation, config: ClustersConfig, path: Path) -> Path:
    """Completeness vs S/N and vs M500 (model and baseline) and one tile with its maps; PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(19, 4.4))
    for axis, key, label, log in ((axes[0], "completeness_vs_snr", "truth S/N (matched filter)", False),
                                  (axes[1], "completeness_vs_m500", "M500 [Msun]", True)):
        for scores, name, style in ((evaluation.model_scores, f"U-Net (p > {config.threshold})", "o-"),
                                    (evaluation.baseline_scores, f"matched filter (S/N > {evaluation.metrics['baseline']['snr_threshold']:.2f})", "s--")):
            curve = scores[key]
            low, high = np.array(curve["low"]), np.array(curve["high"])
            top = high[-2] * 1.5 if log else high[-2] + 5
            centres = np.where(high > 1e16 if log else high > 1e8, (low + top) / 2, (low + high) / 2)
            axis.plot(centres, curve["completeness"], style, label=name)
        axis.set_xlabel(label)
        axis.set_ylabel("completeness")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
        if log:
            axis.set_xscale("log")
    axes[0].axvline(config.headline_snr, color="grey", lw=0.8)
    axes[0].legend(loc="lower right", fontsize=8)
    axes[0].set_title(f"purity: U-Net {evaluation.metrics['purity']:.2f}, MF {evaluation.metrics['baseline']['purity']:.2f}")
    example = evaluation.example
    if example:
        index_143 = config.band_names.index("hfi_143")
        axes[2].imshow(example["pixels"][index_143] * 1e6, origin="lower", cmap="RdBu_r")
        axes[2].contour(example["target"], levels=[0.5], colors="k", linewidths=0.8)
        axes[2].set_title("143 GHz [uK_CMB], target disks")
        axes[3].imshow(example["probability"], origin="lower", vmin=0, vmax=1, cmap="viridis")
        axes[3].contour(example["target"], levels=[0.5], colors="w", linewidths=0.8)
        axes[3].set_title("U-Net probability")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def evaluate_command(
    *, weights: Path | None, overrides: dict[str, str], seed: int | None, cells: str, output: Path,
) -> dict[str, Any]:
    """The ``evaluate`` command: simulate (or reuse) the held-out sky of the model's config, score, plot, write JSON."""
    from nightshift.clusters.datasets import simulated_data
    from nightshift.clusters.model import load_model
    from nightshift.clusters.servicer import bundled_weights
    from nightshift.clusters.train import configure_tensorflow

    configure_tensorflow()
    weights = weights or bundled_weights()
    card = json.loads(weights.with_suffix(".json").read_text())
    config = ClustersConfig.from_dict(card["config"]).with_overrides({**overrides, **({"seed": seed} if seed is not None else {})})
    scored_cells = config.held_out_cells if cells == "held-out" else tuple(config.test_cells)
    data_config = dataclasses.replace(config, validation_cells=(), test_cells=scored_cells)
    data = simulated_data(data_config, ("test",), cache=True)
    evaluation = evaluate_field(load_model(str(weights)), data.splits["test"], data.truth, config, scored_cells)
    output.mkdir(parents=True, exist_ok=True)
    plot = plot_evaluation(evaluation, config, output / "completeness.png")
    figures = _json_safe({
        **evaluation.metrics, "model": card["name"], "weights": str(weights), "sky_seed": config.seed,
        "nside": config.nside, "plot": str(plot),
        "completeness_vs_snr": evaluation.model_scores["completeness_vs_snr"],
        "completeness_vs_m500": evaluation.model_scores["completeness_vs_m500"],
        "baseline_completeness_vs_snr": evaluation.baseline_scores["completeness_vs_snr"],
        "baseline_completeness_vs_m500": evaluation.baseline_scores["completeness_vs_m500"],
    })
    (output / "evaluation.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return figures
