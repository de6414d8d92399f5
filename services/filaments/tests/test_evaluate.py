"""Metrics on hand-made cases with known answers, and the evaluation of a model against the baseline."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.filaments.evaluate import (calibrate_threshold, dice, iou, plot_curves, plot_side_by_side, score_maps,
                                           segmentation_scores)
from nightshift.filaments.config import preset


def test_dice_and_iou_by_hand() -> None:
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    predicted = np.array([1, 1, 0, 0, 1, 0, 0, 0], bool)
    # overlap 2, |P| 3, |T| 4, union 5
    assert dice(predicted, truth) == pytest.approx(4 / 7)
    assert iou(predicted, truth) == pytest.approx(2 / 5)
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0 and iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    assert dice(np.ones(3, bool), np.zeros(3, bool)) == 0.0


def test_average_precision_and_roc_by_hand() -> None:
    score = np.array([0.9, 0.8, 0.7, 0.6])
    truth = np.array([True, False, True, False])
    valid = np.ones(4, bool)
    scores = segmentation_scores(score, truth, valid, threshold=0.5)
    # ranks: TP (P=1, R=.5), FP, TP (P=2/3, R=1): AP = .5*1 + .5*2/3
    assert scores["ap"] == pytest.approx(0.5 + 1 / 3)
    assert scores["roc_auc"] == pytest.approx(0.75)
    assert scores["dice"] == pytest.approx(2 * 2 / (4 + 2))


def test_invalid_pixels_are_not_scored() -> None:
    score = np.array([0.9, 0.9, 0.1])
    truth = np.array([True, False, False])
    perfect = segmentation_scores(score, truth, np.array([True, False, True]), threshold=0.5)
    assert perfect["dice"] == 1.0 and perfect["ap"] == 1.0
    no_truth = segmentation_scores(score, np.zeros(3, bool), np.ones(3, bool), threshold=0.5)
    assert np.isnan(no_truth["ap"]) and no_truth["dice"] == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        segmentation_scores(score, truth[:2], truth[:2], 0.5)


def test_calibrated_threshold_separates_the_classes() -> None:
    score = np.array([0.1, 0.2, 0.3, 0.61, 0.7, 0.9])
    truth = score > 0.5
    threshold = calibrate_threshold([score], [truth], [np.ones(6, bool)])
    assert 0.3 < threshold <= 0.61


def test_score_maps_and_plots(tmp_path) -> None:
    rows, cols = np.indices((64, 64))
    image = (1e22 * (1 + np.exp(-0.5 * ((cols - 32) / 1.2) ** 2))).astype(np.float32)
    truth = np.abs(cols - 32) <= 2
    scored = score_maps("hand", [truth.astype(np.float32)], [image], [truth], [np.ones_like(truth)], preset("tiny"), 0.3)
    figures = scored.figures()
    assert figures["dice"] == 1.0 and figures["ap"] == 1.0
    assert 0 < figures["baseline"]["dice"] <= 1 and figures["baseline"]["threshold"] == 0.3
    assert plot_curves([scored], tmp_path / "curves.png").stat().st_size > 1000
    assert plot_side_by_side(image, truth, truth, tmp_path / "side.png").stat().st_size > 1000


def test_the_shipped_model_beats_the_baseline_on_held_out_simulated_maps() -> None:
    from nightshift.filaments.evaluate import evaluate_simulated
    from nightshift.filaments.model import load_checkpoint

    network, config, _ = load_checkpoint()
    figures = evaluate_simulated(network, config, maps=3)[0].figures()
    for metric in ("dice", "iou", "ap"):
        assert figures[metric] > figures["baseline"][metric], metric
