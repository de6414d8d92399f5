"""Completeness and purity on held-out cells of simulated skies, for the U-Net and the MMF baseline.

The headline skies are sky realisations no training patch came from (the config's
``evaluation_seeds``): the held-out cells of a training sky share its realisation of the dust,
CMB and sources and overstate purity on a new sky (README). Counts are pooled over the skies.

Definitions (the seed's cross-match, at ``match_radius_arcmin`` = 7'):

- S/N, for binning, is each cluster's **injected** S/N (``truth.snr``): its true Y5R500 over the
  MMF's noise at its true size and position (:func:`nightshift.clusters.patches.measure_truth_snr`),
  as the Planck papers bin completeness; not the S/N the baseline measures, which would put the
  baseline's upward noise fluctuations into the bins it is scored in;
- completeness: the fraction of injected clusters in the scored cells, outside the Galactic mask
  (``galactic_mask_deg``), with a (merged) detection within 7'; quoted above ``headline_snr``, in
  ``faint_snr_range`` (4.5-6, ``completeness_snr_4p5_6``) and as curves against S/N and M500;
- purity: the fraction of detections in the scored cells, outside the mask, with an injected
  cluster (of any S/N) within 7'.

Operating points are chosen on a training sky, never on the scored skies: the MMF baseline
(:mod:`nightshift.clusters.matched_filter`; S/N peaks, merged and matched as the model's
detections) detects above the lowest S/N threshold whose purity reaches ``target_purity`` (0.9) on
the validation cells of the first training sky (:func:`tune_thresholds`); the U-Net is scored at
its shipped rule (probability > ``threshold``, with the MMF's peaks above ``mmf_union_snr`` when
that is set), under ``model_at_target_purity`` alone at the rule (probability threshold x minimum
group size) most complete at S/N 4.5-6 among those reaching ``target_purity`` on the same cells
(which it saw only for early stopping), and under ``union_at_target_purity`` as that rule's
detections plus the MMF's peaks above the lowest S/N at which the union reaches ``target_purity``
there (a union catalogue: the two methods miss different faint clusters).

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
from nightshift.clusters.matched_filter import MmfMaps, map_fwhm_arcmin, mmf_field_detections, mmf_in_chunks
from nightshift.clusters.patches import PatchSet, cell_tiling, patch_wcs
from nightshift.clusters.simulate import ClusterTruth
from nightshift.core.stats import bootstrap_interval

__all__ = [
    "SNR_BINS",
    "WIDE_SNR",
    "M500_BINS_MSUN",
    "match_to_truth",
    "completeness_curve",
    "detection_scores",
    "paired_differences",
    "rate_intervals",
    "Evaluation",
    "sky_maps",
    "tune_thresholds",
    "evaluate_skies",
    "plot_evaluation",
    "evaluate_command",
]

SNR_BINS = (0.0, 2.0, 3.0, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 10.0, 15.0, 1e9)
M500_BINS_MSUN = (0.0, 2e14, 3e14, 4e14, 6e14, 8e14, 1.2e15, 1e17)
_BASELINE_THRESHOLDS = tuple(float(q) for q in np.arange(3.0, 12.01, 0.25))
_MODEL_THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
_MODEL_MIN_PIXELS = (3, 6, 10, 16, 25)  # small groups are where a network's false detections sit
WIDE_SNR = 4.0  # completeness above it is quoted too: above S/N 6 both methods find nearly every cluster
_MMF_CACHE_VERSION = 1  # raised when matched_filter changes the maps of a sky
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
    samples = _rate_samples(detected, true_detection, snr, config)
    return {
        **{name: float(sample.mean()) if len(sample) else math.nan for name, sample in samples.items()},
        "clusters_snr_4p5_6": len(samples["completeness_snr_4p5_6"]),
        "clusters_snr_ge_4": len(samples["completeness_snr_ge_4"]),
        "detections": int(len(true_detection)),
        "clusters": int(len(detected)),
        "clusters_above_headline_snr": len(samples["completeness"]),
        "completeness_vs_snr": completeness_curve(snr, detected, SNR_BINS),
        "completeness_vs_m500": completeness_curve(m500, detected, M500_BINS_MSUN),
        "_detected": detected,
        "_true_detection": true_detection,
        "_snr": snr,
        "_kept": kept_per_sky,
        "_scored": scored_per_sky,
    }


def _cluster_samples(snr: np.ndarray, config: ClustersConfig) -> dict[str, np.ndarray]:
    """The clusters each completeness figure is the detected share of, as masks over ``snr`` (injected S/N)."""
    low, high = config.faint_snr_range
    return {"completeness": snr >= config.headline_snr, "completeness_snr_4p5_6": (snr >= low) & (snr < high),
            "completeness_snr_ge_4": snr >= WIDE_SNR, "completeness_all": np.ones(len(snr), bool)}


def _rate_samples(detected: np.ndarray, true_detection: np.ndarray, snr: np.ndarray, config: ClustersConfig) -> dict[str, np.ndarray]:
    """Each rate's units (clusters found or not, detections true or not), whose mean the rate is."""
    samples = {name: detected[members] for name, members in _cluster_samples(snr, config).items()}
    return {**samples, "purity": true_detection}


