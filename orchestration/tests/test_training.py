"""Promotion decisions (promotion itself is ModelRegistry.promote, tested with the core)."""

from __future__ import annotations

from nightshift.orchestration.training import is_better


def test_better_follows_the_metric_direction_and_the_margin() -> None:
    assert is_better(0.9, 0.8, higher_is_better=True)
    assert not is_better(0.8, 0.8, higher_is_better=True)
    assert is_better(2.5, 3.0, higher_is_better=False)
    assert not is_better(0.85, 0.8, higher_is_better=True, min_improvement=0.1)
