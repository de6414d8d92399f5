"""Whole-map inference: overlapping patches blended into one probability map, the binary region of
interest, per-filament instances (connected components with skeleton length, area, mean N(H2), a
contour polygon, sky positions from the map's WCS), and the outputs as FITS maps plus a catalogue.

Missing pixels (NaN) get probability 0 and are never part of a filament (see
:mod:`nightshift.filaments.preprocess`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from nightshift.core.command import warn_input
from nightshift.filaments.config import FilamentsConfig
from nightshift.filaments.preprocess import blend_weights, normalise_patches, patch_starts

__all__ = ["DIHEDRAL_VIEWS", "dihedral_view", "dihedral_mean", "Filament", "predict_probability", "predict_probability_one_pass", "skeleton_length_px", "contour_polygon",
           "find_filaments", "SkyFilaments", "sky_filaments", "catalog_rows", "CATALOG_COLUMNS", "write_outputs"]


DIHEDRAL_VIEWS = ((0, False), (0, True), (2, True), (2, False), (1, False), (3, False), (1, True), (3, True))
"""The eight dihedral views as (quarter turns, left-right flip first), in the order test-time
augmentation takes them: the first two are the patch and its left-right flip, the first four the flips
(identity, left-right, up-down, half turn), all eight add the quarter turns and the transposes."""


def dihedral_view(image: torch.Tensor, view: int, *, inverse: bool = False) -> torch.Tensor:
    """View ``view`` (an index into :data:`DIHEDRAL_VIEWS`) of the last two axes of ``image``: the
    left-right flip (when it has one), then ``k`` quarter turns counter-clockwise; ``inverse`` undoes it."""
    turns, flip = DIHEDRAL_VIEWS[view]
    if inverse:
        image = torch.rot90(image, -turns, dims=(-2, -1))
        return image.flip(-1) if flip else image
    return torch.rot90(image.flip(-1) if flip else image, turns, dims=(-2, -1))


def dihedral_mean(forward, inputs: torch.Tensor, views: int) -> torch.Tensor:
    """Test-time augmentation: the mean over the first ``views`` dihedral views of ``forward`` applied
    to each view of ``inputs`` (..., H, W) and transformed back.

    ``forward`` must map an image to a per-pixel output of the same height and width (e.g. a U-Net's
    probabilities); with a square input, or one whose sides the network takes either way round, any
    number of views works. Averaged over all 8 views the result is equivariant: the mean for a turned
    or flipped input is the turned or flipped mean.
    """
    if not 1 <= views <= len(DIHEDRAL_VIEWS):
        raise ValueError(f"views={views}: expected 1 to {len(DIHEDRAL_VIEWS)}")
    total = forward(inputs)
    for view in range(1, views):
        total = total + dihedral_view(forward(dihedral_view(inputs, view)), view, inverse=True)
    return total / views


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
        ``patch_px``, ``stride_px``, ``scaling`` and ``test_time_views`` (each patch's probability is
        the mean over that many dihedral views, :func:`dihedral_mean`).
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
        dihedral_mean(lambda batch: torch.sigmoid(network(batch)), torch.from_numpy(inputs[i : i + batch_size, None]).to(device), config.test_time_views)[:, 0].cpu().numpy()
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
        ``levels``, ``scaling`` and ``test_time_views`` (as :func:`predict_probability`).

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
    probability = dihedral_mean(lambda batch: torch.sigmoid(network(batch)), torch.from_numpy(inputs[None, None]).to(device),
                                config.test_time_views)[0, 0].cpu().numpy()
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
    outline : tuple of (float, float)
        Its contour as a polygon of (x, y) vertices in pixels (0-based), in order.
    """

    label: int
    area_px: int
    skeleton_length_px: float
    mean_column_density_cm2: float
    mean_probability: float
    x: float
    y: float
    box: tuple[int, int, int, int]
    outline: tuple[tuple[float, float], ...] = ()

    def properties(self) -> dict[str, float]:
        """What was measured on it, each name ending with its unit (the contract's ``Detection.properties``
        and the catalogue's columns, in ``infer`` and in the night alike)."""
        return {"area_px2": float(self.area_px), "skeleton_length_px": self.skeleton_length_px,
                "mean_nh2_per_cm2": self.mean_column_density_cm2}


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


