"""Whole-map inference: overlapping patches blended into one probability map, the binary region of
interest, per-filament instances (connected components with skeleton length, area, mean N(H2), sky
position from the map's WCS), and the outputs as FITS maps plus a catalogue.

Missing pixels (NaN) get probability 0 and are never part of a filament (see
:mod:`nightshift.filaments.preprocess`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from nightshift.filaments.config import FilamentsConfig
from nightshift.filaments.preprocess import blend_weights, normalise_patches, patch_starts

__all__ = ["Filament", "predict_probability", "predict_probability_one_pass", "skeleton_length_px",
           "find_filaments", "sky_positions", "CATALOG_COLUMNS", "write_outputs"]


@torch.no_grad()
def predict_probability(
    network: torch.nn.Module,
    column_density: np.ndarray,
    config: FilamentsConfig,
    *,
    batch_size: int = 64,
) -> np.ndarray:
    """Filament probability of every pixel of one or more maps, from blended overlapping patches.

    Parameters
    ----------
    network : torch.nn.Module
        The U-Net, in eval mode (its device is used).
    column_density : numpy.ndarray
        (H, W) or (N, H, W) N(H2) in cm^-2, NaN where missing; maps smaller than a patch are padded
        with NaN.
    config : FilamentsConfig
        ``patch_px``, ``stride_px`` and ``scaling``.
    batch_size : int
        Patches per forward pass.

    Returns
    -------
    numpy.ndarray
        float32 probabilities in [0, 1], the shape of ``column_density``; 0 at missing pixels.
    """
    maps = np.asarray(column_density, dtype=np.float32)
    single = maps.ndim == 2
    maps = maps[None] if single else maps
    if maps.ndim != 3:
        raise ValueError(f"column_density shape {column_density.shape}: expected (H, W) or (N, H, W)")
    count, height, width = maps.shape
    if count == 0 or height == 0 or width == 0:
        return np.zeros(column_density.shape, np.float32)
    patch = config.patch_px
    padded = np.pad(maps, ((0, 0), (0, max(patch - height, 0)), (0, max(patch - width, 0))), constant_values=np.nan)
    rows, cols = patch_starts(padded.shape[1], patch, config.stride_px), patch_starts(padded.shape[2], patch, config.stride_px)
    corners = [(m, r, c) for m in range(count) for r in rows for c in cols]
    patches = np.stack([padded[m, r : r + patch, c : c + patch] for m, r, c in corners])
    inputs, _ = normalise_patches(patches, config.scaling)
    device = next(network.parameters()).device
    probabilities = np.concatenate([
        torch.sigmoid(network(torch.from_numpy(inputs[i : i + batch_size, None]).to(device)))[:, 0].cpu().numpy()
        for i in range(0, len(inputs), batch_size)
    ])
    weights = blend_weights(patch)
    total = np.zeros(padded.shape, np.float32)
    weight_sum = np.zeros(padded.shape, np.float32)
    for (m, r, c), probability in zip(corners, probabilities):
        total[m, r : r + patch, c : c + patch] += weights * probability
        weight_sum[m, r : r + patch, c : c + patch] += weights
    blended = (total / weight_sum)[:, :height, :width]
    blended = np.where(np.isfinite(maps), blended, 0).astype(np.float32)
    return blended[0] if single else blended


@torch.no_grad()
def predict_probability_one_pass(network: torch.nn.Module, column_density: np.ndarray, config: FilamentsConfig) -> np.ndarray:
    """Filament probability of a whole map from one forward pass, normalised as one patch.

    The U-Net is fully convolutional, so it takes the whole map at once (padded with missing pixels
    to a multiple of ``2**(levels-1)``). This is the reference the stitched inference of
    :func:`predict_probability` is measured against (``evaluate.border_effect``); it is not the
    service's inference, because the network was trained on patches normalised one by one.

    Parameters
    ----------
    network : torch.nn.Module
        The U-Net, in eval mode (its device is used).
    column_density : numpy.ndarray
        (H, W) N(H2) in cm^-2, NaN where missing.
    config : FilamentsConfig
        ``levels`` and ``scaling``.

    Returns
    -------
    numpy.ndarray
        float32 (H, W) probabilities in [0, 1]; 0 at missing pixels.
    """
    image = np.asarray(column_density, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"column_density shape {image.shape}: expected (H, W)")
    multiple = 2 ** (config.levels - 1)
    height, width = image.shape
    padded = np.pad(image, ((0, -height % multiple), (0, -width % multiple)), constant_values=np.nan)
    inputs, _ = normalise_patches(padded, config.scaling)
    device = next(network.parameters()).device
    probability = torch.sigmoid(network(torch.from_numpy(inputs[None, None]).to(device)))[0, 0].cpu().numpy()
    return np.where(np.isfinite(image), probability[:height, :width], 0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Filament:
    """One filament instance: a connected component of the region of interest.

    Attributes
    ----------
    label : int
        Component number (1-based) in the labelled region of interest.
    area_px : int
        Pixels in the component.
    skeleton_length_px : float
        Length of its skeleton, in pixels (diagonal steps count sqrt(2)).
    mean_column_density_cm2 : float
        Mean N(H2) over its pixels with data, in cm^-2.
    mean_probability : float
        Mean filament probability over its pixels.
    x, y : float
        Centroid column and row, in pixels (0-based).
    box : tuple of int
        (x_min, y_min, x_max, y_max), max exclusive, in pixels.
    """

    label: int
    area_px: int
    skeleton_length_px: float
    mean_column_density_cm2: float
    mean_probability: float
    x: float
    y: float
    box: tuple[int, int, int, int]


def skeleton_length_px(region: np.ndarray) -> float:
    """Length of the skeleton of a boolean region, in pixels: the sum of the links between
    8-connected skeleton pixels, 1 for a side step and sqrt(2) for a diagonal one."""
    from skimage.morphology import skeletonize

    skeleton = skeletonize(np.asarray(region, bool))
    straight = np.sum(skeleton[:, 1:] & skeleton[:, :-1]) + np.sum(skeleton[1:, :] & skeleton[:-1, :])
    diagonal = np.sum(skeleton[1:, 1:] & skeleton[:-1, :-1]) + np.sum(skeleton[1:, :-1] & skeleton[:-1, 1:])
    # A diagonal link beside two side links of the same corner is a shortcut, not extra length.
    corners = (skeleton[1:, 1:] & skeleton[:-1, :-1] & (skeleton[1:, :-1] | skeleton[:-1, 1:])).sum() + \
        (skeleton[1:, :-1] & skeleton[:-1, 1:] & (skeleton[1:, 1:] | skeleton[:-1, :-1])).sum()
    return float(straight + np.sqrt(2) * (diagonal - corners))


def find_filaments(
    probability: np.ndarray, column_density: np.ndarray, *, threshold: float, min_area_px: int
) -> tuple[np.ndarray, list[Filament]]:
    """The region of interest and its filaments.

    Parameters
    ----------
    probability : numpy.ndarray
        (H, W) filament probability.
    column_density : numpy.ndarray
        (H, W) N(H2) in cm^-2, NaN where missing.
    threshold : float
        Probability at or above which a pixel is in the region of interest.
    min_area_px : int
        Smallest component kept, in pixels (8-connected).

    Returns
    -------
    roi : numpy.ndarray
        bool (H, W) region of interest (components smaller than ``min_area_px`` removed).
    filaments : list of Filament
        One per component, largest first; empty when nothing passes.
    """
    if probability.shape != column_density.shape:
        raise ValueError(f"probability shape {probability.shape} differs from column_density shape {column_density.shape}")
    labels, count = ndimage.label(probability >= threshold, structure=np.ones((3, 3)))
    roi = np.zeros(probability.shape, bool)
    filaments = []
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None:
            continue
        region = labels[window] == index
        area = int(region.sum())
        if area < min_area_px:
            continue
        roi[window] |= region
        rows, cols = np.nonzero(region)
        values = column_density[window][region]
        finite = values[np.isfinite(values)]
        filaments.append(Filament(
            label=index, area_px=area, skeleton_length_px=skeleton_length_px(region),
            mean_column_density_cm2=float(finite.mean()) if finite.size else float("nan"),
            mean_probability=float(probability[window][region].mean()),
            x=float(cols.mean() + window[1].start), y=float(rows.mean() + window[0].start),
            box=(window[1].start, window[0].start, window[1].stop, window[0].stop),
        ))
    return roi, sorted(filaments, key=lambda f: -f.area_px)


def sky_positions(filaments: Sequence[Filament], wcs_header: str) -> tuple[str, np.ndarray, np.ndarray] | None:
    """Sky positions of the filaments' centroids from a FITS header string.

    Returns
    -------
    (frame, lon_deg, lat_deg) or None
        ``frame`` is "galactic" or "icrs"; None when the header has no celestial WCS.
    """
    if not wcs_header.strip():
        return None
    from astropy.io import fits
    from astropy.wcs import WCS

    wcs = WCS(fits.Header.fromstring(wcs_header)).celestial
    if not wcs.has_celestial:
        return None
    frame = "galactic" if wcs.wcs.ctype[0].startswith("GLON") else "icrs"
    x = np.array([f.x for f in filaments], float)
    y = np.array([f.y for f in filaments], float)
    lon, lat = wcs.pixel_to_world_values(x, y) if len(filaments) else (x, y)
    return frame, np.mod(np.asarray(lon, float), 360.0), np.asarray(lat, float)


def _catalog_columns() -> list:
    from nightshift.core.catalog import Column

    return [
        Column("id", "", "filament number in this map, largest first"),
        Column("x", "pix", "centroid column (0-based)"),
        Column("y", "pix", "centroid row (0-based)"),
        Column("lon", "deg", "centroid longitude in the map's frame (NaN without a WCS)"),
        Column("lat", "deg", "centroid latitude in the map's frame (NaN without a WCS)"),
        Column("area", "pix2", "pixels in the region of interest"),
        Column("skeleton_length", "pix", "length of the region's skeleton"),
        Column("mean_nh2", "cm-2", "mean H2 column density over the region"),
        Column("mean_probability", "", "mean filament probability over the region"),
    ]


CATALOG_COLUMNS = [c.name for c in _catalog_columns()]
"""Columns of the filament catalogue, in order."""


_DATA_KEYWORDS = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "BUNIT", "BSCALE", "BZERO",
                  "BLANK", "DATAMIN", "DATAMAX", "CHECKSUM", "DATASUM", "EXTNAME", "EXTVER"}


def _output_header(header: str, content: str):
    """The input's header for one output map: everything but the keywords that describe the input's
    data array (structure, scaling, unit, checksums), which astropy writes anew for the output."""
    from astropy.io import fits

    source = fits.Header.fromstring(header) if header.strip() else fits.Header()
    kept = fits.Header([card for card in source.cards
                        if card.keyword not in _DATA_KEYWORDS and not card.keyword.startswith("NAXIS")])
    kept["HISTORY"] = f"nightshift-filaments: {content}"
    return kept


def write_outputs(
    stem: str | Path, probability: np.ndarray, roi: np.ndarray, filaments: Sequence[Filament], header: str = ""
) -> list[Path]:
    """Write the maps ``stem_probability.fits`` (float32 in [0, 1]) and ``stem_roi.fits`` (uint8,
    1 in the region of interest), each carrying the input's header (its WCS included), and the
    catalogue ``stem_filaments.{fits,csv,reg}``; the region file is in image coordinates without a WCS.

    Parameters
    ----------
    header : str
        The input map's FITS header as a string (``Header.tostring()``); empty when it has none.
    """
    from astropy.io import fits

    from nightshift.core.catalog import write_catalog

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.parent / f"{stem.name}_probability.fits", stem.parent / f"{stem.name}_roi.fits"]
    fits.PrimaryHDU(probability.astype(np.float32), header=_output_header(header, "filament probability (U-Net)")
                    ).writeto(paths[0], overwrite=True)
    fits.PrimaryHDU(roi.astype(np.uint8), header=_output_header(header, "filament region of interest (1 = filament)")
                    ).writeto(paths[1], overwrite=True)
    sky = sky_positions(filaments, header)
    frame, lon, lat = sky if sky is not None else ("galactic", np.full(len(filaments), np.nan), np.full(len(filaments), np.nan))
    rows = [{"id": i + 1, "x": f.x, "y": f.y, "lon": lon[i], "lat": lat[i], "area": f.area_px,
             "skeleton_length": f.skeleton_length_px, "mean_nh2": f.mean_column_density_cm2,
             "mean_probability": f.mean_probability} for i, f in enumerate(filaments)]
    catalog = write_catalog(rows, _catalog_columns(), stem.parent / f"{stem.name}_filaments", frame=frame,
                            lon="lon", lat="lat", label="id")
    if sky is None:  # DS9 image coordinates are 1-based
        lines = ["# Region file format: DS9 version 4.1", "image"]
        lines += [f"point({f.x + 1:.2f},{f.y + 1:.2f}) # text={{{i + 1}}}" for i, f in enumerate(filaments)]
        catalog[2].write_text("\n".join(lines) + "\n")
    return paths + catalog
