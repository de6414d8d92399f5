"""Training as the paper does it, on simulated fields.

Positives: crops around each clear simulated bubble (the paper found training on clear bubbles only
works best), the crop side a random 3.5..12 x the radius, the bubble off-centre. Negatives: negative
sampling of bubble-free crops (a crop touching no bubble box, which is the paper's "known bubbles
blanked to NaN, keep crops without NaN"), sides drawn from the catalogue's radius log-normal; after
``cluster_epoch`` the negatives are clustered with KMeans on the detector's deepest features and the
clusters the detector finds bubble-like are dropped. Augmentation is regenerated every epoch:
translation (a new crop position and scale), 90/180/270-degree rotations, flips. AdamW, gradient
clipping, early stopping on the validation F2 score (multi-scale field inference on validation
fields, F2 at the best threshold of the paper's confidence sweep 0.5..0.95; that threshold becomes the
model's ``score_threshold``). Deterministic for a seed on the CPU; uses the GPU when present; resumable from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nightshift.bubbles.config import BAND_FWHM_ARCSEC, IMAGE_SIZE, BubblesConfig, data_seeds
from nightshift.bubbles.evaluate import SWEEP_THRESHOLDS, Counts, count_hits, score_sweep
from nightshift.bubbles.infer import BOX_SCALE, SSDWindowDetector, detect_field
from nightshift.bubbles.model import BubbleSSD, build_model
from nightshift.bubbles.preprocess import preprocess_crop
from nightshift.bubbles.simulate import MWP_SHELLS, Field, simulate_fields
from nightshift.bubbles.windows import Window, resize_crop
from nightshift.core.devices import torch_device

__all__ = ["Sample", "EpochReport", "TrainResult", "bubble_crop", "sample_negatives", "augment", "make_sample",
           "validate", "validation_sweep", "train_model"]

_CROP_RADII = (3.5, 12.0)


@dataclasses.dataclass(frozen=True)
class Sample:
    """A training image: preprocessed pixels (2, 300, 300) in [0, 1] and its boxes (k, 4) in pixels."""

    pixels: np.ndarray
    boxes: np.ndarray


@dataclasses.dataclass(frozen=True)
class EpochReport:
    """One epoch's figures: losses, validation scores, learning rate, wall time."""

    epoch: int
    total_epochs: int
    metrics: dict[str, float]
    seconds: float


@dataclasses.dataclass
class TrainResult:
    """The trained model (best validation F2), its config (with the chosen score threshold), metrics, history."""

    model: BubbleSSD
    config: BubblesConfig
    metrics: dict[str, float]
    history: list[EpochReport]


def _clamp(value: float, low: int, high: int) -> int:
    return int(min(max(value, low), high))


def bubble_crop(field: Field, index: int, rng: np.random.Generator) -> Window:
    """A random square window around bubble ``index`` of ``field``: side 3.5..12 radii, the bubble off-centre."""
    bubble = field.bubbles[index]
    height, width = field.pixels.shape[-2:]
    side = _clamp(bubble.radius_px * rng.uniform(*_CROP_RADII), int(2 * BOX_SCALE * bubble.radius_px) + 2, min(height, width))
    slack = max(0.0, side / 2 - BOX_SCALE * bubble.radius_px)
    x0 = _clamp(bubble.x_px - side / 2 + rng.uniform(-slack, slack), 0, width - side)
    y0 = _clamp(bubble.y_px - side / 2 + rng.uniform(-slack, slack), 0, height - side)
    return Window(x0, y0, side)


def _target_boxes(field: Field, window: Window) -> np.ndarray:
    """Boxes (k, 4) in 300-pixel crop coordinates of the clear bubbles at least half inside ``window``."""
    factor = window.scale(IMAGE_SIZE)
    boxes = []
    for bubble in field.bubbles:
        if not bubble.clear:
            continue
        x0, y0, x1, y1 = bubble.box(BOX_SCALE)
        clipped = (max(x0, window.x0), max(y0, window.y0), min(x1, window.x0 + window.size_px), min(y1, window.y0 + window.size_px))
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            continue
        if (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) >= 0.5 * (x1 - x0) * (y1 - y0):
            boxes.append([(clipped[0] - window.x0) / factor, (clipped[1] - window.y0) / factor,
                          (clipped[2] - window.x0) / factor, (clipped[3] - window.y0) / factor])
    return np.array(boxes, np.float32).reshape(-1, 4)


