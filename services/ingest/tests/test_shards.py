"""Shard packing against the real local S3 server: byte ranges the core codec reads back exactly."""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest

from nightshift.core.codec import decode_array
from nightshift.core.errors import ObjectNotFound
from nightshift.core.store import ObjectStore
from nightshift.ingest.shards import ShardWriter
from nightshift.v1 import tile_pb2


def arrays(count: int, *, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    pixels = [rng.normal(size=(2, 8, 8)).astype(np.float32) for _ in range(count)]
    pixels[1][0, 3, 3] = np.nan
    return pixels


def write_all(store: ObjectStore, pixels: list[np.ndarray], target_bytes: int) -> tuple[ShardWriter, list[tile_pb2.ImageTile]]:
    done: list[tile_pb2.ImageTile] = []
    with ShardWriter(store, target_bytes=target_bytes) as writer:
        for number, array in enumerate(pixels):
            done.extend(writer.add(tile_pb2.ImageTile(tile_id=f"t{number}"), array))
        done.extend(writer.flush())
    return writer, done


def test_tiles_are_packed_into_shards_and_decode_exactly(store: ObjectStore) -> None:
    pixels = arrays(10)
    tile_bytes = pixels[0].nbytes  # 512
    writer, tiles = write_all(store, pixels, target_bytes=3 * tile_bytes)
    assert [t.tile_id for t in tiles] == [f"t{n}" for n in range(10)]
    assert len(writer.shard_keys) == 4  # 3 + 3 + 3 + 1
    assert writer.bytes_written == 10 * tile_bytes
    for tile, expected in zip(tiles, pixels):
        ref = tile.pixels.object_ref
        assert ref.key in writer.shard_keys and ref.size_bytes == tile_bytes and ref.offset % tile_bytes == 0
        np.testing.assert_array_equal(decode_array(tile.pixels, store=store), expected)
    assert [t.pixels.object_ref.offset for t in tiles[:3]] == [0, tile_bytes, 2 * tile_bytes]
    assert sum(store.size_of(k) for k in writer.shard_keys) == 10 * tile_bytes


def test_rewriting_the_same_tiles_writes_nothing_and_gives_the_same_references(store: ObjectStore) -> None:
    first_writer, first = write_all(store, arrays(5), target_bytes=1024)
    again_writer, again = write_all(store, arrays(5), target_bytes=1024)
    assert again_writer.bytes_written == 0
    assert again_writer.shard_keys == first_writer.shard_keys
    assert [t.SerializeToString() for t in again] == [t.SerializeToString() for t in first]


def test_other_content_gets_other_shards(store: ObjectStore) -> None:
    first_writer, _ = write_all(store, arrays(3, seed=1), target_bytes=1 << 20)
    other_writer, _ = write_all(store, arrays(3, seed=2), target_bytes=1 << 20)
    assert set(first_writer.shard_keys).isdisjoint(other_writer.shard_keys)


def test_a_tile_larger_than_the_target_is_a_shard_of_its_own(store: ObjectStore) -> None:
    big = np.arange(64, dtype=np.int16).reshape(1, 8, 8)
    with ShardWriter(store, target_bytes=100) as writer:
        (tile,) = [*writer.add(tile_pb2.ImageTile(tile_id="big"), big), *writer.flush()]
    assert len(writer.shard_keys) == 1 and tile.pixels.dtype == tile_pb2.DATA_TYPE_INT16
    np.testing.assert_array_equal(decode_array(tile.pixels, store=store), big)


def test_many_shards_in_flight_come_back_in_order_and_bounded(store: ObjectStore) -> None:
    pixels = arrays(40, seed=3)
    with ShardWriter(store, target_bytes=pixels[0].nbytes, uploads=3) as writer:
        returned = []
        for number, array in enumerate(pixels):
            returned.extend(writer.add(tile_pb2.ImageTile(tile_id=f"t{number}"), array))
            assert len(writer._in_flight) <= 2 * 3  # memory bound: never more shards held than that
        returned.extend(writer.flush())
    assert [t.tile_id for t in returned] == [f"t{n}" for n in range(40)] and len(writer.shard_keys) == 40
    for tile, expected in zip(returned, pixels):
        np.testing.assert_array_equal(decode_array(tile.pixels, store=store), expected)


def test_a_failed_shard_write_is_the_callers_error_and_nothing_more_is_written(store: ObjectStore) -> None:
    elsewhere = ObjectStore(dataclasses.replace(store.config, bucket=f"missing-{uuid.uuid4().hex[:8]}"), retries=0)
    with pytest.raises(ObjectNotFound), ShardWriter(elsewhere, target_bytes=1) as writer:
        for number, array in enumerate(arrays(6)):
            writer.add(tile_pb2.ImageTile(tile_id=f"t{number}"), array)
        writer.flush()
    assert writer._pool._shutdown  # the upload threads are gone when the error reaches the caller


def test_target_must_be_positive(store: ObjectStore) -> None:
    with pytest.raises(ValueError, match="target_bytes=0"):
        ShardWriter(store, target_bytes=0)
