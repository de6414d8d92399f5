"""Fine-tuning on the real sky, leave one field out: a model per real composite that never saw it.

Each model starts from the shipped weights and trains on the other composites (every MWP DR1 bubble in
them a positive, as the paper's catalogue boxes; negatives are crops touching no catalogue bubble)
together with simulated training fields of the sky calibrated on the composites (:data:`~nightshift.bubbles.config.COMPOSITE_SKY`)
rendered as the composites are (:func:`nightshift.bubbles.simulate.render_as_composite` with the calibrated look: coarser
pixels, display stretch, 8 bits, JPEG; :mod:`nightshift.bubbles.calibrate`),
with the paper's crops and augmentation (:mod:`nightshift.bubbles.train`). It is scored on the held-out composite with
:func:`nightshift.bubbles.scoring.real_counts`, with windows sized in arcsec
(:func:`nightshift.bubbles.infer.angular_windows`: the composites' pixels are 1-7", the training's 1.2"),
at the starting model's threshold (chosen on simulated validation fields, never on a composite).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nightshift.bubbles.config import BubblesConfig, composite_sky_config, data_seeds
from nightshift.bubbles.evaluate import SWEEP_THRESHOLDS
from nightshift.bubbles.infer import SSDWindowDetector, angular_windows, detect_field
from nightshift.bubbles.model import BubbleSSD
from nightshift.bubbles.realdata import CATALOGUE_FILE, CatalogueBubble, RealField, catalogue_in_field, load_composites
from nightshift.bubbles.scoring import RealCounts, real_counts
from nightshift.bubbles.simulate import BubbleTruth, Field, render_as_composite, simulate_fields
from nightshift.bubbles.train import _batches, bubble_crop, make_sample, sample_negatives
from nightshift.core.devices import torch_device

__all__ = ["FinetuneSettings", "as_training_field", "finetune", "leave_one_field_out_finetune"]


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """Epochs, learning rate, simulated fields mixed in, crops per real bubble per epoch."""

    epochs: int = 10
    learning_rate: float = 2e-4
    simulated_fields: int = 16
    crops_per_real_bubble: int = 6
    crops_per_simulated_bubble: int = 2


def as_training_field(field: RealField, bubbles: Sequence[CatalogueBubble]) -> Field:
    """A composite as a training field: every catalogue bubble a positive (``clear`` marks a training target)."""
    scale = abs(field.header["CDELT2"]) * 3600.0
    truths = tuple(BubbleTruth(b.x_px, b.y_px, b.radius_px, b.radius_px * scale, b.glon, b.glat, True, 1.0, 0.0, 0.0, 1.0, float("nan"))
                   for b in bubbles)
    return Field(field.name, field.pixels, field.header, truths)


def finetune(model: BubbleSSD, config: BubblesConfig, real_fields: Sequence[Field], settings: FinetuneSettings, *, seed: int,
             on_epoch: Callable[[int, float, float], None] | None = None) -> BubbleSSD:
    """Train ``model`` further on ``real_fields`` and simulated training fields of ``seed``; returns it in eval mode."""
    device = torch_device()
    model.to(device)
    simulated = simulate_fields(composite_sky_config(config), data_seeds(seed)["train"], settings.simulated_fields)
    fields = [*real_fields, *simulated]
    pool_rng = np.random.default_rng([seed, 321])
    negatives = [(i, w) for i, f in enumerate(fields) for w in sample_negatives(f, pool_rng, config.negatives_per_field)]
    targets = [(i, j, settings.crops_per_real_bubble if i < len(real_fields) else settings.crops_per_simulated_bubble)
               for i, f in enumerate(fields) for j, b in enumerate(f.bubbles) if b.clear]
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=config.weight_decay)
    for epoch in range(1, settings.epochs + 1):
        started = time.perf_counter()
        rng = np.random.default_rng([seed, 7000 + epoch])
        torch.manual_seed(seed * 1000 + 7000 + epoch)
        def render(i: int):
            return None if i < len(real_fields) else render_as_composite

        positives = [make_sample(fields[i], bubble_crop(fields[i], j, rng), rng, render=render(i))
                     for i, j, crops in targets for _ in range(crops)]
        wanted = int(np.ceil(len(positives) * config.nonbubble_batch / config.bubble_batch))
        negative_samples = [make_sample(fields[negatives[k][0]], negatives[k][1], rng, labelled=False, render=render(negatives[k][0]))
                            for k in rng.permutation(len(negatives))[:wanted]]
        model.train()
        total = 0.0
        steps = _batches(positives, negative_samples, config, rng)
        for step in steps:
            images = [torch.from_numpy(s.pixels).to(device) for s in step]
            labels = [{"boxes": torch.from_numpy(s.boxes).to(device),
                       "labels": torch.ones(len(s.boxes), dtype=torch.int64, device=device)} for s in step]
            losses = model(images, labels)
            loss = losses["bbox_regression"] + losses["classification"]
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimiser.step()
            total += float(loss.detach())
        if on_epoch is not None:
            on_epoch(epoch, total / len(steps), time.perf_counter() - started)
    return model.eval()


def _sweep(model: BubbleSSD, config: BubblesConfig, field: RealField, bubbles: list[CatalogueBubble]) -> dict[float, RealCounts]:
    found = detect_field(field.pixels, field.header, SSDWindowDetector(model), angular_windows(config, field.header, field.pixels.shape[1:]),
                         min_score=SWEEP_THRESHOLDS[0])
    return {t: real_counts(found, bubbles, t) for t in SWEEP_THRESHOLDS}


def leave_one_field_out_finetune(load: Callable[[], tuple[BubbleSSD, BubblesConfig]], real_dir: Path, settings: FinetuneSettings, *,
                                 seed: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One fine-tuned model per composite, scored on it at the starting model's threshold (and the sweep).

    ``load`` gives a fresh copy of the starting model and its config each time.
    """
    fields = load_composites(real_dir)
    catalogues = [catalogue_in_field(real_dir / CATALOGUE_FILE, f.header, f.pixels.shape[1:]) for f in fields]
    per_field: dict[str, Any] = {}
    total = RealCounts()
    for held_out, field in enumerate(fields):
        model, config = load()
        training = [i for i in range(len(fields)) if i != held_out]
        model = finetune(model, config, [as_training_field(fields[i], catalogues[i]) for i in training], settings, seed=seed,
                         on_epoch=lambda e, loss, s: log(f"{field.name}: epoch {e} loss {loss:.3f} ({s:.0f} s)"))
        chosen = config.score_threshold
        sweep = _sweep(model, config, field, catalogues[held_out])
        total = total + sweep[chosen]
        per_field[field.name] = {**sweep[chosen].figures(), "threshold": chosen,
                                 "sweep": {f"{t:.2f}": c.figures() for t, c in sweep.items()}}
        log(f"{field.name}: held out, threshold {chosen:.2f}: {sweep[chosen].figures()}")
    return {**total.figures(), "fields": per_field, "settings": dataclasses.asdict(settings), "seed": seed}
