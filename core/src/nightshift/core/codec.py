"""numpy arrays <-> the contract's ``NDArray``: exact, validated, inline or by object-store reference.

Bytes are C order and little-endian whatever the host. Small arrays travel inline in the message;
arrays above ``inline_limit_bytes`` are written content-addressed to the object store and travel as
an ``ObjectRef`` (bucket, key, byte range, size, SHA-256), so a repeated encode writes nothing.
Decoding checks dtype, shape and byte size before touching any data and the SHA-256 of referenced
bytes, and raises :class:`~nightshift.core.errors.InvalidInput` with a message naming what was wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from nightshift.core.errors import InvalidInput, NightshiftError, ObjectNotFound
from nightshift.core.shm import SharedMemoryRegion, read_shared
from nightshift.core.store import ObjectStore, sha256_hex
from nightshift.v1 import tile_pb2

__all__ = [
    "DTYPES",
    "DEFAULT_INLINE_LIMIT_BYTES",
    "dtype_to_proto",
    "dtype_from_proto",
    "encode_array",
    "decode_array",
    "decode_arrays",
    "shard_runs",
    "array_nbytes",
]

DEFAULT_INLINE_LIMIT_BYTES = 256 * 1024
MAX_RUN_BYTES = 64 * 1024 * 1024  # largest single read of a shard run: bounds one read's memory
SHARED_MEMORY_GROUP_BYTES = 1024 * 1024  # shared-memory arrays read and checked by one worker: more than a hand-off costs
_MAX_ELEMENTS = 2**40  # a shape beyond this is a malformed message, not a real array

DTYPES: dict[int, np.dtype] = {
    tile_pb2.DATA_TYPE_FLOAT32: np.dtype("<f4"),
    tile_pb2.DATA_TYPE_FLOAT64: np.dtype("<f8"),
    tile_pb2.DATA_TYPE_INT16: np.dtype("<i2"),
    tile_pb2.DATA_TYPE_UINT8: np.dtype("u1"),
    tile_pb2.DATA_TYPE_BOOL: np.dtype("?"),
    tile_pb2.DATA_TYPE_INT32: np.dtype("<i4"),
    tile_pb2.DATA_TYPE_UINT16: np.dtype("<u2"),
    tile_pb2.DATA_TYPE_INT64: np.dtype("<i8"),
}
_BY_KIND = {(d.kind, d.itemsize): code for code, d in DTYPES.items()}


def dtype_to_proto(dtype: npt.DTypeLike) -> int:
    """The contract's ``DataType`` of a numpy dtype (any byte order)."""
    dt = np.dtype(dtype)
    code = _BY_KIND.get((dt.kind, dt.itemsize))
    if code is None:
        names = ", ".join(str(d) for d in DTYPES.values())
        raise InvalidInput(f"unsupported dtype {dt}: expected one of {names}")
    return code


def dtype_from_proto(code: int) -> np.dtype:
    """The little-endian numpy dtype of a contract ``DataType``."""
    if code not in DTYPES:
        raise InvalidInput(f"unsupported or unset dtype {tile_pb2.DataType.Name(code) if code in tile_pb2.DataType.values() else code}")
    return DTYPES[code]


def array_nbytes(message: tile_pb2.NDArray) -> int:
    """Byte size the message's dtype and shape imply (validated, before any data is read)."""
    dtype = dtype_from_proto(message.dtype)
    shape = tuple(int(n) for n in message.shape)
    if any(n > _MAX_ELEMENTS for n in shape) or math.prod(max(n, 1) for n in shape) > _MAX_ELEMENTS:
        # also with a zero dimension: numpy refuses such a shape, and no tile has one
        raise InvalidInput(f"shape {shape} is absurd: more than {_MAX_ELEMENTS} elements along its non-zero dimensions")
    return math.prod(shape) * dtype.itemsize