def rate_intervals(scores: dict[str, Any], config: ClustersConfig) -> dict[str, float]:
    """95% bootstrap intervals of :func:`detection_scores`' rates, over clusters (completeness) or detections (purity)."""
    intervals = {}
    for name, sample in _rate_samples(scores["_detected"], scores["_true_detection"], scores["_snr"], config).items():
        intervals[f"{name}_ci95_low"], intervals[f"{name}_ci95_high"] = bootstrap_interval(np.mean, sample)
    return intervals


def paired_differences(model: dict[str, Any], baseline: dict[str, Any], config: ClustersConfig) -> dict[str, float]:
    """Model minus baseline completeness on the same injected clusters, with paired 95% bootstrap intervals over clusters."""
    differences: dict[str, float] = {}
    for name, members in _cluster_samples(model["_snr"], config).items():
        ours, theirs = model["_detected"][members], baseline["_detected"][members]
        differences[name] = float(ours.mean() - theirs.mean()) if members.any() else math.nan
        differences[f"{name}_ci95_low"], differences[f"{name}_ci95_high"] = (
            bootstrap_interval(lambda a, b: np.mean(a) - np.mean(b), ours, theirs) if members.any() else [math.nan] * 2)
    return differences


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Scores of the model and the baseline on the held-out cells of one or more skies, with what the plot needs."""

    metrics: dict[str, Any]
    model_scores: dict[str, Any]
    baseline_scores: dict[str, Any]
    example: dict[str, np.ndarray]


_HEADLINE = ("completeness", "completeness_snr_4p5_6", "completeness_snr_ge_4", "completeness_all", "purity", "detections",
             "clusters", "clusters_above_headline_snr", "clusters_snr_4p5_6", "clusters_snr_ge_4")


@dataclasses.dataclass(frozen=True)
class ScoredSky:
    """One scored sky: its tiles' WCS, the U-Net's probability maps, the MMF's maps and the truth."""

    wcs: list
    probability: np.ndarray
    mmf: MmfMaps
    truth: ClusterTruth
    patches: PatchSet


