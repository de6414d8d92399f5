"""Load: every science service under 16 concurrent clients for a bounded time, and 20 model reload cycles.

Figures are printed (throughput, p50/p99 latency, RSS), never asserted as speed; what is asserted is that
no call failed and that memory stayed flat. ``NIGHTSHIFT_LOAD_S`` sets the seconds per service (default 5;
``scripts/soak.sh`` runs longer). The services have no in-process reload, so a reload cycle is the model's
``load``/``warmup``/``unload`` in a subprocess of the service's own package.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.wcs import WCS

from nightshift.core.client import TaskClient
from nightshift.core.tiles import make_tile
from nightshift.orchestration.launcher import LocalNight
from nightshift.v1 import task_service_pb2

pytestmark = pytest.mark.reliability

CLIENTS = 16
RELOAD_CYCLES = 20
LOAD_S = float(os.environ.get("NIGHTSHIFT_LOAD_S", "5"))
RSS_GROWTH_LIMIT = 1.25  # RSS at the end over RSS after warm-up; a leak per call grows without bound
TASKS = ["bubbles", "clusters", "filaments", "ghosts", "inclination"]
MODEL_CLASSES = {"bubbles": "BubblesModel", "clusters": "ClustersModel", "filaments": "FilamentsModel",
                 "ghosts": "GhostsModel", "inclination": "InclinationModel"}


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _wcs_cards(height: int, width: int) -> list[str]:
    """A Galactic-plane TAN WCS at 6 arcsec per pixel, as 80-character FITS cards."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    wcs.wcs.crval = [30.0, 0.0]
    wcs.wcs.crpix = [width / 2, height / 2]
    wcs.wcs.cdelt = [-6 / 3600, 6 / 3600]
    header = wcs.to_header().tostring()
    return [header[i:i + 80] for i in range(0, len(header), 80)]


def _tiles(spec: task_service_pb2.InputSpec, count: int) -> list:
    rng = np.random.default_rng(0)
    shape = (len(spec.bands), spec.height or 64, spec.width or 64)
    return [make_tile(rng.normal(0, 1, shape).astype(np.float32), bands=list(spec.bands), survey="load", field=str(n),
                      wcs_cards=_wcs_cards(*shape[1:])) for n in range(count)]


@pytest.mark.parametrize("task", TASKS)
def test_sixteen_clients_for_a_bounded_time_without_an_error_and_with_flat_memory(science_services: LocalNight, task: str) -> None:
    service = science_services.services[task]
    with TaskClient(service.target, timeout_s=300) as client:
        tiles = _tiles(client.describe().input, CLIENTS)
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:  # warm-up: every client once
            list(pool.map(lambda t: client.infer([t]), tiles))
        rss_start = rss_bytes(service.process.pid)
        stop_at = time.monotonic() + LOAD_S

        def client_loop(tile) -> tuple[list[float], list[str]]:
            latencies, errors = [], []
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    assert len(client.infer([tile]).results) == 1
                except Exception as error:  # noqa: BLE001 - every failure is counted and reported
                    errors.append(repr(error)[:200])
                latencies.append(time.perf_counter() - started)
            return latencies, errors

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            outcomes = list(pool.map(client_loop, tiles))
        elapsed = time.perf_counter() - started
        rss_end = rss_bytes(service.process.pid)
    latencies = np.array([x for lat, _ in outcomes for x in lat])
    errors = [e for _, errs in outcomes for e in errs]
    figures = {"task": task, "clients": CLIENTS, "calls": int(latencies.size), "errors": len(errors),
               "tiles_per_s": round(latencies.size / elapsed, 2), "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 1),
               "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 1),
               "rss_start_mib": round(rss_start / 2**20, 1), "rss_end_mib": round(rss_end / 2**20, 1)}
    print(json.dumps(figures))
    assert errors == [], errors[:3]
    assert latencies.size >= CLIENTS
    assert rss_end <= rss_start * RSS_GROWTH_LIMIT, figures


_RELOAD_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    task, cls, cycles = sys.argv[1], sys.argv[2], int(sys.argv[3])
    module = __import__(f"nightshift.{task}.servicer", fromlist=[cls])
    def rss():
        return next(int(l.split()[1]) * 1024 for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:"))
    samples = []
    for _ in range(cycles):
        model = getattr(module, cls)(store=None)
        model.load(); model.warmup(); model.unload()
        samples.append(rss())
    print(json.dumps(samples))
""")


@pytest.mark.parametrize("task", TASKS)
def test_twenty_model_reload_cycles_leave_memory_flat(task: str) -> None:
    result = subprocess.run([sys.executable, "-c", _RELOAD_SCRIPT, task, MODEL_CLASSES[task], str(RELOAD_CYCLES)],
                            capture_output=True, text=True, timeout=500,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    samples = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(samples) == RELOAD_CYCLES
    # The first cycles warm allocators and caches; from the fifth on, a leak per reload shows as steady growth.
    settled, last = samples[4], samples[-1]
    print(json.dumps({"task": task, "reload_cycles": RELOAD_CYCLES, "rss_cycle5_mib": round(settled / 2**20, 1),
                      "rss_last_mib": round(last / 2**20, 1)}))
    assert last <= settled * 1.10, samples
