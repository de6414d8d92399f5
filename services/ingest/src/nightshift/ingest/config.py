"""What to ingest and how to tile it: typed, validated requests built from the contract or the CLI.

Every value is checked here, once, so the science modules can trust their inputs; a bad value
raises :class:`~nightshift.core.errors.InvalidInput` naming the parameter, the value and what was
expected. A source is either an object in the store (an ``ObjectRef``) or, for the command line, a
local file (a ``Path``). :class:`IngestLimits` bounds what one request may ask for (image, window and
patch sizes, pixel scale, tile counts, memory), so no request can exhaust the service.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

from nightshift.core.errors import InvalidInput
from nightshift.v1 import ingest_service_pb2, tile_pb2

__all__ = [
    "Source",
    "FlatTiling",
    "HealpixTiling",
    "FitsBandSource",
    "HealpixBandSource",
    "FitsIngest",
    "HealpixIngest",
    "IngestLimits",
    "BASE_CELL_NSIDE",
    "BASE_CELL_COUNT",
    "source_uri",
    "check_name",
]

Source = tile_pb2.ObjectRef | Path
"""Where a survey file is: an object in the store, or a local path (command line only)."""

BASE_CELL_NSIDE = 2
BASE_CELL_COUNT = 12 * BASE_CELL_NSIDE**2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # survey, field and run names become object-key segments


def source_uri(source: Source) -> str:
    """``s3://bucket/key`` of a store object, ``file://`` URI of a local path."""
    if isinstance(source, Path):
        return source.resolve().as_uri()
    return f"s3://{source.bucket}/{source.key}"


def check_name(parameter: str, value: str) -> str:
    """``value``, if it is a name that can be an object-key segment.

    Raises
    ------
    InvalidInput
        Naming ``parameter`` and what a name may hold.
    """
    if not _NAME.match(value):
        raise InvalidInput(
            f"{parameter}={value!r}: expected a non-empty name of letters, digits, '.', '_' or '-' (it becomes part of object keys)"
        )
    return value