def sky_maps(model, patches: PatchSet, truth: ClusterTruth, config: ClustersConfig, *, mmf_cache: Path | None = None) -> ScoredSky:
    """Run the U-Net and the MMF over the tiles of one sky.

    The MMF's maps depend on the sky alone, not on the model: with ``mmf_cache`` (an ``.npz``
    path) they are read from there when present and written there otherwise.
    """
    wcs = [patch_wcs(lon, lat, patch_px=config.patch_px, pixel_arcmin=config.pixel_scale_arcmin)
           for lon, lat in zip(patches.lon, patches.lat)]
    if mmf_cache is not None and mmf_cache.exists():
        with np.load(mmf_cache, allow_pickle=False) as arrays:
            mmf = MmfMaps(arrays["snr"], arrays["theta500_arcmin"], arrays["y5r500_arcmin2"], arrays["sigma_arcmin2"],
                          tuple(float(size) for size in arrays["sizes_arcmin"]))
    else:
        mmf = mmf_in_chunks(patches.pixels, config.bands, pixel_arcmin=config.pixel_scale_arcmin, map_fwhm=map_fwhm_arcmin(config.nside))
        if mmf_cache is not None:
            mmf_cache.parent.mkdir(parents=True, exist_ok=True)
            temporary = mmf_cache.with_suffix(".tmp.npz")
            np.savez(temporary, **{field.name: np.asarray(getattr(mmf, field.name)) for field in dataclasses.fields(mmf)})
            temporary.replace(mmf_cache)
    return ScoredSky(wcs, predict_probabilities(model, patches.pixels), mmf, truth, patches)


def _model_scores(skies: Sequence[ScoredSky], config: ClustersConfig, cells: tuple[int, ...], threshold: float,
                  min_pixels: int | None = None, union_snr: float | None = None) -> dict[str, Any]:
    """Scores of the U-Net's catalogue at ``threshold`` (``min_pixels``, ``union_snr``: the config's when None; 0: the U-Net alone)."""
    rule = dataclasses.replace(config, min_pixels=config.min_pixels if min_pixels is None else min_pixels,
                               mmf_union_snr=config.mmf_union_snr if union_snr is None else union_snr)
    return detection_scores([field_detections(s.probability, s.wcs, rule, threshold=threshold, mmf=s.mmf) for s in skies],
                            [s.truth for s in skies], config, cells)


def _baseline_scores(skies: Sequence[ScoredSky], config: ClustersConfig, cells: tuple[int, ...], threshold: float) -> dict[str, Any]:
    return detection_scores([mmf_field_detections(s.mmf, s.wcs, config, threshold=threshold) for s in skies],
                            [s.truth for s in skies], config, cells)


def _lowest_reaching(sweep: dict[float, dict[str, Any]], purity: float) -> tuple[float, bool]:
    """The lowest threshold of ``sweep`` whose purity reaches ``purity`` (else the purest) and whether one did."""
    reaching = [q for q, s in sweep.items() if not math.isnan(s["purity"]) and s["purity"] >= purity]
    if reaching:
        return min(reaching), True
    return max(sweep, key=lambda q: np.nan_to_num(sweep[q]["purity"])), False


def _most_complete_reaching(sweep: dict[tuple[float, int], dict[str, Any]], purity: float) -> tuple[tuple[float, int], bool]:
    """The rule of ``sweep`` reaching ``purity`` with the highest faint-end completeness (then overall), else the purest.

    The candidate rules form a grid (probability threshold x minimum group size), so "the lowest
    threshold" is not defined; the issue's figure of merit, completeness at S/N 4.5-6, picks among them.
    """
    reaching = [rule for rule, s in sweep.items() if not math.isnan(s["purity"]) and s["purity"] >= purity]
    if reaching:
        return max(reaching, key=lambda rule: (np.nan_to_num(sweep[rule]["completeness_snr_4p5_6"]),
                                               np.nan_to_num(sweep[rule]["completeness_all"]), -rule[0], -rule[1])), True
    return max(sweep, key=lambda rule: np.nan_to_num(sweep[rule]["purity"])), False


