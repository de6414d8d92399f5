"""The demo's score of the tile statistics against the simulated truth."""

from __future__ import annotations

import pytest

from nightshift.orchestration.demo import tilestats_score
from nightshift.orchestration.simulate import BandTruth


def test_score_is_the_worst_error_in_noise_units() -> None:
    truth = [BandTruth("glimpse", "irac4", background=60.0, noise=2.0)]
    rows = [{"survey": "glimpse", "quantity": "irac4.background", "value": 61.0},
            {"survey": "glimpse", "quantity": "irac4.background", "value": 59.5},
            {"survey": "glimpse", "quantity": "irac4.noise", "value": 2.2},
            {"survey": "glimpse", "quantity": "irac4.missing_fraction", "value": 0.9}]
    score = tilestats_score(rows, truth)
    assert score["worst_background_error_in_noise_units"] == 0.5
    assert score["worst_noise_error_in_noise_units"] == pytest.approx(0.1)