def encode_array(
    array: npt.ArrayLike,
    *,
    store: ObjectStore | None = None,
    inline_limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES,
    into: tile_pb2.NDArray | None = None,
    shared_memory: SharedMemoryRegion | None = None,
) -> tile_pb2.NDArray:
    """Encode ``array`` as an ``NDArray`` (``into``: the message to fill, e.g. a tile's own ``pixels``).

    Parameters
    ----------
    array : array_like
        Any supported dtype (float32/64, int16/32/64, uint8/16, bool), any shape, including empty.
    store : ObjectStore, optional
        Where arrays larger than ``inline_limit_bytes`` go. Without a store every array is inline.
    inline_limit_bytes : int
        Largest byte size carried inline when a store is given.
    into : NDArray, optional
        Filled in place and returned: a submessage given to a constructor (``ImageTile(pixels=...)``) is
        copied, pixels and all.
    shared_memory : SharedMemoryRegion, optional
        Carry the bytes in this region instead (whatever their size), for a co-located receiver.
    """
    arr = np.asarray(array)
    code = dtype_to_proto(arr.dtype)
    message = tile_pb2.NDArray() if into is None else into
    message.dtype = code
    message.shape[:] = arr.shape
    if shared_memory is not None:
        message.shared_memory.CopyFrom(shared_memory.put(arr))
        return message
    data = np.ascontiguousarray(arr, dtype=DTYPES[code]).tobytes()
    if store is None or len(data) <= inline_limit_bytes:
        message.inline_data = data
    else:
        message.object_ref.CopyFrom(store.put_content_addressed(data, namespace="arrays"))
    return message


def decode_array(message: tile_pb2.NDArray, *, store: ObjectStore | None = None, what: str = "array") -> np.ndarray:
    """Decode an ``NDArray`` into a native-order numpy array: a read-only view of the message's bytes.

    No pixel is copied on a little-endian host: the array views the immutable ``bytes`` the message
    (or the object store) gave, so it is read-only. A caller that writes into it copies it first
    (``array.copy()``).

    Parameters
    ----------
    message : NDArray
        The encoded array.
    store : ObjectStore, optional
        Needed when the array is carried by reference.
    what : str
        Name of the array in error messages, e.g. ``"tile 'abc' pixels"``.

    Raises
    ------
    InvalidInput
        Unset or unknown dtype, byte size not matching dtype x shape, a malformed reference,
        referenced bytes whose SHA-256 differs, or bool bytes other than 0/1.
    ObjectNotFound
        The referenced object does not exist.
    """
    return decode_arrays([message], store=store, whats=[what])[0]