def tune_thresholds(skies: Sequence[ScoredSky], config: ClustersConfig, cells: tuple[int, ...]) -> dict[str, Any]:
    """Operating points reaching ``config.target_purity`` on validation ``skies``: MMF S/N threshold, U-Net detection rule."""
    baseline = {q: _baseline_scores(skies, config, cells, q) for q in _BASELINE_THRESHOLDS}
    model = {(p, m): _model_scores(skies, config, cells, p, m, union_snr=0.0) for p in _MODEL_THRESHOLDS for m in _MODEL_MIN_PIXELS}
    q, q_ok = _lowest_reaching(baseline, config.target_purity)
    (p, m), p_ok = _most_complete_reaching(model, config.target_purity)
    # the union catalogue: the U-Net at its own rule, plus the MMF's peaks above the lowest S/N keeping the union's purity
    union = {u: _model_scores(skies, config, cells, p, m, union_snr=u) for u in _BASELINE_THRESHOLDS}
    u, u_ok = _lowest_reaching(union, config.target_purity)
    return {"role": "validation", "target_purity": config.target_purity, "cells": list(cells),
            "union_mmf_snr_threshold": u, "union_reaches_target": u_ok, "union_purity": union[u]["purity"],
            "union_completeness_snr_4p5_6": union[u]["completeness_snr_4p5_6"],
            "union_purity_vs_threshold": {f"{k:.2f}": v["purity"] for k, v in union.items()},
            "baseline_snr_threshold": q, "baseline_reaches_target": q_ok, "baseline_purity": baseline[q]["purity"],
            "baseline_completeness_snr_4p5_6": baseline[q]["completeness_snr_4p5_6"],
            "model_threshold": p, "model_min_pixels": m, "model_reaches_target": p_ok, "model_purity": model[p, m]["purity"],
            "model_completeness_snr_4p5_6": model[p, m]["completeness_snr_4p5_6"],
            "baseline_purity_vs_threshold": {f"{k:.2f}": v["purity"] for k, v in baseline.items()},
            "model_vs_rule": {f"p>{k[0]:g},px>={k[1]}": {"purity": v["purity"], "completeness_snr_4p5_6": v["completeness_snr_4p5_6"]}
                              for k, v in model.items()}}


def _summary(scores: dict[str, Any], config: ClustersConfig, **extra: Any) -> dict[str, Any]:
    """The headline figures of ``scores`` with their 95% bootstrap intervals."""
    return {**{k: scores[k] for k in _HEADLINE}, **rate_intervals(scores, config), **extra}


def evaluate_skies(
    model, skies: Sequence[tuple[PatchSet, ClusterTruth]], config: ClustersConfig, cells: tuple[int, ...],
    *, tuning: dict[str, Any] | None = None,
) -> Evaluation:
    """Score ``model`` and the MMF baseline on the tiles covering ``cells`` of each sky.

    ``skies`` holds, per sky realisation, the patches tiling ``cells`` and the sky's truth; the
    figures pool the skies and ``metrics["per_sky"]`` gives the model's figures of each.
    ``tuning`` (from :func:`tune_thresholds` on a training sky) sets the MMF's S/N threshold and
    the model's threshold of target purity; without it the MMF detects above
    ``config.baseline_snr_threshold`` and only the shipped rule is scored.
    """
    maps = [sky_maps(model, patches, truth, config) for patches, truth in skies]
    return score_maps(maps, config, cells, tuning=tuning)


