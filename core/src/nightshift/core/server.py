"""The gRPC server runtime every science service runs on (``grpc.aio``).

One call starts a service from its :class:`~nightshift.core.model.TaskModel` (or any
:class:`Servable`, e.g. the ingest service)::

    run(MyTaskModel(...), options=ServerOptions.from_env())

The runtime serves the servable's services (``nightshift.v1.TaskService`` for a model), the standard ``grpc.health.v1.Health`` service and
server reflection. Health says NOT_SERVING until the model is loaded and warmed up, then SERVING
(service names ``""``, each service's full name and the servable's name, e.g. the task); ``liveness`` is SERVING
from the start. With ``health_port`` set, a second plaintext port serves that same health state and
nothing else, so the kubelet's gRPC probes (plaintext only) can ask while the service port is TLS-only.
On SIGTERM or SIGINT health turns NOT_SERVING, new calls are refused, calls in
flight finish within ``grace_s``, then the servable is closed (the model unloaded). One interceptor maps the project's
errors to status codes (unknown errors become INTERNAL, with no stack trace on the wire), logs
every call as a JSON line and counts it in Prometheus metrics.

What a caller may take is bounded: bytes that are not the request message are INVALID_ARGUMENT (no
exception class on the wire); at most ``max_concurrent_calls`` calls are handled at once and
``Infer`` calls hold at most ``max_inflight_bytes`` of decoded tiles, both sized from the container's
memory limit unless configured (RESOURCE_EXHAUSTED beyond); a tile whose WCS cards are not a usable
celestial WCS is rejected alone (an empty result, its reason in the trailing metadata
``nightshift-rejected-tiles``) and the rest of its batch served; ``Train`` runs one at a time per
service and stops, registering nothing, when its caller cancels or its deadline passes.

Who may call is checked in the same interceptor when the deployment has a signing secret
(``NIGHTSHIFT_AUTH_SECRET``): every call of the service's own methods needs a bearer token with the
method's role (:mod:`nightshift.core.auth`; UNAUTHENTICATED without one, PERMISSION_DENIED with the
wrong role), health and reflection none. Without a secret a service serves on loopback only, with a
warning, unless ``NIGHTSHIFT_AUTH=off`` accepts anonymous callers on other addresses too
(:meth:`ServerOptions.check_authentication`).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import json
import logging
import math
import os
import resource
import signal
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nightshift.core.auth import AUTH_SECRET_ENV, AUTH_SECRET_FILE_ENV, auth_mode, authorize, secret_from_env
from nightshift.core.errors import DeadlineExceeded, InvalidInput, NightshiftError, ResourceExhausted, Unavailable
from nightshift.core.metrics import ServiceMetrics
from nightshift.core.model import CallScope, TaskModel
from nightshift.core.logs import configure_logging
from nightshift.core.store import ObjectStore, StoreConfig
from nightshift.core.shm import DEFAULT_SHARED_MEMORY_DIR, shared_memory_domain
from nightshift.core.tiles import Tile, decode_tiles
from nightshift.v1 import results_pb2, task_service_pb2, task_service_pb2_grpc, tile_pb2

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "TASK_SERVICE_NAME",
    "LIVENESS",
    "ServerOptions",
    "ProgressStream",
    "REJECTED_TILES_METADATA",
    "memory_limit_bytes",
    "Servable",
    "TaskServable",
    "Server",
    "BackgroundServer",
    "serve",
    "run",
    "serve_from_environment",
]

_log = logging.getLogger(__name__)
_Event = TypeVar("_Event")
_Result = TypeVar("_Result")

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_FETCH_THREADS = 8
TASK_SERVICE_NAME = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name
LIVENESS = "liveness"


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """How a service listens and behaves.

    Parameters
    ----------
    host : str
        Address to bind ("0.0.0.0" in a container, "127.0.0.1" locally).
    port : int
        gRPC port; 0 picks a free one (read it back from ``Server.port`` or ``port_file``).
    metrics_port : int or None
        Port of the Prometheus ``/metrics`` endpoint; 0 picks a free one; None serves none.
    max_message_bytes : int
        Largest gRPC message received or sent (at least 64 MiB by default).
    grace_s : float
        Time calls in flight get to finish on shutdown, in seconds.
    compute_slots : int
        Batches computed at once (1 for a single GPU); further batches queue.
    port_file : Path or None
        File the bound port is written to once listening (for launchers using port 0).
    tls_cert, tls_key : Path or None
        PEM certificate chain and private key: serve TLS. Both or neither.
    health_port : int or None
        A plaintext port on ``host`` serving only ``grpc.health.v1.Health``, with the service port's
        health state (SERVING, NOT_SERVING, drain alike), for probes that cannot speak TLS; 0 picks a
        free one (``Server.health_port``); None (the default) serves health on the service port only.
    drain_notice_s : float
        On shutdown, how long health says NOT_SERVING while calls are still accepted, so probes and
        load balancers see it before new calls are refused.
    batch_max_delay_ms : float
        Server-side batching: ``Infer`` requests arriving within this many milliseconds of the first
        waiting one are concatenated into one model call (up to the model's preferred batch, never
        above its maximum) and the results split back; 0 (the default) computes each request alone.
    max_batch_tiles : int
        The operator's cap on tiles in one call, below the model's own ``max_batch_tiles`` (0: the
        model's); Describe says the effective limit, more is RESOURCE_EXHAUSTED.
    max_concurrent_calls : int
        Calls of the service's own methods handled at once (health and reflection not counted);
        one more is refused at once with RESOURCE_EXHAUSTED. 0 (the default) sizes it from the
        memory limit: one call per two ``max_message_bytes`` of it, between 8 and 256.
    max_inflight_bytes : int
        Decoded tile bytes all ``Infer`` calls may hold at once; a call that would go beyond is
        refused at once with RESOURCE_EXHAUSTED (one larger than the whole budget is told to split
        its batch). 0 (the default): a quarter of the memory limit.
    memory_limit_bytes : int
        The memory the budgets are sized from; 0 (the default) reads the container's limit
        (cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``), else ``RLIMIT_AS``, else the
        machine's memory, whichever is least (:func:`memory_limit_bytes`).
    auth_secret : bytes or None
        The deployment's token-signing secret: every call of the service's own methods then needs a
        bearer token with its method's role (:mod:`nightshift.core.auth`). None: no authentication,
        which :meth:`check_authentication` accepts only as ``auth_mode`` says.
    shared_memory_dir : Path or None
        Where the service reads pixels callers on its host put in shared memory (:mod:`nightshift.core.shm`;
        ``NIGHTSHIFT_SHM_DIR``, "off" for none); advertised in Describe. None: such tiles are FAILED_PRECONDITION.
    auth_mode : str
        ``NIGHTSHIFT_AUTH``: "" (default: without a secret, serve on loopback only, with a warning; refuse
        any other address), "on" (refuse to start without a secret) or "off" (anonymous callers accepted
        on any address, still with the warning).
    """

    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    grace_s: float = 30.0
    compute_slots: int = 1
    port_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    health_port: int | None = None
    drain_notice_s: float = 0.0
    batch_max_delay_ms: float = 0.0
    max_batch_tiles: int = 0
    max_concurrent_calls: int = 0
    max_inflight_bytes: int = 0
    memory_limit_bytes: int = 0
    auth_secret: bytes | None = dataclasses.field(default=None, repr=False)
    auth_mode: str = ""
    shared_memory_dir: Path | None = DEFAULT_SHARED_MEMORY_DIR

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and a key (NIGHTSHIFT_GRPC_TLS_CERT and NIGHTSHIFT_GRPC_TLS_KEY)")
        for name in ("max_concurrent_calls", "max_inflight_bytes", "memory_limit_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: expected 0 (sized from the memory limit) or a positive number")

    def memory_budget(self) -> int:
        """The memory the budgets are sized from: ``memory_limit_bytes``, else what :func:`memory_limit_bytes` finds."""
        return self.memory_limit_bytes or memory_limit_bytes()

    def call_limit(self) -> int:
        """Calls handled at once: ``max_concurrent_calls``, else sized from the memory budget."""
        if self.max_concurrent_calls:
            return self.max_concurrent_calls
        return max(_MIN_AUTO_CALLS, min(_MAX_AUTO_CALLS, self.memory_budget() // (2 * self.max_message_bytes)))

    def inflight_byte_limit(self) -> int:
        """Decoded tile bytes in flight: ``max_inflight_bytes``, else a quarter of the memory budget."""
        return self.max_inflight_bytes or max(1, self.memory_budget() // 4)

    def check_authentication(self) -> str:
        """"" when the service may start as configured, else a warning to log once it listens.

        Raises
        ------
        PermissionError
            No secret and ``auth_mode`` "on", or no secret on an address other than loopback without
            ``auth_mode`` "off": the service would take anonymous calls of every method, ``Train`` included.
        """
        if self.auth_secret is not None:
            return ""
        address = f"{self.host}:{self.port}"
        if self.auth_mode == "on":
            raise PermissionError(f"NIGHTSHIFT_AUTH=on but no secret: set {AUTH_SECRET_ENV} or {AUTH_SECRET_FILE_ENV} "
                                  "(nightshift-core new-secret makes one)")
        if self.host not in _LOOPBACK_HOSTS and self.auth_mode != "off":
            raise PermissionError(f"refusing to serve {address} without authentication: any caller reaching it could call "
                                  f"every method, Train included. Set {AUTH_SECRET_ENV} or {AUTH_SECRET_FILE_ENV} "
                                  "(nightshift-core new-secret makes one), or NIGHTSHIFT_AUTH=off to accept anonymous callers")
        return (f"AUTHENTICATION OFF: every caller reaching {address} (on loopback: every local user and process) may call "
                f"every method, Train included; set {AUTH_SECRET_ENV} or {AUTH_SECRET_FILE_ENV} (nightshift-core new-secret)")

    def server_credentials(self) -> grpc.ServerCredentials | None:
        """TLS credentials from ``tls_cert`` and ``tls_key``, or None to serve plaintext."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return grpc.ssl_server_credentials([(self.tls_key.read_bytes(), self.tls_cert.read_bytes())])

    @classmethod
    def from_env(cls, **overrides: Any) -> ServerOptions:
        """Options from ``NIGHTSHIFT_GRPC_{HOST,PORT,MAX_MESSAGE_BYTES,GRACE_S,COMPUTE_SLOTS,PORT_FILE,TLS_CERT,TLS_KEY,HEALTH_PORT,DRAIN_NOTICE_S}``,
        ``NIGHTSHIFT_GRPC_{MAX_CONCURRENT_CALLS,MAX_INFLIGHT_BYTES}``, ``NIGHTSHIFT_MEMORY_LIMIT_BYTES``,
        ``NIGHTSHIFT_METRICS_PORT``, ``NIGHTSHIFT_BATCH_MAX_DELAY_MS``, ``NIGHTSHIFT_MAX_BATCH_TILES``, ``NIGHTSHIFT_SHM_DIR`` and
        ``NIGHTSHIFT_AUTH_SECRET`` (or ``NIGHTSHIFT_AUTH_SECRET_FILE``) and ``NIGHTSHIFT_AUTH``; keyword overrides win."""
        env = os.environ
        values: dict[str, Any] = {"auth_secret": secret_from_env(env), "auth_mode": auth_mode(env)}
        for field, var, cast in (
            ("host", "NIGHTSHIFT_GRPC_HOST", str),
            ("port", "NIGHTSHIFT_GRPC_PORT", int),
            ("max_message_bytes", "NIGHTSHIFT_GRPC_MAX_MESSAGE_BYTES", int),
            ("grace_s", "NIGHTSHIFT_GRPC_GRACE_S", float),
            ("compute_slots", "NIGHTSHIFT_GRPC_COMPUTE_SLOTS", int),
            ("metrics_port", "NIGHTSHIFT_METRICS_PORT", int),
            ("port_file", "NIGHTSHIFT_GRPC_PORT_FILE", Path),
            ("tls_cert", "NIGHTSHIFT_GRPC_TLS_CERT", Path),
            ("tls_key", "NIGHTSHIFT_GRPC_TLS_KEY", Path),
            ("health_port", "NIGHTSHIFT_GRPC_HEALTH_PORT", int),
            ("drain_notice_s", "NIGHTSHIFT_GRPC_DRAIN_NOTICE_S", float),
            ("batch_max_delay_ms", "NIGHTSHIFT_BATCH_MAX_DELAY_MS", float),
            ("max_batch_tiles", "NIGHTSHIFT_MAX_BATCH_TILES", int),
            ("max_concurrent_calls", "NIGHTSHIFT_GRPC_MAX_CONCURRENT_CALLS", int),
            ("max_inflight_bytes", "NIGHTSHIFT_GRPC_MAX_INFLIGHT_BYTES", int),
            ("memory_limit_bytes", "NIGHTSHIFT_MEMORY_LIMIT_BYTES", int),
            ("shared_memory_dir", "NIGHTSHIFT_SHM_DIR", lambda v: None if v == "off" else Path(v)),
        ):
            if env.get(var):
                values[field] = cast(env[var])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


_DEADLINE_SLACK_S = 0.25
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_MIN_AUTO_CALLS, _MAX_AUTO_CALLS = 8, 256
_UNLIMITED = 2**60  # cgroup v1 says "no limit" with a number near 2**63


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None  # "max": no limit
    value = int(text)
    return value if 0 < value < _UNLIMITED else None


def memory_limit_bytes(cgroup_root: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """The memory this process may use: the least of its cgroup's limit (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``, in its own cgroup or at the hierarchy's root, as a container sees it),
    ``RLIMIT_AS`` and the machine's physical memory."""
    candidates: list[Path] = []
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        relative = path.strip("/")
        if controllers == "":  # v2 unified hierarchy
            candidates += [cgroup_root / relative / "memory.max", cgroup_root / "memory.max"]
        elif "memory" in controllers.split(","):
            candidates += [cgroup_root / "memory" / relative / "memory.limit_in_bytes", cgroup_root / "memory" / "memory.limit_in_bytes"]
    candidates += [cgroup_root / "memory.max", cgroup_root / "memory" / "memory.limit_in_bytes"]
    limits = [limit for path in candidates if (limit := _read_limit(path)) is not None]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft > 0:
        limits.append(soft)
    with contextlib.suppress(ValueError, OSError):
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return min(limits) if limits else 4 * 1024**3


def _grpc_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


class _Malformed:
    """What the tolerant deserializer gives for bytes that are not the request message: refused by the handler."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def error(self) -> InvalidInput:
        return InvalidInput(f"malformed request: the bytes received are not a valid {self.type_name} message")


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer``, giving a :class:`_Malformed` instead of raising: gRPC would answer UNKNOWN with the
    exception's class on the wire; the handler answers INVALID_ARGUMENT instead."""
    if deserializer is None:
        return None
    message_class = getattr(deserializer, "__self__", None)
    type_name = getattr(getattr(message_class, "DESCRIPTOR", None), "full_name", "request")

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # noqa: BLE001 - any failure to parse is the sender's malformed message
            return _Malformed(type_name)

    return parse


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Malformed):
            raise request.error()
        yield request


class _Calls(grpc.aio.ServerInterceptor):
    """Map errors to status codes, log each call as JSON and count it in the metrics; refuse malformed
    requests (INVALID_ARGUMENT), calls without the token their method's role needs when ``auth_secret``
    is set (UNAUTHENTICATED, PERMISSION_DENIED), and calls beyond ``max_calls`` at once (RESOURCE_EXHAUSTED)."""

    def __init__(self, metrics: ServiceMetrics, *, max_calls: int = 0, auth_secret: bytes | None = None) -> None:
        self.metrics = metrics
        self.max_calls = max_calls
        self.auth_secret = auth_secret
        self.active = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not details.method.startswith("/nightshift."):
            return handler  # health and reflection pass through untouched
        full_method = details.method
        kwargs = {"request_deserializer": _tolerant(handler.request_deserializer), "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._unary(full_method, handler.unary_unary, streamed=False), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._stream(full_method, handler.unary_stream, streamed=False), **kwargs)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(self._stream(full_method, handler.stream_stream, streamed=True), **kwargs)
        return grpc.stream_unary_rpc_method_handler(self._unary(full_method, handler.stream_unary, streamed=True), **kwargs)

    def _unary(self, full_method: str, behaviour: Callable[..., Awaitable[Any]], *, streamed: bool) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._observed(full_method, context):
                return await behaviour(_checked(request, streamed), context)

        return call

    def _stream(self, full_method: str, behaviour: Callable[..., AsyncIterator[Any]], *, streamed: bool) -> Callable[..., AsyncIterator[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with self._observed(full_method, context):
                async for response in behaviour(_checked(request, streamed), context):
                    yield response

        return call

    @contextlib.asynccontextmanager
    async def _observed(self, full_method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """Authorise, admit, count, time and log one call; turn its failure into the status it maps to."""
        method = full_method.rsplit("/", 1)[-1]
        self.metrics.inflight.labels(method).inc()
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        admitted = False
        caller = None
        try:
            if self.auth_secret is not None:  # before admission: an anonymous burst takes no call slot
                claims = authorize(self.auth_secret, context.invocation_metadata() or (), full_method)
                caller = claims.subject if claims is not None else None
            if self.max_calls and self.active >= self.max_calls:
                raise ResourceExhausted(
                    f"service busy: {self.active} calls in progress, at most {self.max_calls} at once "
                    "(NIGHTSHIFT_GRPC_MAX_CONCURRENT_CALLS); retry later"
                )
            self.active += 1
            admitted = True
            yield
        except (asyncio.CancelledError, GeneratorExit):
            # A call cancelled by its passed deadline is logged as such. The client's deadline fires a
            # little before the server's copy of it (the propagated timeout starts later), hence the slack.
            remaining = context.time_remaining()
            expired = remaining is not None and remaining <= _DEADLINE_SLACK_S
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            code = _status_of(exc, context)
            await _abort(method, exc, context)
            raise
        finally:
            if admitted:
                self.active -= 1
            elapsed = time.perf_counter() - started
            self.metrics.inflight.labels(method).dec()
            self.metrics.requests.labels(method, code.name).inc()
            self.metrics.latency.labels(method).observe(elapsed)
            if code != grpc.StatusCode.OK:
                self.metrics.errors.labels(method, code.name).inc()
            _log.info("rpc", extra={"method": method, "code": code.name, "duration_ms": round(elapsed * 1e3, 2), "caller": caller})


def _checked(request: Any, streamed: bool) -> Any:
    """The request a handler gets: a malformed message refused, a stream's messages checked as they come."""
    if streamed:
        return _checked_stream(request)
    if isinstance(request, _Malformed):
        raise request.error()
    return request


def _status_of(exc: Exception, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status a failed call ends with."""
    if isinstance(exc, grpc.aio.AbortError):
        return context.code() or grpc.StatusCode.UNKNOWN
    if isinstance(exc, NightshiftError):
        return exc.code
    if isinstance(exc, MemoryError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.INTERNAL


async def _abort(method: str, exc: Exception, context: grpc.aio.ServicerContext) -> None:
    """Abort the call with the status ``exc`` maps to (raises AbortError); no stack trace on the wire."""
    if isinstance(exc, grpc.aio.AbortError):
        return  # already aborted with its own status
    if isinstance(exc, NightshiftError):
        await context.abort(exc.code, str(exc))
    error_id = uuid.uuid4().hex[:12]
    if isinstance(exc, MemoryError):
        _log.error("out of memory in %s (error id %s)", method, error_id, exc_info=exc)
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"{method} ran out of memory (error id {error_id}): send less at once, or retry later")
    _log.error("unhandled error in %s (error id %s)", method, error_id, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method} (error id {error_id}; see the server log)")


def _check_deadline(context: grpc.aio.ServicerContext, queued: float) -> None:
    """Refuse to compute a request whose deadline passed while it waited."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded(f"deadline passed after {time.perf_counter() - queued:.3f} s in the queue")


@dataclasses.dataclass
class _Waiting:
    """One ``Infer`` request waiting for the batcher: its decoded tiles and where its results go."""

    tiles: list[Tile]
    model: results_pb2.ModelRef
    context: grpc.aio.ServicerContext
    results: asyncio.Future[list[results_pb2.TileResult]]
    queued: float


class _Batcher:
    """Concatenate concurrent ``Infer`` requests into one model call, as inference servers do.

    A worker takes the oldest waiting request and adds the requests that arrive within
    ``max_delay_s`` of it (same model version, at most ``max_tiles`` tiles in all), dispatching as
    soon as ``preferred_tiles`` are collected; each caller gets its own slice of the results. If the
    concatenated call fails, each request is computed alone, so one bad request fails only itself.
    At most ``workers`` (the compute slots) batches are computed at once; a worker exits when
    nothing waits, so no task outlives the traffic.
    """

    def __init__(self, run: Callable[[list[Tile], results_pb2.ModelRef], Awaitable[list[results_pb2.TileResult]]],
                 metrics: ServiceMetrics, *, max_delay_s: float, preferred_tiles: int, max_tiles: int, workers: int) -> None:
        self._run = run
        self._metrics = metrics
        self._max_delay_s = max_delay_s
        self._preferred_tiles = preferred_tiles
        self._max_tiles = max_tiles
        self._workers = workers
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._arrived = asyncio.Event()
        self._active: set[asyncio.Task[None]] = set()

    async def infer(self, tiles: list[Tile], model: results_pb2.ModelRef,
                    context: grpc.aio.ServicerContext) -> list[results_pb2.TileResult]:
        request = _Waiting(tiles, model, context, asyncio.get_running_loop().create_future(), time.perf_counter())
        self._waiting.append(request)
        self._arrived.set()
        if len(self._active) < self._workers:
            worker = asyncio.create_task(self._work())
            self._active.add(worker)  # removed by the worker itself, in the step that sees the queue empty
        return await request.results

    async def _work(self) -> None:
        try:
            while self._waiting:
                await self._compute(await self._collect())
        finally:
            self._active.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _collect(self) -> list[_Waiting]:
        first = self._waiting.popleft()
        batch, tiles = [first], len(first.tiles)
        closes = first.queued + self._max_delay_s
        while tiles < self._preferred_tiles:
            if not self._waiting:
                remaining = closes - time.perf_counter()
                if remaining <= 0:
                    break
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                continue
            following = self._waiting[0]
            if following.model != first.model or tiles + len(following.tiles) > self._max_tiles:
                break
            batch.append(self._waiting.popleft())
            tiles += len(following.tiles)
        return batch

    async def _compute(self, batch: list[_Waiting]) -> None:
        live = []
        for request in batch:
            if request.results.done():
                continue  # the caller went away
            self._metrics.queue_seconds.observe(time.perf_counter() - request.queued)
            try:
                _check_deadline(request.context, request.queued)
            except DeadlineExceeded as exc:
                request.results.set_exception(exc)
                continue
            live.append(request)
        if not live:
            return
        try:
            results = await self._run([t for r in live for t in r.tiles], live[0].model)
        except Exception as exc:
            if len(live) == 1:
                _settle(live[0].results, exception=exc)
                return
            for request in live:  # find whose request failed: each alone
                try:
                    _settle(request.results, await self._run(request.tiles, request.model))
                except Exception as alone:
                    _settle(request.results, exception=alone)
            return
        start = 0
        for request in live:
            _settle(request.results, results[start:start + len(request.tiles)])
            start += len(request.tiles)


def _settle(future: asyncio.Future[Any], result: Any = None, *, exception: Exception | None = None) -> None:
    """Complete ``future`` unless its caller cancelled it meanwhile."""
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


REJECTED_TILES_METADATA = "nightshift-rejected-tiles"
"""Trailing metadata key of an ``Infer``/``InferStream`` call some of whose tiles were rejected alone:
a JSON object, tile id to reason (the first 32 tiles, each reason cut to 200 characters); each such
tile's result is empty."""
_MAX_WCS_CARDS = 1000
_MAX_WCS_AXES = 9
_MAX_SIP_ORDER = 9
_REPORTED_REJECTIONS = 32


def wcs_problem(tile: tile_pb2.ImageTile) -> str | None:
    """Why the tile's ``wcs_cards`` are not a usable celestial WCS for its pixels, or None (none given is fine).

    The cards must parse as FITS cards into a WCS with celestial axes (bounded: at most 1000 cards,
    9 axes, SIP order 9) that maps the tile's centre pixel to a finite sky position.
    """
    cards = list(tile.wcs_cards)
    if not cards:
        return None
    try:  # every service that reads a WCS has astropy; the runtime alone (tile statistics) does not need it
        from astropy.io import fits
        from astropy.wcs import WCS
    except ImportError:
        return None
    if len(cards) > _MAX_WCS_CARDS:
        return f"{len(cards)} WCS cards, at most {_MAX_WCS_CARDS}"
    text = "".join(cards)
    if not text.isascii() or not text.isprintable():
        return "WCS cards hold characters that are not printable ASCII"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.Header.fromstring(text)
            for key in ("NAXIS", "WCSAXES"):
                if not 0 <= int(header.get(key, 2)) <= _MAX_WCS_AXES:
                    return f"WCS cards declare {key} = {header[key]}, at most {_MAX_WCS_AXES}"
            for key in ("A_ORDER", "B_ORDER", "AP_ORDER", "BP_ORDER"):
                if not 0 <= int(header.get(key, 0)) <= _MAX_SIP_ORDER:
                    return f"WCS cards declare {key} = {header[key]}, at most {_MAX_SIP_ORDER}"
            wcs = WCS(header)
            if not wcs.has_celestial:
                return "WCS cards describe no celestial axes"
            celestial = wcs.celestial
            height, width = (int(n) for n in tile.pixels.shape[1:3]) if len(tile.pixels.shape) == 3 else (1, 1)
            centre = celestial.all_pix2world([[(width - 1) / 2, (height - 1) / 2]], 0)
    except Exception as exc:  # noqa: BLE001 - whatever hostile cards make astropy raise, the cards are the problem
        lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("ERROR ")]
        return f"WCS cards are not a valid WCS: {lines[-1] if lines else 'unreadable'}"[:200]
    if not np.isfinite(centre).all():
        return "WCS cards map the tile's centre to no sky position"
    return None


def _send_rejections(context: grpc.aio.ServicerContext, rejected: dict[str, str]) -> None:
    shown = dict(list(rejected.items())[:_REPORTED_REJECTIONS])
    value = json.dumps({tile_id[:64]: reason[:200] for tile_id, reason in shown.items()}, sort_keys=True)
    context.set_trailing_metadata(((REJECTED_TILES_METADATA, value),))


class _TaskServicer(task_service_pb2_grpc.TaskServiceServicer):
    """The contract's ``TaskService`` over a :class:`TaskModel`: decode, validate, compute, encode."""

    def __init__(self, model: TaskModel, store: ObjectStore | None, metrics: ServiceMetrics, options: ServerOptions) -> None:
        self.model = model
        self.store = store
        self.metrics = metrics
        self.ready = False
        self._slots = asyncio.Semaphore(options.compute_slots)
        self._compute = concurrent.futures.ThreadPoolExecutor(options.compute_slots, thread_name_prefix=f"{model.task}-compute")
        # Tiles by reference are object-store reads, one per shard run: fetched side by side, not one after another.
        self._fetch = concurrent.futures.ThreadPoolExecutor(_FETCH_THREADS, thread_name_prefix=f"{model.task}-fetch")
        self._training = False  # one training per service at a time, until its worker thread has ended
        self._inflight_limit = options.inflight_byte_limit()
        self._shared_memory_dir = options.shared_memory_dir
        self._shared_memory_domain = shared_memory_domain(options.shared_memory_dir) if options.shared_memory_dir else ""
        self._inflight_bytes = 0
        self.spec = model.spec if options.max_batch_tiles <= 0 else dataclasses.replace(
            model.spec, max_batch_tiles=min(model.spec.max_batch_tiles, options.max_batch_tiles),
            preferred_batch_tiles=min(model.spec.preferred_batch_tiles, options.max_batch_tiles))
        self._batcher = None if options.batch_max_delay_ms <= 0 else _Batcher(
            self._run_model, metrics, max_delay_s=options.batch_max_delay_ms / 1e3, workers=options.compute_slots,
            preferred_tiles=self.spec.preferred_batch_tiles, max_tiles=self.spec.max_batch_tiles,
        )

    def close(self) -> None:
        self._compute.shutdown(wait=True)
        self._fetch.shutdown(wait=True)

    def _require_ready(self) -> None:
        if not self.ready:
            raise Unavailable(f"{self.model.task}: the model is still loading; retry when health is SERVING")

    def _decode(self, tiles: Sequence[tile_pb2.ImageTile]) -> list[Tile]:
        started = time.perf_counter()
        decoded = decode_tiles(tiles, store=self.store, map_runs=self._fetch.map, shared_memory_dir=self._shared_memory_dir)
        self.metrics.decode_seconds.observe(time.perf_counter() - started)
        return decoded

    def _reserve(self, tiles: Sequence[tile_pb2.ImageTile]) -> int:
        """Reserve the decoded bytes of ``tiles`` (shapes already checked) in the service's budget.

        Raises
        ------
        ResourceExhausted
            The call alone needs more than the budget (split the batch), or the calls in progress
            hold too much of it now (retry later).
        """
        itemsize = self.model.spec.dtype.itemsize
        needed = sum(math.prod(int(n) for n in t.pixels.shape) * itemsize for t in tiles)
        if needed > self._inflight_limit:
            what = f"{len(tiles)} tiles of {needed:,} bytes decoded" if len(tiles) > 1 else f"a tile of {needed:,} bytes decoded"
            advice = "split the batch" if len(tiles) > 1 else "send smaller tiles"
            raise ResourceExhausted(
                f"{what}; {self.model.task} holds at most {self._inflight_limit:,} bytes of tiles at once "
                f"(NIGHTSHIFT_GRPC_MAX_INFLIGHT_BYTES): {advice}"
            )
        if self._inflight_bytes + needed > self._inflight_limit:
            raise ResourceExhausted(
                f"service busy: the calls in progress hold {self._inflight_bytes:,} of {self._inflight_limit:,} bytes of "
                f"decoded tiles (NIGHTSHIFT_GRPC_MAX_INFLIGHT_BYTES), this call needs {needed:,}; retry later"
            )
        self._inflight_bytes += needed
        return needed

    async def _run_model(self, tiles: list[Tile], model: results_pb2.ModelRef) -> list[results_pb2.TileResult]:
        """One call of the model in the compute pool, timed and its result count checked."""
        started = time.perf_counter()
        results = await asyncio.get_running_loop().run_in_executor(self._compute, self.model.infer, tiles, model)
        self.metrics.compute_seconds.observe(time.perf_counter() - started)
        if len(results) != len(tiles):
            raise RuntimeError(f"{self.model.task}.infer returned {len(results)} results for {len(tiles)} tiles")
        return results

    async def _infer(
        self, tiles: Sequence[tile_pb2.ImageTile], model_version: str, context: grpc.aio.ServicerContext,
        rejected: dict[str, str] | None = None,
    ) -> tuple[results_pb2.ModelRef, list[results_pb2.TileResult]]:
        """Validate, decode and compute one batch. A tile whose WCS cards are not a usable celestial WCS
        is rejected alone: it gets an empty result, its reason goes into ``rejected`` (by tile id; sent
        as the call's trailing metadata), and the rest of the batch is computed."""
        self._require_ready()
        limit = self.spec.max_batch_tiles
        if len(tiles) > limit:
            raise ResourceExhausted(f"{len(tiles)} tiles in one call; {self.model.task} takes at most {limit}: split the batch")
        model = self.model.model_ref(model_version)
        if not tiles:
            return model, []
        for tile in tiles:  # every tile's metadata first: a bad tile fails the call before any read
            self.model.spec.check(tile)
            if not tile.tile_id:
                raise InvalidInput("tile without a tile_id")
        problems = await asyncio.to_thread(lambda: [wcs_problem(t) for t in tiles])
        accepted = [t for t, problem in zip(tiles, problems) if problem is None]
        for tile, problem in zip(tiles, problems):
            if problem is not None:
                _log.warning("tile rejected", extra={"tile_id": tile.tile_id, "reason": problem})
                if rejected is not None:
                    rejected[tile.tile_id] = problem
        if rejected:
            _send_rejections(context, rejected)
        if not accepted:
            return model, [results_pb2.TileResult(tile_id=t.tile_id) for t in tiles]
        reserved = self._reserve(accepted)
        try:
            decoded = await asyncio.to_thread(self._decode, accepted)
            if self._batcher is not None:
                results = await self._batcher.infer(decoded, model, context)
            else:
                queued = time.perf_counter()
                async with self._slots:
                    self.metrics.queue_seconds.observe(time.perf_counter() - queued)
                    _check_deadline(context, queued)
                    results = await self._run_model(decoded, model)
        finally:
            self._inflight_bytes -= reserved
        self.metrics.tiles.inc(len(decoded))
        if len(accepted) < len(tiles):
            computed = iter(results)
            results = [next(computed) if problem is None else results_pb2.TileResult(tile_id=tile.tile_id)
                       for tile, problem in zip(tiles, problems)]
        return model, results

    async def Describe(self, request: task_service_pb2.DescribeRequest, context: grpc.aio.ServicerContext) -> task_service_pb2.DescribeResponse:
        self._require_ready()
        models = await asyncio.to_thread(self.model.models)
        return task_service_pb2.DescribeResponse(
            task=self.model.task, summary=self.model.summary, models=models,
            serving_model=self.model.serving_model(), input=self.spec.to_proto(),
            output_kind=self.model.output_kind, shared_memory_domain=self._shared_memory_domain,
        )

    async def Infer(self, request: task_service_pb2.InferRequest, context: grpc.aio.ServicerContext) -> task_service_pb2.InferResponse:
        model, results = await self._infer(request.tiles, request.model_version, context, {})
        return task_service_pb2.InferResponse(results=results, model=model)

    async def InferStream(
        self, request_iterator: AsyncIterator[task_service_pb2.InferStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[task_service_pb2.InferStreamResponse]:
        rejected: dict[str, str] = {}  # over the whole stream: trailing metadata is sent once, at its end
        async for request in request_iterator:
            model, results = await self._infer(request.tiles, request.model_version, context, rejected)
            yield task_service_pb2.InferStreamResponse(results=results, model=model)

    async def Train(self, request: task_service_pb2.TrainRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[task_service_pb2.TrainResponse]:
        """Train in a worker thread, streaming its progress. One training per service at a time (another
        is refused with RESOURCE_EXHAUSTED until the running one's thread has ended, cancelled or not).
        A cancelled call, or one past its deadline, stops the training at its next progress report or
        registry write: nothing is registered and ``LATEST`` does not move."""
        if self._training:
            raise ResourceExhausted(f"{self.model.task}: a training run is already in progress (one at a time per service); retry later")
        self._training = True

        def finished() -> None:
            self._training = False

        run = ProgressStream(lambda report: self.model.train(request, report),
                             scope=CallScope(context.time_remaining(), what=f"{self.model.task} Train"), on_finished=finished)
        try:
            async for event in run:
                yield task_service_pb2.TrainResponse(progress=event)
        finally:
            if not run.started:
                finished()
        yield task_service_pb2.TrainResponse(registered=run.result)

    async def Evaluate(self, request: task_service_pb2.EvaluateRequest, context: grpc.aio.ServicerContext) -> task_service_pb2.EvaluateResponse:
        return await asyncio.to_thread(self.model.evaluate, request)


class ProgressStream(Generic[_Event, _Result]):
    """Run blocking ``work(report)`` in a worker thread and iterate the events it reports, as they come.

    After the iteration ends, ``result`` holds what ``work`` returned; if ``work`` raised, the
    iteration re-raises it after yielding the events reported before the failure.

    With a ``scope`` (:class:`~nightshift.core.model.CallScope`), the work runs with it current, so
    :func:`~nightshift.core.model.check_cancelled` (and the registry) see it; ``report`` raises once
    the scope is cancelled or past its deadline; and an iteration abandoned before the work ended
    (the client cancelled, the deadline passed) cancels the scope, so the work stops at its next
    check. ``on_finished`` is called (on the event loop) when the worker thread has ended, however
    it ended: what guards the work (one training at a time, a compute slot) is released then, not
    when the caller goes away.

    >>> stream = ProgressStream(lambda report: model.train(request, report))
    >>> async for event in stream:
    ...     yield TrainResponse(progress=event)
    >>> yield TrainResponse(registered=stream.result)
    """

    def __init__(self, work: Callable[[Callable[[_Event], None]], _Result], *, scope: CallScope | None = None,
                 on_finished: Callable[[], None] | None = None) -> None:
        self._work = work
        self.scope = scope
        self._on_finished = on_finished
        self.started = False
        self.result: _Result

    async def __aiter__(self) -> AsyncIterator[_Event]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[_Event] = asyncio.Queue()
        scope = self.scope

        def report(event: _Event) -> None:
            if scope is not None:
                scope.check()
            loop.call_soon_threadsafe(events.put_nowait, event)

        def work() -> _Result:
            return scope.run(self._work, report) if scope is not None else self._work(report)  # type: ignore[return-value]

        run = asyncio.ensure_future(asyncio.to_thread(work))
        self.started = True
        run.add_done_callback(_retrieve)
        if self._on_finished is not None:
            on_finished = self._on_finished
            run.add_done_callback(lambda _: on_finished())
        try:
            while not run.done():
                next_event = asyncio.ensure_future(events.get())
                try:
                    await asyncio.wait({run, next_event}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not next_event.done():
                        next_event.cancel()
                if next_event.done() and not next_event.cancelled():
                    yield next_event.result()
            while not events.empty():
                yield events.get_nowait()
            self.result = run.result()
        finally:
            if not run.done() and scope is not None:
                expired = scope.deadline is not None and time.monotonic() >= scope.deadline - _DEADLINE_SLACK_S
                scope.cancel("its deadline passed" if expired else "cancelled by its client")


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Read a finished worker's outcome, so an abandoned one's failure is not reported as never retrieved."""
    if not future.cancelled():
        future.exception()


class Servable(abc.ABC):
    """What a :class:`Server` serves: gRPC services plus a load/close lifecycle.

    A science service passes its :class:`TaskModel` (wrapped in :class:`TaskServable`); a service
    with another contract (e.g. ingest) subclasses this.
    """

    name: str
    """Name reported by per-service readiness health checks (e.g. the task name)."""
    service_names: tuple[str, ...]
    """Full names of the gRPC services added (for health and reflection)."""

    @abc.abstractmethod
    def add_to_server(self, server: grpc.aio.Server, metrics: ServiceMetrics, options: ServerOptions) -> None:
        """Register the servicers on ``server``."""

    def load(self) -> None:
        """Blocking start-up work done before health turns SERVING (default: nothing)."""

    def set_ready(self) -> None:
        """Called once ``load`` has succeeded, before health turns SERVING."""

    def close(self) -> None:
        """Release resources after the server has drained (default: nothing)."""

    def describe_ready(self) -> dict[str, Any]:
        """Fields logged when serving starts."""
        return {}

    def served_model(self) -> tuple[str, str]:
        """(model name, registry version) of what is served, for the ``nightshift_model_ready`` labels."""
        return self.name, ""


class TaskServable(Servable):
    """A :class:`TaskModel` served as ``nightshift.v1.TaskService``."""

    service_names = (TASK_SERVICE_NAME,)

    def __init__(self, model: TaskModel, store: ObjectStore | None = None) -> None:
        self.model = model
        self.store = store
        self.name = model.task
        self._servicer: _TaskServicer | None = None

    def add_to_server(self, server: grpc.aio.Server, metrics: ServiceMetrics, options: ServerOptions) -> None:
        self._servicer = _TaskServicer(self.model, self.store, metrics, options)
        task_service_pb2_grpc.add_TaskServiceServicer_to_server(self._servicer, server)

    def load(self) -> None:
        self.model.load()
        self.model.warmup()

    def set_ready(self) -> None:
        assert self._servicer is not None
        self._servicer.ready = True

    def close(self) -> None:
        if self._servicer is not None:
            self._servicer.close()
        self.model.unload()

    def describe_ready(self) -> dict[str, Any]:
        return {"model": ":".join(self.served_model())}

    def served_model(self) -> tuple[str, str]:
        serving = self.model.serving_model()
        return serving.name, str(serving.version)


class Server:
    """A running service: gRPC server, health, reflection, metrics and the servable's lifecycle.

    Use :func:`serve` / :func:`run` in a service process, :class:`BackgroundServer` in tests and
    benchmarks, or this class directly inside an event loop (``await start()`` ... ``await stop()``).

    Parameters
    ----------
    servable : Servable or TaskModel
        What to serve; a :class:`TaskModel` is served as ``TaskService``.
    store : ObjectStore, optional
        Object store a :class:`TaskModel` reads referenced tiles from.
    options : ServerOptions, optional
        Ports, limits and drain time.
    """

    def __init__(self, servable: Servable | TaskModel, *, store: ObjectStore | None = None, options: ServerOptions | None = None) -> None:
        self.servable = servable if isinstance(servable, Servable) else TaskServable(servable, store)
        self.options = options or ServerOptions()
        self.metrics = ServiceMetrics()
        self.port = 0
        self.metrics_port: int | None = None
        self.health_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health_server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._loading: asyncio.Task[None] | None = None
        self._readiness_names = ("", *self.servable.service_names, self.servable.name)

    async def start(self) -> None:
        """Bind, start serving (health NOT_SERVING) and begin loading in the background."""
        opts = self.options
        unauthenticated = opts.check_authentication()  # before anything is bound
        calls = opts.call_limit()
        # gRPC's own bound backs the runtime's up (and leaves room for health probes beyond it)
        server = grpc.aio.server(interceptors=[_Calls(self.metrics, max_calls=calls, auth_secret=opts.auth_secret)], options=_grpc_options(opts.max_message_bytes),
                                 maximum_concurrent_rpcs=2 * calls + 16)
        self.servable.add_to_server(server, self.metrics, opts)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*self.servable.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        await self._health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        for name in self._readiness_names:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        address = f"{opts.host}:{opts.port}"
        credentials = opts.server_credentials()
        self.port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
        if not self.port:
            raise OSError(f"could not bind {opts.host}:{opts.port}")
        if opts.health_port is not None:
            await self._start_health_server(opts.host, opts.health_port)
        await server.start()
        self._server = server
        if opts.metrics_port is not None:
            self.metrics_port = self.metrics.serve_http(opts.host, opts.metrics_port)
        if opts.port_file is not None:
            opts.port_file.write_text(str(self.port))
        _log.info("listening", extra={"service": self.servable.name, "port": self.port, "metrics_port": self.metrics_port,
                                      "health_port": self.health_port,
                                      "tls": credentials is not None, "authentication": opts.auth_secret is not None,
                                      "max_concurrent_calls": calls,
                                      "max_inflight_bytes": opts.inflight_byte_limit()})
        if unauthenticated:
            _log.warning(unauthenticated)
        self._loading = asyncio.create_task(self._load())

    async def _start_health_server(self, host: str, port: int) -> None:
        # The one servicer instance: both ports answer from the same state, so they change together.
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        self.health_port = server.add_insecure_port(f"{host}:{port}")
        if not self.health_port:
            raise OSError(f"could not bind the health port {host}:{port}")
        await server.start()
        self._health_server = server

    async def _load(self) -> None:
        started = time.perf_counter()
        await asyncio.to_thread(self.servable.load)
        self.servable.set_ready()
        self.metrics.model_loaded(*self.servable.served_model())
        for name in self._readiness_names:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        _log.info("serving", extra={"service": self.servable.name, "load_s": round(time.perf_counter() - started, 3),
                                    **self.servable.describe_ready()})

    @property
    def loading(self) -> asyncio.Task[None]:
        """The start-up task: done once serving, or failed with the load error."""
        if self._loading is None:
            raise RuntimeError("server not started")
        return self._loading

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Wait until loaded and health is SERVING; re-raise a failed load."""
        await asyncio.wait_for(asyncio.shield(self.loading), timeout_s)

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: health NOT_SERVING, refuse new calls, let calls in flight finish, then close."""
        if self._server is None:
            return
        grace = self.options.grace_s if grace_s is None else grace_s
        _log.info("draining", extra={"service": self.servable.name, "grace_s": grace})
        await self._health.enter_graceful_shutdown()
        self.metrics.model_unloading()
        await asyncio.sleep(self.options.drain_notice_s)
        await self._server.stop(grace)
        if self._health_server is not None:  # stopped last: probes see NOT_SERVING for the whole drain
            await self._health_server.stop(0)
            self._health_server = None
        if not self.loading.done():
            self.loading.cancel()
        await asyncio.to_thread(self.servable.close)
        self.metrics.stop_http()
        self._server = None
        _log.info("stopped", extra={"service": self.servable.name})


async def serve(servable: Servable | TaskModel, *, store: ObjectStore | None = None, options: ServerOptions | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain; raise if loading fails."""
    server = Server(servable, store=store, options=options)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({stopping, server.loading}, return_when=asyncio.FIRST_COMPLETED)
    if server.loading.done() and (error := server.loading.exception()) is not None:
        _log.error("failed to load", exc_info=error)
        await server.stop(0)
        raise error
    await stopping
    await server.stop()


# glibc's malloc hands freed blocks above its mmap threshold (128 KiB at start) back to the kernel, so each
# multi-megabyte request arrives in fresh pages: page faults were half the cost of an 8 MB inline Infer.
_MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest
_TRIM_THRESHOLD_BYTES = 256 << 20  # freed memory kept at most, per arena


def reuse_freed_memory() -> bool:
    """Make this process's malloc keep freed blocks of up to 32 MiB for reuse (at most 256 MiB idle per arena)
    instead of returning them to the kernel; False where the C library has no glibc ``mallopt``."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, _MMAP_THRESHOLD_BYTES)) and bool(mallopt(m_trim_threshold, _TRIM_THRESHOLD_BYTES))


def run(servable: Servable | TaskModel, *, store: ObjectStore | None = None, options: ServerOptions | None = None) -> None:
    """Blocking :func:`serve` in a process of its own (:func:`reuse_freed_memory`); exits with status 2 when the
    options may not serve without authentication."""
    options = options or ServerOptions()
    _check_authentication_or_exit(options)
    reuse_freed_memory()
    asyncio.run(serve(servable, store=store, options=options))


def _check_authentication_or_exit(options: ServerOptions) -> None:
    try:
        options.check_authentication()
    except PermissionError as exc:  # said in one line, without a traceback, before anything is loaded or bound
        _log.error(str(exc))
        raise SystemExit(2) from None


def serve_from_environment(make: Callable[[ObjectStore | None], Servable | TaskModel], *, service: str, port: int | None = None) -> None:
    """A service's whole ``serve`` command: JSON logs, the store when ``NIGHTSHIFT_S3_ENDPOINT`` is set
    (``NIGHTSHIFT_S3_*``), options from ``NIGHTSHIFT_GRPC_*`` (``port`` overrides), then :func:`run`.

    ``make`` builds what to serve from the store (None when none is configured). A service that may not
    start without authentication (:meth:`ServerOptions.check_authentication`) exits with status 2.
    """
    configure_logging(service)
    options = ServerOptions.from_env(port=port)
    _check_authentication_or_exit(options)
    store = ObjectStore.from_env() if os.environ.get(StoreConfig.ENV_PREFIX + "ENDPOINT") else None
    run(make(store), store=store, options=options)


class BackgroundServer:
    """A :class:`Server` on its own event loop in a daemon thread, for tests and benchmarks.

    >>> with BackgroundServer(model, store=store, options=ServerOptions(port=0)) as server:
    ...     client = TaskClient(server.target)
    """

    def __init__(self, servable: Servable | TaskModel, *, store: ObjectStore | None = None, options: ServerOptions | None = None) -> None:
        self.server = Server(servable, store=store, options=options or ServerOptions(port=0))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"{self.server.servable.name}-server", daemon=True)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def _run(self, coro: Awaitable[Any], timeout_s: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)  # type: ignore[arg-type]

    def start(self, *, wait_ready: bool = True, timeout_s: float = 120.0) -> BackgroundServer:
        """Start serving; by default wait until the model is loaded (health SERVING)."""
        self._thread.start()
        self._run(self.server.start(), timeout_s)
        if wait_ready:
            self._run(self.server.wait_ready(timeout_s), timeout_s)
        return self

    def stop(self, grace_s: float | None = 5.0) -> None:
        """Drain and stop the server, then its loop."""
        if self._thread.is_alive():
            self._run(self.server.stop(grace_s))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
