"""numpy arrays <-> the contract's ``NDArray``: exact, validated, inline or by object-store reference.

Bytes are C order and little-endian whatever the host. Small arrays travel inline in the message;
arrays above ``inline_limit_bytes`` are written content-addressed to the object store and travel as
an ``ObjectRef`` (bucket, key, byte range, size, SHA-256), so a repeated encode writes nothing.
Decoding checks dtype, shape and byte size before touching any data and the SHA-256 of referenced
bytes, and raises :class:`~nightshift.core.errors.InvalidInput` with a message naming what was wrong.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from nightshift.core.errors import InvalidInput
from nightshift.core.store import ObjectStore
from nightshift.v1 import tile_pb2

__all__ = [
    "DTYPES",
    "DEFAULT_INLINE_LIMIT_BYTES",
    "dtype_to_proto",
    "dtype_from_proto",
    "encode_array",
    "decode_array",
    "array_nbytes",
]

DEFAULT_INLINE_LIMIT_BYTES = 256 * 1024
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
) -> tile_pb2.NDArray:
    """Encode ``array`` as an ``NDArray``.

    Parameters
    ----------
    array : array_like
        Any supported dtype (float32/64, int16/32/64, uint8/16, bool), any shape, including empty.
    store : ObjectStore, optional
        Where arrays larger than ``inline_limit_bytes`` go. Without a store every array is inline.
    inline_limit_bytes : int
        Largest byte size carried inline when a store is given.
    """
    arr = np.asarray(array)
    code = dtype_to_proto(arr.dtype)
    data = np.ascontiguousarray(arr, dtype=DTYPES[code]).tobytes()
    message = tile_pb2.NDArray(dtype=code, shape=arr.shape)
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
    try:
        nbytes = array_nbytes(message)
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc}") from None
    dtype = DTYPES[message.dtype]
    shape = tuple(int(n) for n in message.shape)
    storage = message.WhichOneof("storage")
    if storage == "inline_data" or (storage is None and nbytes == 0):
        data = message.inline_data
        if len(data) != nbytes:
            raise InvalidInput(
                f"{what}: {len(data)} bytes inline, expected {nbytes} for dtype {dtype} and shape {shape}"
            )
    elif storage == "object_ref":
        ref = message.object_ref
        if not ref.key:
            raise InvalidInput(f"{what}: object reference has no key")
        if ref.size_bytes != nbytes:
            raise InvalidInput(
                f"{what}: reference names {ref.size_bytes} bytes, expected {nbytes} for dtype {dtype} and shape {shape}"
            )
        if len(ref.sha256) != 64 or any(c not in "0123456789abcdef" for c in ref.sha256):
            raise InvalidInput(f"{what}: reference sha256 must be 64 lower-case hex digits, got {ref.sha256!r}")
        if store is None:
            raise InvalidInput(f"{what}: carried by reference but this receiver has no object store configured")
        data = store.get_bytes(ref)
        if len(data) != nbytes:
            raise InvalidInput(f"{what}: the referenced object holds {len(data)} bytes, expected {nbytes}")
    else:
        raise InvalidInput(f"{what}: no data (neither inline bytes nor an object reference)")
    if dtype.kind == "b" and data and np.frombuffer(data, dtype=np.uint8).max() > 1:
        raise InvalidInput(f"{what}: bool array holds bytes other than 0 and 1")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if not dtype.isnative:
        return array.astype(dtype.newbyteorder("="))  # a big-endian host: byte-swapping is the copy decoding needs
    return array