def sample_negatives(field: Field, rng: np.random.Generator, count: int) -> list[Window]:
    """Up to ``count`` windows of ``field`` that touch no bubble's box (+-1.5 radii), sides from the radius log-normal."""
    height, width = field.pixels.shape[-2:]
    scale = float(abs(field.header["CDELT2"]) * 3600.0)
    forbidden = np.array([[b.x_px - 1.5 * b.radius_px, b.y_px - 1.5 * b.radius_px, b.x_px + 1.5 * b.radius_px,
                           b.y_px + 1.5 * b.radius_px] for b in field.bubbles]).reshape(-1, 4)
    windows: list[Window] = []
    for _ in range(50 * count):
        if len(windows) == count:
            break
        radius_px = float(np.exp(rng.normal(MWP_SHELLS.log_radius_mean, MWP_SHELLS.log_radius_sigma))) / scale
        side = _clamp(radius_px * rng.uniform(*_CROP_RADII), 64, min(height, width))
        x0, y0 = (int(v) for v in rng.integers(0, [width - side + 1, height - side + 1]))
        apart = ((forbidden[:, 0] >= x0 + side) | (forbidden[:, 2] <= x0) | (forbidden[:, 1] >= y0 + side) | (forbidden[:, 3] <= y0))
        if apart.all():
            windows.append(Window(x0, y0, side))
    return windows


