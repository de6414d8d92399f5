"""The clusters service through a real gRPC server and the real local S3 server."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from nightshift.clusters.patches import image_tiles
from nightshift.clusters.servicer import ClustersModel
from nightshift.core.client import TaskClient
from nightshift.core.codec import decode_array
from nightshift.core.server import BackgroundServer
from nightshift.core.tiles import make_tile
from nightshift.v1 import task_service_pb2, tile_pb2

# Evaluate's sky: nside 512 (at 256 neither the shipped model nor the MMF finds a cluster), dense in
# clusters for counts that separate the two, tiles at nside 32 (a quarter of the default tiles)
# the U-Net's own rule (p > 0.9), without the shipped catalogue's MMF peaks: the Evaluate test measures the network
EVALUATION_SKY = {"nside": 512, "random_clusters": 8000, "test_tiling_nside": 32, "threshold": 0.9, "mmf_union_snr": 0.0}


@pytest.fixture(scope="module")
def served(s3_server):
    store = s3_server.store()
    model = ClustersModel(store=store, evaluation_overrides=EVALUATION_SKY)
    with BackgroundServer(model, store=store) as server, TaskClient(server.target, timeout_s=300) as client:
        yield client, store, model


def test_describe_and_health(served) -> None:
    client, _, model = served
    described = client.describe()
    assert described.task == "clusters"
    assert described.output_kind == task_service_pb2.OUTPUT_KIND_SEGMENTATION
    assert list(described.input.bands) == ["hfi_100", "hfi_143", "hfi_217", "hfi_353", "hfi_545", "hfi_857"]
    assert (described.input.height, described.input.width) == (64, 64)
    assert described.serving_model.version == "1" and len(described.models) >= 1
    assert client.health() == health_pb2.HealthCheckResponse.SERVING
    assert client.health("clusters") == health_pb2.HealthCheckResponse.SERVING


def test_infer_tiles_by_reference(served, tiny_splits, tiny_config) -> None:
    client, store, _ = served
    test = tiny_splits["test"]
    tiles = image_tiles(test, tiny_config, field="servicer", store=store, inline_limit_bytes=0)[:4]
    assert all(t.pixels.WhichOneof("storage") == "object_ref" for t in tiles)
    response = client.infer(tiles)
    assert [r.tile_id for r in response.results] == [t.tile_id for t in tiles]
    for result in response.results:
        (segmentation,) = result.segmentations
        assert segmentation.probability.WhichOneof("storage") == "object_ref"
        probability = decode_array(segmentation.probability, store=store)
        assert probability.shape == (64, 64) and probability.dtype == np.float32
        assert 0.0 <= probability.min() and probability.max() <= 1.0
        for detection in segmentation.detections:
            assert detection.label == "cluster" and detection.sky.frame == tile_pb2.SKY_FRAME_GALACTIC
            assert probability[round(detection.circle.y), round(detection.circle.x)] > 0.5
    assert client.infer([]).results == []


@pytest.mark.parametrize(("pixels", "bands", "message"), [
    (np.zeros((6, 64, 64), np.float64), None, "pixel dtype DATA_TYPE_FLOAT64, expected DATA_TYPE_FLOAT32"),
    (np.zeros((6, 32, 32), np.float32), None, "expected (bands, height, width) = (6, 64, 64)"),
    (np.zeros((2, 64, 64), np.float32), ["g", "r"], "expected ('hfi_100', 'hfi_143', 'hfi_217', 'hfi_353', 'hfi_545', 'hfi_857')"),
])
def test_bad_tiles_are_invalid_argument(served, pixels, bands, message) -> None:
    client, _, _ = served
    tile = make_tile(pixels, bands=bands or ["hfi_100", "hfi_143", "hfi_217", "hfi_353", "hfi_545", "hfi_857"],
                     survey="t", field="bad")
    with pytest.raises(grpc.RpcError) as error:
        client.infer([tile])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


def test_train_streams_progress_then_the_registered_version(served) -> None:
    client, _, _ = served
    request = task_service_pb2.TrainRequest(preset="tiny", dataset="simulated", seed=5, overrides={
        "epochs": "2", "train_patches": "32", "validation_patches": "16", "filters": "[4, 8]"})
    events = list(client.train(request))
    assert [e.progress.epoch for e in events[:-1]] == [1, 2]
    assert "loss" in events[0].progress.metrics
    registered = events[-1].registered
    assert registered.model.name == "clusters-unet-tiny" and int(registered.model.version) >= 2
    assert '"seed": 5' in registered.metadata_json


def test_evaluate_scores_the_model_purer_than_the_baseline_at_its_completeness(served) -> None:
    """Sky 3, test cell 7: the shipped weights at the U-Net's rule p > 0.9 (not the shipped union catalogue,
    which adds the MMF's own peaks) against the MMF at Evaluate's untuned S/N 4.5.

    Measured: purity 0.95 (37 detections) against 0.78 (51), completeness above injected S/N 6 0.67
    against 0.70 (46 clusters). So the model must be purer by 0.1 while finding as many bright
    clusters within 0.1; untrained weights detect nothing. Not which finds more faint clusters: at
    equal purity the two tie, at purity 0.9 the MMF finds more (README).
    """
    client, _, _ = served
    response = client.evaluate(task_service_pb2.EvaluateRequest(dataset="simulated-test", seed=3))
    assert response.dataset == "simulated-test" and response.model.version == "1"
    model, baseline = response.metrics, response.baseline_metrics
    assert {"completeness", "purity", "completeness_all"} <= set(model) & set(baseline), (model, baseline)
    assert model["purity"] >= baseline["purity"] + 0.1, (model, baseline)
    assert model["completeness"] >= baseline["completeness"] - 0.1, (model, baseline)
    with pytest.raises(grpc.RpcError) as error:
        client.evaluate(task_service_pb2.EvaluateRequest(dataset="real-planck"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
