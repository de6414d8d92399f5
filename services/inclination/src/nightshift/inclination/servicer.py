"""The inclination task as the Nightshift runtime serves it: contract <-> service code, nothing more."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nightshift.core.errors import FailedPrecondition, InvalidInput
from nightshift.core.model import ProgressCallback, TaskModel
from nightshift.core.registry import ModelRegistry, resolve_checkpoint
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import Tile, TileSpec
from nightshift.inclination.config import InclinationConfig, build_config
from nightshift.inclination.evaluate import HELD_OUT_SEED, evaluate_estimates
from nightshift.inclination.infer import Predictor, smoke_check
from nightshift.inclination.simulate import BANDS
from nightshift.inclination.train import EpochReport, simulate_split, train
from nightshift.v1 import results_pb2, task_service_pb2

__all__ = ["InclinationModel", "BUNDLED_WEIGHTS", "BUNDLED_CARD"]

BUNDLED_WEIGHTS = Path(__file__).parent / "weights" / "inclinet.keras"
BUNDLED_CARD = Path(__file__).parent / "weights" / "inclinet.json"
EVALUATION_DATASETS = ("", "simulated-test")
TRAINING_DATASETS = ("", "simulated")


def _spec(config: InclinationConfig) -> TileSpec:
    return TileSpec(bands=BANDS, height=config.image_size, width=config.image_size, dtype=np.dtype("float32"),
                    max_batch_tiles=256, preferred_batch_tiles=32)


class InclinationModel(TaskModel):
    """Inclination (deg, 90 = edge-on), its uncertainty and a reject probability for each g, r, i tile.

    Parameters
    ----------
    store : ObjectStore, optional
        With a store the model comes from the registry (the bundled model is registered first) and
        Train registers there; without one the bundled weights are served and Train is unavailable.
    model_version : str, optional
        Registry version to serve (default: env ``NIGHTSHIFT_MODEL_VERSION``, else LATEST).
    evaluate_galaxies : int, optional
        Held-out galaxies Evaluate simulates (default: the served configuration's ``test_galaxies``).
    """

    task = "inclination"
    summary = "Inclination of a spiral galaxy (45..90 deg, 90 = edge-on) with uncertainty and reject probability from g, r, i cut-outs"
    output_kind = task_service_pb2.OUTPUT_KIND_MEASUREMENTS

    def __init__(self, *, store: ObjectStore | None = None, model_version: str | None = None, evaluate_galaxies: int | None = None) -> None:
        self.store = store
        self.registry = ModelRegistry(store, self.task, smoke=smoke_check) if store is not None else None
        self.model_version = model_version
        self.evaluate_galaxies = evaluate_galaxies
        self.spec = _spec(InclinationConfig.from_dict(json.loads(BUNDLED_CARD.read_text())["config"]))
        self.predictor: Predictor | None = None
        self._ref = results_pb2.ModelRef()
        self._cache = tempfile.TemporaryDirectory(prefix="nightshift-inclination-")

    def load(self) -> None:
        checkpoint = resolve_checkpoint(self.task, BUNDLED_WEIGHTS, store=self.store, cache_dir=self._cache.name,
                                        version=self.model_version, smoke=smoke_check)
        self.predictor = Predictor.from_card(checkpoint.weights, config=checkpoint.config, metrics=checkpoint.metrics)
        self._ref = checkpoint.ref
        self.spec = _spec(self.predictor.config)

    def warmup(self) -> None:
        size = self.spec.height
        self._predictor().measure(np.zeros((1, 3, size, size), np.float32))

    def unload(self) -> None:
        self.predictor = None
        self._cache.cleanup()

    def _predictor(self) -> Predictor:
        if self.predictor is None:
            raise FailedPrecondition("inclination: the model is not loaded")
        return self.predictor

    def serving_model(self) -> results_pb2.ModelRef:
        return self._ref

    def models(self) -> list[task_service_pb2.ModelVersion]:
        return [m.to_proto() for m in self.registry.versions()] if self.registry is not None else []

    def infer(self, tiles: Sequence[Tile], model: results_pb2.ModelRef) -> list[results_pb2.TileResult]:
        if not tiles:
            return []
        estimates = self._predictor().measure(np.stack([t.pixels for t in tiles]))
        return [
            results_pb2.TileResult(tile_id=tile.tile_id, measurements=[results_pb2.Measurement(
                tile_id=tile.tile_id, model=model, quantity="inclination", unit="deg",
                value=float(estimates.inclination_deg[k]), uncertainty=float(estimates.uncertainty_deg[k]),
                reject_probability=float(estimates.reject_probability[k]), sky=tile.message.center,
            )])
            for k, tile in enumerate(tiles)
        ]

    def train(self, request: task_service_pb2.TrainRequest, progress: ProgressCallback) -> task_service_pb2.ModelVersion:
        if self.registry is None:
            raise FailedPrecondition("inclination: Train needs an object store to register the model in")
        if request.dataset not in TRAINING_DATASETS:
            raise InvalidInput(f"dataset {request.dataset!r}: expected one of {TRAINING_DATASETS} (simulated galaxies)")
        try:
            overrides = {name: json.loads(value) for name, value in request.overrides.items()}
            config = build_config(preset=request.preset or "default", **overrides)
        except (ValueError, TypeError) as error:  # JSONDecodeError is a ValueError
            raise InvalidInput(f"inclination Train: {error}") from None

        def report(epoch: EpochReport) -> None:
            progress(task_service_pb2.TrainProgress(epoch=epoch.epoch, total_epochs=epoch.total_epochs, metrics=epoch.metrics,
                                                    message=epoch.network))

        with tempfile.TemporaryDirectory(prefix="inclination-train-") as directory:
            result = train(config, seed=int(request.seed), output_dir=directory, registry=self.registry, progress=report, show_progress=False)
        assert result.registered is not None  # a registry was given
        return result.registered.to_proto()

    def evaluate(self, request: task_service_pb2.EvaluateRequest) -> task_service_pb2.EvaluateResponse:
        if request.dataset not in EVALUATION_DATASETS:
            raise InvalidInput(f"dataset {request.dataset!r}: expected one of {EVALUATION_DATASETS} (held-out simulated galaxies)")
        model = self.model_ref(request.model_version)
        predictor = self._predictor()
        galaxies = simulate_split(predictor.config, seed=int(request.seed) or HELD_OUT_SEED, split="test",
                                  galaxies=self.evaluate_galaxies or predictor.config.test_galaxies)
        estimates = predictor.measure(galaxies.images)
        result = evaluate_estimates(galaxies, predicted_deg=estimates.inclination_deg, uncertainty_deg=estimates.uncertainty_deg,
                                    reject_probability=estimates.reject_probability)
        return task_service_pb2.EvaluateResponse(model=model, dataset=request.dataset or "simulated-test",
                                                 metrics=result.metrics, baseline_metrics=result.baseline_metrics)
