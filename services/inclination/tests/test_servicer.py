"""The servicer through a real gRPC server on 127.0.0.1 and the real local S3 server."""

from __future__ import annotations

import dataclasses
import uuid

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from nightshift.core.client import TaskClient
from nightshift.core.registry import ModelRegistry
from nightshift.core.server import TASK_SERVICE_NAME, BackgroundServer
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import make_tile
from nightshift.inclination.servicer import InclinationModel
from nightshift.inclination.simulate import BANDS, WAVELENGTH_UM, simulate_galaxies
from nightshift.v1 import task_service_pb2, tile_pb2

BAND_MESSAGES = [tile_pb2.Band(name=b, wavelength_um=WAVELENGTH_UM[b], unit="nanomaggy") for b in BANDS]


@pytest.fixture(scope="module")
def galaxies():
    return simulate_galaxies(6, size=64, seed=21, split="test")


@pytest.fixture(scope="module")
def store(s3_server) -> ObjectStore:
    """One store for the module's server (loading the model once keeps the suite fast)."""
    store = ObjectStore(dataclasses.replace(s3_server.config, prefix=f"test-inclination-{uuid.uuid4().hex[:12]}"), retries=1, backoff_s=0.05)
    store.ensure_bucket()
    return store


@pytest.fixture(scope="module")
def served(store: ObjectStore):
    model = InclinationModel(store=store, evaluate_galaxies=40)
    with BackgroundServer(model, store=store) as server, TaskClient(server.target, timeout_s=300) as client:
        yield model, client


def test_describe_names_the_task_its_tiles_and_the_registered_bundled_model(served, store: ObjectStore) -> None:
    model, client = served
    described = client.describe()
    assert described.task == "inclination"
    assert described.output_kind == task_service_pb2.OUTPUT_KIND_MEASUREMENTS
    assert list(described.input.bands) == ["g", "r", "i"]
    assert (described.input.height, described.input.width) == (64, 64)
    assert described.input.dtype == tile_pb2.DATA_TYPE_FLOAT32
    assert described.serving_model.version == "1"  # the bundled model, registered first in an empty registry
    assert described.models[0].model.version == "1"
    assert ModelRegistry(store, "inclination").get("1").name == described.serving_model.name


def test_health_is_serving(served) -> None:
    _, client = served
    for service in ("", TASK_SERVICE_NAME, "inclination", "liveness"):
        assert client.health(service) == health_pb2.HealthCheckResponse.SERVING


def test_infer_by_reference_returns_one_inclination_measurement_per_tile(served, store: ObjectStore, galaxies) -> None:
    model, client = served
    tiles = [make_tile(image, bands=BAND_MESSAGES, survey="simulated", field=f"g{k}", store=store, inline_limit_bytes=0,
                       center=tile_pb2.SkyPosition(lon_deg=150.0 + k, lat_deg=2.0, frame=tile_pb2.SKY_FRAME_ICRS))
             for k, image in enumerate(galaxies.images)]
    assert all(t.pixels.WhichOneof("storage") == "object_ref" for t in tiles)
    response = client.infer(tiles)
    assert [r.tile_id for r in response.results] == [t.tile_id for t in tiles]
    expected = model.predictor.measure(galaxies.images)
    for k, result in enumerate(response.results):
        (measurement,) = result.measurements
        assert (measurement.quantity, measurement.unit) == ("inclination", "deg")
        assert measurement.value == pytest.approx(expected.inclination_deg[k], abs=1e-4)
        assert measurement.uncertainty > 0 and 0 <= measurement.reject_probability <= 1
        assert measurement.model.version == response.model.version
        assert measurement.sky == tiles[k].center
    assert client.infer([]).results == []


@pytest.mark.parametrize(("pixels", "bands", "message"), [
    (np.zeros((3, 64, 64), np.float32), ["g", "r", "z"], "expected ('g', 'r', 'i')"),
    (np.zeros((3, 32, 32), np.float32), BANDS, "expected (bands, height, width) = (3, 64, 64)"),
    (np.zeros((3, 64, 64), np.float64), BANDS, "expected DATA_TYPE_FLOAT32"),
])
def test_bad_tiles_are_invalid_argument_naming_what_was_expected(served, pixels, bands, message) -> None:
    _, client = served
    tile = make_tile(pixels, bands=list(bands), survey="t", field="bad")
    with pytest.raises(grpc.RpcError) as info:
        client.infer([tile])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def test_train_streams_progress_then_registers_a_new_version(served, store: ObjectStore) -> None:
    _, client = served
    request = task_service_pb2.TrainRequest(preset="tiny", dataset="simulated", seed=4, overrides={"epochs": "2", "train_galaxies": "64"})
    events = list(client.train(request))
    progress = [e.progress for e in events if e.WhichOneof("event") == "progress"]
    assert [p.epoch for p in progress] == [1, 2, 3] and all(p.total_epochs == 3 for p in progress)
    assert "train_loss" in progress[0].metrics
    registered = events[-1].registered
    assert registered.model.version == "2" and "validation_rms_deg" in registered.metrics
    assert ModelRegistry(store, "inclination").get("2").config["train_galaxies"] == 64


def test_train_with_a_bad_override_is_invalid_argument(served) -> None:
    _, client = served
    with pytest.raises(grpc.RpcError) as info:
        list(client.train(task_service_pb2.TrainRequest(preset="tiny", overrides={"epochs": "0"})))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "epochs = 0" in info.value.details()


def test_evaluate_scores_the_model_better_than_the_baseline_on_held_out_galaxies(served) -> None:
    """Seed 77: measured RMS 3.8 deg against the fitted-axis-ratio baseline's 4.5, MAE 2.9 against 3.7
    (28 accepted galaxies); an untrained ensemble scores RMS 13.6 deg. The reject AUC is not
    compared: the baseline's is higher on so few galaxies (0.96 against 0.88)."""
    _, client = served
    response = client.evaluate(task_service_pb2.EvaluateRequest(dataset="simulated-test", seed=77))
    assert response.dataset == "simulated-test"
    for metrics in (response.metrics, response.baseline_metrics):
        assert {"rms_deg", "mae_deg", "reject_auc"} <= set(metrics)
        assert metrics["n_accepted"] == 28  # 40 galaxies, 10 % face-on, 20 % rejected
    model, baseline = response.metrics, response.baseline_metrics
    assert model["rms_deg"] <= 0.9 * baseline["rms_deg"] and model["mae_deg"] <= 0.9 * baseline["mae_deg"], (model, baseline)
    with pytest.raises(grpc.RpcError) as info:
        client.evaluate(task_service_pb2.EvaluateRequest(dataset="sdss-real"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "simulated-test" in info.value.details()
