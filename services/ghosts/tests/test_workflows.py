"""The outer I/O layer: the shipped default model loads and beats the classical baseline."""

import json

from nightshift.ghosts.baseline import ResidualBaseline
from nightshift.ghosts.evaluate import score_simulated_with_baseline
from nightshift.ghosts.shipped import load_model, shipped_weights


def test_shipped_model_loads_and_beats_the_baseline() -> None:
    weights, card = shipped_weights()
    assert weights.stat().st_size <= 10_000_000 and json.loads(card.read_text())["name"]
    detector, config, _ = load_model()
    model_scores, baseline_scores = score_simulated_with_baseline(detector, config, seed=11, count=8, baseline=ResidualBaseline())
    assert model_scores["ap50"] > baseline_scores["ap50"] + 0.1
    assert model_scores["ap50"] > 0.25
