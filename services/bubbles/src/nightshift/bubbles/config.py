"""The bubbles service's one configuration object, its presets and the run's data seeds.

Fixed facts of the task (bands, the network's input size, the paper's SSD300 priors, the beams) are
module constants; everything a run may change is a field of :class:`BubblesConfig`. Presets: ``tiny``
(tests: small fields, a few steps), ``default`` (the shipped compact model, trained on CPU in about a
quarter of an hour) and ``paper`` (the seed's configuration: VGG16 SSD300, lr 1e-4, weight decay 1e-3,
gradient clipping 10, up to 300 epochs, patience 15).

References
----------
Nishimura et al. 2025, PASJ psaf008, "Infrared bubble recognition in the Milky Way and beyond using
deep learning" (code: ninpei7114/galactic_bubble).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["BANDS", "IMAGE_SIZE", "FEATURE_MAPS", "MIN_SIZES", "MAX_SIZE", "ASPECT_RATIOS", "BAND_FWHM_ARCSEC", "BAND_WAVELENGTH_UM",
           "BACKBONES", "BubblesConfig", "PRESETS", "preset", "data_seeds",
           "HARD_TEST", "hard_test_config", "COMPOSITE_SKY", "composite_sky_config"]

BANDS = ("irac4", "mips24")
"""Band names in channel order: Spitzer IRAC 8 um (GLIMPSE), MIPS 24 um (MIPSGAL)."""
IMAGE_SIZE = 300
"""Side of the network's input, in pixels (SSD300)."""
FEATURE_MAPS = (38, 19, 10, 5, 3, 1)
"""Cells per side of SSD300's six feature maps."""
MIN_SIZES = (30, 60, 111, 162, 213, 264)
"""The paper's prior min sizes per feature map, in input pixels."""
MAX_SIZE = 315
"""The last prior max size, in input pixels."""
ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
"""The paper's prior aspect ratios per feature map."""
BAND_FWHM_ARCSEC = (1.98, 6.0)
"""PSF FWHM of each band, in arcsec (IRAC 8 um, MIPS 24 um)."""
BAND_WAVELENGTH_UM = (7.9, 23.7)
"""Effective wavelength of each band, in um (IRAC channel 4, MIPS 24 um)."""
BACKBONES = ("compact", "vgg16")
"""Detector bodies: the compact strided body (default) or torchvision's VGG16 SSD extractor (paper)."""