def score_maps(maps: Sequence[ScoredSky], config: ClustersConfig, cells: tuple[int, ...], *, tuning: dict[str, Any] | None = None) -> Evaluation:
    """:func:`evaluate_skies` on skies whose maps :func:`sky_maps` made."""
    model_scores = _model_scores(maps, config, cells, config.threshold)
    per_sky = [_summary(_model_scores([m], config, cells, config.threshold), config) for m in maps]
    q = tuning["baseline_snr_threshold"] if tuning else config.baseline_snr_threshold
    baseline = _baseline_scores(maps, config, cells, q)
    metrics: dict[str, Any] = {
        **{k: model_scores[k] for k in _HEADLINE}, "headline_snr": config.headline_snr,
        "faint_snr_range": list(config.faint_snr_range), "snr_definition": "injected: true Y5R500 / MMF noise at the true theta500",
        "threshold": config.threshold, "cells": list(cells), "per_sky": per_sky,
        "model": _summary(model_scores, config, threshold=config.threshold, min_pixels=config.min_pixels,
                          candidate_extraction=config.candidate_extraction, mmf_union_snr=config.mmf_union_snr),
        "baseline": _summary(baseline, config, snr_threshold=q, tuned_on_training_sky=bool(tuning)),
        "model_minus_baseline": paired_differences(model_scores, baseline, config),
    }
    if tuning:
        metrics["tuning"] = tuning
        tuned = _model_scores(maps, config, cells, tuning["model_threshold"], tuning["model_min_pixels"], union_snr=0.0)
        metrics["model_at_target_purity"] = _summary(tuned, config, threshold=tuning["model_threshold"],
                                                     min_pixels=tuning["model_min_pixels"])
        metrics["model_at_target_purity_curve"] = tuned["completeness_vs_snr"]
        metrics["model_at_target_purity_minus_baseline"] = paired_differences(tuned, baseline, config)
        union = _model_scores(maps, config, cells, tuning["model_threshold"], tuning["model_min_pixels"],
                              union_snr=tuning["union_mmf_snr_threshold"])
        metrics["union_at_target_purity"] = _summary(union, config, threshold=tuning["model_threshold"],
                                                     min_pixels=tuning["model_min_pixels"],
                                                     mmf_union_snr=tuning["union_mmf_snr_threshold"])
        metrics["union_at_target_purity_curve"] = union["completeness_vs_snr"]
        metrics["union_at_target_purity_minus_baseline"] = paired_differences(union, baseline, config)
    metrics.update(_real_catalogue_matches(model_scores["_kept"], config, cells))
    first = maps[0]
    patches, probability, snr_maps = first.patches, first.probability, first.mmf.snr
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


def _binomial_error(found: int, total: int) -> float:
    if total == 0:
        return math.nan
    p = (found + 0.5) / (total + 1.0)  # Jeffreys-like centre: non-zero error at 0 and 1
    return math.sqrt(p * (1.0 - p) / total)


