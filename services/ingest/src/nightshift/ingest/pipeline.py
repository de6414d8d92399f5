"""The ingest's one I/O layer: fetch the sources, tile them, write shards, then the index.

Everything the science modules need is read and checked before anything is written, so a bad
input fails with nothing stored. Shards are written as tiles complete and the index last, so an
index never references a missing shard; a failure between the two leaves only unreferenced,
content-addressed shards that a retry reuses.

Tile ids come from :func:`nightshift.core.tiles.stable_tile_id` over the scheme version, the
survey and field, every band's name, source SHA-256 and HDU or column, the tiling parameters and
the window (or patch) position: the same input and parameters always give the same ids, in
whichever run, while the index (and the tiles' provenance) belongs to the run.

Missing-pixel policy: NaN marks a missing pixel in every band; a tile is kept when at least one of
its pixels is finite in every band.

Limits (:class:`~nightshift.ingest.config.IngestLimits`): the tiling is checked against them before
anything is fetched, the files' declared sizes before any pixel is read, the number of windows or
patches before they are laid; a request beyond one is INVALID_ARGUMENT naming the limit, one whose
pixels would not fit the memory budget RESOURCE_EXHAUSTED. The work checks its call's cancellation
and deadline at every window and patch batch, so an abandoned ingest stops and writes no index.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from nightshift.core.errors import InvalidInput, NotFound, ResourceExhausted
from nightshift.core.model import check_cancelled
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import stable_tile_id
from nightshift.core.version import code_version
from nightshift.ingest.config import BASE_CELL_NSIDE, FitsIngest, HealpixIngest, IngestLimits, Source, source_uri
from nightshift.ingest.fits_tiling import align_bands, cut_windows, declared_image_px, plan_windows, read_fits_image, window_count
from nightshift.ingest.healpix_patches import HealpixMaps, patch_grid, patch_wcs, read_healpix_fields, resolve_frame, sample_patches
from nightshift.ingest.shards import DEFAULT_SHARD_BYTES, ShardWriter
from nightshift.ingest.sky import centers_of, wcs_cards
from nightshift.ingest.tile_index import index_key, write_index
from nightshift.v1 import ingest_service_pb2, tile_pb2

__all__ = ["ProgressCallback", "TILING_SCHEME", "ingest_fits", "ingest_healpix"]

ProgressCallback = Callable[[ingest_service_pb2.IngestProgress], None]
TILING_SCHEME = "nightshift-ingest/1"
"""Part of every tile id: changes only when the same parameters would cut different tiles."""

_PATCH_BATCH_PX = 256 * 64 * 64  # patch pixels sampled per vectorised call: about 100 MB of intermediates at 6 bands
# Peak bytes per declared FITS pixel: the raw pixels, their float32 copy and the aligned cube, rounded up.
_FITS_BYTES_PER_PX = 16


@dataclasses.dataclass(frozen=True)
class _Fetched:
    """A source available as a local file."""

    path: Path
    uri: str
    sha256: str


def _file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _fetch(store: ObjectStore, sources: Iterable[Source], directory: Path) -> dict[str, _Fetched]:
    """Each distinct source as a local file (store objects downloaded into ``directory``), by URI.

    Raises
    ------
    NotFound
        A local file or stored object does not exist.
    InvalidInput
        A stored object is in another bucket, or its SHA-256 differs from the one the request gives.
    """
    fetched: dict[str, _Fetched] = {}
    for source in sources:
        uri = source_uri(source)
        if uri in fetched:
            continue
        if isinstance(source, Path):
            if not source.is_file():
                raise NotFound(f"no such file: {source}")
            path = source
        else:
            if source.bucket and source.bucket != store.bucket:
                raise InvalidInput(f"{uri}: sources must be in the service's bucket {store.bucket!r}")
            path = store.get_file(source.key, directory / f"{len(fetched)}.fits")
        digest = _file_sha256(path)
        if isinstance(source, tile_pb2.ObjectRef) and source.sha256 and source.sha256 != digest:
            raise InvalidInput(f"{uri}: SHA-256 {digest} does not match the request's {source.sha256}")
        fetched[uri] = _Fetched(path=path, uri=uri, sha256=digest)
    return fetched


def _check_budget(limits: IngestLimits, needed_bytes: int, what: str) -> None:
    """Raise :class:`ResourceExhausted` if a request's decoded pixels would take more than its memory budget."""
    if limits.memory_bytes and needed_bytes > limits.memory_bytes:
        raise ResourceExhausted(f"{what} would take about {needed_bytes / 2**20:.0f} MiB in memory, more than the "
                                f"{limits.memory_bytes / 2**20:.0f} MiB one ingest may use (memory_bytes): split the request")


