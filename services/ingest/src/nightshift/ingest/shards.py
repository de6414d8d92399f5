"""Tile pixels packed into few-MB shard objects, content-addressed, each tile naming its byte range.

A shard is the concatenation of its tiles' pixel bytes (C order, little-endian: the codec's
layout), stored content-addressed at ``<prefix>/cas/shards/<sha[:2]>/<sha>`` where ``sha`` is the SHA-256
of the whole shard. Each tile's ``pixels.object_ref`` names the shard key, the tile's byte offset and
size, and the SHA-256 of its own bytes, so ``nightshift.core.codec.decode_array`` reads exactly
that range and verifies it. The same tiles in the same order give the same shards, so a repeated
ingest finds every shard already stored and writes nothing.
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from nightshift.core.codec import DTYPES, dtype_to_proto
from nightshift.core.store import ObjectStore, sha256_hex
from nightshift.v1 import tile_pb2

__all__ = ["DEFAULT_SHARD_BYTES", "DEFAULT_UPLOADS", "ShardWriter"]

DEFAULT_SHARD_BYTES = 4 * 1024 * 1024
DEFAULT_UPLOADS = 2
"""Shards hashed and written at once, beside the tiling: the store answers while the next tiles are cut."""


class ShardWriter:
    """Collects tiles and writes their pixels as shards of about ``target_bytes``, ``uploads`` at a time.

    A shard is hashed once (its key and its reference share the digest) and each tile once (its own
    reference), in the upload threads (hashlib and the socket release the GIL), while the caller
    cuts the next tiles; at most ``2 * uploads`` shards are in flight, so memory stays bounded. Tiles
    come back in the order they were added. Use as a context manager: leaving it without
    :meth:`flush` (an error, a cancelled call) abandons the queued shards and waits for those being
    written, so nothing writes after the call returned.

    Parameters
    ----------
    store : ObjectStore
        Where shards go.
    target_bytes : int
        A shard is written once its tiles hold at least this many bytes (a single larger tile
        makes a shard of its own).
    uploads : int
        Shards hashed and written concurrently.

    Attributes
    ----------
    shard_keys : list of str
        Keys of the shards written so far, in order.
    bytes_written : int
        Bytes actually written (shards already stored are not written again).
    """

    def __init__(self, store: ObjectStore, *, target_bytes: int = DEFAULT_SHARD_BYTES, uploads: int = DEFAULT_UPLOADS) -> None:
        if target_bytes < 1:
            raise ValueError(f"target_bytes={target_bytes}: expected at least 1")
        if uploads < 1:
            raise ValueError(f"uploads={uploads}: expected at least 1")
        self.store = store
        self.target_bytes = target_bytes
        self.shard_keys: list[str] = []
        self.bytes_written = 0
        self._pending: list[tuple[tile_pb2.ImageTile, bytes]] = []
        self._pending_bytes = 0
        self._pool = ThreadPoolExecutor(max_workers=uploads, thread_name_prefix="shard-upload")
        self._in_flight: collections.deque[Future[tuple[str, bool, int, list[tile_pb2.ImageTile]]]] = collections.deque()
        self._max_in_flight = 2 * uploads

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, tile: tile_pb2.ImageTile, pixels: np.ndarray) -> list[tile_pb2.ImageTile]:
        """Queue a tile and its pixels; returns the tiles whose shards have been written since the last call.

        The tile's ``pixels`` field is filled in (dtype, shape and shard reference) when its shard
        is written; until then it must not be used.
        """
        code = dtype_to_proto(pixels.dtype)
        data = np.ascontiguousarray(pixels, dtype=DTYPES[code]).tobytes()
        tile.pixels.CopyFrom(tile_pb2.NDArray(dtype=code, shape=pixels.shape))
        self._pending.append((tile, data))
        self._pending_bytes += len(data)
        if self._pending_bytes >= self.target_bytes:
            self._submit()
        return self._collect(wait=False)

    def flush(self) -> list[tile_pb2.ImageTile]:
        """Write the queued tiles as one last shard (if any), wait for every shard, return the tiles not yet returned."""
        self._submit()
        return self._collect(wait=True)

    def _submit(self) -> None:
        if self._pending:
            self._in_flight.append(self._pool.submit(self._write, self._pending))
            self._pending, self._pending_bytes = [], 0

    def _collect(self, *, wait: bool) -> list[tile_pb2.ImageTile]:
        """The tiles of the written shards at the head of the queue (all of them with ``wait``, or when too many are in flight)."""
        tiles: list[tile_pb2.ImageTile] = []
        while self._in_flight and (wait or self._in_flight[0].done() or len(self._in_flight) > self._max_in_flight):
            key, written, size, shard_tiles = self._in_flight.popleft().result()
            self.shard_keys.append(key)
            self.bytes_written += size if written else 0
            tiles.extend(shard_tiles)
        return tiles

    def _write(self, pending: list[tuple[tile_pb2.ImageTile, bytes]]) -> tuple[str, bool, int, list[tile_pb2.ImageTile]]:
        shard = b"".join(data for _, data in pending)
        ref, written = self.store.ensure_content_addressed(shard, namespace="shards")
        offset = 0
        for tile, data in pending:
            tile.pixels.object_ref.CopyFrom(tile_pb2.ObjectRef(
                bucket=self.store.bucket, key=ref.key, offset=offset, size_bytes=len(data), sha256=sha256_hex(data),
            ))
            offset += len(data)
        return ref.key, written, len(shard), [tile for tile, _ in pending]
