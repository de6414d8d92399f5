"""The seed's metrics on hand-made cases, the plot, and the shipped model against the baseline."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nightshift.clusters.config import ClustersConfig
from nightshift.clusters.evaluate import completeness_curve, detection_scores, evaluate_skies, match_to_truth, plot_evaluation
from nightshift.clusters.infer import Detections
from nightshift.clusters.simulate import ClusterTruth


def test_match_to_truth_at_seven_arcmin() -> None:
    detected, true_detection = match_to_truth(
        np.array([10.0, 10.0, 80.0]), np.array([0.0 + 6.9 / 60, 1.0, -20.0]),
        np.array([10.0, 10.0, 50.0]), np.array([0.0, 1.0 + 7.5 / 60, 50.0]), radius_arcmin=7.0)
    assert detected.tolist() == [True, False, False]
    assert true_detection.tolist() == [True, False, False]
    assert [len(a) for a in match_to_truth(np.zeros(0), np.zeros(0), np.ones(2), np.ones(2), radius_arcmin=7)] == [2, 0]


def test_completeness_curve_counts_per_bin() -> None:
    curve = completeness_curve(np.array([1.0, 2.5, 2.7, 9.0]), np.array([False, True, False, True]), (0.0, 2.0, 5.0, 10.0, 20.0))
    assert curve["clusters"] == [1, 2, 1, 0] and curve["detected"] == [0, 1, 1, 0]
    assert curve["completeness"][:3] == [0.0, 0.5, 1.0] and math.isnan(curve["completeness"][3])


def _truth(glon, glat, snr, cell=7) -> ClusterTruth:
    n = len(glon)
    return ClusterTruth(glon=np.array(glon, float), glat=np.array(glat, float), m500_msun=np.full(n, 5e14),
                        z=np.full(n, 0.3), theta500_arcmin=np.full(n, 4.0), y5r500_arcmin2=np.full(n, 1e-3),
                        snr=np.array(snr, float), base_cell=np.full(n, cell), psz2_analogue=np.full(n, ""))


def test_completeness_and_purity_on_a_known_field() -> None:
    import healpy as hp

    lon, lat = hp.pix2ang(2, 7, nest=True, lonlat=True)
    truth = _truth([lon, lon + 1, lon + 2, lon + 3], [lat] * 4, [10.0, 8.0, 7.0, 2.0])
    # found: clusters 0 and 3, plus one false detection; the bright cluster 1 and 2 are missed
    detections = Detections(tile=np.zeros(3, int), x=np.zeros(3), y=np.zeros(3), radius_px=np.ones(3), score=np.ones(3),
                            n_pixels=np.full(3, 3), edge_px=np.zeros(3),
                            glon=np.array([lon, lon + 3, lon - 1]), glat=np.array([lat, lat + 0.05, lat]))
    scores = detection_scores([detections], [truth], ClustersConfig(headline_snr=6.0), (7,))
    assert scores["completeness"] == pytest.approx(1 / 3)
    assert scores["completeness_all"] == pytest.approx(0.5)
    assert scores["purity"] == pytest.approx(2 / 3)
    # a second sky with the same clusters found alike plus one more false detection: counts pool
    more = Detections(tile=np.zeros(4, int), x=np.zeros(4), y=np.zeros(4), radius_px=np.ones(4), score=np.ones(4),
                      n_pixels=np.full(4, 3), edge_px=np.zeros(4),
                      glon=np.array([lon, lon + 3, lon - 1, lon - 2]), glat=np.array([lat, lat + 0.05, lat, lat]))
    pooled = detection_scores([detections, more], [truth, truth], ClustersConfig(headline_snr=6.0), (7,))
    assert (pooled["detections"], pooled["clusters"]) == (7, 8)
    assert pooled["purity"] == pytest.approx(4 / 7) and pooled["completeness"] == pytest.approx(1 / 3)


def test_shipped_model_beats_the_matched_filter_on_a_held_out_sky(tmp_path) -> None:
    """A fresh sky (another seed) at the model's resolution, scored on test cell 7."""
    from nightshift.clusters.datasets import simulated_data
    from nightshift.clusters.model import load_model
    from nightshift.clusters.servicer import bundled_weights

    weights = bundled_weights()
    config = ClustersConfig.from_dict(json.loads(weights.with_suffix(".json").read_text())["config"]).with_overrides(
        {"seed": 2024, "random_clusters": 2500, "validation_cells": []})
    data = simulated_data(config, ("test",))
    evaluation = evaluate_skies(load_model(str(weights)), [(data.splits["test"], data.truth)], config, (7,))
    metrics = evaluation.metrics
    baseline = metrics["baseline"]
    assert metrics["clusters_above_headline_snr"] >= 5 and metrics["completeness"] >= 0.9
    # at the baseline's threshold of equal purity, the model finds more of the injected clusters
    assert baseline["reaches_model_purity"] and metrics["completeness_all"] > baseline["completeness_all"]
    assert metrics["completeness"] >= baseline["completeness"]
    if "real_catalogue_matches" in metrics:  # clusters placed independently of the real catalogues: chance matches only
        expected = metrics["real_catalogue_matches_expected_by_chance"]
        assert 0 < metrics["real_catalogue_chance_rate"] < 0.5
        assert metrics["real_catalogue_matches"] <= expected + 4 * math.sqrt(expected) + 2
    plot = plot_evaluation(evaluation, config, tmp_path / "completeness.png")
    assert plot.stat().st_size > 10_000
