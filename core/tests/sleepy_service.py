"""A TaskModel with controllable behaviour for the server runtime tests; runnable as a service.

Per tile, the label ``sleep_s`` makes ``infer`` sleep and ``fail`` makes it raise an unexpected
error; a tile's WCS cards, when it has them, give the sky position of its centre (as the science
services compute theirs). ``load_gate`` holds ``load`` until set, to observe health before the model
is ready. ``train`` takes the overrides ``epochs`` and ``epoch_s`` (seconds per epoch) and, given a
``registry``, registers its weights there.

    NIGHTSHIFT_GRPC_PORT=0 NIGHTSHIFT_GRPC_PORT_FILE=F python core/tests/sleepy_service.py   # serve until SIGTERM
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Sequence

import numpy as np

from nightshift.core.model import ProgressCallback, TaskModel, typed_overrides
from nightshift.core.registry import ModelRegistry
from nightshift.core.server import serve_from_environment
from nightshift.core.tiles import Tile, TileSpec
from nightshift.v1 import results_pb2, task_service_pb2


class SleepyModel(TaskModel):
    task = "sleepy"
    summary = "Sleeps as each tile's labels say, for testing the runtime"
    output_kind = task_service_pb2.OUTPUT_KIND_MEASUREMENTS

    def __init__(self, *, load_gate: threading.Event | None = None, load_error: Exception | None = None, max_batch_tiles: int = 8,
                 registry: ModelRegistry | None = None) -> None:
        self.spec = TileSpec(bands=("image",), max_batch_tiles=max_batch_tiles)
        self.registry = registry
        self.training_epochs_run = 0
        self.load_gate = load_gate
        self.load_error = load_error
        self.computed: list[str] = []
        self.unloaded = False

    def load(self) -> None:
        if self.load_gate is not None:
            self.load_gate.wait()
        if self.load_error is not None:
            raise self.load_error

    def unload(self) -> None:
        self.unloaded = True

    def serving_model(self) -> results_pb2.ModelRef:
        return results_pb2.ModelRef(name="sleepy", version="7")

    def infer(self, tiles: Sequence[Tile], model: results_pb2.ModelRef) -> list[results_pb2.TileResult]:
        results = []
        for tile in tiles:
            if "fail" in tile.message.labels:
                raise RuntimeError(f"secret internal detail: {tile.message.labels['fail']}")
            time.sleep(float(tile.message.labels.get("sleep_s", 0)))
            self.computed.append(tile.tile_id)
            total = float(tile.pixels.sum())
            measurements = [results_pb2.Measurement(tile_id=tile.tile_id, model=model, quantity="sum", value=total)]
            if tile.message.wcs_cards:
                from astropy.io import fits
                from astropy.wcs import WCS

                height, width = tile.pixels.shape[1:]
                lon, lat = WCS(fits.Header.fromstring(tile.wcs_header)).celestial.all_pix2world([[width / 2, height / 2]], 0)[0]
                measurements.append(results_pb2.Measurement(tile_id=tile.tile_id, model=model, quantity="centre_lon", value=float(lon)))
            results.append(results_pb2.TileResult(tile_id=tile.tile_id, measurements=measurements))
        return results

    def train(self, request: task_service_pb2.TrainRequest, progress: ProgressCallback) -> task_service_pb2.ModelVersion:
        settings = {"epochs": 3, "epoch_s": 0.0} | typed_overrides({"epochs": 3, "epoch_s": 0.0}, request.overrides)
        epochs = settings["epochs"]
        for epoch in range(1, epochs + 1):
            time.sleep(settings["epoch_s"])
            self.training_epochs_run += 1
            progress(task_service_pb2.TrainProgress(epoch=epoch, total_epochs=epochs, metrics={"loss": 1.0 / epoch}))
        if self.registry is None:
            return task_service_pb2.ModelVersion(model=results_pb2.ModelRef(name="sleepy", version="8"))
        time.sleep(settings["epoch_s"])  # evaluating, after the last report: a cancellation now must still register nothing
        weights = np.full(4, float(request.seed or 1), np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, w=weights)
        return self.registry.register({"weights.npz": buffer.getvalue()}, name="sleepy", metrics={"loss": 1.0 / epochs},
                                      config=settings, data_seed=int(request.seed)).to_proto()


if __name__ == "__main__":
    serve_from_environment(lambda store: SleepyModel(), service="sleepy")
