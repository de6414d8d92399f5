"""Typed failures, each mapped to the gRPC status a client should see.

A failure is typed by what should happen next: the caller fixes its input (INVALID_ARGUMENT,
NOT_FOUND, FAILED_PRECONDITION, RESOURCE_EXHAUSTED, PERMISSION_DENIED, UNAUTHENTICATED), or retries later
(UNAVAILABLE: ``retryable`` is True). The server runtime's interceptor turns these into statuses;
anything else becomes INTERNAL with no stack trace on the wire.
"""

from __future__ import annotations

import grpc

__all__ = [
    "NightshiftError",
    "InvalidInput",
    "NotFound",
    "ObjectNotFound",
    "AccessDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Unavailable",
    "StoreUnavailable",
    "StoreFull",
    "DeadlineExceeded",
    "Cancelled",
    "Unauthenticated",
    "PermissionDenied",
]


class NightshiftError(Exception):
    """Base of the project's errors; ``code`` is the gRPC status a client receives."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    retryable: bool = False


class InvalidInput(NightshiftError, ValueError):
    """The request is malformed: wrong dtype, shape, bands, byte size or reference."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(NightshiftError, LookupError):
    """A named thing (model version, dataset, object) does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class ObjectNotFound(NotFound):
    """An object-store bucket or key does not exist."""


class AccessDenied(NightshiftError, PermissionError):
    """The object store refused the credentials or the operation."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(NightshiftError):
    """The request is larger than the server accepts (tiles per batch, bytes)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(NightshiftError):
    """The system is not in a state to serve the request (e.g. no model registered yet)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(NightshiftError):
    """A transient failure: retrying later may succeed."""

    code = grpc.StatusCode.UNAVAILABLE
    retryable = True


class StoreUnavailable(Unavailable, ConnectionError):
    """The object store could not be reached after retries."""


class StoreFull(ResourceExhausted):
    """The object store has no room for a write (its disk or quota is full): not retried, as waiting frees nothing."""


class DeadlineExceeded(NightshiftError):
    """The caller's deadline passed before the work could start, or while it ran."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(NightshiftError):
    """The caller cancelled the call (or went away): its work stopped, nothing of it kept."""

    code = grpc.StatusCode.CANCELLED


class Unauthenticated(NightshiftError):
    """The call carries no credentials, or ones the service does not accept (malformed, badly signed, expired)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(NightshiftError, PermissionError):
    """The caller is known but its role does not allow the call."""

    code = grpc.StatusCode.PERMISSION_DENIED
