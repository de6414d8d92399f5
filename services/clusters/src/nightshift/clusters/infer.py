"""Batched inference, the seed's detection rule, whole-field merging and catalogues.

Detection rule (xCluster README): pixels with probability above ``threshold`` (0.9) that form
a connected group (8-connectivity) of at least ``min_pixels`` (3) are one detection; its centre
is the barycentre of the group's pixels, its radius that of a disk of the group's area, at most
``max_radius_arcmin`` (15'), its score the group's peak probability. Sky positions come from each
tile's WCS. Over a field of overlapping tiles, detections within ``edge_margin_px`` of their
tile's edge and within ``galactic_mask_deg`` of the Galactic plane are dropped, and detections within
``merge_radius_arcmin`` (4') are one cluster: the copy farthest from its tile's edge is kept (its
shape is the least truncated). A single served tile keeps all its detections.
Detections are then cross-matched with the real catalogues at 7' (known: which catalogue and
name; else new); the ``infer`` command also reports how many known labels chance alone would
give in the searched area (all of them on a simulated sky, whose clusters are placed
independently of the catalogues).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from nightshift.clusters.catalogues import CrossMatch, ReferenceCatalogue, crossmatch
from nightshift.clusters.config import ClustersConfig
from nightshift.clusters.detections import (
    Detections, concatenate_detections, find_detections, find_peaks, merge_detections, sky_positions,
)
from nightshift.clusters.matched_filter import MmfMaps, map_fwhm_arcmin, mmf_maps, mmf_tile_detections, snr_at
from nightshift.clusters.preprocess import channels_last, fill_missing

__all__ = [
    "Detections",
    "predict_probabilities",
    "find_detections",
    "sky_positions",
    "merge_detections",
    "tile_detections",
    "field_detections",
    "tile_wcs",
    "catalogue_rows",
    "write_detection_catalogue",
]


SNR_WINDOW_PX = 2.0  # a U-Net barycentre and the MMF's peak of one cluster lie a pixel or two apart


def predict_probabilities(model, pixels: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Cluster probability maps of (n, bands, H, W) tiles, shape (n, H, W), float32 in [0, 1].

    NaN pixels are filled before the network (:func:`~nightshift.clusters.preprocess.fill_missing`)
    and get probability 0.
    """
    pixels = np.asarray(pixels)
    if len(pixels) == 0:
        return np.zeros((0, *pixels.shape[2:]), dtype=np.float32)
    filled, valid = fill_missing(pixels)
    inputs = channels_last(filled)
    from keras import ops

    outputs = [ops.convert_to_numpy(model(inputs[i:i + batch_size], training=False)) for i in range(0, len(inputs), batch_size)]
    return np.where(valid, np.concatenate(outputs)[..., 0], 0.0).astype(np.float32)


def tile_detections(maps: np.ndarray, wcs_list: Sequence[WCS], config: ClustersConfig, *, threshold: float | None = None,
                    mmf: MmfMaps | None = None) -> Detections:
    """Detections of each tile of a field, before merging: found, away from tile edges, outside the Galactic mask.

    ``threshold`` defaults to ``config.threshold`` (probabilities); candidates are the connected
    groups or the peaks of the maps (``config.candidate_extraction``). Detections closer than
    ``config.edge_margin_px`` to their tile's edge are dropped (the overlapping tiles of a field
    see them whole) and so are those within ``config.galactic_mask_deg`` of the Galactic plane.
    With ``mmf`` (the MMF of these tiles) each detection's ``mmf_snr`` is the MMF's S/N measured at
    it (the highest within ``SNR_WINDOW_PX``); with ``config.mmf_union_snr`` > 0 the MMF's peaks
    above it in the same tiles join the detections.
    """
    extract = find_peaks if config.candidate_extraction == "peaks" else find_detections
    found = extract(maps, threshold=config.threshold if threshold is None else threshold,
                    min_pixels=config.min_pixels, max_radius_px=config.max_radius_arcmin / config.pixel_scale_arcmin)
    found = sky_positions(found.select(found.edge_px >= config.edge_margin_px), wcs_list)
    found = found.select(np.abs(found.glat) >= config.galactic_mask_deg)
    if mmf is not None:
        found = dataclasses.replace(found, mmf_snr=snr_at(found, mmf, radius_px=SNR_WINDOW_PX))
    if config.mmf_union_snr <= 0:
        return found
    if mmf is None:
        raise ValueError(f"mmf_union_snr={config.mmf_union_snr}: the MMF maps of the tiles are needed")
    return concatenate_detections([found, mmf_tile_detections(mmf, wcs_list, config, threshold=config.mmf_union_snr)])


