"""Which failures of the night are worth retrying, and how Prefect retries them.

Only transient failures are retried: a service that is restarting or overloaded (UNAVAILABLE), a
call that ran out of time (DEADLINE_EXCEEDED), the object store unreachable. Anything else (bad
input, a missing model version, a bug) fails at once: retrying would only repeat it.
"""

from __future__ import annotations

from typing import Any

import grpc
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from nightshift.core.errors import StoreUnavailable

__all__ = ["is_transient", "retry_when_transient", "TRANSIENT_RETRY_OPTIONS"]

_TRANSIENT_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the work that raised ``exc`` later may succeed."""
    if isinstance(exc, grpc.RpcError):
        return exc.code() in _TRANSIENT_CODES
    return isinstance(exc, StoreUnavailable)


def retry_when_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only failures :func:`is_transient` calls transient."""
    try:
        state.result()
    except Exception as exc:  # the task's own failure, re-raised by its state
        return is_transient(exc)
    return False


TRANSIENT_RETRY_OPTIONS: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=1.0),  # 1, 2, 4 s
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_when_transient,
    # Idempotency is by explicit keys in the store (see layout), not by Prefect's input hashing.
    "cache_policy": NO_CACHE,
}
"""Task options of every task of the flows whose work may be retried."""
