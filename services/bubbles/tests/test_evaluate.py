"""The paper's scoring on hand-made cases."""

import numpy as np
import pytest

from nightshift.bubbles.evaluate import Counts, count_hits, coverage_matrix, f_beta, headline, plot_sweep, score_sweep, truth_hits


def test_coverage_is_the_covered_fraction_of_the_truth_box() -> None:
    truth = np.array([[0, 0, 10, 10]])
    detections = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 100, 100], [20, 20, 30, 30], [0, 0, 10, 10 / 3]])
    assert np.allclose(coverage_matrix(detections, truth)[:, 0], [1.0, 0.5, 1.0, 0.0, 1 / 3])


def test_count_hits_on_a_hand_made_field() -> None:
    truths = np.array([[0, 0, 10, 10], [50, 50, 70, 70], [100, 100, 110, 110]])
    clear = [True, False, True]
    detections = np.array([[2, 2, 12, 12],  # covers 64% of the first: hit
                           [60, 60, 80, 80],  # covers 25% of the second: not a hit
                           [101, 101, 109, 109],  # covers 64% of the third: hit
                           [200, 200, 210, 210]])  # nothing
    counts = count_hits(detections, truths, clear)
    assert counts == Counts(clear_hit=2, clear_total=2, all_hit=2, all_total=3, true_detections=2, detections=4)
    assert (counts.detection_rate, counts.detection_rate_all, counts.precision) == (1.0, pytest.approx(2 / 3), 0.5)
    assert counts.f2 == pytest.approx(5 * 0.5 * 1.0 / (4 * 0.5 + 1.0))


def test_empty_sets_follow_the_documented_conventions() -> None:
    counts = count_hits(np.zeros((0, 4)), np.zeros((0, 4)), [])
    assert (counts.detection_rate, counts.precision, counts.detections) == (1.0, 1.0, 0)
    assert f_beta(0.0, 0.0) == 0.0
    assert headline(Counts(clear_total=4))["detection_rate"] == 0.0


def test_sweep_keeps_detections_at_or_above_each_threshold(tmp_path) -> None:
    field = (np.array([[0, 0, 10, 10], [100, 100, 110, 110]]), np.array([0.97, 0.6]), np.array([[0, 0, 10, 10]]), [True])
    sweep = score_sweep([field], [0.5, 0.7, 0.99])
    assert [sweep[t].detections for t in (0.5, 0.7, 0.99)] == [2, 1, 0]
    assert [sweep[t].precision for t in (0.5, 0.7)] == [0.5, 1.0]
    assert sweep[0.99].detection_rate == 0.0
    assert plot_sweep({"a": sweep}, tmp_path / "sweep.png").stat().st_size > 0


def test_truth_hits_flag_each_truth_covered_by_a_third() -> None:
    truths = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    detections = np.array([[0, 0, 10, 4], [20, 20, 30, 23]])  # 40% of the first, 30% of the second
    assert truth_hits(detections, truths).tolist() == [True, False, False]
    assert truth_hits(np.zeros((0, 4)), truths).tolist() == [False, False, False]