def field_detections(maps: np.ndarray, wcs_list: Sequence[WCS], config: ClustersConfig, *, threshold: float | None = None,
                     mmf: MmfMaps | None = None) -> Detections:
    """Merged detections with sky positions over a field of overlapping tiles' maps (n, H, W); see :func:`tile_detections`."""
    return merge_detections(tile_detections(maps, wcs_list, config, threshold=threshold, mmf=mmf),
                            radius_arcmin=config.merge_radius_arcmin)


def tile_wcs(wcs_header: str) -> WCS | None:
    """The celestial WCS of a tile from its FITS header string, or None when the tile has none."""
    from astropy.io import fits

    wcs = WCS(fits.Header.fromstring(wcs_header)) if wcs_header else None
    return wcs if wcs is not None and wcs.has_celestial else None


def catalogue_rows(
    detections: Detections, matches: CrossMatch, *, pixel_arcmin: float, tile_ids: Sequence[str] | None = None,
) -> list[dict[str, object]]:
    """One catalogue row per detection: position, radius, score, known/new and the matched catalogue."""
    icrs = SkyCoord(l=detections.glon * u.deg, b=detections.glat * u.deg, frame="galactic").icrs
    rows = []
    for i in range(len(detections)):
        rows.append({
            "name": f"NSC G{detections.glon[i]:07.3f}{detections.glat[i]:+07.3f}", "label": "cluster",
            "glon": float(detections.glon[i]), "glat": float(detections.glat[i]),
            "ra": float(icrs.ra.deg[i]), "dec": float(icrs.dec.deg[i]),
            "radius_arcsec": float(detections.radius_px[i] * pixel_arcmin * 60.0),
            "score": float(detections.score[i]), "n_pixels": int(detections.n_pixels[i]),
            "status": "known" if matches.catalogue[i] else "new",
            "known_in": str(matches.catalogue[i]), "known_as": str(matches.name[i]),
            "match_sep_arcmin": float(np.nan_to_num(matches.separation_arcmin[i], nan=-1.0)),
            "mmf_snr": float(detections.mmf_snr[i]),
            "tile_id": tile_ids[detections.tile[i]] if tile_ids is not None else "",
        })
    return rows


def write_detection_catalogue(
    detections: Detections, references: list[ReferenceCatalogue], config: ClustersConfig, stem: Path,
    *, meta: dict[str, object], tile_ids: Sequence[str] | None = None,
) -> list[Path]:
    """Cross-match ``detections`` with ``references`` and write FITS, ECSV, CSV and DS9 region files (Galactic
    and ICRS), with the provenance ``meta`` and the detection threshold."""
    from nightshift.core.catalog import DETECTION_COLUMNS, Column, write_catalog

    columns = [
        *DETECTION_COLUMNS,  # the night's: name (NSC G<l><b>), glon, glat, ra, dec, radius (disk of its area, at most 15'), peak probability, label
        Column("n_pixels", "", "pixels above the threshold"),
        Column("known_in", "", "first catalogue with a counterpart within the match radius: PSZ2, MCXC or redMaPPer (empty: new)"),
        Column("known_as", "", "name of that counterpart"),
        Column("status", "", "known (in a catalogue within the match radius) or new"),
        Column("match_sep_arcmin", "arcmin", "separation from the matched cluster (-1: none)"),
        Column("mmf_snr", "", "the MMF's S/N measured at the detection (NaN: the MMF was not run)"),
        Column("tile_id", "", "tile the detection was kept from"),
    ]
    matches = crossmatch(detections.glon, detections.glat, references, radius_arcmin=config.match_radius_arcmin)
    rows = catalogue_rows(detections, matches, pixel_arcmin=config.pixel_scale_arcmin, tile_ids=tile_ids)
    return write_catalog(rows, columns, stem, frame="galactic", lon="glon", lat="glat", radius_arcsec="radius_arcsec",
                         label="name", meta={**meta, "THRESH": config.threshold, "MINPIX": config.min_pixels})


