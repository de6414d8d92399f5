"""Choosing the inference settings (test-time views, probability threshold) on data that is never
reported: fresh simulated *selection* maps (their own seed, neither training nor test) and the real
cut-out's *training* columns (inferred from those columns alone). The real validation columns and the
held-out simulated test maps, which ``evaluate`` reports, are not read here.

The training columns were trained on, so their figures are optimistic; they are read only to compare
settings with each other, never reported as the model's real figure.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nightshift.filaments.config import TEST_TIME_VIEWS, FilamentsConfig
from nightshift.filaments.evaluate import dice, dice_interval
from nightshift.filaments.infer import predict_probability
from nightshift.filaments.realdata import RealCutout
from nightshift.filaments.simulate import SimulatedMap, simulate_maps

__all__ = ["SELECTION_SEED_OFFSET", "THRESHOLDS", "VIEWS_TOLERANCE", "HOLDOUT_COLUMNS", "selection_scores", "choose",
           "holdout_scores", "compare_training_runs"]

SELECTION_SEED_OFFSET = 2_000_003
"""Simulated selection maps use ``config.seed + SELECTION_SEED_OFFSET``: neither a training seed (``config.seed``)
nor the held-out test seed (``config.seed + evaluate.TEST_SEED_OFFSET``)."""

VIEWS_TOLERANCE = 0.002
"""Dice (mean over the selection datasets) that more test-time views must add to be worth their cost."""

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.30, 0.71, 0.05))
"""Probability thresholds compared."""

HOLDOUT_COLUMNS = 40
"""Columns at the end of the real training columns held out to choose between trainings: a run compared on
them trains on the columns before them only."""


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


def holdout_scores(network: torch.nn.Module, config: FilamentsConfig, held: RealCutout,
                   selection: list[SimulatedMap]) -> dict[str, Any]:
    """Dice on a held-out block of real training columns (inferred from the block alone) and on simulated
    selection maps, at ``config``'s test-time views and threshold, their mean, and that mean at each of
    :data:`THRESHOLDS`."""
    network.eval()
    real = predict_probability(network, held.column_density, config)
    simulated = predict_probability(network, np.stack([m.column_density for m in selection]), config)
    by_threshold = {name: _dice_by_threshold(probabilities, truths, valids) for name, (probabilities, truths, valids) in {
        "holdout": ([real], [held.mask], [held.usable]),
        "simulated_selection": (list(simulated), [m.mask for m in selection], [m.usable for m in selection])}.items()}
    figures = {"holdout_dice": dice(real[held.usable] >= config.threshold, held.mask[held.usable]),
               "simulated_selection_dice": dice(np.concatenate([s[m.usable] for s, m in zip(simulated, selection)]) >= config.threshold,
                                                np.concatenate([m.mask[m.usable] for m in selection]))}
    figures["mean_dice"] = (figures["holdout_dice"] + figures["simulated_selection_dice"]) / 2
    figures["mean_dice_by_threshold"] = {t: (by_threshold["holdout"][t] + by_threshold["simulated_selection"][t]) / 2
                                         for t in by_threshold["holdout"]}
    return figures


def compare_training_runs(runs: dict[str, list[Path]], cutout: RealCutout, *, test_time_views: int, threshold: float,
                          maps: int = 8, seed: int = 0, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Score trained weights, grouped by variant (e.g. one list of seeds each), on the real columns held out
    from their training and on simulated selection maps (seed ``seed + SELECTION_SEED_OFFSET``), all at the same
    ``test_time_views`` and ``threshold``; never on the validation columns.

    Each run must have trained on real columns ``[start, stop)`` with the :data:`HOLDOUT_COLUMNS` after ``stop``
    outside its validation columns; that block is its held-out block.

    Returns
    -------
    dict
        Per variant, each run's figures (:func:`holdout_scores`) and ``mean_dice`` over its runs; ``best``, the
        variant with the highest mean.

    Raises
    ------
    ValueError
        A run whose held-out block overlaps its validation columns or lies beyond the cut-out, or runs of one
        comparison held out on different blocks.
    """
    from nightshift.filaments.model import load_checkpoint

    selection: list[SimulatedMap] = []
    figures: dict[str, Any] = {"selection_seed": seed + SELECTION_SEED_OFFSET, "selection_maps": maps,
                               "test_time_views": test_time_views, "threshold": threshold, "variants": {}}
    blocks = set()
    for variant, paths in runs.items():
        scored = []
        for path in paths:
            network, config, _ = load_checkpoint(path, device)
            stop = config.real_train_columns[1]
            block = (stop, stop + HOLDOUT_COLUMNS)
            validation = config.real_validation_columns
            if block[0] < validation[1] and validation[0] < block[1] or block[1] > cutout.mask.shape[1]:
                raise ValueError(f"{path}: held-out block {block} overlaps the validation columns {validation} "
                                 f"or passes the cut-out's {cutout.mask.shape[1]} columns")
            blocks.add(block)
            selection = selection or simulate_maps(maps, config.map_px, seed + SELECTION_SEED_OFFSET)
            scoring = config.with_overrides({"test_time_views": test_time_views, "threshold": threshold})
            scored.append({"weights": str(path), "seed": config.seed, "scaling": config.scaling,
                           "real_train_columns": list(config.real_train_columns), "holdout_columns": list(block),
                           **holdout_scores(network, scoring, cutout.columns(block), selection)})
        figures["variants"][variant] = {"runs": scored, "mean_dice": float(np.mean([r["mean_dice"] for r in scored]))}
    if len(blocks) > 1:
        raise ValueError(f"runs held out on different blocks {sorted(blocks)}: not comparable")
    figures["holdout_columns"] = list(blocks.pop()) if blocks else None
    figures["best"] = max(figures["variants"], key=lambda v: figures["variants"][v]["mean_dice"]) if runs else None
    return figures
