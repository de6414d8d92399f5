"""The one typed configuration of the clusters service, with its presets.

``tiny`` runs the tests in seconds, ``default`` trains the shipped model (four sky realisations,
tile medians subtracted) on two shared CPU cores and ``paper`` is the seed's configuration
(xCluster: nside 2048, all seven maps, U-Net 64..1024 filters, Tversky loss, SGD 1e-2 momentum
0.9, batch 20, 30 epochs, patience 12, disks of 2.5').
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "HFI_BANDS",
    "TRAINING_SKY_STRIDE",
    "Y_MAP_BAND",
    "BandInfo",
    "ClustersConfig",
    "PRESETS",
    "get_config",
    "catalogue_dir",
]


@dataclasses.dataclass(frozen=True)
class BandInfo:
    """One input map: its name, frequency, beam, white-noise depth and pixel unit.

    ``noise_depth`` is in ``unit`` x arcmin (the Planck 2015 HFI full-mission sensitivities);
    ``beam_fwhm_arcmin`` the effective Gaussian beam.
    """

    name: str
    frequency_ghz: float
    beam_fwhm_arcmin: float
    noise_depth: float
    unit: str

    @property
    def wavelength_um(self) -> float:
        return 299_792.458 / self.frequency_ghz


# Planck 2015 results I/VII: effective beams and white-noise depths (K_CMB arcmin below 545 GHz,
# MJy/sr arcmin above), the units of the Planck HFI frequency maps.
HFI_BANDS: tuple[BandInfo, ...] = (
    BandInfo("hfi_100", 100.0, 9.68, 77.4e-6, "K_CMB"),
    BandInfo("hfi_143", 143.0, 7.30, 33.0e-6, "K_CMB"),
    BandInfo("hfi_217", 217.0, 5.02, 46.8e-6, "K_CMB"),
    BandInfo("hfi_353", 353.0, 4.94, 153.6e-6, "K_CMB"),
    BandInfo("hfi_545", 545.0, 4.83, 0.0468, "MJy/sr"),
    BandInfo("hfi_857", 857.0, 4.64, 0.0432, "MJy/sr"),
)
# A MILCA-like Compton-y map: 10' resolution, white noise of about 1e-6 per 10' beam.
Y_MAP_BAND = BandInfo("y_map", 0.0, 10.0, 1.0e-5, "y")

_ARCHITECTURES = ("unet", "attention_unet", "unet_plus_plus")
_LOSSES = ("binary_crossentropy", "focal", "dice", "tversky", "focal_tversky", "combo")
_OPTIMIZERS = ("adam", "sgd")
_EXTRACTIONS = ("groups", "peaks")

TRAINING_SKY_STRIDE = 1000
"""Training sky k of a config with seed s is the simulator's seed s + 1000 k: far from the night kits' skies 1, 2, ..."""

CATALOGUE_ENV = "NIGHTSHIFT_CLUSTERS_CATALOGUES"
_SHARED_CATALOGUES = Path("/work/shared/data/clusters")


def catalogue_dir() -> Path | None:
    """Directory of the real cluster catalogues (PSZ2, MCXC, redMaPPer), or None when absent.

    ``$NIGHTSHIFT_CLUSTERS_CATALOGUES`` when set, else the development machine's shared copy.
    """
    path = Path(os.environ.get(CATALOGUE_ENV, _SHARED_CATALOGUES))
    return path if path.is_dir() else None


@dataclasses.dataclass(frozen=True)
class ClustersConfig:
    """Everything that defines a clusters model: its simulated sky, data, network and training.

    Sky (see :mod:`nightshift.clusters.simulate`)
        ``seed`` of the sky and of the training; the training and validation patches come from
        ``training_skies`` independent sky realisations (:attr:`training_sky_seeds`), and
        ``evaluate`` scores the held-out cells of the test skies ``evaluation_seeds`` (4 and 5), which
        no training patch came from and no choice was made on (skies 1 and 2 chose the tile-median
        design and are validation skies since); ``nside`` of the full-sky HEALPix maps (Galactic coordinates); ``random_clusters`` injected
        at random positions besides the PSZ2 analogues (placed independently of the real catalogues); their ``random_m500_range_msun`` (log-uniform)
        and ``random_z_range`` (uniform); ``radio_sources`` / ``ir_sources`` point sources over
        the sky; ``include_y_map`` adds the Compton-y map as a seventh input band.
    Patches
        ``patch_px`` square patches at ``pixel_scale_arcmin``; base cells (nside 2, NESTED) of the
        validation and test splits; ``train_patches`` training patches, a fraction
        ``train_cluster_fraction`` of them centred near a cluster (random shift up to
        ``train_shift_fraction`` of the patch half-size), the rest anywhere in the training cells;
        ``validation_patches`` likewise; ``test_tiling_nside`` sets the spacing of the patch
        centres covering the test cells (HEALPix pixel centres of that nside).
    Targets
        Disks of ``disk_radius_arcmin`` around every cluster with truth S/N at least
        ``target_min_snr``.
    Network and training
        ``subtract_tile_median``: the network's first layer subtracts each band's median over the
        tile (it then never sees a band's absolute level, such as the local dust brightness);
        ``architecture`` (U-Net, Attention U-Net, U-Net++), ``filters`` per level, ``loss``,
        ``optimizer``, ``learning_rate``, ``epochs``, ``batch_size``, ``patience`` (early
        stopping), ``reduce_lr_patience`` (ReduceLROnPlateau x0.1), ``augment`` (flips, 90 degree
        rotations).
    Detection and scoring
        Probability above ``threshold`` with at least ``min_pixels`` connected pixels, radius at
        most ``max_radius_arcmin``; over a field of overlapping tiles, detections closer than
        ``edge_margin_px`` to their tile's edge are dropped (another tile sees them whole) and
        duplicates merged within ``merge_radius_arcmin``; the sky within ``galactic_mask_deg`` of
        the Galactic plane is masked for field detections and scoring (as Planck's cluster
        searches mask it); detections
        match truth and catalogues within ``match_radius_arcmin``; completeness is quoted above
        ``headline_snr`` and in the faint range ``faint_snr_range`` (injected S/N); the baseline MMF
        detects above the lowest S/N threshold whose purity reaches ``target_purity`` on a training
        sky (``evaluate``), or above ``baseline_snr_threshold`` when not tuned.
    Catalogue (post-processing of the U-Net's maps, no retraining)
        ``candidate_extraction``: "groups" (the seed's: one candidate per connected group) or
        "peaks" (one per local maximum of the probability in such a group, so two touching clusters
        are two candidates); ``mmf_union_snr`` > 0 adds the MMF's S/N peaks above it to the U-Net's
        detections before merging (a union catalogue; 0: the U-Net's alone).
    """

    preset: str = "default"
    seed: int = 0
    # sky
    training_skies: int = 1
    evaluation_seeds: tuple[int, ...] = (4, 5)
    nside: int = 1024
    random_clusters: int = 4000
    random_m500_range_msun: tuple[float, float] = (1.5e14, 1.5e15)
    random_z_range: tuple[float, float] = (0.05, 1.0)
    radio_sources: int = 2000
    ir_sources: int = 5000
    include_y_map: bool = False
    # patches
    patch_px: int = 64
    pixel_scale_arcmin: float = 1.7
    validation_cells: tuple[int, ...] = (10, 26, 39, 42)
    test_cells: tuple[int, ...] = (7,)
    train_patches: int = 2400
    validation_patches: int = 400
    train_cluster_fraction: float = 0.7
    train_shift_fraction: float = 0.6
    test_tiling_nside: int = 64
    # targets
    disk_radius_arcmin: float = 4.0
    target_min_snr: float = 4.0
    # network and training
    subtract_tile_median: bool = False
    architecture: str = "unet"
    filters: tuple[int, ...] = (8, 16, 32, 64)
    loss: str = "tversky"
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    epochs: int = 12
    batch_size: int = 32
    patience: int = 5
    reduce_lr_patience: int = 3
    augment: bool = True
    # detection and scoring
    threshold: float = 0.9
    min_pixels: int = 3
    max_radius_arcmin: float = 15.0
    merge_radius_arcmin: float = 4.0
    edge_margin_px: int = 4
    galactic_mask_deg: float = 10.0
    match_radius_arcmin: float = 7.0
    headline_snr: float = 6.0
    faint_snr_range: tuple[float, float] = (4.5, 6.0)
    target_purity: float = 0.9
    baseline_snr_threshold: float = 4.5
    candidate_extraction: str = "groups"
    mmf_union_snr: float = 0.0

    def __post_init__(self) -> None:
        _check(self.nside >= 16 and self.nside & (self.nside - 1) == 0, "nside", self.nside, "a power of 2 >= 16")
        _check(self.patch_px >= 16 and self.patch_px % 2 ** (len(self.filters) - 1) == 0, "patch_px", self.patch_px,
               f"at least 16 and divisible by 2**(levels-1) = {2 ** (len(self.filters) - 1)}")
        _check(self.pixel_scale_arcmin > 0, "pixel_scale_arcmin", self.pixel_scale_arcmin, "> 0")
        _check(self.architecture in _ARCHITECTURES, "architecture", self.architecture, f"one of {_ARCHITECTURES}")
        _check(self.loss in _LOSSES, "loss", self.loss, f"one of {_LOSSES}")
        _check(self.optimizer in _OPTIMIZERS, "optimizer", self.optimizer, f"one of {_OPTIMIZERS}")
        _check(len(self.filters) >= 2 and all(f > 0 for f in self.filters), "filters", self.filters,
               "at least two positive filter counts")
        _check(0.0 < self.threshold < 1.0, "threshold", self.threshold, "in (0, 1)")
        _check(self.min_pixels >= 1, "min_pixels", self.min_pixels, ">= 1")
        _check(self.candidate_extraction in _EXTRACTIONS, "candidate_extraction", self.candidate_extraction, f"one of {_EXTRACTIONS}")
        _check(self.mmf_union_snr >= 0.0, "mmf_union_snr", self.mmf_union_snr, ">= 0 (0: no MMF peaks in the catalogue)")
        _check(0.0 <= self.train_cluster_fraction <= 1.0, "train_cluster_fraction", self.train_cluster_fraction, "in [0, 1]")
        _check(self.training_skies >= 1, "training_skies", self.training_skies, ">= 1")
        _check(len(self.evaluation_seeds) >= 1, "evaluation_seeds", self.evaluation_seeds, "at least one sky seed")
        _check(self.epochs >= 1 and self.batch_size >= 1, "epochs/batch_size", (self.epochs, self.batch_size), ">= 1")
        cells = set(self.validation_cells) | set(self.test_cells)
        _check(all(0 <= c < 48 for c in cells), "validation_cells/test_cells", sorted(cells), "nside-2 cells in 0..47")
        _check(not set(self.validation_cells) & set(self.test_cells), "validation_cells", self.validation_cells,
               f"no cell shared with test_cells {self.test_cells}")

    @property
    def bands(self) -> tuple[BandInfo, ...]:
        """The input maps, in the order of a tile's first axis."""
        return HFI_BANDS + ((Y_MAP_BAND,) if self.include_y_map else ())

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    @property
    def training_sky_seeds(self) -> tuple[int, ...]:
        """Simulator seeds of the training skies: ``seed``, ``seed + 1000``, ... (``training_skies`` of them)."""
        return tuple(self.seed + TRAINING_SKY_STRIDE * k for k in range(self.training_skies))

    @property
    def held_out_cells(self) -> tuple[int, ...]:
        return tuple(self.validation_cells) + tuple(self.test_cells)

    def with_evaluation_protocol(self) -> ClustersConfig:
        """A copy scored on today's test skies: which skies test a model is the evaluation's choice, not what its card recorded."""
        return dataclasses.replace(self, evaluation_seeds=ClustersConfig().evaluation_seeds)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ClustersConfig:
        """Rebuild a config from :meth:`to_dict` output (lists become tuples again)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}: expected some of {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def with_overrides(self, overrides: Mapping[str, Any]) -> ClustersConfig:
        """A copy with fields replaced; string values (from the CLI or a TrainRequest) are parsed as JSON."""
        parsed = {}
        for key, value in overrides.items():
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass  # a bare string such as an architecture name
            parsed[key] = value
        return ClustersConfig.from_dict({**self.to_dict(), **parsed})


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r}: expected {expected}")


PRESETS: dict[str, ClustersConfig] = {
    "tiny": ClustersConfig(
        preset="tiny", nside=256, random_clusters=600, radio_sources=200, ir_sources=400,
        train_patches=96, validation_patches=32, test_tiling_nside=16, filters=(8, 16),
        epochs=3, batch_size=16, learning_rate=5e-3, patience=3, reduce_lr_patience=2,
    ),
    # the shipped model: four training skies, tile medians subtracted (README, "The shipped default model");
    # its catalogue: the U-Net's rule chosen on validation plus the MMF's peaks above S/N 5.5 (README, "Results")
    "default": ClustersConfig(training_skies=4, train_patches=3200, subtract_tile_median=True, threshold=0.3, mmf_union_snr=5.5),
    "paper": ClustersConfig(
        preset="paper", nside=2048, include_y_map=True, random_clusters=8000, radio_sources=4000,
        ir_sources=10000, train_patches=90_000, validation_patches=10_000, disk_radius_arcmin=2.5,
        filters=(64, 128, 256, 512, 1024), optimizer="sgd", learning_rate=1e-2, batch_size=20,
        epochs=30, patience=12, reduce_lr_patience=5,
    ),
}


def get_config(preset: str = "default", *, overrides: Mapping[str, Any] | None = None) -> ClustersConfig:
    """The named preset with ``overrides`` applied.

    Raises
    ------
    ValueError
        Unknown preset or field, or a value out of range.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[preset].with_overrides(overrides or {})