def _check_overlap(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise InvalidInput(f"overlap_fraction={value}: expected a fraction in [0, 1)")
    return value


@dataclasses.dataclass(frozen=True)
class FlatTiling:
    """How a flat image is cut into square windows.

    Parameters
    ----------
    window_px : tuple of int
        Window sizes in pixels; several sizes tile the same field at several scales.
    overlap_fraction : float
        Overlap of neighbouring windows as a fraction of the window size, in [0, 1).
    output_px : int
        Size in pixels every window is resampled to (area-weighted); 0 keeps the window size.
    """

    window_px: tuple[int, ...] = (256,)
    overlap_fraction: float = 0.25
    output_px: int = 0

    def __post_init__(self) -> None:
        if not self.window_px or any(w < 1 for w in self.window_px):
            raise InvalidInput(f"window_px={list(self.window_px)}: expected one or more sizes of at least 1 pixel")
        if self.output_px < 0:
            raise InvalidInput(f"output_px={self.output_px}: expected 0 (keep the window size) or a size in pixels")
        _check_overlap(self.overlap_fraction)

    @classmethod
    def from_proto(cls, message: ingest_service_pb2.FlatTiling) -> FlatTiling:
        """The tiling a request asks for; unset window sizes take the default."""
        return cls(
            window_px=tuple(int(w) for w in message.window_px) or cls.window_px,
            overlap_fraction=message.overlap_fraction,
            output_px=message.output_px,
        )


@dataclasses.dataclass(frozen=True)
class HealpixTiling:
    """How the sphere is cut into gnomonic patches, and which base cells go to which split.

    The defaults are the cluster seed's: 64 x 64 patches of 1.7 arcmin pixels, nside=2 base cells
    10, 26, 39 and 42 for validation and 7 for test (NESTED indices).

    Parameters
    ----------
    patch_px : int
        Patch size in pixels (square).
    pixel_scale_arcmin : float
        Patch pixel scale in arcminutes.
    overlap_fraction : float
        Least overlap of neighbouring patches as a fraction of the patch size, in [0, 1).
    validation_cells, test_cells : tuple of int
        nside=2 NESTED base cells whose patches are labelled "validation" / "test"; all others "train".
    frame : SkyFrame
        Frame of the map and of the patches' WCS; unspecified takes the map's ``COORDSYS``.
    """

    patch_px: int = 64
    pixel_scale_arcmin: float = 1.7
    overlap_fraction: float = 0.0
    validation_cells: tuple[int, ...] = (10, 26, 39, 42)
    test_cells: tuple[int, ...] = (7,)
    frame: int = tile_pb2.SKY_FRAME_UNSPECIFIED

    def __post_init__(self) -> None:
        if self.patch_px < 2:
            raise InvalidInput(f"patch_px={self.patch_px}: expected at least 2 pixels")
        if not 0.0 < self.pixel_scale_arcmin <= 60.0:
            raise InvalidInput(f"pixel_scale_arcmin={self.pixel_scale_arcmin}: expected a scale in (0, 60] arcmin")
        if self.patch_px * self.pixel_scale_arcmin / 60.0 >= 90.0:
            raise InvalidInput(
                f"patch of {self.patch_px} px at {self.pixel_scale_arcmin} arcmin spans 90 deg or more: a gnomonic patch must be smaller"
            )
        _check_overlap(self.overlap_fraction)
        for parameter, cells in (("validation_cells", self.validation_cells), ("test_cells", self.test_cells)):
            bad = [c for c in cells if not 0 <= c < BASE_CELL_COUNT]
            if bad:
                raise InvalidInput(f"{parameter}={list(cells)}: cells {bad} are not nside=2 base cells (0..{BASE_CELL_COUNT - 1})")
        if shared := sorted(set(self.validation_cells) & set(self.test_cells)):
            raise InvalidInput(f"base cells {shared} are both validation and test cells: the splits must be disjoint")
        if self.frame not in (tile_pb2.SKY_FRAME_UNSPECIFIED, tile_pb2.SKY_FRAME_GALACTIC, tile_pb2.SKY_FRAME_ICRS):
            raise InvalidInput(f"frame={self.frame}: expected SKY_FRAME_GALACTIC or SKY_FRAME_ICRS")

    @property
    def patch_size_deg(self) -> float:
        """Side of a patch in degrees (in the tangent plane)."""
        return self.patch_px * self.pixel_scale_arcmin / 60.0

    def split_of(self, base_cell: int) -> str:
        """The split ("train", "validation" or "test") of the patches of a base cell."""
        if base_cell in self.validation_cells:
            return "validation"
        if base_cell in self.test_cells:
            return "test"
        return "train"

    @classmethod
    def from_proto(cls, message: ingest_service_pb2.HealpixTiling) -> HealpixTiling:
        """The tiling a request asks for; an unset patch size or scale takes the default.

        Cell lists are taken as given: empty means no validation (or test) cells.
        """
        return cls(
            patch_px=message.patch_px or cls.patch_px,
            pixel_scale_arcmin=message.pixel_scale_arcmin or cls.pixel_scale_arcmin,
            overlap_fraction=message.overlap_fraction,
            validation_cells=tuple(int(c) for c in message.validation_cells),
            test_cells=tuple(int(c) for c in message.test_cells),
            frame=message.frame,
        )


@dataclasses.dataclass(frozen=True)
class IngestLimits:
    """The most one ingest request may ask for; beyond a limit it is INVALID_ARGUMENT naming the limit.

    Each bound keeps one request's memory and time finite whatever its parameters or its files'
    headers say; the defaults fit one ingest in a 4 GiB container. Every limit can be set by
    environment (:meth:`from_env`).

    Parameters
    ----------
    max_image_px : int
        Pixels of one band's image as its FITS header declares them (checked before any pixel is
        read): 2**26, an 8192 x 8192 image, 256 MiB as float32.
    max_window_px : int
        Largest window (``window_px``) and output size (``output_px``) of a flat tiling, in pixels.
    max_patch_px : int
        Largest HEALPix patch side (``patch_px``), in pixels.
    min_pixel_scale_arcmin : float
        Finest HEALPix patch pixel scale, in arcminutes.
    max_tiles : int
        Windows or patches one request may plan.
    max_nside : int
        Finest HEALPix map read (its declared ``NSIDE``).
    memory_bytes : int
        Memory one request's decoded pixels may take (about 16 bytes per declared FITS pixel, twice
        the size of its HEALPix files); more is RESOURCE_EXHAUSTED. 0: no budget (the command line;
        the service sets it to its share of the container's memory).
    """

    max_image_px: int = 2**26
    max_window_px: int = 2048
    max_patch_px: int = 1024
    min_pixel_scale_arcmin: float = 0.01
    max_tiles: int = 100_000
    max_nside: int = 8192
    memory_bytes: int = 0

    ENV_PREFIX = "NIGHTSHIFT_INGEST_"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value < 0 or (value == 0 and field.name != "memory_bytes"):
                raise ValueError(f"ingest limit {field.name}={value}: expected a positive number")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: float) -> IngestLimits:
        """Limits from ``NIGHTSHIFT_INGEST_{MAX_IMAGE_PX,MAX_WINDOW_PX,MAX_PATCH_PX,MIN_PIXEL_SCALE_ARCMIN,MAX_TILES,MAX_NSIDE,MEMORY_BYTES}``;
        unset ones keep their defaults, keyword overrides win."""
        values: dict[str, float] = {}
        for field in dataclasses.fields(cls):
            text = environ.get(cls.ENV_PREFIX + field.name.upper(), "")
            if text:
                values[field.name] = float(text) if field.type == "float" else int(text)
        return cls(**(values | overrides))  # type: ignore[arg-type]

    def check_flat(self, tiling: FlatTiling) -> None:
        """Raise :class:`InvalidInput` if ``tiling`` asks for windows or an output size beyond the limits."""
        for parameter, sizes in (("window_px", tiling.window_px), ("output_px", (tiling.output_px,))):
            if max(sizes) > self.max_window_px:
                raise InvalidInput(f"{parameter}={max(sizes)}: the service's limit is {self.max_window_px} px (max_window_px)")

    def check_healpix(self, tiling: HealpixTiling) -> None:
        """Raise :class:`InvalidInput` if ``tiling`` asks for patches beyond the limits, their count estimated before any is laid."""
        if tiling.patch_px > self.max_patch_px:
            raise InvalidInput(f"patch_px={tiling.patch_px}: the service's limit is {self.max_patch_px} px (max_patch_px)")
        if tiling.pixel_scale_arcmin < self.min_pixel_scale_arcmin:
            raise InvalidInput(f"pixel_scale_arcmin={tiling.pixel_scale_arcmin}: the service's limit is "
                               f"{self.min_pixel_scale_arcmin} arcmin at the finest (min_pixel_scale_arcmin)")
        # the sphere's area over the area a patch covers (as patch_grid spaces them): fewer than it lays
        side_rad = 2 * math.atan(math.tan(math.radians(tiling.patch_size_deg / 2)) * (1.0 - tiling.overlap_fraction))
        self.check_tiles(4 * math.pi / side_rad**2, "patches")

    def check_tiles(self, count: float, what: str) -> None:
        """Raise :class:`InvalidInput` if ``count`` windows or patches are more than one request may plan."""
        if count > self.max_tiles:
            raise InvalidInput(f"the tiling would lay about {count:.3g} {what}: the service's limit is {self.max_tiles} "
                               "per request (max_tiles); use larger windows or patches, or less overlap")


