"""Choosing the inference settings (test-time views, probability threshold) on data that is never
reported: fresh simulated *selection* maps (their own seed, neither training nor test) and the real
cut-out's *training* columns (inferred from those columns alone). The real validation columns and the
held-out simulated test maps, which ``evaluate`` reports, are not read here.

The training columns were trained on, so their figures are optimistic; they are read only to compare
settings with each other, never reported as the model's real figure.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from nightshift.filaments.config import TEST_TIME_VIEWS, FilamentsConfig
from nightshift.filaments.evaluate import dice, dice_interval
from nightshift.filaments.infer import predict_probability
from nightshift.filaments.realdata import RealCutout
from nightshift.filaments.simulate import simulate_maps

__all__ = ["SELECTION_SEED_OFFSET", "THRESHOLDS", "VIEWS_TOLERANCE", "selection_scores", "choose"]

SELECTION_SEED_OFFSET = 2_000_003
"""Simulated selection maps use ``config.seed + SELECTION_SEED_OFFSET``: neither a training seed (``config.seed``)
nor the held-out test seed (``config.seed + evaluate.TEST_SEED_OFFSET``)."""

VIEWS_TOLERANCE = 0.002
"""Dice (mean over the selection datasets) that more test-time views must add to be worth their cost."""

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.30, 0.71, 0.05))
"""Probability thresholds compared."""


def _dice_by_threshold(probabilities, truths, valids) -> dict[str, float]:
    s = np.concatenate([p[v] for p, v in zip(probabilities, valids)])
    t = np.concatenate([np.asarray(m, bool)[v] for m, v in zip(truths, valids)])
    return {f"{threshold:.2f}": dice(s >= threshold, t) for threshold in THRESHOLDS}


def selection_scores(network: torch.nn.Module, config: FilamentsConfig, cutout: RealCutout | None, *,
                     maps: int = 16, views: tuple[int, ...] = TEST_TIME_VIEWS) -> dict[str, Any]:
    """Dice at each threshold of :data:`THRESHOLDS` for each number of ``views``, on the selection datasets.

    Returns
    -------
    dict
        Per dataset (``simulated_selection``; ``real_training_columns`` when ``cutout`` is given): for each
        number of views, ``dice`` by threshold, ``dice_ci95`` at 0.5, and ``seconds`` of inference.
    """
    simulated = simulate_maps(maps, config.map_px, config.seed + SELECTION_SEED_OFFSET)
    datasets = {"simulated_selection": (np.stack([m.column_density for m in simulated]), [m.mask for m in simulated],
                                        [m.usable for m in simulated])}
    if cutout is not None:
        train = cutout.columns(config.real_train_columns)
        datasets["real_training_columns"] = (train.column_density[None], [train.mask], [train.usable])
    figures: dict[str, Any] = {"seed": config.seed + SELECTION_SEED_OFFSET, "maps": maps, "map_px": config.map_px,
                               "real_columns": list(config.real_train_columns), "thresholds": list(THRESHOLDS)}
    for name, (images, truths, valids) in datasets.items():
        figures[name] = {}
        for count in views:
            start = time.perf_counter()
            probabilities = list(predict_probability(network, images, config.with_overrides({"test_time_views": count})))
            seconds = time.perf_counter() - start
            figures[name][str(count)] = {"dice": _dice_by_threshold(probabilities, truths, valids), "seconds": seconds,
                                         "dice_ci95": dice_interval([p >= 0.5 for p in probabilities], truths, valids)}
    return figures


def _mean_dice(figures: dict[str, Any], views: int, threshold: float) -> float:
    names = [n for n in ("simulated_selection", "real_training_columns") if n in figures]
    return float(np.mean([figures[n][str(views)]["dice"][f"{threshold:.2f}"] for n in names]))


def choose(figures: dict[str, Any], *, views: int | None = None, tolerance: float = 0.0) -> tuple[int, float]:
    """The (views, threshold) with the best mean Dice over the selection datasets; with ``views``
    given, the best threshold for that number of views; with ``tolerance``, the fewest views whose
    best mean Dice is within ``tolerance`` of the best (a smaller gain is not worth the inference cost)."""
    first = figures["simulated_selection"]
    candidates = [(int(v), float(t)) for v in first for t in first[v]["dice"] if views is None or int(v) == views]
    best = max(candidates, key=lambda c: _mean_dice(figures, *c))
    enough = [c for c in candidates if _mean_dice(figures, *c) >= _mean_dice(figures, *best) - tolerance]
    fewest = min(c[0] for c in enough)
    return max((c for c in enough if c[0] == fewest), key=lambda c: _mean_dice(figures, *c))
