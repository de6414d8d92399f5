"""A short fine-tune of trained weights on the real cut-out's training columns, at a low learning rate,
the epoch chosen on a held-out block of those *training* columns and on the simulated selection maps,
never on the validation columns or the simulated test maps.

The real patches come from columns ``[train_start, holdout_start)`` only; the block
``[holdout_start, train_stop)`` is inferred from those columns alone after every epoch. The starting
weights saw that block in their own training, so the comparison with them (epoch 0) favours them, not the
fine-tune.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from nightshift.core.devices import torch_device
from nightshift.filaments.model import load_checkpoint, save_weights
from nightshift.filaments.realdata import RealCutout
from nightshift.filaments.selection import HOLDOUT_COLUMNS, SELECTION_SEED_OFFSET, holdout_scores
from nightshift.filaments.simulate import simulate_maps
from nightshift.filaments.train import _run_epoch, build_patches

__all__ = ["HOLDOUT_COLUMNS", "finetune"]


def finetune(weights: Path | None, cutout: RealCutout, output_dir: Path, *, epochs: int = 4, learning_rate: float = 3e-4,
             real_patches: int = 1200, simulated_maps: int = 16, selection_maps: int = 8, progress=None) -> dict[str, Any]:
    """Fine-tune ``weights`` (default: the shipped ones); write ``epoch_<k>.safetensors`` with its card
    after every epoch and ``finetune.json`` with each epoch's selection Dice and the chosen epoch (0 = the
    starting weights, kept when no epoch beats them on the mean of the two selection Dice)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device = torch_device()
    network, config, card = load_checkpoint(weights, device)
    start, stop = config.real_train_columns
    holdout = (stop - HOLDOUT_COLUMNS, stop)
    tuning = dataclasses.replace(config, real_train_columns=(start, holdout[0]), learning_rate=learning_rate, epochs=epochs,
                                 real_patches=real_patches, train_maps=simulated_maps)
    torch.manual_seed(config.seed)
    patches = build_patches(tuning, cutout)
    held = cutout.columns(holdout)
    selection = simulate_maps(selection_maps, config.map_px, config.seed + SELECTION_SEED_OFFSET)

    optimiser = torch.optim.Adam(network.parameters(), lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs)
    history = [{"epoch": 0, **holdout_scores(network, config, held, selection)}]
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        loss = _run_epoch(network, optimiser, patches, tuning, 100 + epoch, device)  # other draws than the first training's
        scheduler.step()
        history.append({"epoch": epoch, "train_loss": loss, "seconds": time.perf_counter() - started,
                        **holdout_scores(network, config, held, selection)})
        path = save_weights(network.cpu(), output_dir / f"epoch_{epoch}.safetensors")
        network.to(device)
        path.with_suffix(".json").write_text(json.dumps({
            **card, "finetune": {"from": str(weights or "shipped"), "epoch": epoch, "epochs": epochs, "learning_rate": learning_rate,
                                 "real_columns": [start, holdout[0]], "real_patches": real_patches, "simulated_maps": simulated_maps,
                                 "holdout_columns": list(holdout)}}, indent=2, sort_keys=True) + "\n")
        if progress is not None:
            progress(history[-1])
    chosen = max(history, key=lambda h: h["mean_dice"])["epoch"]
    result = {"history": history, "chosen_epoch": chosen, "holdout_columns": list(holdout), "real_columns": [start, holdout[0]],
              "selection_seed": config.seed + SELECTION_SEED_OFFSET, "selection_maps": selection_maps,
              "weights": str(output_dir / f"epoch_{chosen}.safetensors") if chosen else str(weights or "shipped")}
    (output_dir / "finetune.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
