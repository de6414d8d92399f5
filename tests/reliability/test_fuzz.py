"""Bad input, fuzzed with hypothesis (bounded), against the codec and every science service over gRPC.

Every malformed message must get a clear status (never UNKNOWN or INTERNAL, never a stack trace on the
wire) and the service must keep serving (health SERVING after). Each test prints how many cases it tried.
"""

from __future__ import annotations

import math
import string

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightshift.core.client import TaskClient
from nightshift.core.codec import decode_array, encode_array
from nightshift.core.errors import NightshiftError
from nightshift.core.store import ObjectStore
from nightshift.orchestration.launcher import LocalNight
from nightshift.v1 import task_service_pb2, tile_pb2

pytestmark = pytest.mark.reliability

CLEAR_REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED,
                  grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE}
SERVICE_EXAMPLES = 30
CODEC_EXAMPLES = 300
_HEX = "0123456789abcdef"


# -- the codec ------------------------------------------------------------------------------------


def _ndarrays(stored: tile_pb2.ObjectRef) -> st.SearchStrategy[tile_pb2.NDArray]:
    """NDArray messages, mostly malformed: any dtype code, shapes of any rank and size, bytes of any length,
    references with any key, range and digest (some to a real stored object)."""
    shapes = st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 8), max_size=6)
    inline = st.builds(lambda dtype, shape, data: tile_pb2.NDArray(dtype=dtype, shape=shape, inline_data=data),
                       st.integers(0, 12), shapes, st.binary(max_size=256))
    keys = st.sampled_from([stored.key, "", "missing/key", "../escape", "/abs", "a//b"]) | st.text(max_size=40)
    refs = st.builds(
        lambda key, offset, size, sha: tile_pb2.ObjectRef(bucket=stored.bucket, key=key, offset=offset, size_bytes=size, sha256=sha),
        keys, st.integers(0, 2**64 - 1) | st.integers(0, 64), st.integers(0, 2**64 - 1) | st.sampled_from([stored.size_bytes, 0]),
        st.sampled_from([stored.sha256, "0" * 64, "", "XYZ"]) | st.text(_HEX, min_size=64, max_size=64),
    )
    by_reference = st.builds(lambda dtype, shape, ref: tile_pb2.NDArray(dtype=dtype, shape=shape, object_ref=ref),
                             st.integers(0, 12), shapes | st.just([stored.size_bytes // 4]), refs)
    return inline | by_reference


def test_codec_decodes_or_refuses_every_malformed_array_with_a_project_error(store: ObjectStore) -> None:
    stored = encode_array(np.arange(64, dtype=np.float32), store=store, inline_limit_bytes=0).object_ref
    tried = {"decoded": 0, "refused": 0}

    @settings(max_examples=CODEC_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(message=_ndarrays(stored))
    def decode(message: tile_pb2.NDArray) -> None:
        try:
            array = decode_array(message, store=store)
        except NightshiftError:  # InvalidInput, ObjectNotFound, ...: each maps to a clear status
            tried["refused"] += 1
            return
        tried["decoded"] += 1
        assert array.nbytes == math.prod(message.shape) * array.itemsize

    decode()
    print(f"codec: {sum(tried.values())} cases, {tried}")
    assert sum(tried.values()) == CODEC_EXAMPLES and tried["refused"] > tried["decoded"]


# -- every science service ------------------------------------------------------------------------


def _base_tile(spec: task_service_pb2.InputSpec, pixels: np.ndarray | None = None) -> tile_pb2.ImageTile:
    shape = (len(spec.bands), spec.height or 16, spec.width or 16)
    array = np.zeros(shape, np.float32) if pixels is None else pixels
    return tile_pb2.ImageTile(tile_id="fuzz", survey="fuzz", field="f", bands=[tile_pb2.Band(name=b) for b in spec.bands],
                              pixels=encode_array(array), missing_pixels=tile_pb2.MISSING_PIXELS_NAN)


def _malformed(spec: task_service_pb2.InputSpec, stored: tile_pb2.ObjectRef) -> st.SearchStrategy[tuple[str, task_service_pb2.InferRequest]]:
    """(kind, request) of malformed Infer requests: each mutates a valid tile in one way the contract forbids."""
    nbytes = len(_base_tile(spec).pixels.inline_data)

    def request(tile: tile_pb2.ImageTile, version: str = "") -> task_service_pb2.InferRequest:
        return task_service_pb2.InferRequest(tiles=[tile], model_version=version)

    def wrong_dtype(code: int) -> task_service_pb2.InferRequest:
        tile = _base_tile(spec)
        tile.pixels.dtype = code
        return request(tile)

    def bytes_disagree(extra: int) -> task_service_pb2.InferRequest:
        tile = _base_tile(spec)
        data = tile.pixels.inline_data
        tile.pixels.inline_data = data[:extra] if extra < 0 else data + b"\0" * extra
        return request(tile)

    def absurd_shape(shape: list[int]) -> task_service_pb2.InferRequest:
        tile = _base_tile(spec)
        del tile.pixels.shape[:]
        tile.pixels.shape.extend(shape)
        return request(tile)

    def byte_range(offset: int, size: int, key: str, sha: str) -> task_service_pb2.InferRequest:
        tile = _base_tile(spec)
        tile.pixels.object_ref.CopyFrom(tile_pb2.ObjectRef(bucket=stored.bucket, key=key, offset=offset, size_bytes=size, sha256=sha))
        return request(tile)

    def wrong_bands(names: list[str]) -> task_service_pb2.InferRequest:
        tile = _base_tile(spec)
        del tile.bands[:]
        tile.bands.extend(tile_pb2.Band(name=n) for n in names)
        return request(tile)

    def no_tile_id(_: int) -> task_service_pb2.InferRequest:
        tile = _base_tile(spec)
        tile.tile_id = ""
        return request(tile)

    names = st.text(string.ascii_letters + string.digits + "_-.", max_size=12)
    huge = st.integers(0, 2**64 - 1)
    return st.one_of(
        st.tuples(st.just("wrong dtype"), st.integers(0, 40).filter(lambda c: c != tile_pb2.DATA_TYPE_FLOAT32).map(wrong_dtype)),
        st.tuples(st.just("shape disagrees with bytes"), st.integers(-nbytes, 4096).filter(lambda n: n != 0).map(bytes_disagree)),
        st.tuples(st.just("absurd dimensions"), st.lists(huge | st.integers(0, 4), max_size=6).map(absurd_shape)),
        st.tuples(st.just("byte range"), st.builds(byte_range, huge | st.integers(0, 512), huge | st.just(nbytes),
                                                   st.just(stored.key), st.just(stored.sha256) | st.text(_HEX, min_size=64, max_size=64))),
        st.tuples(st.just("missing object"), st.builds(byte_range, st.just(0), st.just(nbytes),
                                                       names.map(lambda n: f"missing/{n}x"), st.text(_HEX, min_size=64, max_size=64))),
        st.tuples(st.just("hostile key"), st.builds(byte_range, st.just(0), st.just(nbytes),
                                                    st.text(max_size=30).map(lambda k: f"../{k}"), st.just("0" * 64))),
        st.tuples(st.just("wrong bands"), st.lists(names, max_size=8).filter(lambda b: tuple(b) != tuple(spec.bands)).map(wrong_bands)),
        st.tuples(st.just("no tile id"), st.just(0).map(no_tile_id)),
        st.tuples(st.just("unknown model version"), names.filter(lambda v: v != "").map(lambda v: request(_base_tile(spec), f"v-{v}"))),
    )


def _call(client: TaskClient, request: task_service_pb2.InferRequest, timeout_s: float = 120) -> grpc.StatusCode:
    try:
        client.infer(request.tiles, model_version=request.model_version, timeout_s=timeout_s)
    except grpc.RpcError as error:
        details = error.details() or ""
        assert "Traceback" not in details and 'File "' not in details, details
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("task", ["bubbles", "clusters", "filaments", "ghosts", "inclination"])
def test_every_malformed_request_gets_a_clear_status_and_the_service_keeps_serving(
    science_services: LocalNight, task: str
) -> None:
    store = science_services.store
    service = science_services.services[task]
    with TaskClient(service.target, timeout_s=120) as client:
        spec = client.describe().input
        stored = encode_array(np.zeros(64, np.float32), store=store, inline_limit_bytes=0).object_ref
        outcomes: dict[str, set[str]] = {}

        @settings(max_examples=SERVICE_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=_malformed(spec, stored))
        def fuzz(case: tuple[str, task_service_pb2.InferRequest]) -> None:
            kind, request = case
            code = _call(client, request)
            outcomes.setdefault(kind, set()).add(code.name)
            assert code in CLEAR_REFUSALS, f"{task}: {kind} answered {code.name}"

        fuzz()
        shape = (len(spec.bands), spec.height or 16, spec.width or 16)
        nan, inf = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        nan[:, : shape[1] // 2] = np.nan
        noise = np.random.default_rng(1).normal(0, 5, shape).astype(np.float32)  # enough structure for detections
        inf[0, 0, 0], inf[-1, -1, -1] = np.inf, -np.inf
        oversize = _base_tile(spec, np.zeros((len(spec.bands), 4096, 4096 // len(spec.bands) + 1), np.float32))
        explicit = {
            "NaN pixels": (task_service_pb2.InferRequest(tiles=[_base_tile(spec, nan)]), {"OK", "INVALID_ARGUMENT"}),
            "Inf pixels": (task_service_pb2.InferRequest(tiles=[_base_tile(spec, inf)]), {"OK", "INVALID_ARGUMENT"}),
            "empty batch": (task_service_pb2.InferRequest(), {"OK"}),
            "no WCS, noisy pixels": (task_service_pb2.InferRequest(tiles=[_base_tile(spec, noise)]), {"OK", "INVALID_ARGUMENT"}),
            "oversize message (over 64 MiB)": (task_service_pb2.InferRequest(tiles=[oversize]), {"RESOURCE_EXHAUSTED"}),
            "batch over the limit": (task_service_pb2.InferRequest(tiles=[_base_tile(spec)] * (spec.max_batch_tiles + 1)),
                                     {"RESOURCE_EXHAUSTED"}),
        }
        for kind, (request, allowed) in explicit.items():
            code = _call(client, request)
            outcomes[kind] = {code.name}
            assert code.name in allowed, f"{task}: {kind} answered {code.name}"
        assert client.health() == health_pb2.HealthCheckResponse.SERVING
        assert len(client.infer([_base_tile(spec)]).results) == 1  # still computing after all of it
    tried = SERVICE_EXAMPLES + len(explicit)
    print(f"{task}: {tried} malformed requests, statuses by kind: { {k: sorted(v) for k, v in sorted(outcomes.items())} }")
    assert service.process.poll() is None
