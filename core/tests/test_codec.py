"""Array codec: bit-exact round trips (inline and by reference) and validation of malformed messages."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightshift.core.codec import array_nbytes, decode_array, decode_arrays, dtype_from_proto, dtype_to_proto, encode_array, shard_runs
from nightshift.core.errors import FailedPrecondition, InvalidInput, ObjectNotFound
from nightshift.core.shm import SharedMemoryRegion
from nightshift.core.store import ObjectStore, sha256_hex
from nightshift.v1 import tile_pb2

LITTLE_ENDIAN = ["<f4", "<f8", "<i2", "u1", "?", "<i4", "<u2", "<i8"]
BIG_ENDIAN = [">f4", ">f8", ">i2", ">i4", ">u2", ">i8"]
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)
FAST = settings(max_examples=50, deadline=None)
WITH_STORE = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def arrays(dtypes: list[str]) -> st.SearchStrategy[np.ndarray]:
    """Arrays of random shape (0-d and empty included); floats include NaN, inf and -0.0."""
    return st.sampled_from(dtypes).flatmap(lambda dtype: hnp.arrays(np.dtype(dtype), SHAPES))


def non_contiguous(array: np.ndarray) -> np.ndarray:
    """A strided view of ``array``: reversed and every other element along each axis, then transposed."""
    return array[tuple(slice(None, None, -2) for _ in range(array.ndim))].T


def over_the_wire(message: tile_pb2.NDArray) -> tile_pb2.NDArray:
    return tile_pb2.NDArray.FromString(message.SerializeToString())


def assert_bitwise_equal(decoded: np.ndarray, original: np.ndarray) -> None:
    """Same shape, same values in native byte order, same bits (NaN payloads and -0.0 included)."""
    native = original.dtype.newbyteorder("=")
    assert decoded.dtype == native
    assert decoded.shape == original.shape
    assert not decoded.flags.writeable and decoded.flags.c_contiguous  # a view of the message's immutable bytes
    as_uint = np.dtype(f"u{native.itemsize}")
    assert np.array_equal(decoded.view(as_uint), original.astype(native).view(as_uint))


@FAST
@given(arrays(LITTLE_ENDIAN))
def test_inline_round_trip_is_bit_exact(array: np.ndarray) -> None:
    message = encode_array(array)
    assert message.WhichOneof("storage") == "inline_data"
    assert message.inline_data == array.tobytes()
    assert tuple(message.shape) == array.shape
    assert_bitwise_equal(decode_array(over_the_wire(message)), array)


@FAST
@given(arrays(BIG_ENDIAN))
def test_big_endian_input_is_encoded_little_endian(array: np.ndarray) -> None:
    message = encode_array(array)
    assert message.inline_data == array.astype(array.dtype.newbyteorder("<")).tobytes()
    assert message.dtype == dtype_to_proto(array.dtype.newbyteorder("<"))
    assert_bitwise_equal(decode_array(over_the_wire(message)), array)


@FAST
@given(arrays(LITTLE_ENDIAN + BIG_ENDIAN).map(non_contiguous))
def test_non_contiguous_input_round_trips(array: np.ndarray) -> None:
    message = encode_array(array)
    assert message.inline_data == np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    assert_bitwise_equal(decode_array(over_the_wire(message)), array)


def test_known_bytes_of_a_big_endian_int16() -> None:
    message = encode_array(np.array([[1, -2]], dtype=">i2"))
    assert message.dtype == tile_pb2.DATA_TYPE_INT16
    assert list(message.shape) == [1, 2]
    assert message.inline_data == b"\x01\x00\xfe\xff"


def test_nan_payloads_and_negative_zero_survive() -> None:
    bits = np.array([0x7FC00001, 0xFFC12345, 0x7F800001, 0x80000000, 0x7F800000], dtype="<u4")
    for floats in (bits.view("<f4"), bits.view("<f4").astype(">f4")):
        decoded = decode_array(over_the_wire(encode_array(floats)))
        assert np.array_equal(decoded.view("<u4"), bits)


def test_scalar_and_empty_arrays() -> None:
    scalar = decode_array(encode_array(np.float64(2.5)))
    assert scalar.shape == () and scalar.dtype == np.float64 and scalar[()] == 2.5
    empty = decode_array(over_the_wire(encode_array(np.zeros((3, 0, 2), dtype=np.uint8))))
    assert empty.shape == (3, 0, 2) and empty.dtype == np.uint8


def test_plain_python_data_is_accepted() -> None:
    message = encode_array([[True, False], [False, True]])
    assert message.dtype == tile_pb2.DATA_TYPE_BOOL
    assert message.inline_data == b"\x01\x00\x00\x01"


def test_array_nbytes_from_dtype_and_shape() -> None:
    assert array_nbytes(tile_pb2.NDArray(dtype=tile_pb2.DATA_TYPE_FLOAT64, shape=[3, 4])) == 96
    assert array_nbytes(tile_pb2.NDArray(dtype=tile_pb2.DATA_TYPE_UINT8, shape=[])) == 1


def test_dtype_from_proto_is_little_endian() -> None:
    assert dtype_from_proto(tile_pb2.DATA_TYPE_FLOAT32) == np.dtype("<f4")
    assert dtype_from_proto(tile_pb2.DATA_TYPE_INT64) == np.dtype("<i8")


@WITH_STORE
@given(array=arrays(LITTLE_ENDIAN + BIG_ENDIAN))
def test_round_trip_by_reference(store: ObjectStore, array: np.ndarray) -> None:
    message = encode_array(array, store=store, inline_limit_bytes=0)
    little_endian = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    if array.size == 0:
        assert message.WhichOneof("storage") == "inline_data"
    else:
        ref = message.object_ref
        assert message.WhichOneof("storage") == "object_ref"
        assert (ref.bucket, ref.size_bytes, ref.sha256) == (store.bucket, len(little_endian), sha256_hex(little_endian))
        assert store.get_bytes(ref.key) == little_endian
    assert_bitwise_equal(decode_array(over_the_wire(message), store=store), array)


def test_reference_is_content_addressed(store: ObjectStore) -> None:
    array = np.arange(1000, dtype=np.float32).reshape(10, 100)
    first = encode_array(array, store=store, inline_limit_bytes=1024)
    second = encode_array(array.copy(), store=store, inline_limit_bytes=1024)

    digest = sha256_hex(array.tobytes())
    assert first.object_ref == second.object_ref
    assert first.object_ref.key == store.key("cas", "arrays", digest[:2], digest)
    assert list(store.list_keys(store.key("cas"))) == [first.object_ref.key]


def test_array_at_the_inline_limit_stays_inline(store: ObjectStore) -> None:
    array = np.zeros(256, dtype=np.uint8)
    assert encode_array(array, store=store, inline_limit_bytes=256).WhichOneof("storage") == "inline_data"
    assert list(store.list_keys(store.key("cas"))) == []
    assert encode_array(array, store=store, inline_limit_bytes=255).WhichOneof("storage") == "object_ref"


@pytest.mark.parametrize("dtype", [np.complex64, np.float16, np.object_, np.dtype("U3")])
def test_unsupported_numpy_dtype_is_rejected(dtype: np.dtype) -> None:
    with pytest.raises(InvalidInput, match=rf"unsupported dtype {np.dtype(dtype)}: expected one of float32, float64"):
        encode_array(np.zeros(2, dtype=dtype))


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(tile_pb2.DATA_TYPE_UNSPECIFIED, "unset dtype DATA_TYPE_UNSPECIFIED"), (99, "unset dtype 99")],
)
def test_unset_or_unknown_dtype_is_rejected(dtype: int, expected: str) -> None:
    message = tile_pb2.NDArray(dtype=dtype, shape=[2], inline_data=b"\x00\x00")
    with pytest.raises(InvalidInput, match=f"^tile 'a' pixels: unsupported or {expected}$"):
        decode_array(message, what="tile 'a' pixels")


def test_inline_byte_size_mismatch_is_rejected() -> None:
    message = tile_pb2.NDArray(dtype=tile_pb2.DATA_TYPE_FLOAT32, shape=[2, 3], inline_data=bytes(20))
    with pytest.raises(InvalidInput, match=r"20 bytes inline, expected 24 for dtype float32 and shape \(2, 3\)"):
        decode_array(message)


def test_message_without_data_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="no data"):
        decode_array(tile_pb2.NDArray(dtype=tile_pb2.DATA_TYPE_FLOAT32, shape=[2]))


@pytest.mark.parametrize("shape", [[2**30, 2**30], [0, 2**21, 2**21]], ids=["huge", "huge-but-empty"])
def test_absurd_shape_is_rejected_before_reading(shape: list[int]) -> None:
    message = tile_pb2.NDArray(dtype=tile_pb2.DATA_TYPE_UINT8, shape=shape, inline_data=b"")
    with pytest.raises(InvalidInput, match=f"absurd: more than {2**40} elements"):
        decode_array(message)


def test_bool_bytes_other_than_zero_and_one_are_rejected() -> None:
    message = tile_pb2.NDArray(dtype=tile_pb2.DATA_TYPE_BOOL, shape=[3], inline_data=b"\x00\x01\x02")
    with pytest.raises(InvalidInput, match="bool array holds bytes other than 0 and 1"):
        decode_array(message)


def referenced(data: bytes, *, key: str, shape: list[int], **ref_fields: object) -> tile_pb2.NDArray:
    """A float32 ``NDArray`` by reference to ``key``, with the reference fields of ``data`` unless overridden."""
    fields = {"bucket": "", "key": key, "size_bytes": len(data), "sha256": sha256_hex(data)} | ref_fields
    return tile_pb2.NDArray(dtype=tile_pb2.DATA_TYPE_FLOAT32, shape=shape, object_ref=tile_pb2.ObjectRef(**fields))


def test_reference_size_mismatch_is_rejected(store: ObjectStore) -> None:
    data = bytes(12)
    message = referenced(data, key=store.put_bytes(store.key("x"), data).key, shape=[4])
    with pytest.raises(InvalidInput, match="reference names 12 bytes, expected 16 for dtype float32 and shape"):
        decode_array(message, store=store)


@pytest.mark.parametrize("sha256", ["", "abc", "A" * 64, "g" * 64, "0" * 65])
def test_reference_with_malformed_sha256_is_rejected(store: ObjectStore, sha256: str) -> None:
    data = bytes(8)
    message = referenced(data, key=store.put_bytes(store.key("x"), data).key, shape=[2], sha256=sha256)
    with pytest.raises(InvalidInput, match="reference sha256 must be 64 lower-case hex digits"):
        decode_array(message, store=store)


def test_reference_without_key_is_rejected(store: ObjectStore) -> None:
    with pytest.raises(InvalidInput, match="object reference has no key"):
        decode_array(referenced(bytes(8), key="", shape=[2]), store=store)


def test_referenced_bytes_must_match_the_sha256(store: ObjectStore) -> None:
    key = store.put_bytes(store.key("tampered"), np.ones(2, dtype="<f4").tobytes()).key
    forged = referenced(np.zeros(2, dtype="<f4").tobytes(), key=key, shape=[2])
    with pytest.raises(InvalidInput, match="sha256 does not match the reference"):
        decode_array(forged, store=store)


def test_reference_without_a_store_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="carried by reference but this receiver has no object store"):
        decode_array(referenced(bytes(8), key="k", shape=[2]))


def test_missing_referenced_object_is_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound, match="never-written"):
        decode_array(referenced(bytes(8), key=store.key("never-written"), shape=[2]), store=store)


def test_decoding_views_the_message_bytes_without_copying_them() -> None:
    message = over_the_wire(encode_array(np.arange(12, dtype=np.float32).reshape(3, 4)))
    decoded = decode_array(message)
    owner = decoded
    while isinstance(owner, np.ndarray):
        owner = owner.base
    assert isinstance(owner, bytes) and len(owner) == decoded.nbytes  # the bytes decoding was given, not a copy of them
    with pytest.raises(ValueError, match="read-only"):
        decoded[0, 0] = 1.0


# -- batches read by shard run ------------------------------------------------------------------


class CountingStore(ObjectStore):
    """The real store, recording each read's reference: how many GETs a batch costs."""

    def __init__(self, store: ObjectStore) -> None:
        super().__init__(store.config)
        self.reads: list[tile_pb2.ObjectRef] = []

    def get_bytes(self, ref: tile_pb2.ObjectRef | str) -> bytes:
        self.reads.append(ref)
        return super().get_bytes(ref)


