"""Image tiles: building them, the spec a service accepts, and decoding them with validation."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nightshift.core.codec import DEFAULT_INLINE_LIMIT_BYTES, decode_arrays, dtype_from_proto, dtype_to_proto, encode_array
from nightshift.core.errors import InvalidInput
from nightshift.core.shm import SharedMemoryRegion
from nightshift.core.store import ObjectStore
from nightshift.v1 import task_service_pb2, tile_pb2

__all__ = ["TileSpec", "Tile", "make_tile", "stable_tile_id", "decode_tile", "decode_tiles", "window_origins", "window_origin_count"]


def stable_tile_id(*parts: object) -> str:
    """A deterministic tile id: the first 24 hex digits of the SHA-256 of ``parts``.

    The same source checksum and window always give the same id, so re-ingesting a night gives
    the same tiles and the same object keys.
    """
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def window_origins(length_px: int, size_px: int, overlap_fraction: float) -> list[int]:
    """First pixels of the windows along one axis: a regular step, the last window flush with the edge.

    The one window rule of the project: the ingest cuts its tiles by it and the services that window
    whole fields themselves (or check what the ingest cut) use it too. The step is
    ``size_px * (1 - overlap_fraction)`` rounded down (at least 1 pixel); no window when it does not fit.

    >>> window_origins(10, 4, 0.5)
    [0, 2, 4, 6]
    >>> window_origins(10, 4, 0.0)
    [0, 4, 6]
    >>> window_origins(3, 4, 0.5)
    []
    """
    if size_px > length_px:
        return []
    step = max(1, int(size_px * (1.0 - overlap_fraction)))
    origins = list(range(0, length_px - size_px + 1, step))
    if origins[-1] + size_px < length_px:
        origins.append(length_px - size_px)
    return origins


def window_origin_count(length_px: int, size_px: int, overlap_fraction: float) -> int:
    """``len(window_origins(length_px, size_px, overlap_fraction))`` without building the list (sizing huge images).

    >>> window_origin_count(10, 4, 0.0), window_origin_count(100_000_000, 4, 0.5)
    (3, 49999999)
    """
    if size_px > length_px:
        return 0
    origins = range(0, length_px - size_px + 1, max(1, int(size_px * (1.0 - overlap_fraction))))
    return len(origins) + (origins[-1] + size_px < length_px)


@dataclasses.dataclass(frozen=True)
class TileSpec:
    """The tiles a service accepts.

    Parameters
    ----------
    bands : tuple of str
        Band names in the order expected along the pixel array's first axis.
    height, width : int
        Tile size in pixels; 0 accepts any size.
    dtype : numpy dtype
        Pixel dtype.
    max_batch_tiles : int
        Largest number of tiles in one call (more is RESOURCE_EXHAUSTED).
    preferred_batch_tiles : int
        Batch size the model runs best at.
    """

    bands: tuple[str, ...]
    height: int = 0
    width: int = 0
    dtype: np.dtype = np.dtype("float32")
    max_batch_tiles: int = 512
    preferred_batch_tiles: int = 32

    def to_proto(self) -> task_service_pb2.InputSpec:
        return task_service_pb2.InputSpec(
            bands=self.bands, height=self.height, width=self.width, dtype=dtype_to_proto(self.dtype),
            max_batch_tiles=self.max_batch_tiles, preferred_batch_tiles=self.preferred_batch_tiles,
        )

    def check(self, tile: tile_pb2.ImageTile) -> None:
        """Check a tile's bands, dtype and shape against the spec, before any pixel is read.

        Raises
        ------
        InvalidInput
            With a message naming the tile, what was received and what was expected.
        """
        name = f"tile {tile.tile_id!r}"
        bands = tuple(b.name for b in tile.bands)
        if bands != self.bands:
            raise InvalidInput(f"{name}: bands {bands}, expected {self.bands}")
        if tile.pixels.dtype != dtype_to_proto(self.dtype):
            got = tile_pb2.DataType.Name(tile.pixels.dtype) if tile.pixels.dtype in tile_pb2.DataType.values() else tile.pixels.dtype
            raise InvalidInput(f"{name}: pixel dtype {got}, expected {tile_pb2.DataType.Name(dtype_to_proto(self.dtype))}")
        shape = tuple(int(n) for n in tile.pixels.shape)
        expected = (len(self.bands), self.height or "any", self.width or "any")
        if len(shape) != 3 or shape[0] != len(self.bands) or any(
            want and got != want for got, want in zip(shape[1:], (self.height, self.width))
        ):
            raise InvalidInput(f"{name}: pixel shape {shape}, expected (bands, height, width) = {expected}")


@dataclasses.dataclass(frozen=True)
class Tile:
    """A decoded tile: the contract message (for its metadata) and its pixels.

    ``pixels`` has shape (bands, height, width) in the message's dtype; missing pixels are NaN.
    """

    message: tile_pb2.ImageTile
    pixels: np.ndarray

    @property
    def tile_id(self) -> str:
        return self.message.tile_id

    @property
    def wcs_header(self) -> str:
        """The tile's WCS as one FITS header string (``astropy.io.fits.Header.fromstring``)."""
        return "".join(self.message.wcs_cards)


