"""Gnomonic patches of HEALPix maps, in the form the ingest service produces them.

A patch of ``patch_px`` x ``patch_px`` pixels at ``pixel_scale_arcmin`` is the nearest-HEALPix-
pixel sampling of a tangent-plane (``-TAN``) grid: one grid of unit vectors about (0, 0),
rotated to every patch centre at once and looked up with ``healpy.vec2pix``. Pixel (row i,
column j) lies at tangent-plane offsets north = (i - c) s, east = -(j - c) s, c = (patch_px - 1)/2,
which is exactly the FITS WCS of :func:`patch_wcs` (CRPIX at the centre, CDELT1 < 0: east left,
north up). Each patch belongs to the nside = 2 NESTED base cell holding its centre, which decides
its split (training, validation cells, test cells).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import healpy as hp
import numpy as np
from astropy.wcs import WCS

from nightshift.clusters.config import ClustersConfig
from nightshift.clusters.matched_filter import map_fwhm_arcmin, mmf_sigma
from nightshift.clusters.simulate import ClusterTruth, SkyMaps
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import make_tile, stable_tile_id
from nightshift.v1 import tile_pb2

__all__ = [
    "BASE_NSIDE",
    "PatchSet",
    "rotations",
    "sample_patches",
    "patch_wcs",
    "sky_to_patch_pixels",
    "cell_tiling",
    "disk_targets",
    "measure_truth_snr",
    "patch_set",
    "training_centres",
    "build_splits",
    "image_tiles",
]

BASE_NSIDE = 2
SURVEY = "planck-sim"


@dataclasses.dataclass(frozen=True)
class PatchSet:
    """Patches with their targets and geometry.

    Attributes
    ----------
    pixels : ndarray
        Shape (n, bands, P, P), float32, each band in its unit.
    targets : ndarray
        Shape (n, P, P), uint8 in {0, 1}: disks at the clusters with truth S/N >= target_min_snr.
    lon, lat : ndarray
        Patch centres, Galactic, in degrees, shape (n,).
    base_cell : ndarray
        nside = 2 NESTED cell of each centre, shape (n,).
    """

    pixels: np.ndarray
    targets: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    base_cell: np.ndarray

    def __len__(self) -> int:
        return len(self.lon)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}{f.name}": getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> PatchSet:
        return cls(**{f.name: np.asarray(arrays[f"{prefix}{f.name}"]) for f in dataclasses.fields(cls)})

    @classmethod
    def concatenate(cls, sets: Sequence[PatchSet]) -> PatchSet:
        """One set of the patches of ``sets``, in order."""
        return cls(**{f.name: np.concatenate([getattr(s, f.name) for s in sets]) for f in dataclasses.fields(cls)})


def _tangent_grid(patch_px: int, pixel_arcmin: float) -> np.ndarray:
    """Unit vectors of the patch pixels about (lon, lat) = (0, 0), shape (patch_px**2, 3), rows first."""
    offsets = (np.arange(patch_px) - (patch_px - 1) / 2.0) * math.radians(pixel_arcmin / 60.0)
    north, east = np.meshgrid(offsets, -offsets, indexing="ij")
    vectors = np.stack([np.ones_like(north), east, north], axis=-1).reshape(-1, 3)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def rotations(lon_deg: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    """Rotations Rz(lon) Ry(-lat) taking (lon, lat) = (0, 0) to each centre with north up, shape (n, 3, 3)."""
    lon, lat = np.radians(np.asarray(lon_deg, float)), np.radians(np.asarray(lat_deg, float))
    cl, sl, cb, sb = np.cos(lon), np.sin(lon), np.cos(lat), np.sin(lat)
    zero = np.zeros_like(lon)
    return np.stack([
        np.stack([cl * cb, -sl, -cl * sb], axis=-1),
        np.stack([sl * cb, cl, -sl * sb], axis=-1),
        np.stack([sb, zero, cb], axis=-1),
    ], axis=-2)


def sample_patches(
    maps: np.ndarray, lon_deg: np.ndarray, lat_deg: np.ndarray, *, patch_px: int, pixel_arcmin: float, nest: bool = False,
) -> np.ndarray:
    """Gnomonic patches of HEALPix maps centred on the given positions (nearest pixel).

    Parameters
    ----------
    maps : ndarray
        Shape (bands, 12 nside^2).
    lon_deg, lat_deg : ndarray
        Centres in degrees, in the maps' frame, shape (n,).
    patch_px : int
        Patch side in pixels.
    pixel_arcmin : float
        Patch pixel size in arcmin.
    nest : bool
        The maps are NESTED (default RING).

    Returns
    -------
    ndarray
        Shape (n, bands, patch_px, patch_px), the maps' dtype.
    """
    maps = np.atleast_2d(maps)
    lon_deg, lat_deg = np.atleast_1d(lon_deg), np.atleast_1d(lat_deg)
    nside = hp.npix2nside(maps.shape[-1])
    vectors = np.einsum("pij,nj->pni", rotations(lon_deg, lat_deg), _tangent_grid(patch_px, pixel_arcmin))
    pixels = hp.vec2pix(nside, vectors[..., 0], vectors[..., 1], vectors[..., 2], nest=nest)
    values = maps[:, pixels]  # (bands, n, P*P)
    return np.ascontiguousarray(values.transpose(1, 0, 2)).reshape(len(lon_deg), len(maps), patch_px, patch_px)


def patch_wcs(lon_deg: float, lat_deg: float, *, patch_px: int, pixel_arcmin: float) -> WCS:
    """The Galactic gnomonic WCS of the patch centred at (lon_deg, lat_deg): the grid :func:`sample_patches` samples."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    wcs.wcs.crval = [float(lon_deg), float(lat_deg)]
    wcs.wcs.crpix = [(patch_px + 1) / 2.0] * 2
    wcs.wcs.cdelt = [-pixel_arcmin / 60.0, pixel_arcmin / 60.0]
    wcs.wcs.cunit = ["deg", "deg"]
    return wcs


