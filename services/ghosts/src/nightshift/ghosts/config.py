"""The one configuration of the ghosts service, with its presets ``tiny``, ``default`` and ``paper``.

``paper`` is the seed's configuration (DeepGhostBusters, Tanoglidis et al. 2021) as far as torchvision
allows: Mask R-CNN with a ResNet-50-FPN backbone (the seed used ResNet-101, which torchvision's Mask
R-CNN builder does not offer), images resized to 1024 pixels, 1400 training images, heads-only training
for 15 epochs then all layers at lr/10, lr/100, lr/1000 to epoch 75, base lr 0.004, detection
confidence 0.8. ``default`` is the compact model shipped with the package (trainable on 2 CPU cores in
about 20 minutes); ``tiny`` is for tests.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["CLASSES", "TILE_SIZE", "BANDS", "GhostsConfig", "preset", "PRESETS", "data_ranges"]

CLASSES = ("bright", "faint", "rays")
"""Artefact classes, in the order of the model's class indices 1..3 (0 is background)."""

TILE_SIZE = 400
"""Side of a DES focal-plane image (the seed's 400x400 JPEGs), in pixels."""

BANDS = ("R", "G", "B")
"""The three channels of the 8-bit DES display images (equal for the grey-scale DES images)."""


@dataclasses.dataclass(frozen=True)
class GhostsConfig:
    """Model, training and inference settings.

    Parameters
    ----------
    name : str
        Model name recorded in the registry.
    backbone : {"resnet50", "compact"}
        ``resnet50``: torchvision's ``maskrcnn_resnet50_fpn``; ``compact``: a small ResNet-style
        body with group normalisation and an FPN (see :mod:`nightshift.ghosts.model`).
    image_size : int
        Side, in pixels, to which the 400x400 images are resized inside the network.
    body_channels : tuple of int
        Channels of the compact body's four stages (strides 4, 8, 16, 32).
    fpn_channels : int
        Channels of every FPN level (and of the RPN and RoI heads' inputs).
    box_head_size : int
        Width of the two fully connected layers of the box head.
    mask_head_channels : int
        Channels of the four convolutions of the mask head.
    anchor_sizes : tuple of int
        Anchor side, in resized-image pixels, at each FPN level (finest first).
    rpn_proposals_train, rpn_proposals_test : int
        Proposals kept after NMS per image by the RPN.
    roi_samples_per_image : int
        RoIs sampled per image to train the box and mask heads.
    detections_per_image : int
        Most instances returned per image.
    score_threshold : float
        Confidence at or above which an instance is reported (the seed's 0.8).
    train_images, val_images, test_images : int
        Sizes of the simulated training, validation and held-out test sets.
    batch_size : int
        Images per optimisation step.
    heads_epochs : int
        Epochs of the first stage, in which only the RPN and RoI heads (and the FPN) are trained.
    stage_epochs : tuple of int
        Epochs of each all-layers stage after the first.
    stage_lr_factors : tuple of float
        Learning rate of each all-layers stage as a fraction of ``learning_rate``.
    optimizer : {"sgd", "adamw"}
        SGD with momentum 0.9 (the seed) or AdamW (trains a randomly initialised compact network
        faster).
    learning_rate : float
        Base learning rate.
    weight_decay : float
        Weight decay.
    real_train_images : int
        Real annotated DES images (when a real data directory is given) mixed into the training set;
        the rest of the real images are held out for validation.
    real_repeats : int
        Times each real training image is repeated per epoch (it is augmented differently each time).
    threads : int
        CPU threads torch may use (0: torch's default). One thread is several times faster than two on
        the shared 2-core machines, where competing processes make threads wait on each other.
    """

    name: str = "ghosts-maskrcnn-compact"
    backbone: str = "compact"
    image_size: int = 192
    body_channels: tuple[int, ...] = (16, 24, 48, 64)
    fpn_channels: int = 48
    box_head_size: int = 256
    mask_head_channels: int = 32
    anchor_sizes: tuple[int, ...] = (12, 24, 48, 96, 192)
    rpn_proposals_train: int = 300
    rpn_proposals_test: int = 150
    roi_samples_per_image: int = 64
    detections_per_image: int = 20
    score_threshold: float = 0.8
    train_images: int = 640
    val_images: int = 16
    test_images: int = 64
    batch_size: int = 2
    heads_epochs: int = 1
    stage_epochs: tuple[int, ...] = (7, 2)
    stage_lr_factors: tuple[float, ...] = (1.0, 0.1)
    optimizer: str = "adamw"
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    real_train_images: int = 20
    real_repeats: int = 6
    threads: int = 1

    def __post_init__(self) -> None:
        if self.backbone not in ("resnet50", "compact"):
            raise ValueError(f"backbone {self.backbone!r}: expected 'resnet50' or 'compact'")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer {self.optimizer!r}: expected 'sgd' or 'adamw'")
        if len(self.stage_epochs) != len(self.stage_lr_factors):
            raise ValueError(
                f"stage_epochs {self.stage_epochs} and stage_lr_factors {self.stage_lr_factors}: expected equal lengths"
            )
        if len(self.anchor_sizes) != 5:
            raise ValueError(f"anchor_sizes {self.anchor_sizes}: expected 5 sizes, one per FPN level")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold {self.score_threshold}: expected a value in [0, 1]")
        for field in ("image_size", "train_images", "batch_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} {getattr(self, field)}: expected a positive integer")

    @property
    def epochs(self) -> int:
        """Total epochs over all stages."""
        return self.heads_epochs + sum(self.stage_epochs)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-compatible values."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GhostsConfig:
        """Rebuild a configuration from :meth:`to_dict` output (lists become tuples)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown ghosts config fields {unknown}; expected some of {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def with_overrides(self, overrides: Mapping[str, str]) -> GhostsConfig:
        """A copy with fields replaced by JSON-encoded values, e.g. ``{"train_images": "8"}``."""
        values = self.to_dict()
        for key, text in overrides.items():
            if key not in values:
                raise ValueError(f"override {key!r}: not a ghosts config field (fields: {sorted(values)})")
            try:
                values[key] = json.loads(text)
            except json.JSONDecodeError:
                values[key] = text  # a bare string such as adamw
        return GhostsConfig.from_dict(values)


PRESETS: dict[str, GhostsConfig] = {
    "tiny": GhostsConfig(
        name="ghosts-maskrcnn-tiny", image_size=128, body_channels=(8, 16, 16, 32), fpn_channels=16,
        box_head_size=64, mask_head_channels=8, anchor_sizes=(8, 16, 32, 64, 128), rpn_proposals_train=100,
        rpn_proposals_test=50, roi_samples_per_image=32, train_images=6, val_images=2, test_images=4,
        heads_epochs=1, stage_epochs=(2,), stage_lr_factors=(1.0,), learning_rate=3e-3, real_train_images=0,
    ),
    "default": GhostsConfig(),
    "paper": GhostsConfig(
        name="ghosts-maskrcnn-r50fpn", backbone="resnet50", image_size=1024, fpn_channels=256, box_head_size=1024,
        mask_head_channels=256, anchor_sizes=(32, 64, 128, 256, 512), rpn_proposals_train=2000,
        rpn_proposals_test=1000, roi_samples_per_image=512, detections_per_image=100, train_images=1400,
        val_images=300, test_images=300, heads_epochs=15, stage_epochs=(20, 20, 20),
        stage_lr_factors=(0.1, 0.01, 0.001), optimizer="sgd", learning_rate=0.004, weight_decay=1e-4,
        real_repeats=1, threads=0,
    ),
}


def preset(name: str) -> GhostsConfig:
    """The configuration preset ``name`` ("tiny", "default" or "paper").

    Raises
    ------
    ValueError
        For an unknown preset name.
    """
    if name not in PRESETS:
        raise ValueError(f"preset {name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name]


def data_ranges(config: GhostsConfig) -> dict[str, tuple[int, int]]:
    """Disjoint exposure-index ranges ``(first, count)`` of the simulated train, validation and test sets."""
    return {
        "train": (0, config.train_images),
        "val": (1_000_000, config.val_images),
        "test": (2_000_000, config.test_images),
    }