def decode_arrays(
    messages: Sequence[tile_pb2.NDArray],
    *,
    store: ObjectStore | None = None,
    whats: Sequence[str] | None = None,
    map_runs: Callable[[Callable[[list[int]], list[memoryview]], list[list[int]]], Iterable[list[memoryview]]] = map,
    shared_memory_dir: Path | None = None,
) -> list[np.ndarray]:
    """Decode a batch of ``NDArray`` messages as :func:`decode_array` does, reading references by shard run.

    Every message is validated before any byte is read. References to adjacent byte ranges of one
    object (the tiles of one shard, in any order in the batch) are read with one ranged GET per run
    (:func:`shard_runs`), and each array's own range is still checked against its own SHA-256, so a
    corrupt array fails alone, named by its ``what``. A run whose read fails is read again array by
    array, so the error names the array it belongs to.

    Parameters
    ----------
    messages : sequence of NDArray
        The encoded arrays.
    store : ObjectStore, optional
        Needed when any array is carried by reference.
    whats : sequence of str, optional
        Each array's name in error messages (default ``"array <i>"``).
    map_runs : callable
        ``map``-like function the runs are read with, e.g. an executor's ``map`` to read runs side by side;
        arrays in shared memory are read and checked with it too, in groups of about 1 MiB.
    shared_memory_dir : Path, optional
        Where this receiver reads arrays carried in shared memory (:mod:`nightshift.core.shm`); None reads none.

    Raises
    ------
    InvalidInput, ObjectNotFound
        As :func:`decode_array`, for the first array (in batch order of its run) that fails.
    FailedPrecondition
        An array in shared memory this receiver cannot see (or reads no shared memory).
    """
    names = list(whats) if whats is not None else [f"array {i}" for i in range(len(messages))]
    arrays: list[np.ndarray | None] = [None] * len(messages)
    layouts = [_layout(message, what) for message, what in zip(messages, names)]
    referenced: list[int] = []  # positions in the batch of the arrays carried by reference
    in_shared_memory: list[int] = []  # ... and of those in shared memory
    for position, (message, what, (nbytes, dtype, shape)) in enumerate(zip(messages, names, layouts)):
        storage = message.WhichOneof("storage")
        if storage == "inline_data" or (storage is None and nbytes == 0):
            data = message.inline_data
            if len(data) != nbytes:
                raise InvalidInput(
                    f"{what}: {len(data)} bytes inline, expected {nbytes} for dtype {dtype} and shape {shape}"
                )
            arrays[position] = _array_of(data, dtype, shape, what)
        elif storage == "shared_memory":
            shared = message.shared_memory
            if shared.size_bytes != nbytes:
                raise InvalidInput(f"{what}: shared-memory reference names {shared.size_bytes} bytes, expected {nbytes} "
                                   f"for dtype {dtype} and shape {shape}")
            in_shared_memory.append(position)
        elif storage == "object_ref":
            _check_reference(message.object_ref, nbytes, dtype, shape, what)
            if store is None:
                raise InvalidInput(f"{what}: carried by reference but this receiver has no object store configured")
            referenced.append(position)
        else:
            raise InvalidInput(f"{what}: no data (neither inline bytes nor an object reference)")
    groups = _groups_of(in_shared_memory, [layouts[p][0] for p in in_shared_memory], SHARED_MEMORY_GROUP_BYTES)

    def read_regions(group: list[int]) -> list[memoryview]:
        return [read_shared(messages[p].shared_memory, shared_memory_dir, what=names[p]) for p in group]

    # side by side: reading a region and checking its SHA-256 release the GIL
    for group, pieces in zip(groups, map_runs(read_regions, groups)):
        for position, data in zip(group, pieces):
            _, dtype, shape = layouts[position]
            arrays[position] = _array_of(data, dtype, shape, names[position])
    if not referenced:
        return arrays  # type: ignore[return-value]
    assert store is not None
    refs = [messages[p].object_ref for p in referenced]
    runs = shard_runs(refs)

    def read(run: list[int]) -> list[memoryview]:
        return _read_run(store, [refs[i] for i in run], [names[referenced[i]] for i in run])

    for run, pieces in zip(runs, map_runs(read, runs)):
        for index, data in zip(run, pieces):
            position = referenced[index]
            _, dtype, shape = layouts[position]
            arrays[position] = _array_of(data, dtype, shape, names[position])
    return arrays  # type: ignore[return-value]


def _groups_of(items: list[int], sizes: list[int], group_bytes: int) -> list[list[int]]:
    """``items`` in order, cut into consecutive groups of at least ``group_bytes`` (the last one may be smaller)."""
    groups: list[list[int]] = []
    total = group_bytes
    for item, size in zip(items, sizes):
        if total >= group_bytes:
            groups.append([])
            total = 0
        groups[-1].append(item)
        total += size
    return groups