def put_shard(store: ObjectStore, name: str, arrays: list[np.ndarray]) -> list[tile_pb2.NDArray]:
    """Write ``arrays`` side by side as one shard object; return each one's message by reference into it."""
    blobs = [a.astype("<f4").tobytes() for a in arrays]
    key = store.put_bytes(store.key("shards", name), b"".join(blobs)).key
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    return [tile_pb2.NDArray(dtype=tile_pb2.DATA_TYPE_FLOAT32, shape=a.shape, object_ref=tile_pb2.ObjectRef(
                bucket=store.bucket, key=key, offset=int(o), size_bytes=len(b), sha256=sha256_hex(b)))
            for a, b, o in zip(arrays, blobs, offsets)]


def ref(key: str, offset: int, size: int = 10) -> tile_pb2.ObjectRef:
    return tile_pb2.ObjectRef(key=key, offset=offset, size_bytes=size)


def test_shard_runs_group_adjacent_ranges_of_one_object_in_offset_order() -> None:
    refs = [ref("a", 20), ref("b", 0), ref("a", 0), ref("a", 10), ref("a", 40), ref("b", 10), ref("b", 30), ref("c", 0, 0)]
    assert shard_runs(refs) == [[2, 3, 0], [1, 5], [4], [6], [7]]  # a gap (a@30, b@20) starts a new run
    assert shard_runs([ref("a", 0, 20), ref("a", 10, 20), ref("a", 5, 5)]) == [[0, 2, 1]]  # overlaps join the run
    assert shard_runs([ref("a", 0), ref("a", 10), ref("a", 20)], max_run_bytes=20) == [[0, 1], [2]]
    assert shard_runs([ref("a", 0, 50)], max_run_bytes=20) == [[0]]
    assert shard_runs([]) == []


