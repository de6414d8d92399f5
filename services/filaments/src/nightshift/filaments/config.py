"""The filaments service's one configuration object and its presets.

``tiny`` runs the test suite in seconds, ``default`` trains the shipped model in 10 to 30 minutes
(depending on the load) on two shared CPU cores, and ``paper`` is the seed's configuration (U-Net5 with 64 base channels,
64x64 patches holding at least 20% mask, per-patch min/max normalisation, BCE, Adam, batch 64,
20 epochs, 80/20 split; Zavagno, Dupe, Gray, Schisano, "Deep learning on Galactic filaments").
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nightshift.filaments.preprocess import SCALINGS

__all__ = ["BAND", "UNIT", "HIGAL_BEAM_FWHM_PX", "TEST_TIME_VIEWS", "FilamentsConfig", "PRESETS", "preset", "default_real_data_dir"]

BAND = "nh2"
"""Name of the one band the service reads: H2 column density."""
UNIT = "cm-2"
"""Unit of that band."""
HIGAL_BEAM_FWHM_PX = 36.0 / 11.5
"""FWHM of the Hi-GAL N(H2) beam (500 um resolution, 36 arcsec) in its 11.5 arcsec pixels: 3.13 px."""

_LOSSES = ("bce", "bce+dice")
TEST_TIME_VIEWS = (1, 2, 4, 8)
"""The allowed numbers of dihedral views averaged at inference (``FilamentsConfig.test_time_views``)."""


@dataclasses.dataclass(frozen=True)
class FilamentsConfig:
    """Everything that defines a filaments model: its data, network, training and inference.

    Parameters
    ----------
    name : str
        Model name (file stem of the weights and registry name).
    seed : int
        Seed of the simulated training maps, the patch draws, the split and the initialisation.
    map_px : int
        Side of each simulated map, in pixels (Hi-GAL N(H2) pixels, 11.5 arcsec).
    train_maps, test_maps : int
        Simulated maps for training (split 80/20 by patch) and for the held-out test.
    patches_per_map : int
        Training patches drawn from each simulated map.
    patch_px : int
        Side of the square patches, in pixels (the seed: 64); a multiple of ``2**(levels-1)``.
    min_mask_fraction : float
        Least share of filament mask in a filament patch (the seed: 0.2).
    background_patch_fraction : float
        Share of patches drawn anywhere (no mask condition), so the network also sees filament-free sky.
    max_missing_fraction : float
        Largest share of missing pixels in a patch (the seed drops patches with missing data).
    validation_fraction : float
        Share of the patches held out for per-epoch validation (the seed: 0.2).
    use_real : bool
        Also train on the real Hi-GAL cut-out's training columns when it is present.
    real_patches : int
        Patches drawn from the real training columns.
    real_train_columns, real_validation_columns : (int, int)
        Half-open column ranges of the real cut-out for training and for validation; disjoint.
    scaling : {"log-minmax", "minmax", "log-highpass"}
        Per-patch normalisation: min/max of log10 N(H2), or of N(H2) (the seed); or log10 N(H2) minus its
        local background, percentile-scaled (``preprocess.normalise_patches``).
    noise_sigma : float
        Largest Gaussian noise added to normalised training patches.
    levels : int
        U-Net resolution levels (the seed's U-Net5: 5).
    base_channels : int
        Channels of the finest level; each coarser level doubles them (the seed: 64).
    loss : {"bce", "bce+dice"}
        Training loss over the pixels with data.
    epochs, batch_size : int
        Training length and patches per step.
    learning_rate : float
        Adam's step size (cosine-annealed to 0 over the epochs).
    stride_px : int
        Step between overlapping inference patches, in pixels.
    test_time_views : {1, 2, 4, 8}
        Dihedral views of each inference patch whose probabilities are averaged (test-time
        augmentation; each view's output transformed back): 1 the patch alone, 2 with its left-right
        flip, 4 the flips (identity, left-right, up-down, half turn), 8 all flips and quarter turns.
        Inference costs about this many forward passes. The default 4 was chosen on data that is
        never reported (``nightshift-filaments select-inference``; the service README).
    threshold : float
        Probability at or above which a pixel is in the region of interest.
    min_instance_px : int
        Smallest connected region reported as a filament, in pixels.
    tile_px : int
        Side of the square tiles the service accepts, in pixels.
    baseline_sigmas_px : tuple of float
        Gaussian scales of the classical Hessian ridge baseline, in pixels.
    """

    name: str = "filaments-unet5"
    seed: int = 0
    map_px: int = 128
    train_maps: int = 48
    test_maps: int = 16
    patches_per_map: int = 16
    patch_px: int = 64
    min_mask_fraction: float = 0.2
    background_patch_fraction: float = 0.25
    max_missing_fraction: float = 0.3
    validation_fraction: float = 0.2
    use_real: bool = True
    real_patches: int = 1600
    real_train_columns: tuple[int, int] = (0, 200)
    real_validation_columns: tuple[int, int] = (200, 300)
    scaling: str = "log-minmax"
    noise_sigma: float = 0.03
    levels: int = 5
    base_channels: int = 8
    loss: str = "bce+dice"
    epochs: int = 12
    batch_size: int = 16
    learning_rate: float = 3e-3
    stride_px: int = 32
    test_time_views: int = 4
    threshold: float = 0.5
    min_instance_px: int = 8
    tile_px: int = 256
    baseline_sigmas_px: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0)

    def __post_init__(self) -> None:
        for name in ("real_train_columns", "real_validation_columns", "baseline_sigmas_px"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        multiple = 2 ** (self.levels - 1) if self.levels >= 1 else 1
        train, validation = self.real_train_columns, self.real_validation_columns
        checks = [
            ("name", bool(self.name) and "/" not in self.name, "a non-empty file stem"),
            ("levels", 1 <= self.levels <= 6, "1 to 6"),
            ("patch_px", self.patch_px >= multiple and self.patch_px % multiple == 0,
             f"a multiple of 2**(levels-1) = {multiple}"),
            ("base_channels", self.base_channels >= 1, "at least 1"),
            ("map_px", self.map_px >= self.patch_px, f"at least patch_px = {self.patch_px}"),
            ("train_maps", self.train_maps >= 1, "at least 1"),
            ("test_maps", self.test_maps >= 1, "at least 1"),
            ("patches_per_map", self.patches_per_map >= 1, "at least 1"),
            ("min_mask_fraction", 0 <= self.min_mask_fraction <= 1, "in [0, 1]"),
            ("background_patch_fraction", 0 <= self.background_patch_fraction <= 1, "in [0, 1]"),
            ("max_missing_fraction", 0 <= self.max_missing_fraction <= 1, "in [0, 1]"),
            ("validation_fraction", 0 < self.validation_fraction < 1, "in (0, 1)"),
            ("real_patches", self.real_patches >= 0, "at least 0"),
            ("real_train_columns", len(train) == 2 and 0 <= train[0] < train[1], "(start, stop) with 0 <= start < stop"),
            ("real_validation_columns", len(validation) == 2 and 0 <= validation[0] < validation[1],
             "(start, stop) with 0 <= start < stop"),
            ("scaling", self.scaling in SCALINGS, f"one of {SCALINGS}"),
            ("noise_sigma", self.noise_sigma >= 0, "at least 0"),
            ("loss", self.loss in _LOSSES, f"one of {_LOSSES}"),
            ("epochs", self.epochs >= 1, "at least 1"),
            ("batch_size", self.batch_size >= 1, "at least 1"),
            ("learning_rate", self.learning_rate > 0, "positive"),
            ("stride_px", 1 <= self.stride_px <= self.patch_px, f"1 to patch_px = {self.patch_px}"),
            ("test_time_views", self.test_time_views in TEST_TIME_VIEWS, f"one of {TEST_TIME_VIEWS}"),
            ("threshold", 0 < self.threshold < 1, "in (0, 1)"),
            ("min_instance_px", self.min_instance_px >= 0, "at least 0"),
            ("tile_px", self.tile_px >= 1, "at least 1"),
            ("baseline_sigmas_px", len(self.baseline_sigmas_px) >= 1 and min(self.baseline_sigmas_px) > 0,
             "one or more positive scales"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"filaments config {name}={getattr(self, name)!r}: expected {expected}")
        if train[0] < validation[1] and validation[0] < train[1]:
            raise ValueError(f"filaments config real_validation_columns={validation} overlaps "
                             f"real_train_columns={train}: validation pixels must never be trained on")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready values (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FilamentsConfig:
        """A config from :meth:`to_dict`'s output (e.g. a model card's ``config``).

        Raises
        ------
        ValueError
            Unknown fields (named) or values out of range.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown filaments config fields {unknown}: expected some of {sorted(known)}")
        return cls(**dict(values))

    def with_overrides(self, overrides: Mapping[str, Any]) -> FilamentsConfig:
        """This config with ``overrides`` applied; string values are parsed as JSON when they can be."""
        return FilamentsConfig.from_dict({**dataclasses.asdict(self), **_parsed(overrides)})


def _parsed(overrides: Mapping[str, Any]) -> dict[str, Any]:
    values = {}
    for key, value in overrides.items():
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass  # a plain string such as loss=bce
        values[key] = value
    return values


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(name="filaments-tiny", map_px=96, train_maps=4, test_maps=2, patches_per_map=12, levels=3,
                 base_channels=4, loss="bce", epochs=3, batch_size=8, learning_rate=1e-2, use_real=False, real_patches=0,
                 tile_px=64, test_time_views=1),
    "default": dict(scaling="log-highpass"),  # the shipped model: chosen by select-training (README)
    "paper": dict(name="filaments-unet5-paper", map_px=256, train_maps=2000, test_maps=64, patches_per_map=48,
                  real_patches=6000, scaling="minmax", base_channels=64, loss="bce", epochs=20, batch_size=64,
                  learning_rate=1e-3),
}


def preset(name: str, **overrides: Any) -> FilamentsConfig:
    """The named preset with ``overrides`` (strings parsed as JSON, as gRPC ``TrainRequest.overrides``).

    Raises
    ------
    ValueError
        An unknown preset or field, or a value out of range.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: expected one of {sorted(PRESETS)}")
    return FilamentsConfig.from_dict({**PRESETS[name], **_parsed(overrides)})


def default_real_data_dir() -> Path:
    """Where the real Hi-GAL cut-out is: ``NIGHTSHIFT_FILAMENTS_DATA``, else ``../shared/data/filaments``
    beside the repository this package is checked out in (else beside the working directory)."""
    if os.environ.get("NIGHTSHIFT_FILAMENTS_DATA"):
        return Path(os.environ["NIGHTSHIFT_FILAMENTS_DATA"])
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "constraints.txt").is_file():
            return parent.parent / "shared" / "data" / "filaments"
    return Path.cwd().parent / "shared" / "data" / "filaments"
