"""Completeness and purity on held-out cells of simulated skies, for the model and the baseline.

The headline skies are sky realisations no training patch came from (the config's
``evaluation_seeds``): the held-out cells of a training sky share its realisation of the dust,
CMB and sources and overstate purity on a new sky (README). Counts are pooled over the skies.

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
``baseline_fixed_threshold``.

With the real catalogues present, the model's detections are also cross-matched with PSZ2, MCXC
and redMaPPer as ``infer`` does on real maps. The simulated clusters are placed independently of
those catalogues, so every such match is a chance coincidence: ``real_catalogue_matches`` is
reported beside ``real_catalogue_chance_rate`` (the fraction of the scored area within the match
radius of a catalogue cluster) and ``real_catalogue_matches_expected_by_chance`` (that rate times
the detections), which it should equal within Poisson noise.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.clusters.catalogues import chance_match_fraction, crossmatch, read_references
from nightshift.clusters.config import ClustersConfig, catalogue_dir
from nightshift.clusters.infer import Detections, field_detections, predict_probabilities
from nightshift.clusters.matched_filter import multifrequency_snr
from nightshift.clusters.patches import PatchSet, cell_tiling, patch_wcs
from nightshift.clusters.simulate import ClusterTruth

__all__ = [
    "SNR_BINS",
    "M500_BINS_MSUN",
    "match_to_truth",
    "completeness_curve",
    "detection_scores",
    "Evaluation",
    "evaluate_skies",
    "plot_evaluation",
    "evaluate_command",
]

SNR_BINS = (0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 1e9)
M500_BINS_MSUN = (0.0, 2e14, 3e14, 4e14, 6e14, 8e14, 1.2e15, 1e17)
_BASELINE_THRESHOLDS = np.arange(3.0, 12.01, 0.25)
_AREA_SAMPLE_NSIDE = 256  # pixel centres 14' apart sample the scored area for the chance match rate


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
    detections: Sequence[Detections], truths: Sequence[ClusterTruth], config: ClustersConfig, cells: tuple[int, ...],
) -> dict[str, Any]:
    """Completeness (above ``headline_snr`` and overall), purity and the curves of detections in ``cells``.

    ``detections[k]`` and ``truths[k]`` belong to sky k; matches are made within each sky and
    the counts pooled over the skies.
    """
    import healpy as hp

    kept_per_sky, detected, true_detection, scored_per_sky = [], [], [], []
    for found, truth in zip(detections, truths, strict=True):
        in_cells = np.isin(hp.ang2pix(2, found.glon, found.glat, lonlat=True, nest=True), cells) if len(found) else np.zeros(0, bool)
        kept = found.select(in_cells & (np.abs(found.glat) >= config.galactic_mask_deg))
        scored = truth.in_cells(cells)
        scored = scored.select(np.abs(scored.glat) >= config.galactic_mask_deg)
        hits, real = match_to_truth(kept.glon, kept.glat, scored.glon, scored.glat, radius_arcmin=config.match_radius_arcmin)
        kept_per_sky.append(kept)
        scored_per_sky.append(scored)
        detected.append(hits)
        true_detection.append(real)
    detected, true_detection = np.concatenate(detected), np.concatenate(true_detection)
    snr = np.concatenate([t.snr for t in scored_per_sky])
    m500 = np.concatenate([t.m500_msun for t in scored_per_sky])
    bright = snr >= config.headline_snr
    return {
        "completeness": float(detected[bright].mean()) if bright.any() else math.nan,
        "completeness_all": float(detected.mean()) if len(detected) else math.nan,
        "purity": float(true_detection.mean()) if len(true_detection) else math.nan,
        "detections": int(len(true_detection)),
        "clusters": int(len(detected)),
        "clusters_above_headline_snr": int(bright.sum()),
        "completeness_vs_snr": completeness_curve(snr, detected, SNR_BINS),
        "completeness_vs_m500": completeness_curve(m500, detected, M500_BINS_MSUN),
        "_kept": kept_per_sky,
        "_scored": scored_per_sky,
    }


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Scores of the model and the baseline on the held-out cells of one or more skies, with what the plot needs."""

    metrics: dict[str, Any]
    model_scores: dict[str, Any]
    baseline_scores: dict[str, Any]
    example: dict[str, np.ndarray]


_HEADLINE = ("completeness", "completeness_all", "purity", "detections", "clusters", "clusters_above_headline_snr")