def shard_runs(refs: Sequence[tile_pb2.ObjectRef], *, max_run_bytes: int = MAX_RUN_BYTES) -> list[list[int]]:
    """Indices of ``refs`` grouped into runs that one ranged GET reads: adjacent (or overlapping) byte
    ranges of one object, in offset order, at most ``max_run_bytes`` a run (a single larger range is a
    run of its own). A reference of size 0 (the whole object) is a run of its own.

    >>> ref = lambda key, offset: tile_pb2.ObjectRef(key=key, offset=offset, size_bytes=10)
    >>> shard_runs([ref("a", 10), ref("b", 0), ref("a", 0), ref("a", 30), ref("b", 10)])
    [[2, 0], [1, 4], [3]]
    """
    by_object: dict[tuple[str, str], list[int]] = {}
    runs: list[list[int]] = []
    for index, ref in enumerate(refs):
        if ref.size_bytes == 0:
            runs.append([index])
        else:
            by_object.setdefault((ref.bucket, ref.key), []).append(index)
    for indices in by_object.values():
        indices.sort(key=lambda i: refs[i].offset)
        run, run_start, run_end = [indices[0]], refs[indices[0]].offset, refs[indices[0]].offset + refs[indices[0]].size_bytes
        for index in indices[1:]:
            ref = refs[index]
            end = max(run_end, ref.offset + ref.size_bytes)
            if ref.offset <= run_end and end - run_start <= max_run_bytes:
                run.append(index)
                run_end = end
            else:
                runs.append(run)
                run, run_start, run_end = [index], ref.offset, ref.offset + ref.size_bytes
        runs.append(run)
    return sorted(runs, key=lambda r: min(r))


def _layout(message: tile_pb2.NDArray, what: str) -> tuple[int, np.dtype, tuple[int, ...]]:
    """Byte size, dtype and shape of ``message``, validated before any data is read."""
    try:
        nbytes = array_nbytes(message)
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc}") from None
    return nbytes, DTYPES[message.dtype], tuple(int(n) for n in message.shape)


def _check_reference(ref: tile_pb2.ObjectRef, nbytes: int, dtype: np.dtype, shape: tuple[int, ...], what: str) -> None:
    if not ref.key:
        raise InvalidInput(f"{what}: object reference has no key")
    if ref.size_bytes != nbytes:
        raise InvalidInput(
            f"{what}: reference names {ref.size_bytes} bytes, expected {nbytes} for dtype {dtype} and shape {shape}"
        )
    if len(ref.sha256) != 64 or any(c not in "0123456789abcdef" for c in ref.sha256):
        raise InvalidInput(f"{what}: reference sha256 must be 64 lower-case hex digits, got {ref.sha256!r}")


def _read_one(store: ObjectStore, ref: tile_pb2.ObjectRef, what: str) -> memoryview:
    try:
        data = store.get_bytes(ref)  # checks size and SHA-256
    except NightshiftError as exc:
        raise type(exc)(f"{what}: {exc}") from None
    if len(data) != ref.size_bytes:
        raise InvalidInput(f"{what}: the referenced object holds {len(data)} bytes, expected {ref.size_bytes}")
    return memoryview(data)


def _read_run(store: ObjectStore, refs: list[tile_pb2.ObjectRef], whats: list[str]) -> list[memoryview]:
    """Each reference's bytes (views of one read of the run), each checked against its own size and SHA-256."""
    if len(refs) == 1:
        return [_read_one(store, refs[0], whats[0])]
    start = refs[0].offset
    end = max(ref.offset + ref.size_bytes for ref in refs)
    try:
        whole = memoryview(store.get_bytes(tile_pb2.ObjectRef(bucket=refs[0].bucket, key=refs[0].key, offset=start,
                                                               size_bytes=end - start)))
    except (InvalidInput, ObjectNotFound):  # a range past the object's end, a missing object: read alone, so the error names its array
        return [_read_one(store, ref, what) for ref, what in zip(refs, whats)]
    pieces = []
    for ref, what in zip(refs, whats):
        piece = whole[ref.offset - start : ref.offset - start + ref.size_bytes]
        if sha256_hex(piece) != ref.sha256:
            raise InvalidInput(f"{what}: object {store.bucket}/{ref.key} at offset {ref.offset}: "
                               "sha256 does not match the reference")
        pieces.append(piece)
    return pieces


def _array_of(data: bytes | memoryview, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
    if dtype.kind == "b" and len(data) and np.frombuffer(data, dtype=np.uint8).max() > 1:
        raise InvalidInput(f"{what}: bool array holds bytes other than 0 and 1")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if not dtype.isnative:
        return array.astype(dtype.newbyteorder("="))  # a big-endian host: byte-swapping is the copy decoding needs
    return array