def contour_polygon(region: np.ndarray, *, tolerance_px: float = 0.25) -> tuple[tuple[float, float], ...]:
    """The outer boundary of a boolean region as polygon vertices (x, y) in pixels (0-based, pixel
    centres at integers), in order, the closing vertex not repeated; empty for an empty region.

    The boundary follows the pixels' outer edges, corners cut by at most a quarter pixel, simplified
    (Douglas-Peucker) to within ``tolerance_px``: its area is the region's pixel count within a few
    per cent, so the polygon drawn in DS9 covers the filament's pixels.
    """
    from skimage.measure import approximate_polygon, find_contours

    # The half level of a binary image runs through the midpoints between pixel centres and cuts
    # every corner by half a pixel; on each pixel split in 2 x 2 the cut is a quarter. Padding closes
    # the boundary of a region that touches the map's edge.
    fine = np.kron(np.pad(np.asarray(region, float), 1), np.ones((2, 2)))
    contours = find_contours(fine, 0.5, fully_connected="high")  # filaments are 8-connected
    if not contours:
        return ()
    outer = approximate_polygon(max(contours, key=len), tolerance_px)[:-1] / 2 - 0.25 - 1
    return tuple((float(col), float(row)) for row, col in outer)


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
            outline=tuple((x + window[1].start, y + window[0].start) for x, y in contour_polygon(region)),
        ))
    return roi, sorted(filaments, key=lambda f: -f.area_px)


@dataclasses.dataclass(frozen=True)
class SkyFilaments:
    """Filaments on the sky, from a map's celestial WCS.

    Attributes
    ----------
    frame : str
        "galactic" or "icrs": the frame of the map's WCS, and of ``lon_deg``, ``lat_deg``, ``outlines_deg``.
    lon_deg, lat_deg : numpy.ndarray
        Centroid longitudes (in [0, 360)) and latitudes, in degrees.
    outlines_deg : list of numpy.ndarray
        Each filament's contour polygon as (N, 2) (lon, lat) vertices in degrees.
    """

    frame: str
    lon_deg: np.ndarray
    lat_deg: np.ndarray
    outlines_deg: list[np.ndarray]


def sky_filaments(filaments: Sequence[Filament], wcs_header: str) -> SkyFilaments | None:
    """The filaments' centroids and outlines on the sky from a FITS header string; None when the
    header has no celestial WCS."""
    if not wcs_header.strip():
        return None
    from astropy.io import fits
    from astropy.wcs import WCS

    wcs = WCS(fits.Header.fromstring(wcs_header)).celestial
    if not wcs.has_celestial:
        return None

    def to_sky(xy: np.ndarray) -> np.ndarray:
        if not len(xy):
            return np.empty((0, 2))
        lon, lat = wcs.pixel_to_world_values(xy[:, 0], xy[:, 1])
        return np.stack([np.mod(np.asarray(lon, float), 360.0), np.asarray(lat, float)], axis=1)

    centres = to_sky(np.array([(f.x, f.y) for f in filaments], float).reshape(-1, 2))
    return SkyFilaments("galactic" if wcs.wcs.ctype[0].startswith("GLON") else "icrs", centres[:, 0], centres[:, 1],
                        [to_sky(np.array(f.outline, float).reshape(-1, 2)) for f in filaments])


def _catalog_columns() -> list:
    from nightshift.core.catalog import DETECTION_COLUMNS, Column, property_column

    return [
        *DETECTION_COLUMNS,  # the night's: name (largest first), centroid glon/glat/ra/dec (NaN without a WCS), radius 0, score, label
        Column("x_px", "pix", "centroid column in the map (0-based)"),
        Column("y_px", "pix", "centroid row in the map (0-based)"),
        property_column("area_px2", "pixels in the region of interest"),
        property_column("skeleton_length_px", "length of the region's skeleton"),
        property_column("mean_nh2_per_cm2", "mean H2 column density over the region"),
    ]


CATALOG_COLUMNS = [c.name for c in _catalog_columns()]
"""Columns of the filament catalogue, in order."""