def evaluate_skies(
    model, skies: Sequence[tuple[PatchSet, ClusterTruth]], config: ClustersConfig, cells: tuple[int, ...],
) -> Evaluation:
    """Score ``model`` and the matched-filter baseline on the tiles covering ``cells`` of each sky.

    ``skies`` holds, per sky realisation, the patches tiling ``cells`` and the sky's truth; the
    figures pool the skies and ``metrics["per_sky"]`` gives the model's figures of each.
    """
    wcs_per_sky, probability_per_sky, snr_per_sky = [], [], []
    for patches, _ in skies:
        wcs_per_sky.append([patch_wcs(lon, lat, patch_px=config.patch_px, pixel_arcmin=config.pixel_scale_arcmin)
                            for lon, lat in zip(patches.lon, patches.lat)])
        probability_per_sky.append(predict_probabilities(model, patches.pixels))
        snr_per_sky.append(np.concatenate([  # in chunks: the filter works in float64 on (n, bands, P, P)
            multifrequency_snr(patches.pixels[i:i + 512], config.bands, pixel_arcmin=config.pixel_scale_arcmin)
            for i in range(0, len(patches), 512)] or [np.zeros((0, config.patch_px, config.patch_px))]))
    truths = [truth for _, truth in skies]
    found = [field_detections(p, w, config) for p, w in zip(probability_per_sky, wcs_per_sky)]
    model_scores = detection_scores(found, truths, config, cells)
    per_sky = [{k: v for k, v in detection_scores([f], [t], config, cells).items() if k in _HEADLINE}
               for f, t in zip(found, truths)]
    sweep = {float(q): detection_scores([field_detections(m, w, config, threshold=q) for m, w in zip(snr_per_sky, wcs_per_sky)],
                                        truths, config, cells)
             for q in _BASELINE_THRESHOLDS}
    reaching = [q for q, s in sweep.items() if not math.isnan(s["purity"]) and s["purity"] >= model_scores["purity"]]
    equal_purity_q = min(reaching) if reaching else max(sweep, key=lambda q: np.nan_to_num(sweep[q]["purity"]))
    fixed_q = min(sweep, key=lambda q: abs(q - config.baseline_snr_threshold))
    baseline = sweep[equal_purity_q]
    metrics: dict[str, Any] = {
        **{k: model_scores[k] for k in _HEADLINE}, "headline_snr": config.headline_snr,
        "threshold": config.threshold, "cells": list(cells), "per_sky": per_sky,
        "baseline": {"completeness": baseline["completeness"], "purity": baseline["purity"],
                     "completeness_all": baseline["completeness_all"], "snr_threshold": equal_purity_q,
                     "reaches_model_purity": bool(reaching)},
        "baseline_fixed_threshold": {"completeness": sweep[fixed_q]["completeness"], "purity": sweep[fixed_q]["purity"],
                                     "snr_threshold": fixed_q},
    }
    metrics.update(_real_catalogue_matches(model_scores["_kept"], config, cells))
    patches, probability, snr_maps = skies[0][0], probability_per_sky[0], snr_per_sky[0]
    best_tile = int(np.argmax(patches.targets.reshape(len(patches), -1).sum(axis=1))) if len(patches) else 0
    example = {"pixels": patches.pixels[best_tile], "probability": probability[best_tile],
               "target": patches.targets[best_tile], "snr": snr_maps[best_tile]} if len(patches) else {}
    return Evaluation(metrics, model_scores, baseline, example)


def _real_catalogue_matches(kept_per_sky: Sequence[Detections], config: ClustersConfig, cells: tuple[int, ...]) -> dict[str, Any]:
    """Detections (all skies) within the match radius of PSZ2/MCXC/redMaPPer, and how many chance alone gives."""
    directory = catalogue_dir()
    if directory is None:
        return {}
    references = read_references(directory)
    matches = sum(int(crossmatch(kept.glon, kept.glat, references, radius_arcmin=config.match_radius_arcmin).known.sum())
                  for kept in kept_per_sky)
    detections = sum(len(kept) for kept in kept_per_sky)
    lon, lat = cell_tiling(cells, _AREA_SAMPLE_NSIDE)
    scored = np.abs(lat) >= config.galactic_mask_deg
    rate = chance_match_fraction(lon[scored], lat[scored], references, radius_arcmin=config.match_radius_arcmin)
    return {"real_catalogue_matches": matches, "real_catalogue_chance_rate": rate,
            "real_catalogue_matches_expected_by_chance": rate * detections}


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
    """The ``evaluate`` command: simulate (or reuse) the held-out skies of the model's config, score, plot, write JSON.

    The skies are the config's ``evaluation_seeds`` (never used in training), or the one sky
    ``seed``; ``skies_used_in_training`` names any scored sky that the model trained on.
    """
    from nightshift.clusters.datasets import simulated_data
    from nightshift.clusters.model import load_model
    from nightshift.clusters.servicer import bundled_weights
    from nightshift.core.devices import configure_tensorflow

    configure_tensorflow()
    weights = weights or bundled_weights()
    card = json.loads(weights.with_suffix(".json").read_text())
    config = ClustersConfig.from_dict(card["config"]).with_overrides(overrides)
    sky_seeds = (seed,) if seed is not None else tuple(config.evaluation_seeds)
    scored_cells = config.held_out_cells if cells == "held-out" else tuple(config.test_cells)
    skies = []
    for sky_seed in sky_seeds:
        data = simulated_data(dataclasses.replace(config, seed=sky_seed, validation_cells=(), test_cells=scored_cells),
                              ("test",), cache=True)
        skies.append((data.splits["test"], data.truth))
    evaluation = evaluate_skies(load_model(str(weights)), skies, config, scored_cells)
    output.mkdir(parents=True, exist_ok=True)
    plot = plot_evaluation(evaluation, config, output / "completeness.png")
    figures = _json_safe({
        **evaluation.metrics, "model": card["name"], "weights": str(weights), "sky_seeds": list(sky_seeds),
        "training_sky_seeds": list(config.training_sky_seeds),
        "skies_used_in_training": [s for s in sky_seeds if s in config.training_sky_seeds],
        "nside": config.nside, "plot": str(plot),
        "completeness_vs_snr": evaluation.model_scores["completeness_vs_snr"],
        "completeness_vs_m500": evaluation.model_scores["completeness_vs_m500"],
        "baseline_completeness_vs_snr": evaluation.baseline_scores["completeness_vs_snr"],
        "baseline_completeness_vs_m500": evaluation.baseline_scores["completeness_vs_m500"],
    })
    (output / "evaluation.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return figures
