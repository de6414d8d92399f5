"""Client behaviour that needs no server: options and an unreachable target."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nightshift.core.client import TaskClient, batch_request_bytes, channel_options
from nightshift.core.s3server import free_port
from nightshift.core.server import DEFAULT_MAX_MESSAGE_BYTES
from nightshift.core.tiles import make_tile
from nightshift.v1 import task_service_pb2


def test_channel_options_set_limits_and_retry_only_idempotent_calls() -> None:
    options = dict(channel_options())
    assert options["grpc.max_receive_message_length"] == options["grpc.max_send_message_length"] == DEFAULT_MAX_MESSAGE_BYTES
    (policy,) = json.loads(options["grpc.service_config"])["methodConfig"]
    assert sorted(n["method"] for n in policy["name"]) == ["Describe", "Evaluate", "Infer"]
    assert policy["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_waiting_for_a_server_that_is_not_there_times_out() -> None:
    with TaskClient(f"127.0.0.1:{free_port()}") as client, pytest.raises(TimeoutError, match="not SERVING after 0.5 s"):
        client.wait_until_serving(timeout_s=0.5)


def test_calls_go_round_robin_over_replicas_and_skip_a_stopped_one(store) -> None:
    from sleepy_service import SleepyModel
    from test_server import tile

    from nightshift.core.server import BackgroundServer

    models = [SleepyModel(), SleepyModel()]
    servers = [BackgroundServer(m, store=store).start() for m in models]
    try:
        # one channel over both addresses, as a dns:/// name resolving to two pods gives
        with TaskClient("ipv4:" + ",".join(s.target for s in servers)) as client:
            client.wait_until_serving(timeout_s=30)
            for i in range(40):
                client.infer([tile(float(i))])
            shares = [len(m.computed) for m in models]
            assert sum(shares) == 40 and min(shares) >= 16, shares  # within 10 points of an even split
            servers[0].stop()
            for i in range(10):
                client.infer([tile(float(i))])  # no call fails: the stopped replica left the rotation
            assert len(models[1].computed) == shares[1] + 10
    finally:
        for server in servers[1:]:
            server.stop()


@pytest.mark.parametrize("model_version", ["", "v-7"])
@pytest.mark.parametrize("count", [0, 1, 3])
def test_batch_request_bytes_parse_as_the_request_message_of_the_same_tiles(count: int, model_version: str) -> None:
    tiles = [make_tile(np.full((2, 300, 300), i, np.float32), bands=["g", "r"], survey="s", field=f"f{i}",
                       wcs_cards=["CTYPE1  = 'GLON-TAN'".ljust(80)], labels={"split": "test"}) for i in range(count)]
    expected = task_service_pb2.InferRequest(tiles=tiles, model_version=model_version)
    wire = batch_request_bytes(tiles, model_version)
    assert task_service_pb2.InferRequest.FromString(wire) == expected
    assert task_service_pb2.InferStreamRequest.FromString(wire) == task_service_pb2.InferStreamRequest(tiles=tiles, model_version=model_version)