def catalog_rows(filaments: Sequence[Filament], wcs_header: str) -> tuple[str, list[dict[str, Any]]]:
    """The catalogue rows of a map's filaments and the frame of their ``outline`` vertices.

    With a celestial WCS the outlines are in Galactic degrees (frame "galactic"); without one, the
    sky columns are NaN and the outlines in pixels (frame "image").
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    sky = sky_filaments(filaments, wcs_header)
    if sky is None:
        nan = np.full(len(filaments), np.nan)
        glon, glat, ra, dec, outlines, frame = nan, nan, nan, nan, [np.array(f.outline).reshape(-1, 2) for f in filaments], "image"
    else:
        centres = SkyCoord(sky.lon_deg * u.deg, sky.lat_deg * u.deg, frame=sky.frame)
        glon, glat = centres.galactic.l.deg, centres.galactic.b.deg
        ra, dec = centres.icrs.ra.deg, centres.icrs.dec.deg
        outlines, frame = [], "galactic"
        for vertices in sky.outlines_deg:
            galactic = SkyCoord(vertices[:, 0] * u.deg, vertices[:, 1] * u.deg, frame=sky.frame).galactic
            outlines.append(np.stack([galactic.l.deg, galactic.b.deg], axis=1))
    rows = [{"name": f"filaments-{i + 1:05d}", "glon": float(glon[i]), "glat": float(glat[i]), "ra": float(ra[i]),
             "dec": float(dec[i]), "radius_arcsec": 0.0, "score": f.mean_probability, "label": "filament", "x_px": f.x, "y_px": f.y,
             **f.properties(), "outline": outlines[i]} for i, f in enumerate(filaments)]
    return frame, rows


_DATA_KEYWORDS = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "BUNIT", "BSCALE", "BZERO",
                  "BLANK", "DATAMIN", "DATAMAX", "CHECKSUM", "DATASUM", "EXTNAME", "EXTVER"}


def _output_header(header: str, content: str, meta: Mapping[str, Any]):
    """The input's header for one output map: everything but the keywords that describe the input's
    data array (structure, scaling, unit, checksums), which astropy writes anew for the output; the
    map is dimensionless, and the provenance ``meta`` follows."""
    from astropy.io import fits

    source = fits.Header.fromstring(header) if header.strip() else fits.Header()
    kept = fits.Header([card for card in source.cards
                        if card.keyword not in _DATA_KEYWORDS and not card.keyword.startswith("NAXIS")])
    kept["BUNIT"] = ("", "dimensionless")  # not the input's N(H2) unit: readers take a missing BUNIT as unknown
    kept.update(meta)
    kept["HISTORY"] = f"nightshift-filaments: {content}"
    return kept


def write_outputs(
    stem: str | Path, probability: np.ndarray, roi: np.ndarray, filaments: Sequence[Filament], header: str = "",
    *, meta: Mapping[str, Any],
) -> list[Path]:
    """Write the maps ``stem_probability.fits`` (float32 in [0, 1]) and ``stem_roi.fits`` (uint8,
    1 in the region of interest), both dimensionless with the input's header (its WCS included), and
    the catalogue ``stem_filaments`` (:func:`nightshift.core.catalog.write_catalog`: FITS, ECSV,
    CSV, contour polygons as DS9 regions in Galactic and ICRS, or in image coordinates without a WCS).

    Parameters
    ----------
    header : str
        The input map's FITS header as a string (``Header.tostring()``); empty when it has none.
    meta : mapping
        Provenance (model, threshold, input...), in the catalogue's and the maps' headers.

    Warns
    -----
    UserWarning
        The header has no celestial WCS: the catalogue has no sky positions.
    """
    from astropy.io import fits

    from nightshift.core.catalog import write_catalog

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.parent / f"{stem.name}_probability.fits", stem.parent / f"{stem.name}_roi.fits"]
    for path, data, content in ((paths[0], probability.astype(np.float32), "filament probability (U-Net)"),
                                (paths[1], roi.astype(np.uint8), "filament region of interest (1 = filament)")):
        fits.PrimaryHDU(data, header=_output_header(header, content, meta)).writeto(path, overwrite=True)
    frame, rows = catalog_rows(filaments, header)
    if frame == "image":
        warn_input(meta.get("INPUT", stem.name), "the map has no celestial WCS: its filaments have pixel positions only "
                              "(glon, glat, ra, dec are NaN; regions in image coordinates)")
    lon, lat = ("x_px", "y_px") if frame == "image" else ("glon", "glat")
    return paths + write_catalog(rows, _catalog_columns(), stem.parent / f"{stem.name}_filaments", meta=meta, frame=frame,
                                 lon=lon, lat=lat, outline="outline", label="name")
