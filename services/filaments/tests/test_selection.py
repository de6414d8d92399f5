"""The inference settings are chosen on data evaluate never reports: the simulated selection seed is
neither the training nor the test seed, and the real validation columns are never read."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from nightshift.filaments.config import preset
from nightshift.filaments.evaluate import TEST_SEED_OFFSET
from nightshift.filaments.model import build_unet
from nightshift.filaments.realdata import RealCutout
from nightshift.filaments.selection import SELECTION_SEED_OFFSET, THRESHOLDS, choose, selection_scores


def test_the_selection_seed_is_neither_a_training_nor_the_test_seed() -> None:
    assert SELECTION_SEED_OFFSET not in (0, TEST_SEED_OFFSET)


def test_selection_never_reads_the_validation_columns() -> None:
    config = preset("tiny", real_train_columns=[0, 64], real_validation_columns=[64, 128])
    torch.manual_seed(0)
    network = build_unet(levels=config.levels, base_channels=config.base_channels).eval()
    rng = np.random.default_rng(0)
    density = rng.lognormal(np.log(1e22), 0.4, (64, 128)).astype(np.float32)
    mask = rng.random((64, 128)) < 0.1
    cutout = RealCutout(density, mask, np.ones(mask.shape, bool))
    first = selection_scores(network, config, cutout, maps=1, views=(1, 2))
    changed = density.copy()
    changed[:, 64:] = 1e23  # the validation columns: anything at all
    flipped = mask.copy()
    flipped[:, 64:] = ~mask[:, 64:]
    second = selection_scores(network, config, dataclasses.replace(cutout, column_density=changed, mask=flipped),
                              maps=1, views=(1, 2))
    for name in ("simulated_selection", "real_training_columns"):
        for views in ("1", "2"):
            assert first[name][views]["dice"] == second[name][views]["dice"]
    assert list(first["simulated_selection"]["1"]["dice"]) == [f"{t:.2f}" for t in THRESHOLDS]
    trained_on = mask.copy()
    trained_on[:, :64] = ~mask[:, :64]  # the training columns are what it reads
    third = selection_scores(network, config, dataclasses.replace(cutout, mask=trained_on), maps=1, views=(1,))
    assert third["real_training_columns"]["1"]["dice"] != first["real_training_columns"]["1"]["dice"]


def test_choose_takes_the_best_mean_over_both_datasets() -> None:
    def table(values):
        return {"dice": dict(zip(("0.40", "0.50"), values))}

    figures = {"simulated_selection": {"1": table((0.70, 0.80)), "4": table((0.90, 0.60))},
               "real_training_columns": {"1": table((0.70, 0.80)), "4": table((0.60, 0.60))}}
    assert choose(figures) == (1, 0.5)  # 4 views at 0.40 wins on one dataset only
    assert choose(figures, views=4) == (4, 0.4)
    assert choose({"simulated_selection": figures["simulated_selection"]}) == (4, 0.4)
    only_simulated = {"simulated_selection": {"1": table((0.70, 0.89)), "4": table((0.90, 0.60))}}
    assert choose(only_simulated) == (4, 0.4)
    assert choose(only_simulated, tolerance=0.02) == (1, 0.5)  # 0.01 less Dice for a quarter of the views
    assert choose(only_simulated, tolerance=0.005) == (4, 0.4)
