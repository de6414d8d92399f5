"""The metrics endpoint: Prometheus text at /metrics, 404 everywhere else."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from nightshift.core.metrics import ServiceMetrics


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