def test_a_batch_over_several_shards_with_gaps_decodes_each_array_with_one_read_per_run(store: ObjectStore) -> None:
    rng = np.random.default_rng(3)
    first = [rng.standard_normal((2, 3, 4)).astype(np.float32) for _ in range(5)]
    second = [rng.standard_normal((2, 3, 4)).astype(np.float32) for _ in range(3)]
    in_first, in_second = put_shard(store, "first", first), put_shard(store, "second", second)
    inline = encode_array(np.arange(6, dtype=np.float32))
    # first shard: 3, 0, 1 (a run of 0-1 and... 3 after the gap at 2), 4 joins 3; second shard: 2 then 0 (gap at 1)
    batch = [in_first[3], in_second[2], in_first[0], inline, in_first[1], in_second[0], in_first[4]]
    expected = [first[3], second[2], first[0], np.arange(6, dtype=np.float32), first[1], second[0], first[4]]
    counting = CountingStore(store)
    decoded = decode_arrays(batch, store=counting)
    for got, want in zip(decoded, expected):
        assert_bitwise_equal(got, want)
    size = first[0].nbytes
    assert sorted((r.key.rsplit("/", 1)[-1], r.offset, r.size_bytes) for r in counting.reads) == [
        ("first", 0, 2 * size), ("first", 3 * size, 2 * size), ("second", 0, size), ("second", 2 * size, size)]


