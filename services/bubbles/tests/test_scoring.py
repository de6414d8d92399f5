"""The real-sky scoring rules on hand-made cases: position-and-size matching, one to one, leave-one-field-out thresholds."""

import pytest

from nightshift.bubbles.infer import FieldDetection
from nightshift.bubbles.realdata import CatalogueBubble
import numpy as np

from nightshift.bubbles.evaluate import Counts
from nightshift.bubbles.scoring import (RealCounts, choose_threshold, field_counts, field_intervals, leave_one_field_out, match_catalogue,
                                       real_counts, real_intervals, recall_bins)


def _bubble(x: float, y: float, radius: float, clear: bool = False) -> CatalogueBubble:
    return CatalogueBubble(0, x, y, radius, 0.0, 0.0, clear)


def _detection(x: float, y: float, radius: float, score: float) -> FieldDetection:
    return FieldDetection(x_px=x, y_px=y, radius_px=radius, score=score, glon_deg=0.0, glat_deg=0.0, radius_arcsec=radius)


def test_a_match_needs_both_position_and_size() -> None:
    bubbles = [_bubble(100, 100, 20, clear=True)]
    assert list(match_catalogue([_detection(109, 100, 20, 0.9)], bubbles)) == [0]  # 0.45 radii off: a match
    assert list(match_catalogue([_detection(111, 100, 20, 0.9)], bubbles)) == [-1]  # 0.55 radii off
    assert list(match_catalogue([_detection(100, 100, 9, 0.9)], bubbles)) == [-1]  # radius ratio 0.45
    assert list(match_catalogue([_detection(100, 100, 39, 0.9)], bubbles)) == [0]  # ratio 1.95
    # the old box-coverage rule counted a detection four times too large as a hit
    assert list(match_catalogue([_detection(100, 100, 80, 0.9)], bubbles)) == [-1]


def test_matching_is_one_to_one_by_descending_score() -> None:
    bubbles = [_bubble(100, 100, 20), _bubble(300, 100, 20)]
    found = [_detection(101, 100, 20, 0.6), _detection(99, 100, 20, 0.95), _detection(300, 102, 18, 0.7)]
    assert list(match_catalogue(found, bubbles)) == [-1, 0, 1]
    counts = real_counts(found, bubbles, 0.5)
    assert counts == RealCounts(clear_hit=0, clear_total=0, all_hit=2, all_total=2, detections=3)
    assert counts.precision == pytest.approx(2 / 3) and counts.recall_all == 1.0
    assert real_counts(found, bubbles, 0.9) == RealCounts(all_hit=1, all_total=2, detections=1)


def test_threshold_is_the_best_recall_at_precision_at_least_one_half() -> None:
    sweep = {0.5: RealCounts(all_hit=8, all_total=10, detections=20),  # precision 0.4
             0.7: RealCounts(all_hit=6, all_total=10, detections=10),  # 0.6
             0.9: RealCounts(all_hit=3, all_total=10, detections=3)}
    assert choose_threshold(sweep) == 0.7
    # no threshold reaches the floor: the best F1
    low = {0.5: RealCounts(all_hit=8, all_total=10, detections=40), 0.9: RealCounts(all_hit=1, all_total=10, detections=4)}
    assert choose_threshold(low) == 0.5


def test_each_field_is_scored_at_a_threshold_chosen_on_the_others() -> None:
    good_low = {0.5: RealCounts(all_hit=5, all_total=5, detections=6), 0.9: RealCounts(all_hit=1, all_total=5, detections=1)}
    good_high = {0.5: RealCounts(all_hit=5, all_total=5, detections=50), 0.9: RealCounts(all_hit=4, all_total=5, detections=4)}
    # field 0 alone would pick 0.5; the other two (noisy at 0.5) pick 0.9 for it
    assert leave_one_field_out([good_low, good_high, good_high]) == [0.9, 0.9, 0.9]
    # fields 0 and 1 each see one clean and one noisy field (0.9); field 2 sees two clean ones (0.5)
    assert leave_one_field_out([good_low, good_low, good_high]) == [0.9, 0.9, 0.5]


def test_field_intervals_resample_fields_and_pair_the_detectors() -> None:
    good = [Counts(4, 4, 5, 6, 5, 5), Counts(2, 3, 3, 4, 3, 4), Counts(3, 3, 4, 4, 4, 4), Counts(1, 2, 2, 3, 2, 3)]
    poor = [Counts(1, 4, 2, 6, 2, 6), Counts(1, 3, 1, 4, 1, 5), Counts(2, 3, 2, 4, 2, 4), Counts(0, 2, 0, 3, 0, 2)]
    model, baseline = field_intervals(good, poor)
    total = sum(good, Counts())
    assert model["detection_rate_ci95_low"] < total.detection_rate < model["detection_rate_ci95_high"] <= 1.0
    assert model["precision_ci95_low"] >= min(c.precision for c in good)
    assert baseline["f2_ci95_high"] < model["f2_ci95_high"]
    assert model["f2_over_baseline_ci95_low"] > 0.0  # the model leads on every field


def test_field_counts_keep_each_fields_detections_at_the_threshold() -> None:
    truths = np.array([[0.0, 0.0, 10.0, 10.0]])
    rows = [(np.array([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]]), np.array([0.9, 0.6]), truths, [True]),
            (np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([0.55]), truths, [False])]
    assert field_counts(rows, 0.7) == [Counts(1, 1, 1, 1, 1, 1), Counts(0, 0, 0, 1, 0, 0)]
    assert field_counts(rows, 0.5) == [Counts(1, 1, 1, 1, 1, 2), Counts(0, 0, 1, 1, 1, 1)]


def test_recall_bins_count_hits_by_a_truth_attribute() -> None:
    from types import SimpleNamespace

    bubbles = [SimpleNamespace(contrast=0.2, clear=True), SimpleNamespace(contrast=0.25, clear=False),
               SimpleNamespace(contrast=1.5, clear=True)]
    truths = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [40.0, 40.0, 50.0, 50.0]])
    rows = [(np.array([[20.0, 20.0, 30.0, 30.0], [40.0, 40.0, 50.0, 50.0]]), np.array([0.9, 0.9]), truths, [True, False, True])]
    bins = recall_bins([SimpleNamespace(bubbles=bubbles)], rows, 0.5, "contrast", (0.15, 0.3, 1.0, 1.5))
    assert [(b["bubbles"], b["hit"], b["clear"], b["clear_hit"]) for b in bins] == [(2, 1, 1, 0), (0, 0, 0, 0), (1, 1, 1, 1)]
    assert bins[0]["detection_rate"] == 0.0 and bins[0]["detection_rate_all"] == 0.5
    assert bins[1]["detection_rate"] is None  # no bubble in the bin: no rate, not the empty-set convention's 1
    assert bins[2]["detection_rate"] == 1.0  # the last bin includes its upper edge


def test_real_intervals_are_over_bubbles_and_detections() -> None:
    intervals = real_intervals(RealCounts(clear_hit=1, clear_total=7, all_hit=2, all_total=34, detections=16))
    assert intervals["recall_clear_ci95_low"] == 0.0 and 1 / 7 < intervals["recall_clear_ci95_high"] < 0.6
    assert 0.0 <= intervals["recall_all_ci95_low"] < 2 / 34 < intervals["recall_all_ci95_high"] < 0.2
    assert intervals["precision_ci95_low"] < 2 / 16 < intervals["precision_ci95_high"]
