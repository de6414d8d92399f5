"""Only transient failures are retried."""

from __future__ import annotations

import grpc
import pytest

from nightshift.core.client import TaskClient
from nightshift.core.errors import InvalidInput, StoreUnavailable
from nightshift.core.s3server import free_port
from nightshift.orchestration.retries import is_transient


def test_unreachable_service_and_store_are_transient_bad_input_is_not() -> None:
    with TaskClient(f"127.0.0.1:{free_port()}", timeout_s=2) as client, pytest.raises(grpc.RpcError) as unreachable:
        client.describe()
    assert unreachable.value.code() == grpc.StatusCode.UNAVAILABLE and is_transient(unreachable.value)
    assert is_transient(StoreUnavailable("down"))
    assert not is_transient(InvalidInput("bad tile"))
