"""The fine-tune trains on the real training columns before the held-out block only, and chooses its
epoch on that block and the simulated selection maps (epoch 0: the starting weights)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch
from safetensors.torch import load_file

from nightshift.filaments.config import preset
from nightshift.filaments.finetune import HOLDOUT_COLUMNS, finetune
from nightshift.filaments.model import save_weights, unet_from_config
from nightshift.filaments.realdata import RealCutout


def _start(tmp_path):
    config = preset("tiny", real_train_columns=[0, 80], real_validation_columns=[80, 120], map_px=64)
    torch.manual_seed(0)
    weights = save_weights(unet_from_config(config), tmp_path / "start.safetensors")
    weights.with_suffix(".json").write_text(json.dumps({"name": config.name, "metrics": {}, "config": config.to_dict(),
                                                        "data_seed": 0}))
    rng = np.random.default_rng(0)
    density = rng.lognormal(np.log(1e22), 0.4, (64, 120)).astype(np.float32)
    mask = np.zeros((64, 120), bool)
    mask[20:24, :] = True
    density[mask] *= 3
    return weights, RealCutout(density, mask, np.ones(mask.shape, bool))


def test_finetune_never_trains_on_the_held_out_block(tmp_path) -> None:
    weights, cutout = _start(tmp_path)
    options = dict(epochs=1, learning_rate=1e-3, real_patches=16, simulated_maps=1, selection_maps=1)
    first = finetune(weights, cutout, tmp_path / "a", **options)
    assert first["real_columns"] == [0, 80 - HOLDOUT_COLUMNS] and first["holdout_columns"] == [80 - HOLDOUT_COLUMNS, 80]
    assert [h["epoch"] for h in first["history"]] == [0, 1] and first["chosen_epoch"] in (0, 1)
    card = json.loads((tmp_path / "a" / "epoch_1.json").read_text())
    assert card["finetune"]["real_columns"] == first["real_columns"] and card["config"]["real_train_columns"] == [0, 80]
    changed = cutout.column_density.copy()
    changed[:, 40:] = 1e23  # the held-out block and the validation columns: anything at all
    second = finetune(weights, dataclasses.replace(cutout, column_density=changed), tmp_path / "b", **options)
    a, b = load_file(tmp_path / "a" / "epoch_1.safetensors"), load_file(tmp_path / "b" / "epoch_1.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same training, whatever those columns hold
    assert all(0 <= h["holdout_dice"] <= 1 and 0 <= h["simulated_selection_dice"] <= 1 for h in first["history"])