def sky_to_patch_pixels(
    lon0_deg: np.ndarray, lat0_deg: np.ndarray, lon_deg: np.ndarray, lat_deg: np.ndarray, *, patch_px: int, pixel_arcmin: float,
) -> tuple[np.ndarray, np.ndarray]:
    """0-based (column, row) of sky positions in patches centred at (lon0, lat0); NaN behind the tangent point.

    All arrays broadcast together; degrees in, pixels out (the inverse of :func:`sample_patches`).
    """
    lon0, lat0, lon, lat = (np.atleast_1d(np.asarray(a, float)) for a in np.broadcast_arrays(lon0_deg, lat0_deg, lon_deg, lat_deg))
    local = np.einsum("nji,nj->ni", rotations(lon0, lat0), hp.ang2vec(lon, lat, lonlat=True).reshape(-1, 3))
    forward = np.where(local[..., 0] > 0, local[..., 0], np.nan)
    scale = math.radians(pixel_arcmin / 60.0)
    centre = (patch_px - 1) / 2.0
    return centre - local[..., 1] / forward / scale, centre + local[..., 2] / forward / scale


def cell_tiling(cells: Sequence[int], tiling_nside: int) -> tuple[np.ndarray, np.ndarray]:
    """Patch centres covering nside-2 NESTED ``cells``: the centres of their nside ``tiling_nside`` pixels."""
    if tiling_nside < BASE_NSIDE or tiling_nside & (tiling_nside - 1):
        raise ValueError(f"tiling_nside={tiling_nside}: expected a power of 2 >= {BASE_NSIDE}")
    children = (tiling_nside // BASE_NSIDE) ** 2
    index = np.concatenate([np.arange(c * children, (c + 1) * children) for c in cells]) if len(cells) else np.zeros(0, int)
    lon, lat = hp.pix2ang(tiling_nside, index, nest=True, lonlat=True)
    return lon, lat


def disk_targets(
    lon_deg: np.ndarray, lat_deg: np.ndarray, truth: ClusterTruth, config: ClustersConfig,
) -> np.ndarray:
    """Target masks (n, P, P) uint8: disks of ``disk_radius_arcmin`` at clusters with S/N >= ``target_min_snr``."""
    n, size = len(lon_deg), config.patch_px
    targets = np.zeros((n, size, size), dtype=np.uint8)
    labelled = truth.select(np.nan_to_num(truth.snr, nan=-np.inf) >= config.target_min_snr)
    if n == 0 or len(labelled) == 0:
        return targets
    reach_rad = math.radians((size * config.pixel_scale_arcmin / 60.0) * 0.75 + config.disk_radius_arcmin / 60.0)
    centres = hp.ang2vec(lon_deg, lat_deg, lonlat=True)
    clusters = hp.ang2vec(labelled.glon, labelled.glat, lonlat=True)
    rows, cols = np.mgrid[0:size, 0:size]
    radius_px = config.disk_radius_arcmin / config.pixel_scale_arcmin
    for start in range(0, n, 512):
        near = np.argwhere(centres[start:start + 512] @ clusters.T > math.cos(reach_rad))
        patch = near[:, 0] + start
        col, row = sky_to_patch_pixels(lon_deg[patch], lat_deg[patch], labelled.glon[near[:, 1]], labelled.glat[near[:, 1]],
                                       patch_px=size, pixel_arcmin=config.pixel_scale_arcmin)
        for p, x, y in zip(patch, col, row):
            targets[p][(cols - x) ** 2 + (rows - y) ** 2 <= radius_px**2] = 1
    return targets


def measure_truth_snr(
    sky: SkyMaps, config: ClustersConfig, *, cells: Sequence[int] | None = None, chunk: int = 256,
) -> ClusterTruth:
    """The truth with each cluster's injected S/N: its true Y5R500 over the MMF noise at its true size.

    ``snr = Y5R500 / sigma_theta500`` (:func:`nightshift.clusters.matched_filter.mmf_sigma`) on a
    patch centred on the cluster, the noise estimated from that patch with the cluster's own
    signal removed: the S/N an ideal detection would have, as the Planck papers bin completeness
    (true Y over the filter noise), not the S/N the MMF measures there, which carries the noise
    fluctuation at the cluster and would favour the baseline in its own bins. With ``cells``, only
    the clusters in those nside-2 cells are measured (the others get NaN).
    """
    truth = sky.truth
    snr = np.full(len(truth), np.nan)
    todo = np.flatnonzero(np.isin(truth.base_cell, list(cells)) if cells is not None else np.ones(len(truth), bool))
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        patches = sample_patches(sky.maps, truth.glon[part], truth.glat[part], patch_px=config.patch_px,
                                 pixel_arcmin=config.pixel_scale_arcmin)
        sigma = mmf_sigma(patches, sky.bands, pixel_arcmin=config.pixel_scale_arcmin,
                          theta500_arcmin=truth.theta500_arcmin[part], known_y5r500_arcmin2=truth.y5r500_arcmin2[part],
                          map_fwhm=map_fwhm_arcmin(sky.nside))
        snr[part] = truth.y5r500_arcmin2[part] / sigma
    return dataclasses.replace(truth, snr=snr)


def patch_set(sky: SkyMaps, lon_deg: np.ndarray, lat_deg: np.ndarray, config: ClustersConfig) -> PatchSet:
    """Patches of ``sky`` at the given centres with their targets (``sky.truth`` must carry S/N)."""
    lon_deg, lat_deg = np.asarray(lon_deg, float), np.asarray(lat_deg, float)
    pixels = sample_patches(sky.maps, lon_deg, lat_deg, patch_px=config.patch_px, pixel_arcmin=config.pixel_scale_arcmin)
    return PatchSet(
        pixels=pixels.astype(np.float32), targets=disk_targets(lon_deg, lat_deg, sky.truth, config),
        lon=lon_deg, lat=lat_deg, base_cell=hp.ang2pix(BASE_NSIDE, lon_deg, lat_deg, lonlat=True, nest=True),
    )


def _random_positions_in(cells: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniform positions on the sphere restricted to nside-2 NESTED ``cells`` (by rejection)."""
    lons, lats, have = [], [], 0
    while have < count:
        lon = rng.uniform(0.0, 360.0, 4 * count + 64)
        lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, len(lon))))
        inside = np.isin(hp.ang2pix(BASE_NSIDE, lon, lat, lonlat=True, nest=True), cells)
        lons.append(lon[inside])
        lats.append(lat[inside])
        have += int(inside.sum())
    return np.concatenate(lons)[:count], np.concatenate(lats)[:count]


def training_centres(
    truth: ClusterTruth, cells: Sequence[int], count: int, config: ClustersConfig, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Centres of ``count`` patches in ``cells``: a fraction near labelled clusters (random shifts), the rest anywhere."""
    cells = np.asarray(cells)
    labelled = truth.in_cells(cells).select(np.nan_to_num(truth.in_cells(cells).snr, nan=-np.inf) >= config.target_min_snr)
    n_cluster = int(round(count * config.train_cluster_fraction)) if len(labelled) else 0
    pick = rng.integers(0, max(len(labelled), 1), n_cluster)
    half_deg = config.patch_px * config.pixel_scale_arcmin / 60.0 / 2.0 * config.train_shift_fraction
    shift_lat = rng.uniform(-half_deg, half_deg, n_cluster)
    shift_lon = rng.uniform(-half_deg, half_deg, n_cluster)
    lat = np.clip(labelled.glat[pick] + shift_lat, -89.9, 89.9) if n_cluster else np.zeros(0)
    lon = np.mod(labelled.glon[pick] + shift_lon / np.cos(np.radians(lat)), 360.0) if n_cluster else np.zeros(0)
    # a shift must not carry a patch into another split's cell: such patches stay centred on their cluster
    outside = ~np.isin(hp.ang2pix(BASE_NSIDE, lon, lat, lonlat=True, nest=True), cells)
    lon[outside], lat[outside] = labelled.glon[pick][outside], labelled.glat[pick][outside]
    other_lon, other_lat = _random_positions_in(cells, count - n_cluster, rng)
    order = rng.permutation(count)
    return np.concatenate([lon, other_lon])[order], np.concatenate([lat, other_lat])[order]


def build_splits(sky: SkyMaps, config: ClustersConfig, *, splits: Sequence[str] = ("train", "validation", "test")) -> dict[str, PatchSet]:
    """The training, validation and test patch sets of a sky whose truth carries S/N.

    Training patches come from every cell outside the validation and test cells; validation
    patches are drawn the same way in the validation cells; the test set tiles the test cells
    completely (patch centres at the ``test_tiling_nside`` pixel centres).
    """
    rng = np.random.default_rng(config.seed + 1)
    train_cells = np.setdiff1d(np.arange(12 * BASE_NSIDE**2), config.held_out_cells)
    result = {}
    if "train" in splits:
        result["train"] = patch_set(sky, *training_centres(sky.truth, train_cells, config.train_patches, config, rng), config)
    if "validation" in splits:
        centres = training_centres(sky.truth, config.validation_cells, config.validation_patches, config, rng)
        result["validation"] = patch_set(sky, *centres, config)
    if "test" in splits:
        result["test"] = patch_set(sky, *cell_tiling(config.test_cells, config.test_tiling_nside), config)
    return result


def image_tiles(
    patches: PatchSet, config: ClustersConfig, *, field: str, store: ObjectStore | None = None, inline_limit_bytes: int | None = None,
) -> list[tile_pb2.ImageTile]:
    """The patches as ``ImageTile`` messages: bands with units, gnomonic WCS cards, centre and base cell.

    Pixels go by object-store reference when ``store`` is given and they exceed ``inline_limit_bytes``
    (default: the codec's limit; 0 sends every tile by reference).
    """
    bands = [tile_pb2.Band(name=b.name, wavelength_um=b.wavelength_um, unit=b.unit) for b in config.bands]
    limit = {} if inline_limit_bytes is None else {"inline_limit_bytes": inline_limit_bytes}
    tiles = []
    for pixels, lon, lat, cell in zip(patches.pixels, patches.lon, patches.lat, patches.base_cell):
        header = patch_wcs(lon, lat, patch_px=config.patch_px, pixel_arcmin=config.pixel_scale_arcmin).to_header()
        tiles.append(make_tile(
            pixels, bands=bands, survey=SURVEY, field=field,
            tile_id=stable_tile_id(SURVEY, field, f"{lon:.6f}", f"{lat:.6f}"),
            wcs_cards=[card.image for card in header.cards],
            pixel_scale_arcsec=config.pixel_scale_arcmin * 60.0,
            center=tile_pb2.SkyPosition(lon_deg=float(lon), lat_deg=float(lat), frame=tile_pb2.SKY_FRAME_GALACTIC),
            healpix=tile_pb2.HealpixCell(nside=BASE_NSIDE, ordering=tile_pb2.HEALPIX_ORDERING_NESTED, pixel_index=int(cell)),
            store=store, **limit,
        ))
    return tiles
