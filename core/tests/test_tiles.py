"""Tile building, the spec check and decoding."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from nightshift.core.errors import InvalidInput
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import TileSpec, decode_tile, make_tile, stable_tile_id, window_origin_count, window_origins
from nightshift.v1 import task_service_pb2, tile_pb2

SPEC = TileSpec(bands=("irac4", "mips24"), height=16, width=16)


def two_band_tile(shape=(2, 16, 16), dtype=np.float32, bands=("irac4", "mips24"), **kwargs) -> tile_pb2.ImageTile:
    pixels = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    return make_tile(pixels, bands=list(bands), survey="glimpse", field="l030", **kwargs)


def test_stable_tile_id_is_deterministic_and_distinguishes_parts() -> None:
    assert stable_tile_id("glimpse", "l030", 0, 0) == stable_tile_id("glimpse", "l030", 0, 0)
    assert stable_tile_id("glimpse", "l030", 0, 0) != stable_tile_id("glimpse", "l030", 0, 1)
    assert stable_tile_id("a", "bc") != stable_tile_id("ab", "c")
    assert len(stable_tile_id("x")) == 24


def test_make_tile_derives_the_id_from_the_pixels_and_keeps_metadata() -> None:
    center = tile_pb2.SkyPosition(lon_deg=30.0, lat_deg=0.5, frame=tile_pb2.SKY_FRAME_GALACTIC)
    first = two_band_tile(center=center, pixel_scale_arcsec=1.2, wcs_cards=["CTYPE1  = 'GLON-CAR'".ljust(80)])
    assert first.tile_id == two_band_tile().tile_id
    assert first.tile_id != make_tile(np.zeros((2, 16, 16), np.float32), bands=["irac4", "mips24"], survey="glimpse", field="l030").tile_id
    assert first.center.lat_deg == 0.5 and first.pixel_scale_arcsec == 1.2
    assert first.missing_pixels == tile_pb2.MISSING_PIXELS_NAN
    assert two_band_tile(dtype=np.uint8).missing_pixels == tile_pb2.MISSING_PIXELS_NONE


def test_make_tile_rejects_wrong_dimensions_and_band_count() -> None:
    with pytest.raises(InvalidInput, match=r"shape \(bands, height, width\), got \(16, 16\)"):
        make_tile(np.zeros((16, 16)), bands=["a"], survey="s", field="f")
    with pytest.raises(InvalidInput, match="1 bands named for a pixel array of 2 bands"):
        make_tile(np.zeros((2, 4, 4)), bands=["a"], survey="s", field="f")


def test_decode_round_trips_inline_and_by_reference(store: ObjectStore) -> None:
    for message in (two_band_tile(), two_band_tile(store=store, inline_limit_bytes=16)):
        decoded = decode_tile(message, spec=SPEC, store=store)
        np.testing.assert_array_equal(decoded.pixels, np.arange(512, dtype=np.float32).reshape(2, 16, 16))
        assert decoded.tile_id == message.tile_id


def test_wcs_header_joins_the_cards() -> None:
    cards = ["CTYPE1  = 'GLON-CAR'".ljust(80), "CTYPE2  = 'GLAT-CAR'".ljust(80)]
    assert decode_tile(two_band_tile(wcs_cards=cards)).wcs_header == "".join(cards)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bands": ("irac4", "mips70")}, r"bands \('irac4', 'mips70'\), expected \('irac4', 'mips24'\)"),
        ({"dtype": np.float64}, "pixel dtype DATA_TYPE_FLOAT64, expected DATA_TYPE_FLOAT32"),
        ({"shape": (2, 16, 32)}, r"pixel shape \(2, 16, 32\), expected \(bands, height, width\) = \(2, 16, 16\)"),
    ],
)
def test_spec_check_names_what_was_expected(kwargs, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_tile(two_band_tile(**kwargs), spec=SPEC)


def test_spec_with_zero_size_accepts_any_size() -> None:
    assert decode_tile(two_band_tile(shape=(2, 5, 7)), spec=TileSpec(bands=("irac4", "mips24"))).pixels.shape == (2, 5, 7)


def test_nan_convention_needs_a_float_dtype() -> None:
    message = two_band_tile(dtype=np.int16)
    message.missing_pixels = tile_pb2.MISSING_PIXELS_NAN
    with pytest.raises(InvalidInput, match="NaN marks missing pixels but dtype int16 has no NaN"):
        decode_tile(message)


def test_spec_to_proto() -> None:
    proto = SPEC.to_proto()
    assert isinstance(proto, task_service_pb2.InputSpec)
    assert (list(proto.bands), proto.height, proto.width, proto.dtype) == (["irac4", "mips24"], 16, 16, tile_pb2.DATA_TYPE_FLOAT32)


@pytest.mark.parametrize(
    ("length", "size", "overlap", "expected"),
    [(10, 4, 0.5, [0, 2, 4, 6]), (10, 4, 0.0, [0, 4, 6]), (8, 4, 0.0, [0, 4]), (5, 5, 0.9, [0]), (7, 3, 0.99, [0, 1, 2, 3, 4]),
     (3, 4, 0.5, [])],
)
def test_window_origins_step_regularly_with_the_last_window_flush(length: int, size: int, overlap: float, expected: list[int]) -> None:
    assert window_origins(length, size, overlap) == expected
    assert window_origin_count(length, size, overlap) == len(expected)


def test_make_tile_derives_its_id_from_the_pixel_bytes_and_encodes_into_its_own_pixels() -> None:
    pixels = np.arange(2 * 3 * 4, dtype=">f4").reshape(2, 3, 4)[:, :, ::-1]  # big-endian, not contiguous
    tile = make_tile(pixels, bands=["g", "r"], survey="s", field="f")
    little = np.ascontiguousarray(pixels).astype("<f4")
    assert tile.tile_id == stable_tile_id("s", "f", hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest())
    assert tile.pixels.inline_data == little.tobytes() and list(tile.pixels.shape) == [2, 3, 4]
    np.testing.assert_array_equal(decode_tile(tile).pixels, pixels)