def plot_evaluation(evaluation: Evaluation, config: ClustersConfig, path: Path) -> Path:
    """Completeness vs injected S/N and vs M500 (U-Net and MMF) and one tile with its maps; PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = evaluation.metrics
    union = f" + MMF S/N > {config.mmf_union_snr:g}" if config.mmf_union_snr > 0 else ""
    curves = [(evaluation.model_scores, f"U-Net (p > {config.threshold}, >= {config.min_pixels} px){union}, purity {metrics['model']['purity']:.2f}", "o-"),
              (evaluation.baseline_scores, f"MMF (S/N > {metrics['baseline']['snr_threshold']:.2f}), purity {metrics['baseline']['purity']:.2f}", "s--")]
    figure, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    for axis, key, label, log in ((axes[0], "completeness_vs_snr", "injected S/N (true Y5R500 / MMF noise)", False),
                                  (axes[1], "completeness_vs_m500", "M500 [Msun]", True)):
        for offset, (scores, name, style) in enumerate(curves):
            curve = scores[key]
            low, high = np.array(curve["low"]), np.array(curve["high"])
            top = high[-2] * 1.5 if log else high[-2] + 5
            centres = np.where(high > 1e16 if log else high > 1e8, (low + top) / 2, (low + high) / 2)
            centres = centres * (1 + 0.02 * offset) if log else centres + 0.08 * offset
            errors = [_binomial_error(f, c) for f, c in zip(curve["detected"], curve["clusters"])]
            axis.errorbar(centres, curve["completeness"], yerr=errors, fmt=style, capsize=2, label=name, ms=4)
        axis.set_xlabel(label)
        axis.set_ylabel("completeness")
        axis.set_ylim(-0.02, 1.05)
        axis.grid(alpha=0.3)
        if log:
            axis.set_xscale("log")
    low, high = config.faint_snr_range
    axes[0].axvspan(low, high, color="orange", alpha=0.12, lw=0)
    axes[0].axvline(config.headline_snr, color="grey", lw=0.8)
    axes[0].set_xlim(0, 17)
    axes[0].legend(loc="lower right", fontsize=8)
    axes[0].set_title(f"S/N {low:g}-{high:g}: U-Net{' + MMF' if union else ''} {metrics['model']['completeness_snr_4p5_6']:.2f}, "
                      f"MMF {metrics['baseline']['completeness_snr_4p5_6']:.2f}", fontsize=10)
    example = evaluation.example
    if example:
        index_143 = config.band_names.index("hfi_143")
        axes[2].imshow(example["pixels"][index_143] * 1e6, origin="lower", cmap="RdBu_r")
        axes[2].contour(example["target"], levels=[0.5], colors="k", linewidths=0.8)
        axes[2].set_title("143 GHz [uK_CMB], target disks")
        axes[3].imshow(example["probability"], origin="lower", vmin=0, vmax=1, cmap="viridis")
        axes[3].contour(example["snr"], levels=[metrics["baseline"]["snr_threshold"]], colors="r", linewidths=0.8)
        axes[3].contour(example["target"], levels=[0.5], colors="w", linewidths=0.8)
        axes[3].set_title("U-Net probability; red: MMF S/N threshold")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
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
    """The ``evaluate`` command: simulate (or reuse) the skies, tune on a training sky, score, plot, write JSON.

    The scored skies are the config's ``evaluation_seeds`` (never used in training), or the one
    sky ``seed``; ``skies_used_in_training`` names any scored sky that the model trained on. The
    operating points are tuned on the validation cells of the first training sky.
    """
    from nightshift.clusters.bundle import bundled_weights
    from nightshift.clusters.datasets import cache_dir, simulated_data, sky_key
    from nightshift.clusters.model import load_model
    from nightshift.core.devices import configure_tensorflow

    configure_tensorflow()
    weights = weights or bundled_weights()
    card = json.loads(weights.with_suffix(".json").read_text())
    config = ClustersConfig.from_dict(card["config"]).with_evaluation_protocol().with_overrides(overrides)
    sky_seeds = (seed,) if seed is not None else tuple(config.evaluation_seeds)
    scored_cells = config.held_out_cells if cells == "held-out" else tuple(config.test_cells)
    network = load_model(str(weights))

    def sky(sky_seed: int, sky_cells: tuple[int, ...]) -> ScoredSky:
        sky_config = dataclasses.replace(config, seed=sky_seed, validation_cells=(), test_cells=sky_cells)
        data = simulated_data(sky_config, ("test",), cache=True)
        mmf_cache = cache_dir() / f"mmf{_MMF_CACHE_VERSION}-{sky_key(sky_config, ('test',))}.npz"
        return sky_maps(network, data.splits["test"], data.truth, config, mmf_cache=mmf_cache)

    tuning_seed, tuning_cells = config.training_sky_seeds[0], tuple(config.validation_cells)
    tuning = {"sky_seed": tuning_seed, **tune_thresholds([sky(tuning_seed, tuning_cells)], config, tuning_cells)}
    evaluation = score_maps([sky(s, scored_cells) for s in sky_seeds], config, scored_cells, tuning=tuning)
    output.mkdir(parents=True, exist_ok=True)
    plot = plot_evaluation(evaluation, config, output / "completeness.png")
    figures = _json_safe({
        **evaluation.metrics, "model_name": card["name"], "weights": weights.name, "sky_seeds": list(sky_seeds),
        "training_sky_seeds": list(config.training_sky_seeds),
        "skies_used_in_training": [s for s in sky_seeds if s in config.training_sky_seeds],
        "nside": config.nside, "plot": plot.name,
        "roles": {"validation": f"sky {tuning_seed} (a training sky), cells {list(tuning_cells)}: chose both operating points",
                  "test": f"skies {list(sky_seeds)}, cells {list(scored_cells)}: the reported figures, never trained or tuned on"},
        "completeness_vs_snr": evaluation.model_scores["completeness_vs_snr"],
        "completeness_vs_m500": evaluation.model_scores["completeness_vs_m500"],
        "baseline_completeness_vs_snr": evaluation.baseline_scores["completeness_vs_snr"],
        "baseline_completeness_vs_m500": evaluation.baseline_scores["completeness_vs_m500"],
    })
    (output / "evaluation.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return figures
