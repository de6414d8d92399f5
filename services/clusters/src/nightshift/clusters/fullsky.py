"""``bench``'s full-sky-from-files section: the whole sky from six Planck-layout files, timed and its peak memory measured.

The files are the shipped model's simulated sky (its configuration, the evaluation's first test sky, 4,
never trained on) written by :func:`~nightshift.clusters.healpix_files.write_planck_maps` at the
requested nside (``healpy.ud_grade`` per band from the model's nside), cached and reused. ``infer``
runs on them in a child process, the files first evicted from the page cache (so they are read from
disk), and its peak RSS is the inference's alone (not the simulator's); then the per-patch ``healpy.gnomview`` loop (each band separately, as a user would cut patches) is
timed on a sample of the same patches and extrapolated to all of them, against the vectorised
sampling ``infer`` uses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nightshift.clusters.config import ClustersConfig

__all__ = ["planck_files", "full_sky_bench"]


def planck_files(config: ClustersConfig, nside: int) -> tuple[list[Path], float | None]:
    """The six band files of ``config``'s sky at ``nside`` (cached) and the seconds it took to simulate and write them (None: cached)."""
    from nightshift.clusters.catalogues import read_psz2
    from nightshift.clusters.config import catalogue_dir
    from nightshift.clusters.datasets import cache_dir, sky_key
    from nightshift.clusters.healpix_files import planck_file_name, write_planck_maps
    from nightshift.clusters.simulate import simulate_sky

    directory = cache_dir() / f"planck-files-{sky_key(config)}-nside{nside}"
    paths = [directory / planck_file_name(band, nside) for band in config.bands]
    if all(p.is_file() for p in paths):
        return paths, None
    started = time.perf_counter()
    catalogues = catalogue_dir()
    sky = simulate_sky(config, read_psz2(catalogues) if catalogues is not None else None)
    partial = directory.with_name(directory.name + ".partial")
    written = write_planck_maps(sky.maps, config.bands, partial, nside=nside)
    del sky
    directory.mkdir(parents=True, exist_ok=True)
    for path in written:
        path.replace(directory / path.name)
    partial.rmdir()
    return paths, time.perf_counter() - started


def _gnomview_baseline(paths: Sequence[Path], config: ClustersConfig, lon: np.ndarray, lat: np.ndarray) -> dict[str, float]:
    """Seconds per patch of ``healpy.gnomview`` (all bands) on the sampled centres, and its pixel agreement with ``sample_patches``."""
    import healpy as hp
    import matplotlib

    from nightshift.clusters.healpix_files import read_band_files
    from nightshift.clusters.patches import sample_patches

    matplotlib.use("Agg")  # gnomview's projector lives in healpy's plotting module
    maps, nested = read_band_files(paths, config.bands)
    ours = sample_patches(maps, lon, lat, patch_px=config.patch_px, pixel_arcmin=config.pixel_scale_arcmin, nest=nested)
    agree = 0
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # healpy's colour-map calls, not ours
        for patch, a, b in zip(ours, lon, lat):
            for band, expected in zip(maps, patch):
                projected = hp.gnomview(band, rot=(a, b, 0.0), xsize=config.patch_px, reso=config.pixel_scale_arcmin,
                                        nest=nested, return_projected_map=True, no_plot=True)
                agree += int(np.count_nonzero(np.asarray(projected) == expected))
    seconds = time.perf_counter() - started
    return {"gnomview_s_per_patch": seconds / len(lon), "gnomview_pixel_agreement": agree / ours.size}


def full_sky_bench(
    config: ClustersConfig, *, nside: int, cells: Sequence[int] | None, output: Path, gnomview_patches: int = 10,
) -> dict[str, object]:
    """Figures of the whole sky (or ``cells``) at ``nside`` from six files: wall, peak RSS, stage times, gnomview baseline."""
    from nightshift.clusters.patches import cell_tiling

    config = config.with_evaluation_protocol()
    config = dataclasses.replace(config, seed=config.evaluation_seeds[0])  # a test sky: never trained on
    paths, write_s = planck_files(config, nside)
    for path in paths:  # read from disk, as a user's files would be, not from the page cache
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    command = [sys.executable, "-m", "nightshift.clusters.cli", "infer", *map(str, paths), "--output", str(output / "catalogue")]
    if cells is not None:
        command += ["--cells", ",".join(map(str, cells))]
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"infer on the band files failed ({run.returncode}): {run.stderr.strip().splitlines()[-1:]}")
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    searched = list(range(48)) if cells is None else list(cells)
    lon, lat = cell_tiling(searched, config.test_tiling_nside)
    chosen = np.linspace(0, len(lon) - 1, min(gnomview_patches, len(lon))).astype(int)
    baseline = _gnomview_baseline(paths, config, lon[chosen], lat[chosen])
    tiles = summary["tiles"]
    stages = summary["seconds"]
    figures = {
        "nside": nside, "files": [p.name for p in paths], "file_mb": round(sum(p.stat().st_size for p in paths) / 2**20, 1),
        "sky_seed": config.seed, "simulated_at_nside": config.nside, "cells": len(searched), "tiles": tiles,
        "detections": summary["detections"], "simulate_and_write_s": None if write_s is None else round(write_s, 1),
        "infer_wall_s": round(wall_s, 1), "infer_seconds": stages, "tiles_per_s": round(tiles / wall_s, 1),
        "peak_rss_mb": summary["peak_rss_mb"],
        "children_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1),
        "patches_per_s": round(tiles / max(stages["patches"], 1e-9), 1),
        "gnomview_patches": len(chosen), "gnomview_patches_per_s": round(1.0 / baseline["gnomview_s_per_patch"], 2),
        "gnomview_s_all_tiles_extrapolated": round(baseline["gnomview_s_per_patch"] * tiles, 1),
        "speedup_vs_gnomview": round(baseline["gnomview_s_per_patch"] * tiles / max(stages["patches"], 1e-9), 1),
        "gnomview_pixel_agreement": round(baseline["gnomview_pixel_agreement"], 6),
    }
    if cells is not None and len(searched) < 48:
        per_tile = (stages["patches"] + stages["model"] + stages["detect"]) / tiles
        full = len(cell_tiling(range(48), config.test_tiling_nside)[0])
        figures["full_sky_wall_s_extrapolated"] = round(wall_s + per_tile * (full - tiles), 1)
    return figures
