"""Object storage over the S3 API (MinIO in production, rclone or Ceph RGW locally).

Every array and file the services exchange goes through :class:`ObjectStore`. It is configured by
environment (:meth:`StoreConfig.from_env`), writes content-addressed keys so a repeated put is a
no-op, retries connection failures with exponential backoff, verifies SHA-256 on every read of a
reference, and raises one exception type per failure whichever server answers: rclone reports
404/403 in a form the minio client surfaces as ``InvalidResponseError``, Ceph as ``S3Error``.

A store with no room for a write raises :class:`~nightshift.core.errors.StoreFull` at once, without
retries: MinIO answers 507 ``XMinioStorageFull``, other servers ``InsufficientCapacity`` or
``QuotaExceeded``. ``rclone serve s3`` says nothing of its disk on the wire (a plain 500
``InternalError`` to a put, or a 404 ``NoSuchUpload`` once it dropped a multipart upload whose part
did not fit), so there a write fails after its bounded retries as a failed write, naming the answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from nightshift.core.errors import AccessDenied, FailedPrecondition, InvalidInput, ObjectNotFound, StoreFull, StoreUnavailable
from nightshift.v1 import tile_pb2

__all__ = ["StoreConfig", "ObjectStore", "sha256_hex", "check_key"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"}
_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
_FULL_CODES = {"XMinioStorageFull", "InsufficientCapacity", "QuotaExceeded"}
_INSUFFICIENT_STORAGE = 507  # HTTP's "no room", MinIO's answer to a write on a full disk
_ERROR_CODE = re.compile(r"<Code>([A-Za-z]{1,64})</Code>")
_MIN_PART_BYTES = 5 * 1024 * 1024  # S3's smallest multipart part
_MAX_KEY_BYTES = 1024  # S3's longest key
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def sha256_hex(data: bytes | memoryview) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def check_key(key: str, *, what: str = "object key") -> str:
    """Return ``key`` if it is a safe relative object key, else raise.

    A key (or a part of one built from a request, a file name, a model version) must not climb out
    of the prefix it is put under: no absolute path, no ``.`` or ``..`` segment, no empty segment
    (``a//b``, a trailing ``/``), no control character, at most 1024 bytes.

    Raises
    ------
    InvalidInput
        Naming what is wrong with the key.
    """
    if not key:
        raise InvalidInput(f"{what} is empty")
    if len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        raise InvalidInput(f"{what} {key[:64]!r}...: longer than {_MAX_KEY_BYTES} bytes")
    if _CONTROL_CHARACTERS.search(key):
        raise InvalidInput(f"{what} {key!r}: control characters are not allowed")
    if key.startswith("/"):
        raise InvalidInput(f"{what} {key!r}: absolute paths are not allowed")
    segments = key.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise InvalidInput(f"{what} {key!r}: empty, '.' and '..' path segments are not allowed")
    return key


@dataclasses.dataclass(frozen=True)
class StoreConfig:
    """Where the object store is and how to reach it.

    Parameters
    ----------
    endpoint : str
        ``host:port`` of the S3 endpoint (no scheme).
    access_key, secret_key : str
        Credentials.
    secure : bool
        Use TLS.
    bucket : str
        Bucket holding every project object.
    prefix : str
        Key prefix of every project object (lets several deployments share a bucket).
    region : str
        Region sent in signatures; set so no GetBucketLocation round trip is needed.
    ca_bundle : str or None
        CA certificates for TLS (default: certifi's bundle).
    unsigned_payload : bool
        Sign request bodies as ``UNSIGNED-PAYLOAD`` over plain HTTP too, instead of hashing every body
        with SHA-256 for the signature: for a server on loopback (the embedded one), where no network
        lies between client and server. (Over TLS the client sends bodies unsigned anyway.) The
        project's own SHA-256 in every reference stays the end-to-end check.
    """

    endpoint: str
    access_key: str
    secret_key: str
    secure: bool = False
    bucket: str = "nightshift"
    prefix: str = ""
    region: str = "us-east-1"
    ca_bundle: str | None = None
    unsigned_payload: bool = False

    ENV_PREFIX = "NIGHTSHIFT_S3_"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> StoreConfig:
        """Read ``NIGHTSHIFT_S3_{ENDPOINT,ACCESS_KEY,SECRET_KEY,SECURE,BUCKET,PREFIX,REGION,CA_BUNDLE,UNSIGNED_PAYLOAD}``.

        ``ENDPOINT`` may carry a scheme (``https://minio:9000``), which then sets ``SECURE``.

        Raises
        ------
        ValueError
            If the endpoint or a credential is missing.
        """
        p = cls.ENV_PREFIX
        missing = [p + k for k in ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY") if not environ.get(p + k)]
        if missing:
            raise ValueError(f"object store not configured: set {', '.join(missing)}")
        endpoint = environ[p + "ENDPOINT"]
        secure = environ.get(p + "SECURE", "").lower() in {"1", "true", "yes"}
        for scheme, is_tls in (("https://", True), ("http://", False)):
            if endpoint.startswith(scheme):
                endpoint, secure = endpoint[len(scheme) :], is_tls
        return cls(
            endpoint=endpoint.rstrip("/"),
            access_key=environ[p + "ACCESS_KEY"],
            secret_key=environ[p + "SECRET_KEY"],
            secure=secure,
            bucket=environ.get(p + "BUCKET", cls.bucket),
            prefix=environ.get(p + "PREFIX", cls.prefix).strip("/"),
            region=environ.get(p + "REGION", cls.region),
            ca_bundle=environ.get(p + "CA_BUNDLE") or None,
            unsigned_payload=environ.get(p + "UNSIGNED_PAYLOAD", "").lower() in {"1", "true", "yes"},
        )

    def to_env(self) -> dict[str, str]:
        """The environment variables that :meth:`from_env` reads back into this config."""
        p = self.ENV_PREFIX
        env = {
            p + "ENDPOINT": self.endpoint,
            p + "ACCESS_KEY": self.access_key,
            p + "SECRET_KEY": self.secret_key,
            p + "SECURE": "true" if self.secure else "false",
            p + "BUCKET": self.bucket,
            p + "PREFIX": self.prefix,
            p + "REGION": self.region,
        }
        if self.ca_bundle:
            env[p + "CA_BUNDLE"] = self.ca_bundle
        if self.unsigned_payload:
            env[p + "UNSIGNED_PAYLOAD"] = "true"
        return env


class _UnsignedPayloadMinio(Minio):
    """The MinIO client, sending bodies as ``UNSIGNED-PAYLOAD`` over plain HTTP as it does over HTTPS.

    The client otherwise hashes every request body with SHA-256 for the signature: a third hash of each
    shard the ingest writes (see :attr:`StoreConfig.unsigned_payload`). Tied to the pinned minio's
    ``_build_headers`` (constraints.txt); ``core/tests/test_store.py`` checks the header on the wire.
    """

    def _build_headers(self, host: str, headers: Any, body: bytes | None, creds: Any) -> Any:
        built, date = super()._build_headers(host, headers, None, creds)  # type: ignore[misc]
        if body:
            built["Content-Length"] = str(len(body))
        if creds:
            built["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        return built, date


class ObjectStore:
    """Put and get bytes, arrays and files in one bucket of an S3 server.

    Parameters
    ----------
    config : StoreConfig
        Endpoint, credentials, bucket and key prefix.
    retries : int
        Attempts after the first on connection errors and 5xx answers.
    backoff_s : float
        First retry delay in seconds; doubles on each retry.
    timeout_s : float
        Connect and read timeout of one HTTP request, in seconds.
    part_size_bytes : int
        Multipart upload part size (at least 5 MiB, S3's minimum).
    """

    def __init__(
        self,
        config: StoreConfig,
        *,
        retries: int = 4,
        backoff_s: float = 0.2,
        timeout_s: float = 30.0,
        part_size_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        if part_size_bytes < _MIN_PART_BYTES:
            raise ValueError(f"part_size_bytes={part_size_bytes}: S3 needs at least {_MIN_PART_BYTES}")
        self.config = config
        self.retries = retries
        self.backoff_s = backoff_s
        self.part_size_bytes = part_size_bytes
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
            retries=False,  # retried here, with backoff, for every call alike
            maxsize=16,
            cert_reqs="CERT_REQUIRED" if config.secure else "CERT_NONE",
            ca_certs=config.ca_bundle or certifi.where(),
        )
        client = _UnsignedPayloadMinio if config.unsigned_payload and not config.secure else Minio
        self._client = client(
            config.endpoint,
            access_key=config.access_key,
            secret_key=config.secret_key,
            secure=config.secure,
            region=config.region,
            http_client=http,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **kwargs: float) -> ObjectStore:
        """A store configured by ``NIGHTSHIFT_S3_*`` (see :meth:`StoreConfig.from_env`)."""
        return cls(StoreConfig.from_env(environ), **kwargs)  # type: ignore[arg-type]

    @property
    def bucket(self) -> str:
        return self.config.bucket

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` under the configured prefix.

        A part may hold several segments (``"run/a"``); each part is checked with :func:`check_key`,
        so a part taken from a request cannot leave the prefix.

        Raises
        ------
        InvalidInput
            A part is empty, absolute, or holds a ``.``/``..``/empty segment or a control character.
        """
        for part in parts:
            check_key(part, what=f"key part {part!r}")
        return "/".join(p for p in (self.config.prefix, *parts) if p)

    # -- buckets -----------------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Create the configured bucket if it does not exist."""
        if not self._call(lambda: self._client.bucket_exists(self.bucket), what=f"bucket {self.bucket}"):
            self._call(lambda: self._client.make_bucket(self.bucket), what=f"bucket {self.bucket}", writes=True)

    # -- writes ------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream",
                  sha256: str | None = None) -> tile_pb2.ObjectRef:
        """Write ``data`` at ``key`` (overwriting) and return a reference to it (``sha256``: its digest, when known).

        Raises
        ------
        StoreFull
            The server has no room for it (its disk or quota is full).
        StoreUnavailable
            The server could not be reached, or failed the write, after the retries.
        """
        check_key(key)
        self._call(
            lambda: self._client.put_object(
                self.bucket, key, io.BytesIO(data), len(data),
                content_type=content_type, part_size=self.part_size_bytes,
            ),
            what=key,
            writes=True,
        )
        return tile_pb2.ObjectRef(bucket=self.bucket, key=key, size_bytes=len(data), sha256=sha256 or sha256_hex(data))

    def put_content_addressed(self, data: bytes, *, namespace: str = "blobs") -> tile_pb2.ObjectRef:
        """Write ``data`` under a key derived from its SHA-256; a repeated put writes nothing.

        The key is ``<prefix>/cas/<namespace>/<sha[:2]>/<sha>``.
        """
        return self.ensure_content_addressed(data, namespace=namespace)[0]

    def ensure_content_addressed(self, data: bytes, *, namespace: str = "blobs") -> tuple[tile_pb2.ObjectRef, bool]:
        """:meth:`put_content_addressed`, also saying whether it wrote (False: already stored)."""
        digest = sha256_hex(data)
        key = self.key("cas", namespace, digest[:2], digest)
        if self.size_of(key) == len(data):
            return tile_pb2.ObjectRef(bucket=self.bucket, key=key, size_bytes=len(data), sha256=digest), False
        return self.put_bytes(key, data, sha256=digest), True

    def put_file(self, key: str, path: str | Path, *, content_type: str = "application/octet-stream") -> tile_pb2.ObjectRef:
        """Upload the file at ``path`` to ``key`` (multipart when large) and return a reference; raises as :meth:`put_bytes`."""
        check_key(key)
        path = Path(path)
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        self._call(
            lambda: self._client.fput_object(
                self.bucket, key, str(path), content_type=content_type, part_size=self.part_size_bytes
            ),
            what=key,
            writes=True,
        )
        return tile_pb2.ObjectRef(bucket=self.bucket, key=key, size_bytes=path.stat().st_size, sha256=digest.hexdigest())

    # -- reads -------------------------------------------------------------------------------

    def get_bytes(self, ref: tile_pb2.ObjectRef | str) -> bytes:
        """Read an object, or the byte range a reference names, verifying its SHA-256 if given.

        Only objects of the configured bucket and under the configured prefix are read: a reference
        elsewhere (another bucket, another deployment's prefix) is refused before any request, so
        its answer says nothing about whether that object exists.

        Raises
        ------
        ObjectNotFound
            The key does not exist.
        InvalidInput
            The reference names another bucket or a key outside the prefix, the key is malformed (see
            :func:`check_key`), the byte range starts past the object's end, or the bytes read do not
            match the reference's size or SHA-256.
        """
        if isinstance(ref, str):
            ref = tile_pb2.ObjectRef(bucket=self.bucket, key=ref)
        if ref.bucket not in ("", self.bucket):
            raise InvalidInput("object reference to another bucket: a service reads only its own bucket")
        bucket = self.bucket
        check_key(ref.key, what=f"object key in {bucket}")
        if self.config.prefix and not ref.key.startswith(self.config.prefix + "/"):
            raise InvalidInput(f"object key {ref.key!r}: outside this deployment's prefix")

        def read() -> bytes:
            # length 0 reads to the end of the object
            response = self._client.get_object(bucket, ref.key, offset=ref.offset, length=ref.size_bytes)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        data = self._call(read, what=f"{bucket}/{ref.key}")
        if ref.size_bytes and len(data) != ref.size_bytes:
            raise InvalidInput(
                f"object {bucket}/{ref.key} at offset {ref.offset}: expected {ref.size_bytes} bytes, read {len(data)}"
            )
        if ref.sha256 and sha256_hex(data) != ref.sha256:
            raise InvalidInput(f"object {bucket}/{ref.key}: sha256 does not match the reference")
        return data

    def get_file(self, key: str, path: str | Path) -> Path:
        """Download ``key`` to ``path`` and return the path."""
        check_key(key)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._call(lambda: self._client.fget_object(self.bucket, key, str(path)), what=key)
        return path

    def size_of(self, key: str) -> int | None:
        """Size in bytes of ``key``, or None if it does not exist."""
        check_key(key)
        try:
            stat = self._call(lambda: self._client.stat_object(self.bucket, key), what=key)
        except ObjectNotFound:
            return None
        return int(stat.size or 0)

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        return self.size_of(key) is not None

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` (recursive), in lexical order."""
        objects = self._call(
            lambda: list(self._client.list_objects(self.bucket, prefix=prefix, recursive=True)), what=prefix
        )
        return iter(sorted(o.object_name for o in objects if o.object_name))

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""
        check_key(key)
        self._call(lambda: self._client.remove_object(self.bucket, key), what=key)

    # -- error mapping and retries -----------------------------------------------------------

    def _full(self, what: str, answer: str) -> StoreFull:
        return StoreFull(f"object store at {self.config.endpoint} is full: no room to write {what} ({answer}); "
                         "free space or raise its quota, then run again")

    def _call(self, operation: Callable[[], _T], *, what: str, writes: bool = False) -> _T:
        """Run one S3 operation with retries; map every failure to the project's errors (``writes``: it writes ``what``)."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            answered = True  # the server answered (with an error): it is up
            try:
                return operation()
            except S3Error as exc:
                status = exc.response.status if exc.response is not None else 0
                if exc.code in _FULL_CODES or status == _INSUFFICIENT_STORAGE:
                    raise self._full(what, f"{exc.code}, HTTP {status}") from None
                if exc.code in _NOT_FOUND_CODES:
                    raise ObjectNotFound(f"not found in object store: {what} ({exc.code})") from None
                if exc.code in _DENIED_CODES:
                    raise AccessDenied(f"object store denied access to {what} ({exc.code})") from None
                if exc.code == "InvalidRange":
                    raise InvalidInput(f"byte range outside the object {what} ({exc.code})") from None
                transient, reason = status >= 500, exc.code
                if not transient:
                    raise
            except InvalidResponseError as exc:
                status, body = exc._code, exc._body or ""  # the minio client keeps the HTTP status only here
                if status == _INSUFFICIENT_STORAGE:
                    raise self._full(what, f"HTTP {status}") from None
                # rclone drops a multipart upload whose part it could not store: the write failed, no key is missing
                dropped_upload = writes and status == 404 and "NoSuchUpload" in body
                if status == 404 and not dropped_upload:
                    raise ObjectNotFound(f"not found in object store: {what} (HTTP 404)") from None
                if status in (401, 403):
                    raise AccessDenied(f"object store denied access to {what} (HTTP {status})") from None
                if status == 416:
                    raise InvalidInput(f"byte range outside the object {what} (HTTP 416)") from None
                code = _ERROR_CODE.search(body)
                transient, reason = status >= 500 or dropped_upload, f"HTTP {status}" + (f" {code[1]}" if code else "")
                if not transient:  # e.g. plaintext sent to an HTTPS port: a configuration error, said plainly
                    raise FailedPrecondition(
                        f"object store at {self.config.endpoint} refused {what} (HTTP {status}): {(exc._body or '')[:200]}"
                    ) from None
            except ServerError as exc:
                if exc.status_code == _INSUFFICIENT_STORAGE:
                    raise self._full(what, f"HTTP {exc.status_code}") from None
                transient, reason = exc.status_code >= 500, f"HTTP {exc.status_code}"
                if not transient:
                    raise
            except (urllib3.exceptions.HTTPError, ConnectionError) as exc:
                answered, reason = False, type(exc).__name__
            if attempt == self.retries:
                break
            _log.warning("object store: %s failed (%s), retry %d in %.2fs", what, reason, attempt + 1, delay)
            time.sleep(delay)
            delay *= 2
        if writes and answered:
            attempts = f"{self.retries + 1} attempt{'s' if self.retries else ''}"
            raise StoreUnavailable(f"object store at {self.config.endpoint} failed to write {what} in {attempts} "
                                   f"({reason}; a full disk is one cause)")
        raise StoreUnavailable(
            f"object store at {self.config.endpoint} unavailable for {what} after {self.retries + 1} attempts ({reason})"
        )
