"""Training: patches of simulated maps (and of the real cut-out's training columns), the U-Net, Adam.

Deterministic for a seed on CPU: the maps, the patch draws, the 80/20 split and each epoch's
shuffling and augmentation are pure functions of ``(seed, ...)``, and the network starts from
``torch.manual_seed(seed)``. Resumable: after each epoch ``checkpoint.pt`` (model, optimiser,
epoch, history: plain tensors and numbers, loaded with ``weights_only=True``) is written to the
output directory, and a run with the same config continues from it. Uses the GPU when present.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nightshift.filaments.config import FilamentsConfig, default_real_data_dir
from nightshift.filaments.evaluate import HEADLINE, dice, evaluate_real, evaluate_simulated
from nightshift.core.devices import torch_device
from nightshift.filaments.model import save_weights, unet_from_config
from nightshift.filaments.preprocess import augment, cut_patches, normalise_patches, sample_patch_corners
from nightshift.filaments.realdata import RealCutout, load_real_cutout, real_data_available
from nightshift.filaments.simulate import simulate_maps

__all__ = ["PatchSet", "build_patches", "segmentation_loss", "TrainResult", "train_model"]

EpochCallback = Callable[[int, int, dict[str, float]], None]


@dataclasses.dataclass(frozen=True)
class PatchSet:
    """Normalised training patches.

    Attributes
    ----------
    inputs : numpy.ndarray
        float32 (n, P, P) normalised N(H2).
    targets : numpy.ndarray
        float32 (n, P, P) filament mask (0/1).
    weights : numpy.ndarray
        float32 (n, P, P) loss weight: 1 where the pixel has data, 0 where missing.
    real : numpy.ndarray
        bool (n,) patches cut from the real cut-out.
    """

    inputs: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    real: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, index: np.ndarray) -> PatchSet:
        return PatchSet(self.inputs[index], self.targets[index], self.weights[index], self.real[index])


def _patches_of(column_density: np.ndarray, mask: np.ndarray, usable: np.ndarray, count: int,
                config: FilamentsConfig, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    corners = sample_patch_corners(
        mask, usable, rng, count=count, patch_px=config.patch_px, min_mask_fraction=config.min_mask_fraction,
        background_fraction=config.background_patch_fraction, max_missing_fraction=config.max_missing_fraction,
    )
    raw = cut_patches(column_density, corners, config.patch_px)
    inputs, valid = normalise_patches(raw, config.scaling)
    weights = valid & cut_patches(usable, corners, config.patch_px)
    return inputs, cut_patches(mask, corners, config.patch_px).astype(np.float32), weights.astype(np.float32)


def build_patches(config: FilamentsConfig, real: RealCutout | None = None) -> PatchSet:
    """All training patches: ``patches_per_map`` from each of ``train_maps`` simulated maps, plus
    ``real_patches`` from the real cut-out's training columns when ``real`` is given."""
    parts = []
    for index, sky in enumerate(simulate_maps(config.train_maps, config.map_px, config.seed)):
        parts.append((*_patches_of(sky.column_density, sky.mask, sky.usable, config.patches_per_map, config,
                                   np.random.default_rng([config.seed, index, 1])), False))
    if real is not None and config.real_patches:
        train = real.columns(config.real_train_columns)
        parts.append((*_patches_of(train.column_density, train.mask, train.usable, config.real_patches, config,
                                   np.random.default_rng([config.seed, 2])), True))
    inputs, targets, weights = (np.concatenate([p[i] for p in parts]) for i in range(3))
    real_flags = np.concatenate([np.full(len(p[0]), p[3]) for p in parts])
    return PatchSet(inputs, targets, weights, real_flags)