def _has_usable_pixel(pixels: np.ndarray) -> bool:
    """Whether some pixel of a (bands, height, width) tile is finite in every band."""
    return bool(np.isfinite(pixels).all(axis=0).any())


def _progress(callback: ProgressCallback, done: int, total: int, message: str) -> None:
    callback(ingest_service_pb2.IngestProgress(tiles_done=done, tiles_total=total, message=message))


def _ignore_progress(progress: ingest_service_pb2.IngestProgress) -> None:
    """Default progress callback: progress is optional."""


def _store_tiles(
    store: ObjectStore,
    tiles: Iterable[tuple[tile_pb2.ImageTile, np.ndarray]],
    *,
    run_id: str,
    survey: str,
    field: str,
    input_id: str,
    planned: int,
    progress: ProgressCallback,
    shard_bytes: int,
) -> ingest_service_pb2.IngestSummary:
    """Write the tiles' pixels into shards, then their index; report progress at every shard."""
    stored: list[tile_pb2.ImageTile] = []
    with ShardWriter(store, target_bytes=shard_bytes) as writer:
        for tile, pixels in tiles:
            if completed := writer.add(tile, pixels):
                stored.extend(completed)
                _progress(progress, len(stored), planned, f"{len(stored)} tiles in {len(writer.shard_keys)} shards")
        stored.extend(writer.flush())  # the index is written only once every shard has landed
    key = index_key(store, run_id=run_id, survey=survey, field=field, input_id=input_id)
    index_bytes = write_index(store, key, stored)
    _progress(progress, len(stored), planned, f"{len(stored)} tiles in {len(writer.shard_keys)} shards, index written")
    return ingest_service_pb2.IngestSummary(
        run_id=run_id, tile_count=len(stored), bytes_written=writer.bytes_written + index_bytes,
        shard_keys=writer.shard_keys, index_key=key,
    )


def _provenance(fetched: _Fetched, run_id: str) -> tile_pb2.Provenance:
    return tile_pb2.Provenance(
        source_uri=fetched.uri, source_sha256=fetched.sha256, ingest_run_id=run_id, software_version=code_version()
    )