@dataclasses.dataclass(frozen=True)
class BubblesConfig:
    """Everything a bubbles run may change: model, simulated data, training, inference.

    Parameters
    ----------
    name : str
        Model name in the registry and of the weights file.
    backbone : str
        ``"compact"`` or ``"vgg16"``.
    compact_channels : tuple of int
        Channels of the compact body's six feature maps (each a multiple of 8).
    field_px : int
        Side of a simulated field, in pixels.
    pixel_scale_arcsec : float
        Pixel side of the simulated fields, in arcsec (GLIMPSE/MIPSGAL mosaics: 1.2).
    bubbles_per_field : float
        Mean of the Poisson number of bubbles per simulated field.
    clear_fraction : float
        Probability that a bubble is "clear" (24 um warm dust inside the 8 um shell).
    shell_contrast_range : tuple of float
        Range of a bubble's 8 um shell peak, in units of the field's 8 um diffuse level (uniform).
    clear_dust_range : tuple of float
        Range of a clear bubble's 24 um filling peak, in units of the field's 24 um diffuse level (uniform).
    bubble_separation : float
        Centres are drawn at least this many times the sum of two radii apart where possible (0: overlaps allowed).
    diffuse_slope : float
        The diffuse ISM's Gaussian random fields have P(k) ~ k^-diffuse_slope.
    star_density : tuple of float
        Point sources per arcmin^2 at 8 um and 24 um.
    star_peak_range_8um : tuple of float
        Range (log-uniform) of an 8 um point source's peak, in units of the field's 8 um diffuse level.
    resolution_8um_arcsec : float
        FWHM the finished 8 um image is smoothed to (Gaussian, in quadrature over the 1.98" beam); 0: not smoothed.
    window_px : tuple of int
        Sliding-window sides over a field, in field pixels (each resized to 300).
    window_overlap : float
        Overlap of neighbouring windows, as a fraction of the side.
    window_nms_iou : float
        NMS IoU threshold inside a window (paper: 0.45).
    field_nms_iou : float
        NMS IoU threshold across a field on the sky (paper: 0.3).
    score_threshold : float
        Confidence from which a detection is reported (training sets it to the validation's best-F2
        threshold of the sweep 0.5..0.95).
    min_negatives : int
        Hard-negative priors per image in the loss at least (paper: 20).
    train_fields, val_fields, test_fields : int
        Simulated fields for training, validation (early stopping) and the held-out test.
    hard_test_fields : int
        Fields of the harder held-out test (:func:`hard_test_config`), never used for a choice.
    negatives_per_field : int
        Bubble-free crops sampled per training field (the negative pool).
    crops_per_bubble : int
        Positive crops per clear bubble per epoch.
    bubble_batch, nonbubble_batch : int
        Positive and negative crops in one optimisation step.
    learning_rate : float
        AdamW learning rate.
    weight_decay : float
        AdamW weight decay.
    grad_clip : float
        Gradient-norm clipping.
    epochs : int
        Most epochs.
    patience : int
        Epochs without a better validation F2 before stopping.
    cluster_epoch : int
        Epoch after which the negatives are clustered (KMeans) and bubble-like clusters dropped.
    negative_clusters : int
        KMeans clusters of the negatives.
    bubble_like_score : float
        Mean detector score from which a negative cluster counts as bubble-like.
    threads : int
        torch CPU threads (0: torch's default).

    Raises
    ------
    ValueError
        A field value out of its range (the message names the field, the value and what is expected).
    """

    name: str = "bubbles-ssd300-compact"
    backbone: str = "compact"
    compact_channels: tuple[int, ...] = (32, 48, 64, 96, 96, 96)
    field_px: int = 768
    pixel_scale_arcsec: float = 1.2
    bubbles_per_field: float = 5.0
    clear_fraction: float = 0.6
    shell_contrast_range: tuple[float, float] = (0.5, 1.5)
    clear_dust_range: tuple[float, float] = (1.0, 3.0)
    bubble_separation: float = 0.8
    diffuse_slope: float = 3.0
    star_density: tuple[float, float] = (8.0, 0.5)
    star_peak_range_8um: tuple[float, float] = (0.1, 20.0)
    resolution_8um_arcsec: float = 0.0
    window_px: tuple[int, ...] = (150, 300, 600)
    window_overlap: float = 0.5
    window_nms_iou: float = 0.45
    field_nms_iou: float = 0.3
    score_threshold: float = 0.5
    min_negatives: int = 20
    train_fields: int = 30
    val_fields: int = 3
    test_fields: int = 8
    hard_test_fields: int = 16
    negatives_per_field: int = 12
    crops_per_bubble: int = 4
    bubble_batch: int = 8
    nonbubble_batch: int = 4
    learning_rate: float = 2e-3
    weight_decay: float = 1e-3
    grad_clip: float = 10.0
    epochs: int = 10
    patience: int = 10
    cluster_epoch: int = 10
    negative_clusters: int = 8
    bubble_like_score: float = 0.9
    threads: int = 0

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone {self.backbone!r}: expected one of {BACKBONES}")
        if len(self.compact_channels) != len(FEATURE_MAPS) or any(c < 8 or c % 8 for c in self.compact_channels):
            raise ValueError(f"compact_channels={list(self.compact_channels)}: expected {len(FEATURE_MAPS)} multiples of 8")
        if not self.window_px or any(w < 1 or w > self.field_px for w in self.window_px):
            raise ValueError(f"window_px={list(self.window_px)}: expected sizes of 1..field_px={self.field_px} pixels")
        if not 0.0 <= self.window_overlap < 1.0:
            raise ValueError(f"window_overlap={self.window_overlap}: expected a fraction in [0, 1)")
        if not 0.0 <= self.clear_fraction <= 1.0:
            raise ValueError(f"clear_fraction={self.clear_fraction}: expected a probability in [0, 1]")
        for field in ("window_nms_iou", "field_nms_iou", "score_threshold", "bubble_like_score"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise ValueError(f"{field}={getattr(self, field)}: expected a value in [0, 1]")
        for field in ("shell_contrast_range", "clear_dust_range", "star_peak_range_8um"):
            low, high = getattr(self, field)
            if not 0.0 < low <= high:
                raise ValueError(f"{field}={list(getattr(self, field))}: expected 0 < low <= high")
        for field in ("train_fields", "val_fields", "test_fields", "hard_test_fields", "bubble_batch", "epochs", "patience"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field}={getattr(self, field)}: expected at least 1")
        if self.field_px < 64 or self.pixel_scale_arcsec <= 0 or self.learning_rate <= 0:
            raise ValueError(f"field_px={self.field_px}, pixel_scale_arcsec={self.pixel_scale_arcsec}, "
                             f"learning_rate={self.learning_rate}: expected >= 64 pixels, > 0 arcsec, > 0")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BubblesConfig:
        """The configuration of :meth:`to_dict`'s output (lists back to tuples).

        Raises
        ------
        ValueError
            A key that is not a field, or a value out of range.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a bubbles config field; expected one of {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def with_overrides(self, overrides: Mapping[str, str]) -> BubblesConfig:
        """A copy with fields replaced by JSON-encoded values, e.g. ``{"train_fields": "8", "window_px": "[300]"}``.

        Raises
        ------
        ValueError
            An unknown field, a value that is not JSON, or a value out of range.
        """
        values = self.to_dict()
        for key, text in overrides.items():
            if key not in values:
                raise ValueError(f"{key!r} is not a bubbles config field; expected one of {sorted(values)}")
            try:
                values[key] = json.loads(text)
            except json.JSONDecodeError:
                values[key] = text  # a bare string such as vgg16
        return BubblesConfig.from_dict(values)


PRESETS: dict[str, BubblesConfig] = {
    "tiny": BubblesConfig(
        name="bubbles-ssd300-tiny", compact_channels=(16, 16, 24, 24, 24, 24), field_px=384, window_px=(150, 300),
        train_fields=2, val_fields=1, test_fields=1, negatives_per_field=4, crops_per_bubble=2, bubble_batch=4,
        nonbubble_batch=2, epochs=3, patience=3, cluster_epoch=2, negative_clusters=2, threads=2,
    ),
    "default": BubblesConfig(),
    "paper": BubblesConfig(
        name="bubbles-ssd300-vgg16", backbone="vgg16", learning_rate=1e-4, weight_decay=1e-3, grad_clip=10.0,
        train_fields=200, val_fields=12, test_fields=24, crops_per_bubble=4, negatives_per_field=40,
        bubble_batch=8, nonbubble_batch=4, epochs=300, patience=15, cluster_epoch=20, negative_clusters=10,
    ),
}
"""``tiny`` for tests, ``default`` for the shipped model, ``paper`` for the seed's configuration."""


def preset(name: str) -> BubblesConfig:
    """The preset called ``name``.

    Raises
    ------
    ValueError
        An unknown name.
    """
    if name not in PRESETS:
        raise ValueError(f"preset {name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name]


def data_seeds(seed: int) -> dict[str, int]:
    """Disjoint simulation seeds of a run: ``train`` = seed, ``val`` = 1000000 + seed, ``test`` = 2000000 + seed,
    ``hard_test`` = 4000000 + seed (3000000 + seed is the demo night's)."""
    return {"train": seed, "val": 1_000_000 + seed, "test": 2_000_000 + seed, "hard_test": 4_000_000 + seed}


HARD_TEST = {"bubbles_per_field": 10.0, "shell_contrast_range": (0.15, 1.5), "clear_dust_range": (0.5, 3.0), "bubble_separation": 0.0}
"""The harder held-out sky's changes to a config: twice the bubbles, overlapping, shells down to 0.15 of the diffuse 8 um
level (the training sky's start at 0.5) and fainter 24 um filling; the simulated test where the default sky saturates."""


COMPOSITE_SKY = {"diffuse_slope": 2.7, "star_density": (5.0, 0.5), "star_peak_range_8um": (0.1, 8.0),
                 "resolution_8um_arcsec": 3.3}
"""The sky of the simulated fields rendered as the real composites for real-sky training (``finetune-real``), calibrated
on them (:mod:`nightshift.bubbles.calibrate`, ``docs/calibration.json``): the composites' diffuse power spectra fall as
k^-2.7..-2.9 in both bands, the default sky's (k^-3, smoothed to the beam at 24 um) as k^-3.0 (8 um) and k^-3.2 (24 um);
k^-2.7 is also the dust emission's slope on larger maps (Miville-Deschenes et al. 2010, A&A 518, L104). The default sky has
1.5 times the composites' 8 um sources, brighter ones, and sharper ones than the composites' 3.5 pixels FWHM at 0.95"/px
(the mosaics' 8 um resolution is about 3.3", not the 1.98" beam); hence 5 stars per arcmin^2 at 8 um with peaks of 0.1..8
times the diffuse level, and the 8 um image smoothed to 3.3". The default sky, its test fields and the shipped model are
unchanged."""


def composite_sky_config(config: BubblesConfig) -> BubblesConfig:
    """``config`` with the calibrated sky of :data:`COMPOSITE_SKY` (for the composite-rendered training fields)."""
    return dataclasses.replace(config, **COMPOSITE_SKY)


def hard_test_config(config: BubblesConfig) -> BubblesConfig:
    """``config`` with the harder held-out sky of :data:`HARD_TEST` (the model and its thresholds unchanged)."""
    return dataclasses.replace(config, **HARD_TEST)
