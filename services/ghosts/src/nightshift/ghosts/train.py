"""Training in the seed's two stages: heads first (backbone body frozen), then all layers at decreasing rates.

The simulated training set is generated once per run (exposures ``train_images`` ... of the data seed,
disjoint from the validation and test exposures) and, when a real data directory is given, joined by
the real training images (each repeated ``real_repeats`` times per epoch). Every item is augmented
anew each epoch with the seed's flips and 270-degree rotations. After each epoch the run reports
its losses and the validation AP@0.5, and writes a resumable checkpoint. Deterministic for a seed on
CPU; uses a GPU when present.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nightshift.core.devices import torch_device
from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.config import GhostsConfig, data_ranges
from nightshift.ghosts.evaluate import coco_scores
from nightshift.ghosts.infer import Detector
from nightshift.ghosts.model import GhostDetector
from nightshift.ghosts.preprocess import augment, draw_augmentation, image_to_pixels, pixels_to_tensor, training_target
from nightshift.ghosts.realdata import RealImage
from nightshift.ghosts.simulate import simulate_dataset

__all__ = ["EpochReport", "TrainingResult", "train_model", "validation_ap50"]

EpochCallback = Callable[["EpochReport"], None]


@dataclasses.dataclass(frozen=True)
class EpochReport:
    """What one epoch did: ``metrics`` holds the mean losses and ``val_ap50``."""

    epoch: int
    total_epochs: int
    stage: str
    learning_rate: float
    metrics: dict[str, float]
    seconds: float


@dataclasses.dataclass
class TrainingResult:
    """A trained detector, its per-epoch history and final validation metrics."""

    detector: GhostDetector
    history: list[EpochReport]
    metrics: dict[str, float]


@dataclasses.dataclass(frozen=True)
class _Item:
    """A training image kept compactly: grey uint8 pixels and bit-packed masks."""

    gray: np.ndarray
    packed_masks: np.ndarray
    labels: tuple[str, ...]

    @classmethod
    def of(cls, image: np.ndarray, artefacts: Sequence[Artefact]) -> _Item:
        masks = np.stack([a.mask for a in artefacts]) if artefacts else np.zeros((0, *image.shape[:2]), bool)
        return cls(image[..., 0].copy(), np.packbits(masks, axis=-1), tuple(a.label for a in artefacts))

    def sample(self, operations: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        height, width = self.gray.shape
        masks = np.unpackbits(self.packed_masks, axis=-1, count=width).astype(bool)
        target = training_target([Artefact(label, m) for label, m in zip(self.labels, masks)], height, width)
        image, target["masks"], target["boxes"] = augment(pixels_to_tensor(image_to_pixels(self.gray)), target["masks"], operations)
        keep = (target["boxes"][:, 2] > target["boxes"][:, 0]) & (target["boxes"][:, 3] > target["boxes"][:, 1])
        return image, {key: value[keep] for key, value in target.items()}


def _stage_of(config: GhostsConfig, epoch: int) -> tuple[str, float]:
    """(stage name, learning rate) of a 1-based epoch."""
    if epoch <= config.heads_epochs:
        return "heads", config.learning_rate
    boundary = config.heads_epochs
    for index, (epochs, factor) in enumerate(zip(config.stage_epochs, config.stage_lr_factors), start=1):
        boundary += epochs
        if epoch <= boundary:
            return f"all-{index}", config.learning_rate * factor
    raise ValueError(f"epoch {epoch}: beyond the configuration's {config.epochs} epochs")


def _optimizer(config: GhostsConfig, detector: GhostDetector) -> torch.optim.Optimizer:
    parameters = list(detector.parameters())
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.learning_rate, momentum=0.9, weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)


def validation_ap50(detector: GhostDetector, images: Sequence[np.ndarray], truths: Sequence[Sequence[Artefact]], device: torch.device) -> float:
    """AP@0.5 (all types together) of the detector on images with known truth."""
    if not images:
        return float("nan")
    predictions = Detector(detector, device=device).predict([image_to_pixels(im) for im in images], score_threshold=0.0)
    return float(coco_scores(truths, predictions)["ap50"])


def train_model(
    config: GhostsConfig,
    *,
    seed: int,
    real_train: Sequence[RealImage] = (),
    on_epoch: EpochCallback | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    show_progress: bool = True,
) -> TrainingResult:
    """Train a detector from scratch (or resume a run).

    Parameters
    ----------
    config : GhostsConfig
        Network and schedule.
    seed : int
        Seed of the simulated data, the initialisation, the order and the augmentation.
    real_train : sequence of RealImage
        Real annotated images to add to the training set.
    on_epoch : callable, optional
        Called with an :class:`EpochReport` after each epoch.
    checkpoint : Path, optional
        File (``.pt``, tensors and numbers only) written after each epoch.
    resume : bool
        Continue from ``checkpoint`` if it exists.
    show_progress : bool
        Show a progress bar per epoch.
    """
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, seed=seed, real_train=real_train, on_epoch=on_epoch, checkpoint=checkpoint, resume=resume,
                      show_progress=show_progress)
    finally:
        torch.set_num_threads(threads)  # the setting is process-wide: give a serving process its threads back


def _train(
    config: GhostsConfig, *, seed: int, real_train: Sequence[RealImage], on_epoch: EpochCallback | None,
    checkpoint: Path | None, resume: bool, show_progress: bool,
) -> TrainingResult:
    device = torch_device()
    torch.manual_seed(seed)
    detector = GhostDetector(config).to(device)
    optimizer = _optimizer(config, detector)
    ranges = data_ranges(config)
    train_exposures = simulate_dataset(ranges["train"][1], seed, first_index=ranges["train"][0])
    items = [_Item.of(e.image, e.artefacts) for e in train_exposures]
    items += [_Item.of(r.image, r.artefacts) for r in real_train for _ in range(config.real_repeats)]
    val = simulate_dataset(ranges["val"][1], seed, first_index=ranges["val"][0])
    history: list[EpochReport] = []
    first_epoch = 1
    if resume and checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        detector.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first_epoch = int(state["epoch"]) + 1
        history = [EpochReport(**h) for h in state["history"]]
    for epoch in range(first_epoch, config.epochs + 1):
        stage, learning_rate = _stage_of(config, epoch)
        detector.freeze_body(stage == "heads")
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(items))
        sums: dict[str, float] = {}
        started = time.perf_counter()
        batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs} ({stage})", disable=not show_progress, leave=False)
        for batch in bar:
            samples = [items[i].sample(draw_augmentation(rng)) for i in batch]
            images = [image.to(device) for image, _ in samples]
            targets = [{k: v.to(device) for k, v in target.items()} for _, target in samples]
            losses = detector.losses(images, targets)
            total = sum(losses.values())
            optimizer.zero_grad()
            total.backward()
            torch.nn.utils.clip_grad_norm_(detector.parameters(), 10.0)
            optimizer.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(total.detach())
            bar.set_postfix(loss=f"{float(total.detach()):.3f}")
        metrics = {name: value / len(batches) for name, value in sums.items()}
        metrics["val_ap50"] = validation_ap50(detector, [e.image for e in val], [e.artefacts for e in val], device)
        report = EpochReport(epoch, config.epochs, stage, learning_rate, metrics, time.perf_counter() - started)
        history.append(report)
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": detector.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                        "history": [dataclasses.asdict(h) for h in history]}, checkpoint)
        if on_epoch is not None:
            on_epoch(report)
    detector.freeze_body(False)
    final = history[-1].metrics if history else {}
    return TrainingResult(detector=detector, history=history, metrics={k: float(v) for k, v in final.items()})
