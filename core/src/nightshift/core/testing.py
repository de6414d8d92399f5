"""pytest fixtures shared by every Nightshift test suite (registered as the ``nightshift`` plugin).

``s3_server`` is a real local S3 server for the whole session: rclone by default, Ceph RGW with
``--s3-server=ceph`` (the second tier, so nothing depends on rclone's quirks). ``store`` is an
:class:`~nightshift.core.store.ObjectStore` on it with a fresh key prefix per test.
:func:`overflowing_checkpoint` makes the checkpoint a services' smoke-check test registers.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nightshift.core.errors import InvalidInput
from nightshift.core.s3server import CephRgwServer, LocalS3Server, start_local_s3
from nightshift.core.store import ObjectStore


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--s3-server",
        choices=("rclone", "ceph"),
        default="rclone",
        help="real S3 server the object-store fixtures start (default: rclone)",
    )


@pytest.fixture(scope="session")
def s3_server(request: pytest.FixtureRequest) -> Iterator[LocalS3Server]:
    """A real S3 server on 127.0.0.1, started once per test session."""
    kind = request.config.getoption("--s3-server")
    if kind == "ceph" and not CephRgwServer.available():
        pytest.fail("--s3-server=ceph needs Debian's radosgw, ceph-mon and ceph-osd: run scripts/install-ceph.sh")
    server = start_local_s3(kind)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def store(s3_server: LocalS3Server) -> ObjectStore:
    """An object store on the session's server, under a key prefix of its own."""
    store = ObjectStore(
        dataclasses.replace(s3_server.config, prefix=f"test-{uuid.uuid4().hex[:12]}"),
        retries=1,
        backoff_s=0.05,
    )
    store.ensure_bucket()
    return store


_HUGE = 3e38  # finite in float32 (largest 3.4e38), so the registry's finite-weights check passes it


def _alternating(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return (_HUGE * (-1.0) ** np.arange(int(np.prod(shape)))).reshape(shape).astype(dtype)


def overflowing_checkpoint(source: Path, target: Path) -> Path:
    """A copy of checkpoint ``source`` (``.safetensors`` or ``.keras``) with every float weight +-3e38, alternating.

    Every weight is finite, so the checkpoint passes :func:`~nightshift.core.registry.check_finite_weights`, but
    any layer summing two products overflows to +inf and -inf and gives NaN: the checkpoint of a diverged
    training that only a smoke inference catches.
    """
    blob = Path(source).read_bytes()
    if source.suffix == ".safetensors":
        header_bytes = struct.unpack("<Q", blob[:8])[0]
        data = bytearray(blob[8 + header_bytes :])
        for name, info in json.loads(blob[8 : 8 + header_bytes]).items():
            if name != "__metadata__" and info["dtype"] in ("F32", "F64"):
                start, end = info["data_offsets"]
                dtype = np.dtype("<f4" if info["dtype"] == "F32" else "<f8")
                data[start:end] = _alternating(((end - start) // dtype.itemsize,), dtype).tobytes()
        target.write_bytes(blob[: 8 + header_bytes] + bytes(data))
    elif source.suffix == ".keras":
        import h5py  # Keras's own dependency, present wherever a .keras file is

        def overflow(_: str, node: object) -> None:
            if isinstance(node, h5py.Dataset) and node.dtype.kind == "f" and node.size:
                node[...] = _alternating(node.shape, node.dtype)

        with zipfile.ZipFile(io.BytesIO(blob)) as archive, zipfile.ZipFile(target, "w") as out:
            for member in archive.namelist():
                content = archive.read(member)
                if member == "model.weights.h5":
                    weights = io.BytesIO(content)
                    with h5py.File(weights, "r+") as h5:
                        h5.visititems(overflow)
                    content = weights.getvalue()
                out.writestr(member, content)
    else:
        raise ValueError(f"{source}: expected a .safetensors or .keras checkpoint")
    return target


def assert_smoke_check_refuses(registry: object, weights: Path, card_path: Path, broken: Path) -> None:
    """The shipped checkpoint becomes version 1 and ``LATEST``; ``broken`` is registered as 2 but refused ``LATEST``.

    ``registry`` is a service's :class:`~nightshift.core.registry.ModelRegistry` (with its smoke check); both
    :meth:`register` and :meth:`promote` must refuse to move ``LATEST`` to the broken version.
    """
    assert registry.ensure_bundled(weights, card_path).version == "1"  # type: ignore[attr-defined]
    assert registry.get().version == "1"  # type: ignore[attr-defined]  # the shipped model passes its smoke check
    card = json.loads(card_path.read_text())
    with pytest.raises(InvalidInput, match="version 2: its smoke inference gave [0-9]+ NaN or infinite values"):
        registry.register({broken.name: broken}, name=card["name"], metrics={}, config=card["config"],  # type: ignore[attr-defined]
                          data_seed=0)
    with pytest.raises(InvalidInput, match="version 2: its smoke inference gave"):
        registry.promote("2")  # type: ignore[attr-defined]
