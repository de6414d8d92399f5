"""ObjectStore and StoreConfig against the session's real S3 server (rclone, or Ceph RGW with --s3-server=ceph)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from nightshift.core.errors import AccessDenied, InvalidInput, ObjectNotFound, StoreFull, StoreUnavailable
from nightshift.core.s3server import free_port
from nightshift.core.store import ObjectStore, StoreConfig, sha256_hex
from nightshift.v1 import tile_pb2

MiB = 1024 * 1024


def test_put_bytes_returns_a_reference_and_reads_back(store: ObjectStore) -> None:
    data = os.urandom(1000)
    key = store.key("a", "blob.bin")

    ref = store.put_bytes(key, data)

    assert (ref.bucket, ref.key, ref.offset, ref.size_bytes) == (store.bucket, key, 0, 1000)
    assert ref.sha256 == sha256_hex(data)
    assert store.get_bytes(ref) == data
    assert store.get_bytes(key) == data


def test_put_bytes_overwrites(store: ObjectStore) -> None:
    key = store.key("overwritten")
    store.put_bytes(key, b"first")
    store.put_bytes(key, b"second")
    assert store.get_bytes(key) == b"second"


def test_empty_object_round_trip(store: ObjectStore) -> None:
    ref = store.put_bytes(store.key("empty"), b"")
    assert ref.size_bytes == 0
    assert store.get_bytes(ref) == b""
    assert store.size_of(ref.key) == 0


def test_put_file_and_get_file_round_trip(store: ObjectStore, tmp_path) -> None:
    data = os.urandom(70_000)
    source = tmp_path / "source.bin"
    source.write_bytes(data)

    ref = store.put_file(store.key("file.bin"), source)
    target = store.get_file(ref.key, tmp_path / "nested" / "dir" / "target.bin")

    assert (ref.size_bytes, ref.sha256) == (len(data), sha256_hex(data))
    assert target == tmp_path / "nested" / "dir" / "target.bin"
    assert target.read_bytes() == data


def test_byte_range_read(store: ObjectStore) -> None:
    data = bytes(range(256)) * 4
    key = store.put_bytes(store.key("ranged"), data).key

    middle = tile_pb2.ObjectRef(key=key, offset=10, size_bytes=20, sha256=sha256_hex(data[10:30]))
    assert store.get_bytes(middle) == data[10:30]
    assert store.get_bytes(tile_pb2.ObjectRef(key=key, offset=1000)) == data[1000:]


def test_byte_range_with_the_whole_objects_sha_is_rejected(store: ObjectStore) -> None:
    data = bytes(range(256))
    key = store.put_bytes(store.key("ranged"), data).key
    ref = tile_pb2.ObjectRef(key=key, offset=10, size_bytes=20, sha256=sha256_hex(data))
    with pytest.raises(InvalidInput, match="sha256 does not match the reference"):
        store.get_bytes(ref)


def test_range_past_the_end_is_a_size_mismatch(store: ObjectStore) -> None:
    key = store.put_bytes(store.key("short"), bytes(100)).key
    ref = tile_pb2.ObjectRef(key=key, offset=90, size_bytes=20)
    with pytest.raises(InvalidInput, match="at offset 90: expected 20 bytes, read 10"):
        store.get_bytes(ref)


@pytest.mark.parametrize("offset", [100, 200])
def test_range_starting_past_the_end_is_invalid_input(store: ObjectStore, offset: int) -> None:
    key = store.put_bytes(store.key("short"), bytes(100)).key
    with pytest.raises(InvalidInput, match="byte range outside .*short"):
        store.get_bytes(tile_pb2.ObjectRef(key=key, offset=offset, size_bytes=10))


def test_content_addressed_key_is_derived_from_the_sha(store: ObjectStore) -> None:
    data = b"some array bytes"
    digest = sha256_hex(data)

    ref = store.put_content_addressed(data, namespace="arrays")

    assert ref.key == store.key("cas", "arrays", digest[:2], digest)
    assert (ref.bucket, ref.size_bytes, ref.sha256) == (store.bucket, len(data), digest)
    assert store.get_bytes(ref) == data


def test_repeated_content_addressed_put_writes_nothing(store: ObjectStore, monkeypatch) -> None:
    data = os.urandom(4096)
    first = store.put_content_addressed(data)

    def refuse_write(*args: object, **kwargs: object) -> None:
        raise AssertionError("a repeated content-addressed put must not write")

    monkeypatch.setattr(store, "put_bytes", refuse_write)
    second, written = store.ensure_content_addressed(data)

    assert second == first and not written
    assert list(store.list_keys(store.key("cas"))) == [first.key]


def test_content_addressed_put_repairs_a_truncated_object(store: ObjectStore) -> None:
    data = os.urandom(4096)
    digest = sha256_hex(data)
    store.put_bytes(store.key("cas", "blobs", digest[:2], digest), data[:100])

    ref = store.put_content_addressed(data)

    assert store.get_bytes(ref) == data


def test_missing_key_is_object_not_found(store: ObjectStore, tmp_path) -> None:
    missing = store.key("no-such-key")
    with pytest.raises(ObjectNotFound, match="no-such-key"):
        store.get_bytes(missing)
    with pytest.raises(ObjectNotFound, match="no-such-key"):
        store.get_file(missing, tmp_path / "out.bin")
    assert store.size_of(missing) is None
    assert not store.exists(missing)


def test_missing_bucket_is_object_not_found(store: ObjectStore) -> None:
    missing = ObjectStore(dataclasses.replace(store.config, bucket=f"no-such-bucket-{uuid.uuid4().hex[:8]}"), retries=0)
    with pytest.raises(ObjectNotFound, match="no-such-bucket"):
        missing.get_bytes(missing.key("k"))


def test_a_reference_to_another_bucket_or_prefix_is_refused_before_any_request(store: ObjectStore) -> None:
    with pytest.raises(InvalidInput, match="another bucket"):
        store.get_bytes(tile_pb2.ObjectRef(bucket=f"no-such-bucket-{uuid.uuid4().hex[:8]}", key="k"))
    with pytest.raises(InvalidInput, match="outside this deployment's prefix"):
        store.get_bytes(tile_pb2.ObjectRef(bucket=store.bucket, key="another-prefix/k"))


def test_wrong_secret_is_access_denied(store: ObjectStore) -> None:
    key = store.put_bytes(store.key("secret"), b"payload").key
    intruder = ObjectStore(dataclasses.replace(store.config, secret_key="wrong"), retries=0)

    with pytest.raises(AccessDenied, match="denied access") as denied:
        intruder.get_bytes(key)
    assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(AccessDenied):
        intruder.put_bytes(store.key("forged"), b"x")
    with pytest.raises(AccessDenied):
        list(intruder.list_keys(store.key()))
    with pytest.raises(AccessDenied):
        intruder.exists(key)
    with pytest.raises(AccessDenied):
        intruder.delete(key)
    assert store.exists(key)
    assert not store.exists(store.key("forged"))


def test_large_object_goes_multipart_and_round_trips(store: ObjectStore, tmp_path) -> None:
    multipart = ObjectStore(store.config, retries=1, part_size_bytes=5 * MiB)
    data = os.urandom(12 * MiB)
    source = tmp_path / "large.bin"
    source.write_bytes(data)

    from_file = multipart.put_file(multipart.key("large-file"), source)
    from_bytes = multipart.put_bytes(multipart.key("large-bytes"), data)

    assert from_file.sha256 == from_bytes.sha256 == sha256_hex(data)
    assert multipart.size_of(from_file.key) == multipart.size_of(from_bytes.key) == 12 * MiB
    assert multipart.get_file(from_file.key, tmp_path / "back.bin").read_bytes() == data
    assert multipart.get_bytes(from_bytes) == data


def test_part_size_below_the_s3_minimum_is_rejected(store: ObjectStore) -> None:
    with pytest.raises(ValueError, match="S3 needs at least 5242880"):
        ObjectStore(store.config, part_size_bytes=MiB)


def test_list_keys_is_recursive_and_sorted(store: ObjectStore) -> None:
    for name in ("run/b", "run/a", "run/sub/c", "other/d"):
        store.put_bytes(store.key(name), b"x")

    assert list(store.list_keys(store.key("run") + "/")) == [
        store.key("run/a"), store.key("run/b"), store.key("run/sub/c"),
    ]
    assert list(store.list_keys(store.key("nothing-here") + "/")) == []


def test_delete_removes_and_tolerates_a_missing_key(store: ObjectStore) -> None:
    key = store.put_bytes(store.key("doomed"), b"x").key
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)


def test_exists_and_size_of(store: ObjectStore) -> None:
    key = store.put_bytes(store.key("sized"), bytes(1234)).key
    assert store.exists(key)
    assert store.size_of(key) == 1234


def test_ensure_bucket_creates_a_missing_bucket(store: ObjectStore) -> None:
    fresh = ObjectStore(dataclasses.replace(store.config, bucket=f"fresh-{uuid.uuid4().hex[:8]}"), retries=1)
    fresh.ensure_bucket()
    fresh.ensure_bucket()
    ref = fresh.put_bytes(fresh.key("k"), b"in the new bucket")
    assert ref.bucket == fresh.bucket
    assert fresh.get_bytes(ref) == b"in the new bucket"


def test_key_joins_parts_under_the_prefix() -> None:
    store = ObjectStore(StoreConfig(endpoint="127.0.0.1:1", access_key="a", secret_key="s", prefix="deploy"))
    assert store.key("models", "bubbles/v2", "1") == "deploy/models/bubbles/v2/1"
    assert store.key() == "deploy"
    assert ObjectStore(StoreConfig(endpoint="127.0.0.1:1", access_key="a", secret_key="s")).key("x") == "x"


@pytest.mark.parametrize("part", ["", "/etc/passwd", "..", "a/../../b", "a//b", "a/", "./a", "tab\there", "nul\x00", "x" * 1025])
def test_key_parts_that_could_leave_the_prefix_are_refused(part: str) -> None:
    store = ObjectStore(StoreConfig(endpoint="127.0.0.1:1", access_key="a", secret_key="s", prefix="deploy"))
    with pytest.raises(InvalidInput, match="key part"):
        store.key("runs", part)
    with pytest.raises(InvalidInput, match="object key"):
        store.get_bytes(tile_pb2.ObjectRef(key=f"deploy/{part}" if part else ""))


def test_store_from_env_reaches_the_server(store: ObjectStore) -> None:
    key = store.put_bytes(store.key("via-env"), b"hello").key
    assert ObjectStore.from_env(store.config.to_env(), retries=0).get_bytes(key) == b"hello"


@pytest.mark.parametrize("unsigned", [False, True])
def test_bodies_are_signed_by_their_sha256_unless_the_config_says_unsigned(store: ObjectStore, unsigned: bool) -> None:
    data = b"x" * 100_000
    client = ObjectStore(dataclasses.replace(store.config, unsigned_payload=unsigned))
    trace = io.StringIO()
    client._client.trace_on(trace)  # minio's own request trace: the headers as sent
    ref = client.put_bytes(client.key("signed", str(unsigned)), data)
    sent = "UNSIGNED-PAYLOAD" if unsigned else hashlib.sha256(data).hexdigest()
    assert f"x-amz-content-sha256: {sent}".lower() in trace.getvalue().lower()
    assert client.get_bytes(ref) == data and ref.sha256 == hashlib.sha256(data).hexdigest()  # the server took it


def test_the_embedded_server_is_reached_unsigned_on_loopback() -> None:
    from nightshift.core.s3server import start_local_s3

    with start_local_s3("rclone") as server:
        assert server.config.unsigned_payload and server.config.endpoint.startswith("127.0.0.1:")
        assert StoreConfig.from_env(server.config.to_env()).unsigned_payload


def test_config_env_round_trip() -> None:
    config = StoreConfig(
        endpoint="minio.example:9000", access_key="ak", secret_key="sk", secure=True,
        bucket="science", prefix="deploy/a", region="eu-west-1", ca_bundle="/etc/ca.pem", unsigned_payload=True,
    )
    assert StoreConfig.from_env(config.to_env()) == config
    plain = StoreConfig(endpoint="127.0.0.1:9000", access_key="ak", secret_key="sk")
    assert "NIGHTSHIFT_S3_CA_BUNDLE" not in plain.to_env()
    assert StoreConfig.from_env(plain.to_env()) == plain


def test_config_from_env_defaults() -> None:
    env = {"NIGHTSHIFT_S3_ENDPOINT": "s3:9000", "NIGHTSHIFT_S3_ACCESS_KEY": "ak", "NIGHTSHIFT_S3_SECRET_KEY": "sk"}
    assert StoreConfig.from_env(env) == StoreConfig(
        endpoint="s3:9000", access_key="ak", secret_key="sk", secure=False,
        bucket="nightshift", prefix="", region="us-east-1", ca_bundle=None,
    )


@pytest.mark.parametrize(
    ("endpoint", "secure_var", "expected_endpoint", "expected_secure"),
    [
        ("https://minio:9000/", "", "minio:9000", True),
        ("http://minio:9000", "true", "minio:9000", False),
        ("minio:9000", "yes", "minio:9000", True),
        ("minio:9000", "no", "minio:9000", False),
    ],
)
def test_config_scheme_in_endpoint_sets_tls(
    endpoint: str, secure_var: str, expected_endpoint: str, expected_secure: bool
) -> None:
    env = {
        "NIGHTSHIFT_S3_ENDPOINT": endpoint, "NIGHTSHIFT_S3_ACCESS_KEY": "ak", "NIGHTSHIFT_S3_SECRET_KEY": "sk",
        "NIGHTSHIFT_S3_SECURE": secure_var, "NIGHTSHIFT_S3_PREFIX": "/a/b/",
    }
    config = StoreConfig.from_env(env)
    assert (config.endpoint, config.secure, config.prefix) == (expected_endpoint, expected_secure, "a/b")


def test_config_from_env_names_the_missing_variables() -> None:
    with pytest.raises(ValueError, match="set NIGHTSHIFT_S3_ACCESS_KEY, NIGHTSHIFT_S3_SECRET_KEY$"):
        StoreConfig.from_env({"NIGHTSHIFT_S3_ENDPOINT": "s3:9000", "NIGHTSHIFT_S3_SECRET_KEY": ""})


def test_closed_port_is_store_unavailable_after_retries() -> None:
    config = StoreConfig(endpoint=f"127.0.0.1:{free_port()}", access_key="ak", secret_key="sk")
    unreachable = ObjectStore(config, retries=1, backoff_s=0.01, timeout_s=1.0)

    with pytest.raises(StoreUnavailable, match=r"unavailable for .*k after 2 attempts \(.*Error\)") as failed:
        unreachable.get_bytes("k")
    assert failed.value.retryable
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE


@pytest.fixture
def flaky_endpoint() -> Iterator[tuple[ThreadingHTTPServer, list[tuple[int, str, bytes]]]]:
    """An HTTP server on 127.0.0.1 answering GETs and PUTs with the (status, content type, body) replies queued."""
    replies: list[tuple[int, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.do_GET()

        def do_GET(self) -> None:
            status, content_type, body = replies.pop(0)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server, replies
    server.shutdown()
    server.server_close()


SLOW_DOWN = (503, "application/xml", b"<Error><Code>SlowDown</Code><Message>busy</Message></Error>")
# MinIO's answer to a write once its drives are below their free-space threshold (its errStorageFull)
MINIO_STORAGE_FULL = (507, "application/xml", b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>XMinioStorageFull</Code>'
                      b"<Message>Storage backend has reached its minimum free drive threshold. Please delete a few objects "
                      b"to proceed.</Message><Key>k</Key><BucketName>nightshift</BucketName><Resource>/nightshift/k</Resource>"
                      b"<RequestId>17E</RequestId><HostId>dd9</HostId></Error>")
BAD_GATEWAY = (502, "text/html", b"<html>bad gateway</html>")


def flaky_store(server: ThreadingHTTPServer) -> ObjectStore:
    config = StoreConfig(endpoint=f"127.0.0.1:{server.server_address[1]}", access_key="ak", secret_key="sk")
    return ObjectStore(config, retries=2, backoff_s=0.01, timeout_s=2.0)


def test_server_errors_are_retried(flaky_endpoint) -> None:
    server, replies = flaky_endpoint
    replies += [SLOW_DOWN, BAD_GATEWAY, (200, "application/octet-stream", b"payload")]
    assert flaky_store(server).get_bytes("k") == b"payload"
    assert replies == []


def test_persistent_server_errors_are_store_unavailable(flaky_endpoint) -> None:
    server, replies = flaky_endpoint
    replies += [BAD_GATEWAY, SLOW_DOWN, SLOW_DOWN]
    with pytest.raises(StoreUnavailable, match=r"unavailable for nightshift/k after 3 attempts \(SlowDown\)"):
        flaky_store(server).get_bytes("k")
    assert replies == []


@pytest.mark.parametrize(("reply", "answer"), [(MINIO_STORAGE_FULL, "XMinioStorageFull, HTTP 507"),
                                               ((507, "text/plain", b"Insufficient Storage"), "HTTP 507")],
                         ids=["minio", "bare-507"])
def test_a_full_store_is_store_full_without_retries(flaky_endpoint, reply, answer) -> None:
    server, replies = flaky_endpoint
    replies += [reply] * 3
    with pytest.raises(StoreFull, match=rf"is full: no room to write k \({answer}\); free space") as raised:
        flaky_store(server).put_bytes("k", b"tile")
    assert len(replies) == 2  # one request: waiting frees no space, so no retry
    assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