def augment(pixels: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by a random multiple of 90 degrees and flip at random; boxes follow (square images)."""
    size = pixels.shape[-1]
    boxes = boxes.copy()
    for _ in range(int(rng.integers(0, 4))):  # 90 degrees counter-clockwise in array terms: (x, y) -> (y, size - x)
        pixels = np.rot90(pixels, 1, axes=(1, 2))
        boxes = np.stack([boxes[:, 1], size - boxes[:, 2], boxes[:, 3], size - boxes[:, 0]], axis=1)
    if rng.uniform() < 0.5:
        pixels = pixels[:, :, ::-1]
        boxes = np.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], axis=1)
    return np.ascontiguousarray(pixels), boxes.astype(np.float32).reshape(-1, 4)


def make_sample(field: Field, window: Window, rng: np.random.Generator, *, labelled: bool = True,
                render: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None) -> Sample:
    """The preprocessed, augmented crop of ``window`` with its clear-bubble boxes (none when not ``labelled``).

    ``render`` maps the raw (2, n, n) crop to another rendering of it first (e.g. as the real composites look).
    """
    crop = field.pixels[:, window.y0:window.y0 + window.size_px, window.x0:window.x0 + window.size_px]
    crop = resize_crop(render(crop, rng) if render is not None else crop, IMAGE_SIZE)
    scale = float(abs(field.header["CDELT2"]) * 3600.0) * window.scale(IMAGE_SIZE)
    pixels = preprocess_crop(crop, fwhm8_px=max(1.0, BAND_FWHM_ARCSEC[0] / scale))
    boxes = _target_boxes(field, window) if labelled else np.zeros((0, 4), np.float32)
    return Sample(*augment(pixels, boxes, rng))


def validate(model: BubbleSSD, fields: Sequence[Field], config: BubblesConfig) -> Counts:
    """Counts of the model's field detections at ``config.score_threshold`` on ``fields``."""
    detector = SSDWindowDetector(model)
    total = Counts()
    for field in fields:
        found = detect_field(field.pixels, field.header, detector, config)
        truths = np.array([b.box(BOX_SCALE) for b in field.bubbles]).reshape(-1, 4)
        total = total + count_hits(np.array([d.box() for d in found]).reshape(-1, 4), truths, [b.clear for b in field.bubbles])
    return total


def validation_sweep(model: BubbleSSD, fields: Sequence[Field], config: BubblesConfig) -> tuple[float, Counts]:
    """The confidence threshold of the paper's sweep (0.5..0.95) with the best F2 on ``fields``, and its counts."""
    detector = SSDWindowDetector(model)
    rows = []
    for field in fields:
        found = detect_field(field.pixels, field.header, detector, config, min_score=SWEEP_THRESHOLDS[0])
        rows.append((np.array([d.box() for d in found]).reshape(-1, 4), np.array([d.score for d in found]),
                     np.array([b.box(BOX_SCALE) for b in field.bubbles]).reshape(-1, 4), [b.clear for b in field.bubbles]))
    return max(score_sweep(rows).items(), key=lambda item: item[1].f2)


def _validation_metrics(threshold: float, counts: Counts) -> dict[str, float]:
    """An epoch's validation figures at the sweep's best-F2 threshold."""
    return {"val_f2": counts.f2, "val_detection_rate": counts.detection_rate, "val_precision": counts.precision,
            "val_threshold": threshold}


def _negative_features(model: BubbleSSD, samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """(deepest backbone features (n, c), highest detection score (n,)) of negative samples."""
    model.eval()
    device = next(model.parameters()).device
    features, scores = [], []
    with torch.no_grad():
        for start in range(0, len(samples), 16):
            batch = torch.from_numpy(np.stack([s.pixels for s in samples[start:start + 16]])).to(device)
            deepest = list(model.backbone(batch).values())[-1]
            features.append(deepest.mean(dim=(2, 3)).cpu().numpy())
            scores.extend(float(o["scores"].max()) if len(o["scores"]) else 0.0 for o in model(list(batch)))
    return np.concatenate(features), np.array(scores)


def drop_bubble_like(model: BubbleSSD, negatives: list[tuple[int, Window]], fields: Sequence[Field], config: BubblesConfig,
                     seed: int) -> list[tuple[int, Window]]:
    """The negatives outside the KMeans clusters (on detector features) whose mean score is bubble-like."""
    from sklearn.cluster import KMeans

    clusters = min(config.negative_clusters, len(negatives))
    if clusters < 2:
        return negatives
    rng = np.random.default_rng([seed, 999])
    samples = [make_sample(fields[i], w, rng, labelled=False) for i, w in negatives]
    features, scores = _negative_features(model, samples)
    labels = KMeans(n_clusters=clusters, n_init=4, random_state=seed).fit_predict(features)
    bubble_like = {c for c in range(clusters) if scores[labels == c].mean() >= config.bubble_like_score}
    return [n for n, label in zip(negatives, labels) if label not in bubble_like]


def _batches(positives: list[Sample], negatives: list[Sample], config: BubblesConfig, rng: np.random.Generator) -> list[list[Sample]]:
    """Steps of ``bubble_batch`` positives and ``nonbubble_batch`` negatives, in a shuffled order."""
    rng.shuffle(positives)
    rng.shuffle(negatives)
    steps = max(1, int(np.ceil(len(positives) / config.bubble_batch)))
    return [positives[i * config.bubble_batch:(i + 1) * config.bubble_batch]
            + negatives[i * config.nonbubble_batch:(i + 1) * config.nonbubble_batch] for i in range(steps)]


def train_model(
    config: BubblesConfig,
    *,
    seed: int,
    on_epoch: Callable[[EpochReport], None] | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    show_progress: bool = True,
) -> TrainResult:
    """Train the SSD of ``config`` on simulated fields of ``seed``; return the model with the best validation F2.

    Parameters
    ----------
    config : BubblesConfig
        Model, data and training settings.
    seed : int
        Seed of the simulated training and validation fields, the initialisation and the augmentation.
    on_epoch : callable, optional
        Called with each epoch's :class:`EpochReport`.
    checkpoint : Path, optional
        A ``.pt`` file (tensors and plain values, loaded with ``weights_only=True``) written after
        every epoch.
    resume : bool
        Continue from ``checkpoint`` when it exists, with the learning rate and weight decay of ``config``;
        the best model so far is re-scored on the validation fields of ``config`` (which may have more
        fields than the checkpoint's run).
    show_progress : bool
        Show a tqdm progress bar over each epoch's steps.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch_device()
    torch.manual_seed(seed)
    seeds = data_seeds(seed)
    train_fields = simulate_fields(config, seeds["train"], config.train_fields)
    val_fields = simulate_fields(config, seeds["val"], config.val_fields)
    model = build_model(config).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    pool_rng = np.random.default_rng([seed, 123])
    negatives = [(i, w) for i, field in enumerate(train_fields) for w in sample_negatives(field, pool_rng, config.negatives_per_field)]
    clear = [(i, j) for i, field in enumerate(train_fields) for j, b in enumerate(field.bubbles) if b.clear]
    state = {"epoch": 0, "best_f2": -1.0, "bad_epochs": 0, "clustered": False}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    history: list[EpochReport] = []
    if resume and checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=True, map_location=device)
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        for group in optimiser.param_groups:  # this run's rates, not the checkpoint's: a resumed run may lower them
            group.update(lr=config.learning_rate, weight_decay=config.weight_decay)
        best_state = saved["best_model"]
        state = saved["state"]
        negatives = [(int(i), Window(*(int(v) for v in w))) for i, w in saved["negatives"]]
        history = [EpochReport(**h) for h in saved["history"]]
        # Re-score the best model on this run's validation fields: a resumed run with more of them selects on them.
        best_model = build_model(config).to(device)
        best_model.load_state_dict(best_state)
        threshold, counts = validation_sweep(best_model, val_fields, config)
        state.update(best_f2=counts.f2, best_threshold=threshold, best_val=_validation_metrics(threshold, counts))
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if state["bad_epochs"] >= config.patience:
            break
        started = time.perf_counter()
        if not state["clustered"] and epoch > config.cluster_epoch:
            negatives = drop_bubble_like(model, negatives, train_fields, config, seed)
            state["clustered"] = True
        rng = np.random.default_rng([seed, epoch])
        torch.manual_seed(seed * 1000 + epoch)
        positives = [make_sample(train_fields[i], bubble_crop(train_fields[i], j, rng), rng)
                     for i, j in clear for _ in range(config.crops_per_bubble)]
        wanted = int(np.ceil(len(positives) * config.nonbubble_batch / config.bubble_batch))
        chosen = rng.permutation(len(negatives))[:wanted] if negatives else []
        negative_samples = [make_sample(train_fields[negatives[k][0]], negatives[k][1], rng, labelled=False) for k in chosen]
        model.train()
        sums = {"loss": 0.0, "bbox_regression": 0.0, "classification": 0.0}
        steps = _batches(positives, negative_samples, config, rng)
        for step in tqdm(steps, desc=f"epoch {epoch}/{config.epochs}", disable=not show_progress, leave=False):
            images = [torch.from_numpy(s.pixels).to(device) for s in step]
            targets = [{"boxes": torch.from_numpy(s.boxes).to(device),
                        "labels": torch.ones(len(s.boxes), dtype=torch.int64, device=device)} for s in step]
            losses = model(images, targets)
            loss = losses["bbox_regression"] + losses["classification"]
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimiser.step()
            sums["loss"] += float(loss.detach())
            for name in ("bbox_regression", "classification"):
                sums[name] += float(losses[name].detach())
        threshold, counts = validation_sweep(model, val_fields, config)
        metrics = {**{k: v / len(steps) for k, v in sums.items()}, **_validation_metrics(threshold, counts),
                   "negatives": float(len(negatives))}
        if counts.f2 > state["best_f2"]:
            state.update(best_f2=counts.f2, bad_epochs=0, best_epoch=epoch, best_threshold=threshold,
                         best_val=_validation_metrics(threshold, counts))
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        report = EpochReport(epoch, config.epochs, metrics, time.perf_counter() - started)
        history.append(report)
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "best_model": best_state,
                        "state": state, "negatives": [[i, [w.x0, w.y0, w.size_px]] for i, w in negatives],
                        "history": [dataclasses.asdict(h) for h in history]}, checkpoint)
        if on_epoch is not None:
            on_epoch(report)
    model.load_state_dict(best_state)
    model.eval()
    metrics = {"epochs_run": float(state["epoch"]), "best_epoch": float(state.get("best_epoch", 0)),
               "epoch_seconds_total": float(sum(h.seconds for h in history)), **state.get("best_val", {})}
    if history:
        metrics["final_loss"] = history[-1].metrics["loss"]
    chosen = dataclasses.replace(config, score_threshold=float(state.get("best_threshold", config.score_threshold)))
    return TrainResult(model=model, config=chosen, metrics=metrics, history=history)
