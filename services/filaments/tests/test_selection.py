"""The inference settings are chosen on data evaluate never reports: the simulated selection seed is
neither the training nor the test seed, and the real validation columns are never read."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from nightshift.filaments.config import preset
from nightshift.filaments.evaluate import TEST_SEED_OFFSET
from nightshift.filaments.model import build_unet, save_weights, unet_from_config
from nightshift.filaments.realdata import RealCutout
from nightshift.filaments.selection import (HOLDOUT_COLUMNS, SELECTION_SEED_OFFSET, THRESHOLDS, choose, compare_training_runs,
                                            selection_scores)


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


def _run(tmp_path, name: str, seed: int, **overrides):
    config = preset("tiny", map_px=64, seed=seed, **overrides)
    torch.manual_seed(seed)
    weights = save_weights(unet_from_config(config), tmp_path / f"{name}.safetensors")
    weights.with_suffix(".json").write_text(json.dumps({"name": name, "metrics": {}, "config": config.to_dict(), "data_seed": seed}))
    return weights


def test_training_runs_are_compared_on_their_held_out_block_never_the_validation_columns(tmp_path) -> None:
    columns = dict(real_train_columns=[0, 40], real_validation_columns=[80, 120])
    runs = {"minmax": [_run(tmp_path, "a0", 0, **columns), _run(tmp_path, "a1", 1, **columns)],
            "highpass": [_run(tmp_path, "b0", 0, scaling="log-highpass", **columns)]}
    rng = np.random.default_rng(0)
    density = rng.lognormal(np.log(1e22), 0.4, (64, 120)).astype(np.float32)
    mask = rng.random((64, 120)) < 0.1
    cutout = RealCutout(density, mask, np.ones(mask.shape, bool))
    first = compare_training_runs(runs, cutout, test_time_views=1, threshold=0.4, maps=1)
    assert first["holdout_columns"] == [40, 40 + HOLDOUT_COLUMNS] == [40, 80]
    assert [r["seed"] for r in first["variants"]["minmax"]["runs"]] == [0, 1]
    assert first["variants"]["highpass"]["runs"][0]["scaling"] == "log-highpass"
    minmax = first["variants"]["minmax"]
    assert minmax["mean_dice"] == pytest.approx(np.mean([r["mean_dice"] for r in minmax["runs"]]))
    assert first["best"] == max(first["variants"], key=lambda v: first["variants"][v]["mean_dice"])
    changed = density.copy()
    changed[:, 80:] = 1e23  # the validation columns: anything at all
    relabelled = mask.copy()
    relabelled[:, 80:] = ~mask[:, 80:]
    second = compare_training_runs(runs, dataclasses.replace(cutout, column_density=changed, mask=relabelled), test_time_views=1,
                                   threshold=0.4, maps=1)
    assert all(second["variants"][v]["mean_dice"] == first["variants"][v]["mean_dice"] for v in runs)
    flipped = mask.copy()
    flipped[:, 40:80] = ~mask[:, 40:80]  # the held-out block is what it reads
    third = compare_training_runs(runs, dataclasses.replace(cutout, mask=flipped), test_time_views=1, threshold=0.4, maps=1)
    assert third["variants"]["minmax"]["runs"][0]["holdout_dice"] != first["variants"]["minmax"]["runs"][0]["holdout_dice"]


def test_a_run_whose_held_out_block_is_validation_is_refused(tmp_path) -> None:
    cutout = RealCutout(np.full((64, 120), 1e22, np.float32), np.zeros((64, 120), bool), np.ones((64, 120), bool))
    trained_to_validation = _run(tmp_path, "c", 0, real_train_columns=[0, 60], real_validation_columns=[80, 120])
    with pytest.raises(ValueError, match="overlaps the validation columns"):
        compare_training_runs({"c": [trained_to_validation]}, cutout, test_time_views=1, threshold=0.4, maps=1)
    other_block = _run(tmp_path, "d", 0, real_train_columns=[0, 30], real_validation_columns=[80, 120])
    fine = _run(tmp_path, "e", 0, real_train_columns=[0, 40], real_validation_columns=[80, 120])
    with pytest.raises(ValueError, match="different blocks"):
        compare_training_runs({"d": [other_block], "e": [fine]}, cutout, test_time_views=1, threshold=0.4, maps=1)
