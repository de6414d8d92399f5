"""The seed's metrics on hand-made cases, and the shipped model against the baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nightshift.inclination.evaluate import (
    BIN_QUANTITIES, HELD_OUT_SEED, ROBUSTNESS_SETS, binned_rms, calibration, evaluate_estimates, evaluate_robustness, mae,
    per_bin_table, rms, roc_auc, score, write_report,
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
    assert metrics["bias_deg_bt_0.00_0.10"] == pytest.approx(2.0) and metrics["n_bt_0.00_0.10"] == 1
    assert metrics["bias_deg_i_45_55"] == pytest.approx(2.0) and metrics["bias_deg_i_55_65"] == pytest.approx(2.0)
    assert metrics["n_accepted"] == 2


class _TruthPlusError:
    """A stand-in model: the truth plus a fixed error that grows with the PSF in pixels (no network)."""

    def __init__(self, galaxies) -> None:
        self.galaxies = galaxies

    def __call__(self, images: np.ndarray):
        import types

        fwhm = np.array([p.psf_fwhm_px for p in self.galaxies.parameters])
        error = np.random.default_rng(0).normal(0.0, 1.0, len(fwhm)) * (1 + fwhm)
        return types.SimpleNamespace(inclination_deg=self.galaxies.inclination_deg + error, uncertainty_deg=1 + fwhm,
                                     reject_probability=(~self.galaxies.accepted).astype(float))


@pytest.fixture(scope="module")
def tiny_result():
    from nightshift.inclination.simulate import simulate_galaxies

    galaxies = simulate_galaxies(60, size=64, seed=11, split="test")
    estimates = _TruthPlusError(galaxies)(galaxies.images)
    return evaluate_estimates(galaxies, predicted_deg=estimates.inclination_deg, uncertainty_deg=estimates.uncertainty_deg,
                              reject_probability=estimates.reject_probability)


def test_every_bin_quantity_is_scored_and_each_cells_counts_add_up(tiny_result) -> None:
    for figures in (tiny_result.metrics, tiny_result.baseline_metrics):
        for key, (_, edges, _) in BIN_QUANTITIES.items():
            counts = [v for k, v in figures.items() if k.startswith(f"n_{key}_")]
            assert len(counts) == len(edges) - 1, key
            assert sum(counts) == figures["n_accepted"] == 42, key  # 70 % of 60; every accepted galaxy in one cell
            assert len([k for k in figures if k.startswith(f"rms_deg_{key}_")]) == len(edges) - 1
    rows = per_bin_table(tiny_result.metrics, tiny_result.baseline_metrics)
    assert len(rows) == sum(len(edges) - 1 for _, edges, _ in BIN_QUANTITIES.values())
    assert {r["key"] for r in rows} == set(BIN_QUANTITIES)
    row = next(r for r in rows if r["key"] == "snr" and r["low"] == "40")
    assert row["n"] == tiny_result.metrics["n_snr_40_80"] and row["baseline_rms_deg"] == tiny_result.baseline_metrics["rms_deg_snr_40_80"]
    assert tiny_result.figures()["per_bin"] == rows


def test_robustness_scores_each_re_simulated_set(tiny_result) -> None:
    from nightshift.inclination.simulate import simulate_galaxies

    seen = []

    def simulate(overrides):
        seen.append(overrides)
        galaxies = simulate_galaxies(60, size=64, seed=11, split="test", overrides=overrides)
        measure.model = _TruthPlusError(galaxies)
        return galaxies

    def measure(images):
        return measure.model(images)

    report = evaluate_robustness(simulate, measure)
    assert seen == list(ROBUSTNESS_SETS.values()) and set(report) == {"psf_1.5x", "sky_noise_1.5x"}
    assert report["psf_1.5x"]["psf_scale"] == 1.5 and report["sky_noise_1.5x"]["sky_noise_scale"] == 1.5
    for figures in report.values():
        assert {"rms_deg", "mae_deg", "reject_auc", "coverage_1sigma"} <= set(figures)
        assert {"rms_deg", "mae_deg", "reject_auc"} <= set(figures["baseline"])
    # 1.5x noise moves the accepted galaxies of S/N 40..60 below 40: they leave the cells and are counted apart
    noisy = report["sky_noise_1.5x"]
    assert noisy["n_snr_below"] > 0 and noisy["n_snr_below"] + sum(v for k, v in noisy.items() if k.startswith("n_snr_")
                                                                       and k != "n_snr_below") == 42
    assert report["psf_1.5x"]["n_snr_below"] == 0
    # the stand-in's error grows with the PSF, so the wider PSF must show in its RMS
    assert report["psf_1.5x"]["rms_deg"] > report["sky_noise_1.5x"]["rms_deg"]


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
    figures = write_report(shipped_model_result, tmp_path, context={"galaxies": 120, "empty_cell": {"rms_deg": float("nan")}})
    written = json.loads((tmp_path / "evaluation.json").read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert written["empty_cell"] == {"rms_deg": None} == figures["empty_cell"]
    assert written["rms_deg"] == pytest.approx(figures["rms_deg"]) and "rms_deg" in written["baseline"]
    assert (tmp_path / "residuals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
