"""A TaskModel with controllable behaviour for the server runtime tests; runnable as a service.

Per tile, the label ``sleep_s`` makes ``infer`` sleep and ``fail`` makes it raise an unexpected
error. ``load_gate`` holds ``load`` until set, to observe health before the model is ready.

    NIGHTSHIFT_GRPC_PORT=0 NIGHTSHIFT_GRPC_PORT_FILE=F python core/tests/sleepy_service.py   # serve until SIGTERM
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from nightshift.core.model import ProgressCallback, TaskModel
from nightshift.core.server import serve_from_environment
from nightshift.core.tiles import Tile, TileSpec
from nightshift.v1 import results_pb2, task_service_pb2


class SleepyModel(TaskModel):
    task = "sleepy"
    summary = "Sleeps as each tile's labels say, for testing the runtime"
    output_kind = task_service_pb2.OUTPUT_KIND_MEASUREMENTS

    def __init__(self, *, load_gate: threading.Event | None = None, load_error: Exception | None = None, max_batch_tiles: int = 8) -> None:
        self.spec = TileSpec(bands=("image",), max_batch_tiles=max_batch_tiles)
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
            results.append(results_pb2.TileResult(
                tile_id=tile.tile_id,
                measurements=[results_pb2.Measurement(tile_id=tile.tile_id, model=model, quantity="sum", value=total)],
            ))
        return results

    def train(self, request: task_service_pb2.TrainRequest, progress: ProgressCallback) -> task_service_pb2.ModelVersion:
        epochs = int(request.overrides.get("epochs", "3"))
        for epoch in range(1, epochs + 1):
            progress(task_service_pb2.TrainProgress(epoch=epoch, total_epochs=epochs, metrics={"loss": 1.0 / epoch}))
        return task_service_pb2.ModelVersion(model=results_pb2.ModelRef(name="sleepy", version="8"))


if __name__ == "__main__":
    serve_from_environment(lambda store: SleepyModel(), service="sleepy")
