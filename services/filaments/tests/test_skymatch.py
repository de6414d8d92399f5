"""Simulated against real sky: power spectra of known fields, histograms, the sky-match command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nightshift.filaments.cli import main
from nightshift.filaments.config import default_real_data_dir
from nightshift.filaments.realdata import real_data_available
from nightshift.filaments.simulate import gaussian_random_field
from nightshift.filaments.skymatch import (LOG_NH2_EDGES, background_power_spectrum, histogram_overlap, sky_statistics,
                                           spectrum_slope)


def test_power_spectrum_recovers_the_slope_of_a_known_field_also_with_holes() -> None:
    field = 1e22 * np.exp(0.4 * gaussian_random_field((256, 256), -3.0, np.random.default_rng(0)))
    k, power = background_power_spectrum(field, np.zeros(field.shape, bool))
    assert abs(spectrum_slope(k, power) + 3.0) < 0.4
    holes = np.zeros(field.shape, bool)
    holes[::40, :] = True  # thin excluded stripes, like filaments, filled from their surroundings
    field[5:9, 5:9] = np.nan
    assert abs(spectrum_slope(*background_power_spectrum(field, holes)) + 3.0) < 0.5
    with pytest.raises(ValueError, match="no background pixel"):
        background_power_spectrum(field, np.ones(field.shape, bool))


def test_histograms_are_densities_and_overlap_is_shared_area() -> None:
    rng = np.random.default_rng(1)
    maps = [10 ** rng.normal(22.2, 0.15, (64, 64)) for _ in range(2)]
    stats = sky_statistics(maps, [np.zeros((64, 64), bool)] * 2)
    assert np.sum(stats["histogram"] * np.diff(LOG_NH2_EDGES)) == pytest.approx(1, abs=1e-3)
    assert stats["log10_nh2_median"] == pytest.approx(22.2, abs=0.02) and stats["log10_nh2_std"] == pytest.approx(0.15, abs=0.01)
    assert histogram_overlap(stats["histogram"], stats["histogram"]) == pytest.approx(1, abs=1e-3)
    shifted = sky_statistics([m * 10 for m in maps], [np.zeros((64, 64), bool)] * 2)
    assert histogram_overlap(stats["histogram"], shifted["histogram"]) < 0.01


def test_sky_match_needs_the_real_cutout(tmp_path, capsys) -> None:
    assert main(["sky-match", "--output", str(tmp_path), "--real-dir", str(tmp_path)]) == 2
    assert "nightshift-filaments: error: sky-match needs the real Hi-GAL cut-out" in capsys.readouterr().err


@pytest.mark.skipif(not real_data_available(default_real_data_dir()),
                    reason="the real Hi-GAL cut-out (../shared/data/filaments) is not on this machine")
def test_sky_match_writes_the_plot_and_one_json_line(tmp_path, capsys) -> None:
    assert main(["sky-match", "--output", str(tmp_path), "--count", "2", "--size", "128"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (tmp_path / "sky_match.png").stat().st_size > 1000
    written = json.loads((tmp_path / "sky_match.json").read_text())
    assert written["histogram_overlap"] == figures["histogram_overlap"]
    # the simulator is matched to the training columns; the validation columns are only shown beside them
    assert written["real_columns"] == [0, 200] and written["real_validation_columns"] == [200, 300]
    assert written["real"] != written["real_validation"] and 0 < written["validation_histogram_overlap"] <= 1
    assert 0.5 < figures["histogram_overlap"] <= 1
    assert abs(figures["simulated"]["log10_nh2_median"] - figures["real"]["log10_nh2_median"]) < 0.2
    assert len(figures["k"]) == len(figures["power_ratio_simulated_over_real"])