def make_tile(
    pixels: npt.ArrayLike,
    *,
    bands: Sequence[tile_pb2.Band | str],
    survey: str,
    field: str,
    tile_id: str | None = None,
    wcs_cards: Iterable[str] = (),
    pixel_scale_arcsec: float = 0.0,
    center: tile_pb2.SkyPosition | None = None,
    healpix: tile_pb2.HealpixCell | None = None,
    provenance: tile_pb2.Provenance | None = None,
    labels: dict[str, str] | None = None,
    store: ObjectStore | None = None,
    inline_limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES,
    shared_memory: SharedMemoryRegion | None = None,
) -> tile_pb2.ImageTile:
    """Build an ``ImageTile`` from a (bands, height, width) array.

    Pixels go inline up to ``inline_limit_bytes`` and by object-store reference above it when a
    ``store`` is given; into the ``shared_memory`` region, when given, for a co-located service. Without ``tile_id`` the id is derived from the survey, field and pixel bytes.
    """
    array = np.asarray(pixels)
    if array.ndim != 3:
        raise InvalidInput(f"tile pixels must have shape (bands, height, width), got {array.shape}")
    band_messages = [tile_pb2.Band(name=b) if isinstance(b, str) else b for b in bands]
    if len(band_messages) != array.shape[0]:
        raise InvalidInput(f"{len(band_messages)} bands named for a pixel array of {array.shape[0]} bands")
    if tile_id is None:
        tile_id = stable_tile_id(survey, field, hashlib.sha256(np.ascontiguousarray(array)).hexdigest())
    missing = tile_pb2.MISSING_PIXELS_NAN if array.dtype.kind == "f" else tile_pb2.MISSING_PIXELS_NONE
    tile = tile_pb2.ImageTile(
        tile_id=tile_id, survey=survey, field=field, bands=band_messages,
        wcs_cards=list(wcs_cards), pixel_scale_arcsec=pixel_scale_arcsec, missing_pixels=missing,
        labels=labels or {},
    )
    encode_array(array, store=store, inline_limit_bytes=inline_limit_bytes, into=tile.pixels, shared_memory=shared_memory)  # no copy of a built NDArray
    for name, value in (("center", center), ("healpix", healpix), ("provenance", provenance)):
        if value is not None:
            getattr(tile, name).CopyFrom(value)
    return tile


def decode_tile(message: tile_pb2.ImageTile, *, spec: TileSpec | None = None, store: ObjectStore | None = None) -> Tile:
    """Validate a tile (against ``spec`` when given) and decode its pixels.

    Raises
    ------
    InvalidInput
        Missing tile id, bands/dtype/shape not as the spec says, or a malformed pixel array.
    ObjectNotFound
        The pixels are carried by reference to an object that does not exist.
    """
    return decode_tiles([message], spec=spec, store=store)[0]


def decode_tiles(
    messages: Sequence[tile_pb2.ImageTile],
    *,
    spec: TileSpec | None = None,
    store: ObjectStore | None = None,
    map_runs: Callable[..., Iterable[Any]] = map,
    shared_memory_dir: Path | None = None,
) -> list[Tile]:
    """:func:`decode_tile` for a batch: every tile validated first, then the pixels of tiles packed side by side
    in one shard read with one ranged GET per run (:func:`~nightshift.core.codec.decode_arrays`; ``map_runs``
    reads the runs, e.g. an executor's ``map``), each tile's SHA-256 checked on its own; pixels in shared memory
    read from ``shared_memory_dir`` (None: refused, FAILED_PRECONDITION).

    Raises
    ------
    InvalidInput, ObjectNotFound
        As :func:`decode_tile`, naming the first tile that fails.
    """
    names = []
    for message in messages:
        if not message.tile_id:
            raise InvalidInput("tile without a tile_id")
        if spec is not None:
            spec.check(message)
        names.append(f"tile {message.tile_id!r} pixels")
    pixels = decode_arrays([m.pixels for m in messages], store=store, whats=names, map_runs=map_runs,
                           shared_memory_dir=shared_memory_dir)
    for message, array, name in zip(messages, pixels, names):
        if array.ndim != 3 or array.shape[0] != len(message.bands):
            raise InvalidInput(f"{name}: shape {array.shape} does not match (bands={len(message.bands)}, height, width)")
        if message.missing_pixels == tile_pb2.MISSING_PIXELS_NAN and dtype_from_proto(message.pixels.dtype).kind != "f":
            raise InvalidInput(f"{name}: NaN marks missing pixels but dtype {array.dtype} has no NaN")
    return [Tile(message=m, pixels=p) for m, p in zip(messages, pixels)]