def read_healpix_maps(path: Path, *, bands: int, band_names: Sequence[str]) -> tuple[np.ndarray, dict[str, object]]:
    """The ``bands`` maps (bands, npix) float32 of a Galactic HEALPix FITS file and its header cards.

    Raises
    ------
    InvalidInput
        Not a HEALPix FITS table, another number of columns, or maps in another frame than Galactic.
    """
    import healpy as hp

    from nightshift.core.errors import InvalidInput

    if not Path(path).is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        maps, header = hp.read_map(str(path), field=None, dtype=np.float32, nest=None, h=True)
    except (OSError, ValueError, TypeError, KeyError, IndexError) as error:
        reason = " ".join(str(error).split()).split(". ")[0] or type(error).__name__
        raise InvalidInput(f"{path}: not a HEALPix FITS map ({reason})") from None
    maps = np.atleast_2d(maps)
    if len(maps) != bands:
        raise InvalidInput(f"{path}: {len(maps)} map columns, expected {bands} bands {list(band_names)}")
    cards = dict(header)
    if str(cards.get("COORDSYS", "G")).strip().upper() not in ("G", "GALACTIC"):
        raise InvalidInput(f"{path}: COORDSYS {cards['COORDSYS']!r}, expected Galactic maps")
    if not np.isfinite(maps[~hp.mask_bad(maps)]).any():
        raise InvalidInput(f"{path}: no finite pixel (all UNSEEN, NaN or infinite)")
    return maps, cards


