"""Training on the simulated skies: progress, per-epoch metrics, checkpoints, resumption, registration.

Deterministic for a seed on CPU (Keras seeded, TensorFlow op determinism on, augmentation drawn
from a generator seeded by (seed, epoch)). A GPU is used when present, with memory growth on.
Each epoch writes ``last.keras`` and ``state.json`` into the run directory; ``resume_dir`` picks a
run up after its last finished epoch (weights and learning rate restored, the optimizer's moments
restarted). The best epoch by validation loss is kept, saved as one ``.keras`` file with its JSON
card and registered in the model registry when one is given.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.clusters.config import ClustersConfig
from nightshift.clusters.datasets import SimulatedData, training_data
from nightshift.clusters.preprocess import augment, channels_last, fill_missing, robust_scales, subtract_tile_medians
from nightshift.core.devices import configure_tensorflow

__all__ = ["EpochProgress", "TrainResult", "train_model", "model_file_name"]

EpochProgress = Callable[[int, int, dict[str, float]], None]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run produced: the model file, its card, metrics per epoch and the registered version."""

    weights_path: Path
    card_path: Path
    history: list[dict[str, float]]
    metrics: dict[str, float]
    version: str = ""


def model_file_name(config: ClustersConfig) -> str:
    return f"clusters-{config.architecture.replace('_', '-')}.keras"


def _dice_at_half(y_true, y_pred):
    """Mean Dice coefficient of the masks thresholded at 0.5 (a training diagnostic)."""
    from keras import ops

    hard = ops.cast(y_pred > 0.5, "float32")
    y_true = ops.cast(y_true, "float32")
    inter = ops.sum(hard * y_true, axis=(1, 2, 3))
    total = ops.sum(hard, axis=(1, 2, 3)) + ops.sum(y_true, axis=(1, 2, 3))
    return ops.mean((2.0 * inter + 1.0) / (total + 1.0))


def _batches(config: ClustersConfig, images: np.ndarray, masks: np.ndarray):
    """A Keras dataset of shuffled, augmented training batches, reproducible from (seed, epoch)."""
    import keras

    class _Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self._draw()

        def _draw(self) -> None:
            rng = np.random.default_rng([config.seed, self.epoch])
            self.order = rng.permutation(len(images))
            self.rng = rng

        def __len__(self) -> int:
            return math.ceil(len(images) / config.batch_size)

        def __getitem__(self, index: int):
            pick = self.order[index * config.batch_size:(index + 1) * config.batch_size]
            x, y = images[pick], masks[pick]
            return augment(x, y, self.rng) if config.augment else (x, y)

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self._draw()

    return _Batches()


def _arrays(data: SimulatedData, split: str) -> tuple[np.ndarray, np.ndarray]:
    patches = data.splits[split]
    filled, _ = fill_missing(patches.pixels)
    return channels_last(filled), patches.targets[..., None].astype(np.float32)


def train_model(
    config: ClustersConfig,
    *,
    output_dir: Path,
    data: SimulatedData | None = None,
    checkpoint_dir: Path | None = None,
    resume_dir: Path | None = None,
    progress: EpochProgress | None = None,
    registry: Any = None,
    show_progress: bool = True,
    cache: bool = False,
) -> TrainResult:
    """Train ``config``'s network on its simulated sky; write the best model and its card into ``output_dir``.

    Parameters
    ----------
    config : ClustersConfig
        The exact configuration (and seed) of the run.
    output_dir : Path
        Where the model file and its card go.
    data : SimulatedData, optional
        The "train" and "validation" splits (default: simulated from ``config``'s training skies,
        :func:`~nightshift.clusters.datasets.training_data`).
    checkpoint_dir : Path, optional
        Where each epoch's checkpoint goes (default: ``output_dir / "checkpoints"``).
    resume_dir : Path, optional
        A run directory to continue from its last finished epoch.
    progress : callable, optional
        Called after each epoch with (epoch, total_epochs, metrics).
    registry : ModelRegistry, optional
        Registers the best model (metrics, exact config, seed) when given.
    show_progress : bool
        Draw a tqdm bar over the epochs.
    cache : bool
        Read the simulated training skies from the dataset cache, or write them there.
    """
    configure_tensorflow(seed=config.seed)
    import keras
    from tqdm.auto import tqdm

    from nightshift.clusters.model import build_model, load_model, make_loss

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(checkpoint_dir) if checkpoint_dir is not None else output_dir / "checkpoints"
    run_dir.mkdir(parents=True, exist_ok=True)
    data = data or training_data(config, cache=cache)
    train_x, train_y = _arrays(data, "train")
    val_x, val_y = _arrays(data, "validation")
    train_pixels = data.splits["train"].pixels
    scales = robust_scales(subtract_tile_medians(train_pixels) if config.subtract_tile_median else train_pixels)
    model = build_model(config=config, scales=scales)
    history: list[dict[str, float]] = []
    initial_epoch, learning_rate = 0, config.learning_rate
    if resume_dir is not None:
        state = json.loads((Path(resume_dir) / "state.json").read_text())
        if state["config"] != json.loads(config.to_json()):
            raise ValueError(f"resume_dir {resume_dir}: it was trained with another config")
        model = load_model(str(Path(resume_dir) / "last.keras"))
        initial_epoch, learning_rate, history = state["epoch"], state["learning_rate"], state["history"]
    optimizer = (keras.optimizers.Adam(learning_rate) if config.optimizer == "adam"
                 else keras.optimizers.SGD(learning_rate, momentum=0.9))
    model.compile(optimizer=optimizer, loss=make_loss(config.loss), metrics=[_dice_at_half])
    bar = tqdm(total=config.epochs, initial=initial_epoch, desc=f"train {config.preset}", unit="epoch", disable=not show_progress)

    class _EachEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            metrics = {k.replace("_dice_at_half", "dice"): float(v) for k, v in (logs or {}).items()}
            metrics["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            history.append({"epoch": epoch + 1, **metrics})
            self.model.save(run_dir / "last.keras")
            state = {"epoch": epoch + 1, "learning_rate": metrics["learning_rate"], "history": history,
                     "config": json.loads(config.to_json())}
            (run_dir / "state.json").write_text(json.dumps(state, indent=2))
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", val_loss=f"{metrics.get('val_loss', float('nan')):.4f}")
            if progress is not None:
                progress(epoch + 1, config.epochs, metrics)

    callbacks = [
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=config.reduce_lr_patience),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True),
        _EachEpoch(),
    ]
    if initial_epoch < config.epochs:
        model.fit(_batches(config, train_x, train_y), validation_data=(val_x, val_y), epochs=config.epochs,
                  initial_epoch=initial_epoch, callbacks=callbacks, verbose=0, shuffle=False)
    bar.close()
    best = min(history, key=lambda h: h.get("val_loss", math.inf))
    metrics = {"val_loss": best["val_loss"], "val_dice": best.get("val_dice", math.nan), "best_epoch": best["epoch"],
               "train_loss": best["loss"], "epochs_run": len(history)}
    weights_path = output_dir / model_file_name(config)
    model.save(weights_path)
    card = {"name": f"clusters-{config.architecture}-{config.preset}", "metrics": metrics,
            "config": json.loads(config.to_json()), "data_seed": config.seed}
    card_path = weights_path.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    version = ""
    if registry is not None:
        version = registry.register({weights_path.name: weights_path}, name=card["name"], metrics=metrics,
                                    config=card["config"], data_seed=config.seed).version
    return TrainResult(weights_path, card_path, history, metrics, version)
