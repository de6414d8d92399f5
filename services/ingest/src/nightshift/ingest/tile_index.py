"""The tile index of one ingested input, and listing the tiles of an ingest run page by page.

An ingest writes its shards first and its index last, so an index only ever references shards
that exist. The index of one input is one object,
``<prefix>/ingest/runs/<run_id>/index/<survey>/<field>/<input_id>.pb``, holding every
``ImageTile`` of that input as a serialised ``TileIndex``.
``input_id`` is derived from the sources' checksums and the tiling parameters, so the same input
ingested again in the same run rewrites nothing, while another tiling of it adds a second index.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from nightshift.core.errors import InvalidInput
from nightshift.core.store import ObjectStore
from nightshift.ingest.config import check_name
from nightshift.v1 import ingest_service_pb2, tile_pb2

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "index_key", "write_index", "read_index", "list_tiles"]

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10000  # a tile's metadata is about 2 kB: a full page stays far below the message limit


def _run_prefix(store: ObjectStore, run_id: str) -> str:
    return store.key("ingest", "runs", run_id, "index") + "/"


def index_key(store: ObjectStore, *, run_id: str, survey: str, field: str, input_id: str) -> str:
    """Object key of the index of one input in one run."""
    return _run_prefix(store, run_id) + f"{survey}/{field}/{input_id}.pb"


def write_index(store: ObjectStore, key: str, tiles: Sequence[tile_pb2.ImageTile]) -> int:
    """Write the index of ``tiles`` at ``key``; returns the bytes written (0 if the same index is stored)."""
    data = ingest_service_pb2.TileIndex(tiles=tiles).SerializeToString(deterministic=True)
    if store.size_of(key) == len(data) and store.get_bytes(key) == data:
        return 0
    store.put_bytes(key, data, content_type="application/x-protobuf")
    return len(data)


def read_index(store: ObjectStore, key: str) -> list[tile_pb2.ImageTile]:
    """The tiles of the index at ``key``, in ingest order."""
    return list(ingest_service_pb2.TileIndex.FromString(store.get_bytes(key)).tiles)


def _encode_token(key: str, position: int) -> str:
    return base64.urlsafe_b64encode(f"{position}:{key}".encode()).decode()


def _decode_token(token: str, prefix: str) -> tuple[str, int]:
    try:
        position, key = base64.urlsafe_b64decode(token.encode()).decode().split(":", 1)
        if key.startswith(prefix) and position.isdigit():
            return key, int(position)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidInput(f"page_token {token!r} was not issued for this listing: pass the next_page_token of the previous page")


def list_tiles(
    store: ObjectStore, run_id: str, *, survey: str = "", split: str = "", page_size: int = 0, page_token: str = ""
) -> ingest_service_pb2.ListTilesResponse:
    """One page of the tiles of ingest run ``run_id``, index by index in key order, each in ingest order.

    Parameters
    ----------
    store : ObjectStore
        Where the run's indexes are.
    run_id : str
        The ingest run.
    survey : str
        Only tiles of this survey ("" for all).
    split : str
        Only tiles whose "split" label is this ("" for all).
    page_size : int
        Largest number of tiles returned: 0 for :data:`DEFAULT_PAGE_SIZE`, at most :data:`MAX_PAGE_SIZE`.
    page_token : str
        ``next_page_token`` of the previous page ("" for the first page).

    Returns
    -------
    ListTilesResponse
        The tiles, and the token of the next page ("" on the last page). A run with no tiles gives
        an empty page.

    Raises
    ------
    InvalidInput
        A malformed run id or survey, a page size above the limit, or a token this listing did not issue.
    """
    check_name("run_id", run_id)
    if survey:
        check_name("survey", survey)
    if page_size > MAX_PAGE_SIZE:
        raise InvalidInput(f"page_size={page_size}: at most {MAX_PAGE_SIZE}")
    page_size = page_size or DEFAULT_PAGE_SIZE
    prefix = _run_prefix(store, run_id) + (f"{survey}/" if survey else "")
    start_key, start_position = _decode_token(page_token, prefix) if page_token else ("", 0)
    page: list[tile_pb2.ImageTile] = []
    for key in store.list_keys(prefix):
        if key < start_key:
            continue
        tiles = read_index(store, key)
        for position in range(start_position if key == start_key else 0, len(tiles)):
            if split and tiles[position].labels.get("split") != split:
                continue
            if len(page) == page_size:
                return ingest_service_pb2.ListTilesResponse(tiles=page, next_page_token=_encode_token(key, position))
            page.append(tiles[position])
    return ingest_service_pb2.ListTilesResponse(tiles=page)
