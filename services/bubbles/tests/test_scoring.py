"""The real-sky scoring rules on hand-made cases: position-and-size matching, one to one, leave-one-field-out thresholds."""

import pytest

from nightshift.bubbles.infer import FieldDetection
from nightshift.bubbles.realdata import CatalogueBubble
from nightshift.bubbles.scoring import RealCounts, choose_threshold, leave_one_field_out, match_catalogue, real_counts


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
