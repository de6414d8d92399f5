"""Tile pixels packed into few-MB shard objects, content-addressed, each tile naming its byte range.

A shard is the concatenation of its tiles' pixel bytes (C order, little-endian: the codec's
layout), stored content-addressed at ``<prefix>/cas/shards/<sha[:2]>/<sha>`` where ``sha`` is the SHA-256
of the whole shard. Each tile's ``pixels.object_ref`` names the shard key, the tile's byte offset and
size, and the SHA-256 of its own bytes, so ``nightshift.core.codec.decode_array`` reads exactly
that range and verifies it. The same tiles in the same order give the same shards, so a repeated
ingest finds every shard already stored and writes nothing.
"""

from __future__ import annotations

import numpy as np

from nightshift.core.codec import DTYPES, dtype_to_proto
from nightshift.core.store import ObjectStore, sha256_hex
from nightshift.v1 import tile_pb2

__all__ = ["DEFAULT_SHARD_BYTES", "ShardWriter"]

DEFAULT_SHARD_BYTES = 4 * 1024 * 1024


class ShardWriter:
    """Collects tiles and writes their pixels as shards of about ``target_bytes``.

    Parameters
    ----------
    store : ObjectStore
        Where shards go.
    target_bytes : int
        A shard is written once its tiles hold at least this many bytes (a single larger tile
        makes a shard of its own).

    Attributes
    ----------
    shard_keys : list of str
        Keys of the shards of the tiles added so far, in order.
    bytes_written : int
        Bytes actually written (shards already stored are not written again).
    """

    def __init__(self, store: ObjectStore, *, target_bytes: int = DEFAULT_SHARD_BYTES) -> None:
        if target_bytes < 1:
            raise ValueError(f"target_bytes={target_bytes}: expected at least 1")
        self.store = store
        self.target_bytes = target_bytes
        self.shard_keys: list[str] = []
        self.bytes_written = 0
        self._pending: list[tuple[tile_pb2.ImageTile, bytes]] = []
        self._pending_bytes = 0

    def add(self, tile: tile_pb2.ImageTile, pixels: np.ndarray) -> list[tile_pb2.ImageTile]:
        """Queue a tile and its pixels; returns the tiles completed by a shard written now (else []).

        The tile's ``pixels`` field is filled in (dtype, shape and shard reference) when its shard
        is written; until then it must not be used.
        """
        code = dtype_to_proto(pixels.dtype)
        data = np.ascontiguousarray(pixels, dtype=DTYPES[code]).tobytes()
        tile.pixels.CopyFrom(tile_pb2.NDArray(dtype=code, shape=pixels.shape))
        self._pending.append((tile, data))
        self._pending_bytes += len(data)
        return self.flush() if self._pending_bytes >= self.target_bytes else []

    def flush(self) -> list[tile_pb2.ImageTile]:
        """Write the queued tiles as one shard (if any) and return them with their references."""
        if not self._pending:
            return []
        shard = b"".join(data for _, data in self._pending)
        ref, written = self.store.ensure_content_addressed(shard, namespace="shards")
        key = ref.key
        self.bytes_written += len(shard) if written else 0
        self.shard_keys.append(key)
        tiles, offset = [], 0
        for tile, data in self._pending:
            tile.pixels.object_ref.CopyFrom(tile_pb2.ObjectRef(
                bucket=self.store.bucket, key=key, offset=offset, size_bytes=len(data),
                sha256=sha256_hex(data),
            ))
            offset += len(data)
            tiles.append(tile)
        self._pending, self._pending_bytes = [], 0
        return tiles
