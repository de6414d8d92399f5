"""The simulated datasets: sky, truth S/N and patch splits of a config, with an on-disk cache.

A model trains on the training and validation cells of several independent sky realisations
(:func:`training_data`): the local dust level, CMB and sources differ from one realisation to the
next, and a model that saw one sky only learns that sky's mix of them.

The sky of a config is reproducible from its seed, so the cache only saves time: ``evaluate``
and ``bench`` reuse the held-out patches of a sky they have already simulated (a few hundred MB
at most, under ``$NIGHTSHIFT_CLUSTERS_CACHE`` or ``~/.cache/nightshift/clusters``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nightshift.clusters.catalogues import read_psz2
from nightshift.clusters.config import ClustersConfig, catalogue_dir
from nightshift.clusters.patches import PatchSet, build_splits, measure_truth_snr
from nightshift.clusters.simulate import ClusterTruth, SkyMaps, simulate_sky

__all__ = ["SimulatedData", "cache_dir", "simulated_sky", "simulated_data", "training_data", "sky_key"]

_log = logging.getLogger(__name__)

# config fields that change the sky and its test patches, and those that change only the training patches
_DATA_FIELDS = (
    "seed", "nside", "random_clusters", "random_m500_range_msun", "random_z_range", "radio_sources", "ir_sources",
    "include_y_map", "galactic_mask_deg", "patch_px", "pixel_scale_arcmin", "validation_cells", "test_cells", "test_tiling_nside",
    "disk_radius_arcmin", "target_min_snr",
)
_TRAINING_FIELDS = ("train_patches", "validation_patches", "train_cluster_fraction", "train_shift_fraction")
_SIMULATOR_VERSION = 4  # raised when the simulator changes the sky of a config (2: PSZ2 analogues at independent positions; 4: injected MMF S/N)


@dataclasses.dataclass(frozen=True)
class SimulatedData:
    """The truth of a simulated sky (with S/N) and its patch splits by name."""

    truth: ClusterTruth
    splits: dict[str, PatchSet]


def sky_key(config: ClustersConfig, splits: Sequence[str] = ("train", "validation", "test")) -> str:
    """A digest of the config fields that define the simulated ``splits``, of the PSZ2 use and of the simulator."""
    names = _DATA_FIELDS + (_TRAINING_FIELDS if set(splits) - {"test"} else ())
    fields = {name: getattr(config, name) for name in names}
    fields["psz2"] = catalogue_dir() is not None
    fields["simulator"] = _SIMULATOR_VERSION
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=list).encode()).hexdigest()[:16]


def simulated_sky(config: ClustersConfig, *, snr_cells: Sequence[int] | None = None) -> SkyMaps:
    """The full sky of ``config`` with the truth S/N measured; PSZ2 analogues when the catalogues exist.

    With ``snr_cells`` the S/N is measured only for the clusters in those nside-2 cells.
    """
    directory = catalogue_dir()
    psz2 = read_psz2(directory) if directory is not None else None
    if psz2 is None:
        _log.warning("no real catalogues found: random-population clusters only, no PSZ2 analogues")
    sky = simulate_sky(config, psz2)
    return dataclasses.replace(sky, truth=measure_truth_snr(sky, config, cells=snr_cells))


def cache_dir() -> Path:
    """Where simulated skies (and what is computed from them) are cached."""
    return Path(os.environ.get("NIGHTSHIFT_CLUSTERS_CACHE", Path.home() / ".cache" / "nightshift" / "clusters"))


def simulated_data(config: ClustersConfig, splits: Sequence[str], *, cache: bool = False) -> SimulatedData:
    """The named splits ("train", "validation", "test") of the simulated sky of ``config``.

    With ``cache`` the result is read from, or written to, the cache directory.
    """
    path = cache_dir() / f"sky-{sky_key(config, splits)}-{'-'.join(sorted(splits))}.npz"
    if cache and path.exists():
        with np.load(path, allow_pickle=False) as arrays:
            contents = dict(arrays)
        truth = ClusterTruth.from_arrays({k.removeprefix("truth_"): v for k, v in contents.items() if k.startswith("truth_")})
        return SimulatedData(truth, {name: PatchSet.from_arrays(contents, f"{name}_") for name in splits})
    # scoring the test cells needs the S/N of their clusters only
    sky = simulated_sky(config, snr_cells=config.test_cells if tuple(splits) == ("test",) else None)
    data = SimulatedData(sky.truth, build_splits(sky, config, splits=splits))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"truth_{k}": v for k, v in sky.truth.to_arrays().items()}
        for name, patch_set in data.splits.items():
            arrays.update(patch_set.to_arrays(f"{name}_"))
        temporary = path.with_suffix(".tmp.npz")
        np.savez(temporary, **arrays)
        temporary.replace(path)
    return data


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (k < total % parts) for k in range(parts)]


def training_data(config: ClustersConfig, *, cache: bool = False) -> SimulatedData:
    """The "train" and "validation" splits of ``config``, drawn in equal shares from each of its training skies.

    Sky k is the simulator's seed ``config.training_sky_seeds[k]``; the truth is every sky's truth
    in sky order. With ``cache`` each sky's splits are read from, or written to, the cache.
    """
    skies = config.training_sky_seeds
    per_sky = [
        simulated_data(dataclasses.replace(config, seed=seed, train_patches=train, validation_patches=validation),
                       ("train", "validation"), cache=cache)
        for seed, train, validation in zip(skies, _shares(config.train_patches, len(skies)),
                                           _shares(config.validation_patches, len(skies)))
    ]
    truth = ClusterTruth.from_arrays({name: np.concatenate([d.truth.to_arrays()[name] for d in per_sky])
                                      for name in per_sky[0].truth.to_arrays()})
    return SimulatedData(truth, {split: PatchSet.concatenate([d.splits[split] for d in per_sky])
                                 for split in ("train", "validation")})