def test_a_corrupt_array_in_a_run_is_refused_alone_by_its_name(store: ObjectStore) -> None:
    arrays = [np.full((1, 4, 4), float(i), np.float32) for i in range(4)]
    messages = put_shard(store, "corrupt", arrays)
    shard_key = messages[0].object_ref.key
    shard = bytearray(store.get_bytes(shard_key))
    shard[messages[2].object_ref.offset + 5] ^= 0xFF  # same size, other content, inside array 2 only
    store.put_bytes(shard_key, bytes(shard))
    names = [f"tile {i}" for i in range(4)]
    with pytest.raises(InvalidInput, match=r"^tile 2: object .* at offset 128: sha256 does not match the reference$"):
        decode_arrays(messages, store=store, whats=names)
    kept = [0, 1, 3]  # the rest of the run, read again without it, is intact
    for i, array in zip(kept, decode_arrays([messages[i] for i in kept], store=store, whats=[names[i] for i in kept])):
        assert_bitwise_equal(array, arrays[i])


def test_a_run_reaching_past_the_shard_end_names_the_array_that_does(store: ObjectStore) -> None:
    messages = put_shard(store, "short", [np.zeros((1, 2, 2), np.float32), np.ones((1, 2, 2), np.float32)])
    beyond = tile_pb2.NDArray()
    beyond.CopyFrom(messages[1])
    beyond.object_ref.offset += 16  # right after the shard's last byte: adjacent, so in the same run
    with pytest.raises(InvalidInput, match=r"^tile beyond: .*(byte range outside|expected 16 bytes, read 0)"):
        decode_arrays([messages[0], messages[1], beyond], store=store, whats=["tile 0", "tile 1", "tile beyond"])


def test_arrays_in_shared_memory_decode_read_only_and_need_a_receiver_that_reads_the_directory(tmp_path) -> None:
    arrays = [np.arange(6, dtype=">i4").reshape(2, 3), np.linspace(0, 1, 5, dtype=np.float32)]
    with SharedMemoryRegion(tmp_path) as region:
        messages = [encode_array(a, shared_memory=region) for a in arrays]
        assert all(m.WhichOneof("storage") == "shared_memory" for m in messages)
        decoded = decode_arrays(messages, shared_memory_dir=tmp_path)
        with pytest.raises(FailedPrecondition, match="carried in shared memory but this receiver reads none"):
            decode_arrays(messages)
    for got, want in zip(decoded, arrays):
        np.testing.assert_array_equal(got, want)
        assert not got.flags.writeable
