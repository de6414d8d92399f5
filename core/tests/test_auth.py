"""Bearer tokens and roles (``nightshift.core.auth``), and the server's one interceptor checking them."""

from __future__ import annotations

import base64
import json

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from nightshift.core.auth import authorize, issue_token, make_secret, required_role, secret_from_env, verify_token
from nightshift.core.client import TaskClient
from nightshift.core.errors import PermissionDenied, Unauthenticated
from nightshift.core.server import BackgroundServer, ServerOptions
from nightshift.core.tiles import make_tile
from nightshift.core.tilestats import TileStatisticsModel
from nightshift.v1 import task_service_pb2

SECRET = make_secret()


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_token_round_trips_and_tampering_or_another_secret_is_refused() -> None:
    token = issue_token(SECRET, subject="flow", roles=["infer"])
    assert verify_token(SECRET, token).roles == ("infer",)
    header, _, signature = token.split(".")
    raised = f"{header}.{_b64({'sub': 'flow', 'roles': ['admin'], 'iat': 0, 'exp': 4e9})}.{signature}"
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': 'x', 'roles': ['admin'], 'exp': 4e9})}."
    for forged in (raised, unsigned, issue_token(make_secret(), subject="flow", roles=["admin"])):
        with pytest.raises(Unauthenticated, match="not signed by this deployment"):
            verify_token(SECRET, forged)
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(SECRET, issue_token(SECRET, subject="flow", roles=["infer"], lifetime_s=-1))


def test_roles_secrets_and_metadata_are_checked() -> None:
    assert required_role("/nightshift.v1.TaskService/Train") == "admin"
    assert required_role("/nightshift.v1.IngestService/IngestFits") == "ingest"
    assert required_role("/nightshift.v1.TaskService/Infer") == "infer"
    assert required_role("/grpc.health.v1.Health/Check") is None
    with pytest.raises(ValueError, match="at least 32"):
        secret_from_env({"NIGHTSHIFT_AUTH_SECRET": "short"})
    with pytest.raises(ValueError, match="expected one or more of"):
        issue_token(SECRET, subject="x", roles=["root"])
    admin = issue_token(SECRET, subject="operator", roles=["admin"])
    assert authorize(SECRET.encode(), [("authorization", f"Bearer {admin}")], "/nightshift.v1.TaskService/Train").subject == "operator"
    with pytest.raises(Unauthenticated, match="Bearer"):
        authorize(SECRET.encode(), [("authorization", admin)], "/nightshift.v1.TaskService/Infer")
    with pytest.raises(PermissionDenied, match="needs the role 'ingest'"):
        authorize(SECRET.encode(), [("authorization", f"Bearer {issue_token(SECRET, subject='f', roles=['infer'])}")],
                  "/nightshift.v1.IngestService/IngestHealpix")


def test_the_server_refuses_calls_without_a_token_or_the_role_and_health_needs_none() -> None:
    tile = make_tile(np.ones((1, 8, 8), np.float32), bands=["image"], survey="s", field="f")
    options = ServerOptions(port=0, auth_secret=SECRET.encode())
    with BackgroundServer(TileStatisticsModel(), options=options) as server:
        with TaskClient(server.target, timeout_s=10) as anonymous:
            assert anonymous.health() == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as refused:
                anonymous.infer([tile])
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with TaskClient(server.target, timeout_s=10, token=issue_token(SECRET, subject="flow", roles=["infer"])) as flow:
            assert len(flow.infer([tile]).results) == 1
            with pytest.raises(grpc.RpcError) as denied:
                list(flow.train(task_service_pb2.TrainRequest()))
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
