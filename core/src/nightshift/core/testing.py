"""pytest fixtures shared by every Nightshift test suite (registered as the ``nightshift`` plugin).

``s3_server`` is a real local S3 server for the whole session: rclone by default, Ceph RGW with
``--s3-server=ceph`` (the second tier, so nothing depends on rclone's quirks). ``store`` is an
:class:`~nightshift.core.store.ObjectStore` on it with a fresh key prefix per test.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest

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