def infer_healpix_file(
    maps_paths: Path | Sequence[Path], *, weights: Path | None, cells: Sequence[int] | None, output: Path, nest: bool = False,
    chunk: int = 256, overrides: dict[str, str] | None = None,
) -> dict[str, object]:
    """The ``infer`` command: detect clusters in Galactic HEALPix FITS maps and write the catalogue.

    ``maps_paths`` is one file with one column per band in the model's band order and units
    (Planck HFI maps: K_CMB up to 353 GHz, MJy/sr at 545 and 857 GHz), or one file per band in
    that order, in the Planck layout (:func:`~nightshift.clusters.healpix_files.read_band_files`:
    only their intensity columns are read, one file at a time, into one float32 array). The
    requested nside-2 NESTED cells (default the whole sky) are tiled as the test cells are, in
    chunks of ``chunk`` patches, detections merged and cross-matched with the real catalogues
    when they are available. The summary's ``known_chance_rate`` is the fraction of the searched
    cells within the match radius of a catalogue cluster, and ``known_expected_by_chance`` that
    rate times the detections; ``overrides`` replace fields of the card's config (e.g.
    ``mmf_union_snr=0`` for the U-Net's detections alone, without the MMF over every tile);
    ``seconds`` times each stage and ``peak_rss_mb`` is the process's
    peak resident memory so far.
    """
    import json
    import resource
    import time

    import healpy as hp

    from nightshift.clusters.catalogues import chance_match_fraction, read_references
    from nightshift.clusters.bundle import bundled_weights
    from nightshift.clusters.config import catalogue_dir
    from nightshift.clusters.healpix_files import read_band_files
    from nightshift.clusters.model import load_model
    from nightshift.clusters.patches import cell_tiling, patch_wcs, sample_patches
    from nightshift.core.devices import configure_tensorflow

    started = time.perf_counter()
    seconds = dict.fromkeys(("read", "patches", "model", "mmf", "detect", "catalogue"), 0.0)
    configure_tensorflow()
    weights = weights or bundled_weights()
    config = ClustersConfig.from_dict(json.loads(weights.with_suffix(".json").read_text())["config"]).with_overrides(overrides or {})
    paths = [Path(maps_paths)] if isinstance(maps_paths, (str, Path)) else [Path(p) for p in maps_paths]
    clock = time.perf_counter()
    if len(paths) == 1:
        maps, cards = read_healpix_maps(paths[0], bands=len(config.bands), band_names=config.band_names)
        maps[hp.mask_bad(maps)] = np.nan
        nested = str(cards.get("ORDERING", "RING")).strip().upper().startswith("NEST")
    else:
        maps, nested = read_band_files(paths, config.bands)
    nested = nested or nest
    seconds["read"] = time.perf_counter() - clock
    nside = hp.npix2nside(maps.shape[-1])
    cells = list(range(48)) if cells is None else list(cells)
    lon, lat = cell_tiling(cells, config.test_tiling_nside)
    network = load_model(str(weights))
    found = []
    for start in range(0, len(lon), chunk):
        part = slice(start, start + chunk)
        clock = time.perf_counter()
        pixels = sample_patches(maps, lon[part], lat[part], patch_px=config.patch_px,
                                pixel_arcmin=config.pixel_scale_arcmin, nest=nested)
        seconds["patches"] += time.perf_counter() - clock
        clock = time.perf_counter()
        probability = predict_probabilities(network, pixels)
        seconds["model"] += time.perf_counter() - clock
        clock = time.perf_counter()
        mmf = (mmf_maps(pixels, config.bands, pixel_arcmin=config.pixel_scale_arcmin, map_fwhm=map_fwhm_arcmin(nside))
               if config.mmf_union_snr > 0 else None)
        seconds["mmf"] += time.perf_counter() - clock
        clock = time.perf_counter()
        part_wcs = [patch_wcs(a, b, patch_px=config.patch_px, pixel_arcmin=config.pixel_scale_arcmin)
                    for a, b in zip(lon[part], lat[part])]
        detections = tile_detections(probability, part_wcs, config, mmf=mmf)
        found.append(dataclasses.replace(detections, tile=detections.tile + start))
        seconds["detect"] += time.perf_counter() - clock
    del maps
    clock = time.perf_counter()
    merged = merge_detections(concatenate_detections(found), radius_arcmin=config.merge_radius_arcmin)
    merged = merged.select(np.isin(hp.ang2pix(2, merged.glon, merged.glat, lonlat=True, nest=True), cells))
    directory = catalogue_dir()
    references = read_references(directory) if directory is not None else []
    tile_ids = [f"{a:.4f}{b:+.4f}" for a, b in zip(lon, lat)]
    catalogue = write_detection_catalogue(merged, references, config, output / "clusters", tile_ids=tile_ids,
                                          meta={"INPUT": ",".join(p.name for p in paths), "WEIGHTS": weights.name})
    known = crossmatch(merged.glon, merged.glat, references, radius_arcmin=config.match_radius_arcmin).known
    # chance matches: on real maps some "known" labels are coincidences, on simulated maps all of them
    rate = chance_match_fraction(*cell_tiling(cells, 256), references, radius_arcmin=config.match_radius_arcmin)
    seconds["catalogue"] = time.perf_counter() - clock
    seconds["total"] = time.perf_counter() - started
    return {"detections": len(merged), "known": int(known.sum()), "new": int((~known).sum()),
            "known_chance_rate": rate, "known_expected_by_chance": rate * len(merged),
            "tiles": len(lon), "catalogue": [str(p) for p in catalogue],
            "input": "one file per band" if len(paths) > 1 else "one multi-column file",
            "nside": nside, "nested": nested, "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)}
