"""Metrics on hand-made cases with known answers, and the evaluation of a model against the baselines."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nightshift.filaments.baseline import FilFinderParameters, filfinder_score
from nightshift.filaments.evaluate import (border_effect, calibrate_filfinder, calibrate_threshold, dice, dice_difference_interval,
                                           dice_interval, iou, plot_curves, plot_side_by_side, score_maps, segmentation_scores, with_filfinder)
from nightshift.filaments.config import HIGAL_BEAM_FWHM_PX, preset
from nightshift.filaments.simulate import simulate_maps


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


def test_border_effect_by_hand() -> None:
    truth = np.zeros((10, 10), bool)
    truth[:, 4:6] = True  # a vertical filament crossing the map's top and bottom edges
    reference = truth.astype(np.float32)
    stitched = reference.copy()
    stitched[0, 4] = 0.2  # one border pixel lost (difference 0.8)
    stitched[5, 3] = 0.6  # one interior pixel gained (difference 0.6)
    valid = np.ones_like(truth)
    valid[9, 4] = False  # not scored: neither its truth nor its probability counts
    figures = border_effect([stitched], [reference], [truth], [valid], border_px=2, threshold=0.5)
    border, interior = figures["border"], figures["interior"]
    assert border["pixels"] == 64 - 1 and interior["pixels"] == 36
    assert border["max_abs_diff"] == pytest.approx(0.8) and interior["max_abs_diff"] == pytest.approx(0.6)
    # border: truth 4 + 4 - 1 (not valid) = 7 pixels, stitched finds 6 of them
    assert border["dice_stitched"] == pytest.approx(2 * 6 / (6 + 7)) and border["dice_reference"] == 1.0
    assert border["dice_between"] == pytest.approx(2 * 6 / (6 + 7))
    # interior: truth 12 pixels, stitched 13 (one extra)
    assert interior["dice_stitched"] == pytest.approx(2 * 12 / (13 + 12))


def test_the_dice_interval_resamples_sky_blocks_and_brackets_the_pooled_dice() -> None:
    rng = np.random.default_rng(5)
    truth = rng.random((256, 256)) < 0.2
    half_right = truth & (rng.random(truth.shape) < 0.5)  # every block about as good as the next: a narrow interval
    low, high = dice_interval([half_right], [truth], [np.ones_like(truth)])
    assert low < dice(half_right, truth) < high and high - low < 0.02
    mixed = truth.copy()
    mixed[:, 128:] = False  # one half of the sky perfect, the other empty: blocks disagree, a wide interval
    low, high = dice_interval([mixed], [truth], [np.ones_like(truth)])
    assert low < dice(mixed, truth) < high and high - low > 0.2
    assert dice_interval([truth], [truth], [np.ones_like(truth)]) == [1.0, 1.0]


def test_the_difference_interval_is_paired_over_the_same_blocks() -> None:
    rng = np.random.default_rng(6)
    truth = rng.random((256, 256)) < 0.2
    valid = np.ones_like(truth)
    better = truth & (rng.random(truth.shape) < 0.7)
    worse = better & (rng.random(truth.shape) < 0.9)  # the same pixels less a tenth: worse in every block
    low, high = dice_difference_interval([better], [worse], [truth], [valid])
    assert 0 < low < dice(better, truth) - dice(worse, truth) < high and high - low < 0.01
    assert dice_difference_interval([worse], [worse], [truth], [valid]) == [0.0, 0.0]


def test_score_maps_and_plots(tmp_path) -> None:
    rows, cols = np.indices((64, 64))
    image = (1e22 * (1 + np.exp(-0.5 * ((cols - 32) / 1.2) ** 2))).astype(np.float32)
    truth = np.abs(cols - 32) <= 2
    scored = score_maps("hand", [truth.astype(np.float32)], [image], [truth], [np.ones_like(truth)], preset("tiny"), 0.3)
    figures = scored.figures()
    assert figures["dice"] == 1.0 and figures["ap"] == 1.0
    assert np.isnan([figures["dice_ci95_low"], figures["baseline"]["dice_ci95_high"]]).all()  # one 64 px block: no interval
    assert 0 < figures["baseline"]["dice"] <= 1 and figures["baseline"]["threshold"] == 0.3
    assert "filfinder" not in figures
    maps = ([image], [truth], [np.ones_like(truth)])
    scored = with_filfinder(scored, maps, maps)
    filfinder = scored.figures()["filfinder"]
    assert 0 < filfinder["dice"] <= 1 and 0 < filfinder["ap"] <= 1
    assert filfinder["parameters"] == dataclasses.asdict(scored.filfinder_parameters)
    assert plot_curves([scored], tmp_path / "curves.png").stat().st_size > 1000
    assert plot_side_by_side(image, truth, truth, tmp_path / "side.png", filfinder_mask=truth).stat().st_size > 1000


def test_calibrate_filfinder_keeps_the_parameters_with_the_best_dice_on_the_given_maps() -> None:
    maps = simulate_maps(2, 96, 0)
    images, truths, valids = [m.column_density for m in maps], [m.mask for m in maps], [m.usable for m in maps]

    def pooled_dice(parameters: FilFinderParameters) -> float:
        found = [filfinder_score(c, parameters, beam_fwhm_px=HIGAL_BEAM_FWHM_PX) >= 0.5 for c in images]
        return dice(np.concatenate([f[v] for f, v in zip(found, valids)]),
                    np.concatenate([t[v] for t, v in zip(truths, valids)]))

    candidates = [FilFinderParameters(), *(FilFinderParameters(global_percentile=p) for p in (50.0, 94.0))]
    chosen = calibrate_filfinder(images, truths, valids, search={"global_percentile": (50.0, 94.0)}, sweeps=1)
    assert chosen in candidates and pooled_dice(chosen) == max(map(pooled_dice, candidates))


def test_the_shipped_model_beats_the_baseline_and_its_stitching_matches_one_pass() -> None:
    from nightshift.filaments.evaluate import evaluate_simulated
    from nightshift.filaments.model import load_checkpoint

    network, config, _ = load_checkpoint()
    figures = evaluate_simulated(network, config, maps=3, measure_border=True)[0].figures()
    for metric in ("dice", "iou", "ap"):
        assert figures[metric] > figures["baseline"][metric], metric
    stitching = figures["stitching"]
    assert stitching["border_px"] == config.patch_px // 4
    # Away from the map's edges, stitched windows agree with one pass over the whole map.
    assert stitching["interior"]["dice_between"] > 0.85 and stitching["interior"]["mean_abs_diff"] < 0.03


def test_error_breakdown_sorts_boundary_missed_and_spurious_errors() -> None:
    from nightshift.filaments.evaluate import error_breakdown

    truth = np.zeros((40, 40), bool)
    truth[5:8, 2:30] = True  # a filament found one pixel too wide
    truth[20:23, 2:30] = True  # a filament missed entirely
    predicted = np.zeros((40, 40), float)
    predicted[4:8, 2:30] = 1.0
    predicted[32:35, 10:20] = 1.0  # a spurious one
    figures = error_breakdown(predicted, truth, np.ones(truth.shape, bool), 0.5)
    assert figures["truth_components"] == 2 and figures["truth_components_alone"] == 1
    assert figures["truth_alone_pixel_share"] == pytest.approx(0.5)
    assert figures["predicted_components_alone"] == 1
    assert figures["fp_within_1px_of_truth"] == pytest.approx(28 / (28 + 30))
    assert figures["predicted_alone_pixel_share"] == pytest.approx(30 / (28 + 30))
    assert figures["fn_within_1px_of_prediction"] == 0  # the missed filament lies far from any prediction
    assert figures["recall"] == pytest.approx(0.5) and figures["precision"] == pytest.approx(84 / 142)
    assert figures["dice_forgiving_1px_boundary_errors"] == pytest.approx(2 * 84 / (2 * 84 + 30 + 84))
