"""The metrics endpoint: Prometheus text at /metrics, 404 everywhere else; the served model in the labels."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from nightshift.core.metrics import ServiceMetrics
from nightshift.core.server import BackgroundServer, ServerOptions
from nightshift.core.store import ObjectStore
from nightshift.core.tilestats import TileStatisticsModel


@pytest.fixture
def metrics() -> Iterator[tuple[ServiceMetrics, str]]:
    metrics = ServiceMetrics()
    port = metrics.serve_http("127.0.0.1", 0)
    yield metrics, f"http://127.0.0.1:{port}"
    metrics.stop_http()


def test_metrics_path_serves_prometheus_text(metrics: tuple[ServiceMetrics, str]) -> None:
    service, url = metrics
    service.tiles.inc(3)
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
        assert "nightshift_tiles_total 3.0" in response.read().decode()


@pytest.mark.parametrize("path", ["/", "/metricsx", "/health", "/metrics/extra"])
def test_any_other_path_is_not_found(metrics: tuple[ServiceMetrics, str], path: str) -> None:
    _, url = metrics
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{url}{path}", timeout=5)
    assert error.value.code == 404 and b"/metrics" in error.value.read()


def test_model_ready_names_the_served_model_and_version_and_drops_at_drain(store: ObjectStore) -> None:
    model = TileStatisticsModel()
    served = BackgroundServer(model, store=store, options=ServerOptions(port=0, metrics_port=0)).start()
    url = f"http://127.0.0.1:{served.server.metrics_port}/metrics"
    ref = model.serving_model()
    series = f'nightshift_model_ready{{model="{ref.name}",version="{ref.version}"}}'
    try:
        assert ref.name and f"{series} 1.0" in urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        served.stop()
    assert served.server.metrics.render().decode().count("nightshift_model_ready{") == 1
    assert f"{series} 0.0" in served.server.metrics.render().decode()
