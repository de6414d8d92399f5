"""The seed's metrics on hand-made cases, and the shipped model against the baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nightshift.inclination.evaluate import (
    HELD_OUT_SEED, binned_rms, calibration, evaluate_estimates, mae, rms, roc_auc, score, write_report,
)


def test_rms_and_mae_by_hand() -> None:
    assert rms([3.0, -4.0]) == pytest.approx(np.sqrt(12.5))
    assert mae([3.0, -4.0]) == pytest.approx(3.5)
    assert np.isnan(rms([])) and np.isnan(mae([]))


@pytest.mark.parametrize(("scores", "positive", "auc"), [
    ([0.1, 0.2, 0.8, 0.9], [False, False, True, True], 1.0),
    ([0.9, 0.8, 0.2, 0.1], [False, False, True, True], 0.0),
    ([0.5, 0.5, 0.5, 0.5], [False, True, False, True], 0.5),
    ([0.1, 0.6, 0.4, 0.9], [False, False, True, True], 0.75),  # 3 of 4 positive-negative pairs ordered
])
def test_roc_auc_by_hand(scores: list, positive: list, auc: float) -> None:
    assert roc_auc(np.array(scores), np.array(positive)) == pytest.approx(auc)


def test_roc_auc_needs_both_classes_and_equal_shapes() -> None:
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([True, True])))
    with pytest.raises(ValueError, match="expected equal shapes"):
        roc_auc(np.array([0.1, 0.2]), np.array([True]))


def test_binned_rms_and_calibration_by_hand() -> None:
    bins = binned_rms(np.array([1.0, -1.0, 3.0, 4.0]), np.array([45.0, 50.0, 80.0, 90.0]), (45, 60, 90))
    assert bins == [(45.0, 60.0, 2, 1.0), (60.0, 90.0, 2, pytest.approx(np.sqrt(12.5)))]
    result = calibration(np.array([0.5, -1.5, 2.5, 0.0]), np.ones(4))
    assert result == {"coverage_1sigma": 0.5, "coverage_2sigma": 0.75, "z_rms": pytest.approx(np.sqrt(8.75 / 4))}


def test_score_uses_accepted_galaxies_for_regression_and_all_for_the_auc() -> None:
    metrics = score(np.array([50.0, 62.0, 10.0, 80.0]), np.array([0.1, 0.5, 0.9, 0.3]), true_deg=np.array([48.0, 60.0, 70.0, 30.0]),
                    accepted=np.array([True, True, False, False]), bulge_to_total=np.array([0.05, 0.3, 0.1, 0.1]))
    assert metrics["rms_deg"] == pytest.approx(2.0) and metrics["mae_deg"] == pytest.approx(2.0)
    assert metrics["reject_auc"] == pytest.approx(0.75)
    assert metrics["rms_deg_bt_0.00_0.10"] == pytest.approx(2.0) and np.isnan(metrics["rms_deg_bt_0.10_0.25"])
    assert metrics["n_accepted"] == 2


@pytest.fixture(scope="module")
def shipped_model_result():
    from nightshift.inclination.infer import Predictor
    from nightshift.inclination.servicer import BUNDLED_CARD, BUNDLED_WEIGHTS
    from nightshift.inclination.train import simulate_split

    predictor = Predictor.from_files(BUNDLED_WEIGHTS, BUNDLED_CARD)
    galaxies = simulate_split(predictor.config, seed=HELD_OUT_SEED + 1, split="test", galaxies=120)
    estimates = predictor.measure(galaxies.images)
    return evaluate_estimates(galaxies, predicted_deg=estimates.inclination_deg, uncertainty_deg=estimates.uncertainty_deg,
                              reject_probability=estimates.reject_probability)


def test_the_shipped_model_beats_the_moments_baseline(shipped_model_result) -> None:
    model, baseline = shipped_model_result.metrics, shipped_model_result.baseline_metrics
    assert model["rms_deg"] < 0.75 * baseline["rms_deg"]
    assert model["mae_deg"] < baseline["mae_deg"]
    assert model["reject_auc"] > baseline["reject_auc"]
    assert model["rms_deg_bt_0.25_0.50"] < baseline["rms_deg_bt_0.25_0.50"]


def test_each_headline_figure_has_a_bootstrap_interval_around_it(shipped_model_result) -> None:
    for figures in (shipped_model_result.metrics, shipped_model_result.baseline_metrics):
        for name in ("rms_deg", "mae_deg", "reject_auc"):
            low, high = figures[f"{name}_ci95_low"], figures[f"{name}_ci95_high"]
            assert low < figures[name] < high, (name, low, figures[name], high)
        assert figures["rms_deg_ci95_high"] - figures["rms_deg_ci95_low"] < 0.5 * figures["rms_deg"]  # 84 galaxies: not vague


def test_report_writes_json_and_residual_plot(shipped_model_result, tmp_path) -> None:
    figures = write_report(shipped_model_result, tmp_path, context={"galaxies": 120})
    written = json.loads((tmp_path / "evaluation.json").read_text())
    assert written["rms_deg"] == pytest.approx(figures["rms_deg"]) and "rms_deg" in written["baseline"]
    assert (tmp_path / "residuals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