def segmentation_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, kind: str) -> torch.Tensor:
    """Binary cross-entropy over the weighted pixels, plus (``"bce+dice"``) one minus the batch's soft Dice.

    Parameters
    ----------
    logits, targets, weights : torch.Tensor
        (N, 1, H, W) network logits, 0/1 targets and per-pixel weights (0 for missing pixels).
    kind : {"bce", "bce+dice"}
    """
    total_weight = weights.sum().clamp_min(1.0)
    loss = (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weights).sum() / total_weight
    if kind == "bce+dice":
        probability = torch.sigmoid(logits) * weights
        overlap = (probability * targets).sum()
        loss = loss + 1 - (2 * overlap + 1) / (probability.sum() + (targets * weights).sum() + 1)
    return loss


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run produced: the weights file, its JSON card and the registry version (if any)."""

    weights: Path
    card: dict[str, Any]
    version: str | None
    history: list[dict[str, float]]


def _batches(count: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(count)
    return [order[i : i + batch_size] for i in range(0, count, batch_size)]


def _tensors(patches: PatchSet, device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(a)[:, None]).to(device)
                 for a in (patches.inputs, patches.targets, patches.weights))


def _run_epoch(network, optimiser, patches: PatchSet, config: FilamentsConfig, epoch: int, device: torch.device) -> float:
    network.train()
    rng = np.random.default_rng([config.seed, 3, epoch])
    losses = []
    for batch in _batches(len(patches), config.batch_size, rng):
        inputs, targets, weights = _tensors(
            PatchSet(*augment(patches.inputs[batch], patches.targets[batch], patches.weights[batch], rng, config.noise_sigma),
                     patches.real[batch]), device)
        optimiser.zero_grad()
        loss = segmentation_loss(network(inputs), targets, weights, config.loss)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return float(np.mean(losses))


@torch.no_grad()
def _validate(network, patches: PatchSet, config: FilamentsConfig, device: torch.device) -> dict[str, float]:
    network.eval()
    inputs, targets, weights = _tensors(patches, device)
    logits = torch.cat([network(inputs[i : i + 256]) for i in range(0, len(inputs), 256)])
    valid = weights[:, 0].cpu().numpy() > 0
    predicted = torch.sigmoid(logits)[:, 0].cpu().numpy() >= config.threshold
    truth = targets[:, 0].cpu().numpy() > 0
    return {"val_loss": float(segmentation_loss(logits, targets, weights, config.loss)),
            "val_dice": dice(predicted[valid], truth[valid])}


def train_model(
    config: FilamentsConfig,
    *,
    output_dir: Path,
    progress: EpochCallback | None = None,
    registry=None,
    real_data_dir: Path | None = None,
    show_progress: bool = True,
    evaluate: bool = True,
) -> TrainResult:
    """Train the U-Net of ``config``; write ``<name>.safetensors`` + ``<name>.json`` into ``output_dir``.

    Parameters
    ----------
    config : FilamentsConfig
        Everything about the run (recorded exactly in the card).
    output_dir : Path
        Where the weights, the card and the resumable ``checkpoint.pt`` go.
    progress : callable, optional
        ``progress(epoch, total_epochs, metrics)`` after each epoch.
    registry : ModelRegistry, optional
        Registers the trained weights with metrics, config and seed when given.
    real_data_dir : Path, optional
        The real cut-out (default :func:`default_real_data_dir`); used when ``config.use_real``
        and present, else training is on simulated maps only (the card says which).
    show_progress : bool
        A tqdm progress bar on stderr.
    evaluate : bool
        Score the trained model (held-out simulated maps, real validation columns) for the card.

    Returns
    -------
    TrainResult
    """
    from tqdm import tqdm

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device = torch_device()
    torch.manual_seed(config.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    real_dir = Path(real_data_dir) if real_data_dir is not None else default_real_data_dir()
    real = load_real_cutout(real_dir) if config.use_real and real_data_available(real_dir) else None
    patches = build_patches(config, real)
    if len(patches) < 2:
        raise ValueError(f"only {len(patches)} training patches could be drawn: enlarge train_maps or patches_per_map")
    order = np.random.default_rng([config.seed, 4]).permutation(len(patches))
    held = max(1, int(round(config.validation_fraction * len(patches))))
    train_set, validation_set = patches.subset(order[held:]), patches.subset(order[:held])
    network = unet_from_config(config).to(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs)
    history: list[dict[str, float]] = []
    checkpoint = output_dir / "checkpoint.pt"
    config_json = json.dumps(config.to_dict(), sort_keys=True)
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state["config"] == config_json:
            network.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            scheduler.load_state_dict(state["scheduler"])
            history = json.loads(state["history"])
    started = time.perf_counter()
    bar = tqdm(range(len(history) + 1, config.epochs + 1), desc=f"train {config.name}", unit="epoch",
               disable=not show_progress, initial=len(history), total=config.epochs)
    for epoch in bar:
        train_loss = _run_epoch(network, optimiser, train_set, config, epoch, device)
        scheduler.step()
        metrics = {"train_loss": train_loss, **_validate(network, validation_set, config, device)}
        history.append(metrics)
        bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()})
        torch.save({"config": config_json, "model": network.state_dict(), "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(), "history": json.dumps(history)}, checkpoint)
        if progress is not None:
            progress(epoch, config.epochs, metrics)
    network.eval()
    card_metrics = dict(history[-1]) if history else {}
    card_metrics["train_seconds"] = time.perf_counter() - started
    card_metrics["real_patches"] = float(patches.real.sum())
    card_metrics["simulated_patches"] = float((~patches.real).sum())
    if evaluate:
        simulated, _ = evaluate_simulated(network, config)
        card_metrics.update(_flat(simulated.figures()))
        if real is not None:
            card_metrics.update(_flat(evaluate_real(network, config, real)[0].figures(), prefix="real_"))
    weights = save_weights(network.cpu(), output_dir / f"{config.name}.safetensors")
    card = {"name": config.name, "metrics": card_metrics, "config": config.to_dict(), "data_seed": config.seed}
    weights.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    version = None
    if registry is not None:
        version = registry.register({weights.name: weights}, name=config.name, metrics=card_metrics,
                                    config=card["config"], data_seed=config.seed).version
    return TrainResult(weights, card, version, history)


def _flat(figures: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"dice": .., "baseline": {"dice": ..}}`` as ``{"dice": .., "baseline_dice": ..}`` (headline metrics only)."""
    flat = {f"{prefix}{k}": float(figures[k]) for k in (*HEADLINE, "roc_auc")}
    flat.update({f"{prefix}baseline_{k}": float(figures["baseline"][k]) for k in (*HEADLINE, "roc_auc")})
    return flat