def _source_of(ref: tile_pb2.ObjectRef, band: str) -> tile_pb2.ObjectRef:
    if not ref.key:
        raise InvalidInput(f"band {band!r}: source has no object key")
    return ref


@dataclasses.dataclass(frozen=True)
class FitsBandSource:
    """One band of a FITS field: its description, its file and the HDU holding it ('' = first celestial image)."""

    band: tile_pb2.Band
    source: Source
    hdu: str = ""


@dataclasses.dataclass(frozen=True)
class HealpixBandSource:
    """One band of a HEALPix map: its description, its file and its 0-based column in the file."""

    band: tile_pb2.Band
    source: Source
    field_index: int = 0


def _check_bands(bands: tuple[FitsBandSource, ...] | tuple[HealpixBandSource, ...]) -> None:
    if not bands:
        raise InvalidInput("no bands given: expected at least one")
    names = [b.band.name for b in bands]
    for name in names:
        check_name("band name", name)
    if len(set(names)) != len(names):
        raise InvalidInput(f"band names {names} repeat: expected distinct names")


@dataclasses.dataclass(frozen=True)
class FitsIngest:
    """A FITS field to tile: one file per band, all resampled onto the reference band's grid."""

    survey: str
    field: str
    run_id: str
    bands: tuple[FitsBandSource, ...]
    tiling: FlatTiling = FlatTiling()
    reference_band: str = ""

    def __post_init__(self) -> None:
        check_name("survey", self.survey)
        check_name("field", self.field)
        check_name("run_id", self.run_id)
        _check_bands(self.bands)
        names = [b.band.name for b in self.bands]
        if self.reference_band and self.reference_band not in names:
            raise InvalidInput(f"reference_band={self.reference_band!r} is not one of the bands {names}")

    @property
    def reference(self) -> str:
        """Name of the band whose pixel grid the tiles use."""
        return self.reference_band or self.bands[0].band.name

    @classmethod
    def from_proto(cls, request: ingest_service_pb2.IngestFitsRequest) -> FitsIngest:
        bands = tuple(
            FitsBandSource(band=b.band, source=_source_of(b.source, b.band.name), hdu=b.hdu) for b in request.bands
        )
        return cls(
            survey=request.survey, field=request.field, run_id=request.run_id, bands=bands,
            tiling=FlatTiling.from_proto(request.tiling), reference_band=request.reference_band,
        )


@dataclasses.dataclass(frozen=True)
class HealpixIngest:
    """A HEALPix map to cut into patches: one (file, column) per band, all of one nside and ordering."""

    survey: str
    field: str
    run_id: str
    bands: tuple[HealpixBandSource, ...]
    tiling: HealpixTiling = HealpixTiling()

    def __post_init__(self) -> None:
        check_name("survey", self.survey)
        check_name("field", self.field)
        check_name("run_id", self.run_id)
        _check_bands(self.bands)

    @classmethod
    def from_proto(cls, request: ingest_service_pb2.IngestHealpixRequest) -> HealpixIngest:
        bands = tuple(
            HealpixBandSource(band=b.band, source=_source_of(b.source, b.band.name), field_index=b.field_index)
            for b in request.bands
        )
        return cls(
            survey=request.survey, field=request.field, run_id=request.run_id, bands=bands,
            tiling=HealpixTiling.from_proto(request.tiling),
        )