def ingest_fits(
    store: ObjectStore,
    request: FitsIngest,
    *,
    limits: IngestLimits = IngestLimits(),
    progress: ProgressCallback = _ignore_progress,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> ingest_service_pb2.IngestSummary:
    """Tile a FITS field into the store.

    Every band is resampled onto the reference band's grid, cut into the tiling's windows (each
    size in turn), and stored; windows without a usable pixel are skipped. A band's unit, when
    the request leaves it empty, is the file's ``BUNIT``. Each band carries its own file as its
    provenance, the tile the reference band's; tiles carry the labels ``window_px``, ``x_px`` and ``y_px`` (the window's first pixel
    in the reference grid).

    Raises
    ------
    InvalidInput
        Unreadable or truncated FITS, a header declaring more pixels than the limit or than the
        file holds, no celestial WCS, bands that do not overlap, a window larger than the image, a
        tiling beyond the limits (the message names the file or the limit and the problem).
    ResourceExhausted
        The bands' pixels would take more memory than ``limits.memory_bytes``.
    NotFound
        A source does not exist.
    Cancelled, DeadlineExceeded
        The call was abandoned; no index is written.
    """
    limits.check_flat(request.tiling)
    reference = [b.band.name for b in request.bands].index(request.reference)
    with tempfile.TemporaryDirectory(prefix="nightshift-ingest-") as directory:
        files = _fetch(store, (b.source for b in request.bands), Path(directory))
        sources = [files[source_uri(b.source)] for b in request.bands]
        whats = [f"band {b.band.name!r} ({f.uri})" for b, f in zip(request.bands, sources)]
        declared = sum(declared_image_px(f.path, what=what, max_image_px=limits.max_image_px) for f, what in zip(sources, whats))
        _check_budget(limits, declared * _FITS_BYTES_PER_PX, f"the {len(sources)} bands' {declared} declared pixels")
        images = [read_fits_image(f.path, hdu=b.hdu, what=what, max_image_px=limits.max_image_px)
                  for b, f, what in zip(request.bands, sources, whats)]
    cube, wcs = align_bands(images, reference)
    tiling = request.tiling
    limits.check_tiles(window_count(cube.shape[1:], tiling), "windows")
    windows = plan_windows(cube.shape[1:], tiling, what=images[reference].what)
    _progress(progress, 0, len(windows), f"{len(windows)} windows planned over {cube.shape[2]} x {cube.shape[1]} px")
    bands = [
        tile_pb2.Band(name=b.band.name, wavelength_um=b.band.wavelength_um, unit=b.band.unit or image.unit,
                      provenance=_provenance(f, request.run_id))
        for b, image, f in zip(request.bands, images, sources)
    ]
    input_id = stable_tile_id(
        TILING_SCHEME, "fits", request.survey, request.field,
        *((b.band.name, f.sha256, b.hdu) for b, f in zip(request.bands, sources)),
        request.reference, tiling.window_px, tiling.overlap_fraction, tiling.output_px,
    )
    centers = centers_of(wcs, *np.array([w.center_px for w in windows]).T)
    provenance = _provenance(sources[reference], request.run_id)

    def tiles() -> Iterable[tuple[tile_pb2.ImageTile, np.ndarray]]:
        for flat, center in zip(cut_windows(cube, wcs, windows, output_px=tiling.output_px), centers):
            check_cancelled()
            if not _has_usable_pixel(flat.pixels):
                continue
            window = flat.window
            tile = tile_pb2.ImageTile(
                tile_id=stable_tile_id(input_id, window.size_px, window.x0, window.y0),
                survey=request.survey, field=request.field, bands=bands, wcs_cards=flat.wcs_cards,
                pixel_scale_arcsec=flat.pixel_scale_arcsec, center=center, provenance=provenance,
                missing_pixels=tile_pb2.MISSING_PIXELS_NAN,
                labels={"window_px": str(window.size_px), "x_px": str(window.x0), "y_px": str(window.y0)},
            )
            yield tile, flat.pixels

    return _store_tiles(store, tiles(), run_id=request.run_id, survey=request.survey, field=request.field,
                        input_id=input_id, planned=len(windows), progress=progress, shard_bytes=shard_bytes)


def _read_maps(fetched: dict[str, _Fetched], request: HealpixIngest, max_nside: int) -> tuple[HealpixMaps, str]:
    """All bands as one (bands, npix) stack, each file read once; also the name of the first file."""
    by_file: dict[str, list[int]] = {}
    for band in request.bands:
        by_file.setdefault(source_uri(band.source), []).append(band.field_index)
    maps = {uri: read_healpix_fields(fetched[uri].path, fields, what=uri, max_nside=max_nside) for uri, fields in by_file.items()}
    first_uri, first = next(iter(maps.items()))
    for uri, other in maps.items():
        if (other.nside, other.nested, other.coordsys) != (first.nside, first.nested, first.coordsys):
            raise InvalidInput(
                f"{uri} (nside {other.nside}, {'NESTED' if other.nested else 'RING'}, COORDSYS {other.coordsys!r}) "
                f"does not match {first_uri} (nside {first.nside}, {'NESTED' if first.nested else 'RING'}, "
                f"COORDSYS {first.coordsys!r}): every band must share nside, ordering and frame"
            )
    if len(maps) == 1:  # one file read in band order: no copy of what may be gigabytes
        return first, first_uri
    rows = []
    for band in request.bands:
        uri = source_uri(band.source)
        rows.append(maps[uri].values[by_file[uri].index(band.field_index)])
    return dataclasses.replace(first, values=np.stack(rows)), first_uri


def ingest_healpix(
    store: ObjectStore,
    request: HealpixIngest,
    *,
    limits: IngestLimits = IngestLimits(),
    progress: ProgressCallback = _ignore_progress,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    patch_batch: int = 0,
) -> ingest_service_pb2.IngestSummary:
    """Cut a HEALPix map into gnomonic patches in the store.

    Patches without a usable pixel are skipped. Each tile carries its nside=2 NESTED base cell,
    the label ``split`` (train / validation / test by base cell), its gnomonic WCS and the first
    band's file as provenance.

    Patches are sampled ``patch_batch`` at a time (0: as many as make about a million pixels).

    Raises
    ------
    InvalidInput
        An unreadable map, a length that is not a HEALPix size, an all-NaN band, bands of different
        nside or ordering, no frame known, a header declaring more than the file holds, a tiling or
        nside beyond the limits (the message names the file or the limit and the problem).
    ResourceExhausted
        The maps would take more memory than ``limits.memory_bytes``.
    NotFound
        A source does not exist.
    Cancelled, DeadlineExceeded
        The call was abandoned; no index is written.
    """
    tiling = request.tiling
    limits.check_healpix(tiling)
    with tempfile.TemporaryDirectory(prefix="nightshift-ingest-") as directory:
        files = _fetch(store, (b.source for b in request.bands), Path(directory))
        # read as float32, then stacked: about twice the files' size (maps are stored as float32 or wider)
        _check_budget(limits, 2 * sum(f.path.stat().st_size for f in files.values()), f"the maps of {len(files)} files")
        maps, first_uri = _read_maps(files, request, limits.max_nside)
    frame = resolve_frame(tiling.frame, maps.coordsys, what=first_uri)
    grid = patch_grid(tiling)
    limits.check_tiles(len(grid), "patches")
    patch_batch = patch_batch or max(1, _PATCH_BATCH_PX // tiling.patch_px**2)
    _progress(progress, 0, len(grid), f"{len(grid)} patches planned over nside {maps.nside}")
    bands = [
        tile_pb2.Band(name=b.band.name, wavelength_um=b.band.wavelength_um, unit=b.band.unit,
                      provenance=_provenance(files[source_uri(b.source)], request.run_id))
        for b in request.bands
    ]
    input_id = stable_tile_id(
        TILING_SCHEME, "healpix", request.survey, request.field,
        *((b.band.name, files[source_uri(b.source)].sha256, b.field_index) for b in request.bands),
        maps.nside, maps.ordering, tiling.patch_px, tiling.pixel_scale_arcmin, tiling.overlap_fraction,
        tiling.validation_cells, tiling.test_cells, frame,
    )
    provenance = _provenance(files[first_uri], request.run_id)

    def tiles() -> Iterable[tuple[tile_pb2.ImageTile, np.ndarray]]:
        for start in range(0, len(grid), patch_batch):
            check_cancelled()
            batch = slice(start, start + patch_batch)
            patches = sample_patches(maps, grid.lon_deg[batch], grid.lat_deg[batch], tiling)
            for number, pixels in enumerate(patches, start):
                if not _has_usable_pixel(pixels):
                    continue
                lon, lat, cell = float(grid.lon_deg[number]), float(grid.lat_deg[number]), int(grid.base_cell[number])
                tile = tile_pb2.ImageTile(
                    tile_id=stable_tile_id(input_id, number), survey=request.survey, field=request.field, bands=bands,
                    wcs_cards=wcs_cards(patch_wcs(lon, lat, tiling, frame)),
                    pixel_scale_arcsec=tiling.pixel_scale_arcmin * 60.0,
                    center=tile_pb2.SkyPosition(lon_deg=lon, lat_deg=lat, frame=frame),
                    healpix=tile_pb2.HealpixCell(nside=BASE_CELL_NSIDE, ordering=tile_pb2.HEALPIX_ORDERING_NESTED, pixel_index=cell),
                    provenance=provenance, missing_pixels=tile_pb2.MISSING_PIXELS_NAN,
                    labels={"split": tiling.split_of(cell)},
                )
                yield tile, pixels

    return _store_tiles(store, tiles(), run_id=request.run_id, survey=request.survey, field=request.field,
                        input_id=input_id, planned=len(grid), progress=progress, shard_bytes=shard_bytes)
