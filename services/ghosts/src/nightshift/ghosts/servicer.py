"""The ghosts task as the runtime serves it: contract types in, the service's code, contract types out."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nightshift.core.devices import torch_device
from nightshift.core.errors import FailedPrecondition, InvalidInput, NotFound
from nightshift.core.model import ProgressCallback, TaskModel
from nightshift.core.registry import ModelRegistry, resolve_checkpoint
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import Tile, TileSpec
from nightshift.ghosts.artefacts import Artefact, uncompressed_rle
from nightshift.ghosts.crossval import CROSSVAL_RESULTS, real_headline
from nightshift.ghosts.config import BANDS, TILE_SIZE, GhostsConfig, preset
from nightshift.ghosts.evaluate import headline, score_real_heldout, score_simulated_with_baseline
from nightshift.ghosts.infer import Detector, sky_position
from nightshift.ghosts.model import load_detector, save_weights, smoke_check
from nightshift.ghosts.preprocess import display_pixels
from nightshift.ghosts.train import EpochReport, train_model
from nightshift.ghosts.shipped import shipped_weights
from nightshift.v1 import results_pb2, task_service_pb2, tile_pb2

__all__ = ["GhostsModel"]


class GhostsModel(TaskModel):
    """Mask R-CNN instances of ghosting and scattered-light artefacts in DES focal-plane images.

    Parameters
    ----------
    store : ObjectStore, optional
        Registry store: the shipped model is registered there and the pinned
        (``NIGHTSHIFT_MODEL_VERSION``) or latest version is served; without a store the shipped
        weights are served directly.
    weights : Path, optional
        A safetensors file (with its JSON card beside) to serve instead of the shipped one.
    evaluate_images : int, optional
        Simulated images scored by ``Evaluate`` (default: the model configuration's ``test_images``).
    """

    task = "ghosts"
    summary = "Ghosting and scattered-light artefacts (bright, faint, rays) in DES focal-plane images, as Mask R-CNN instances"
    output_kind = task_service_pb2.OUTPUT_KIND_INSTANCES

    def __init__(self, *, store: ObjectStore | None = None, weights: Path | None = None, evaluate_images: int | None = None) -> None:
        self.spec = TileSpec(bands=BANDS, height=TILE_SIZE, width=TILE_SIZE, dtype=np.dtype("float32"),
                             max_batch_tiles=16, preferred_batch_tiles=4)
        self.store = store
        self.weights = weights
        self.evaluate_images = evaluate_images
        self.device = torch_device()
        self.registry = ModelRegistry(store, self.task, smoke=smoke_check) if store is not None else None
        self._detector: Detector | None = None
        self._config: GhostsConfig | None = None
        self._ref = results_pb2.ModelRef()

    def load(self) -> None:
        weights = self.weights or shipped_weights()[0]
        checkpoint = resolve_checkpoint(self.task, weights, store=self.store,
                                        cache_dir=Path(tempfile.gettempdir()) / "nightshift-models", smoke=smoke_check)
        self._serve(checkpoint.weights, GhostsConfig.from_dict(checkpoint.config), checkpoint.ref)

    def _serve(self, weights: Path, config: GhostsConfig, ref: results_pb2.ModelRef) -> None:
        self._config = config
        self._detector = Detector(load_detector(weights, config, device=self.device))
        self._ref = ref

    def warmup(self) -> None:
        assert self._detector is not None and self._config is not None
        self._detector.predict([np.zeros((3, TILE_SIZE, TILE_SIZE), np.float32)], score_threshold=1.0)

    def serving_model(self) -> results_pb2.ModelRef:
        return self._ref

    def models(self) -> list[task_service_pb2.ModelVersion]:
        return [m.to_proto() for m in self.registry.versions()] if self.registry is not None else []

    def infer(self, tiles: Sequence[Tile], model: results_pb2.ModelRef) -> list[results_pb2.TileResult]:
        assert self._detector is not None and self._config is not None
        pixels = []
        for tile in tiles:
            try:
                pixels.append(display_pixels(tile.pixels, [b.unit for b in tile.message.bands]))
            except ValueError as error:  # a linear band without any finite pixel
                raise InvalidInput(f"ghosts: tile {tile.tile_id!r}: {error}") from None
        found = self._detector.predict(pixels, score_threshold=self._config.score_threshold)
        return [results_pb2.TileResult(tile_id=tile.tile_id, instances=[self._instance(tile, a, model) for a in artefacts])
                for tile, artefacts in zip(tiles, found)]

    @staticmethod
    def _instance(tile: Tile, artefact: Artefact, model: results_pb2.ModelRef) -> results_pb2.Instance:
        x0, y0, x1, y1 = artefact.box
        instance = results_pb2.Instance(
            tile_id=tile.tile_id, model=model, label=artefact.label, score=artefact.score,
            box=results_pb2.PixelBox(x_min=x0, y_min=y0, x_max=x1, y_max=y1),
            rle=results_pb2.RleMask(height=artefact.mask.shape[0], width=artefact.mask.shape[1],
                                    counts=uncompressed_rle(artefact.mask)),
        )
        sky = sky_position(tile.wcs_header, (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2)
        if sky is not None:
            instance.sky.CopyFrom(tile_pb2.SkyPosition(frame=tile_pb2.SKY_FRAME_ICRS, lon_deg=sky[0], lat_deg=sky[1]))
        return instance

    def train(self, request: task_service_pb2.TrainRequest, progress: ProgressCallback) -> task_service_pb2.ModelVersion:
        if self.registry is None:
            raise FailedPrecondition("ghosts: no object store configured, so no model registry (set NIGHTSHIFT_S3_*)")
        if request.dataset not in ("", "simulated"):
            raise InvalidInput(f"ghosts: training dataset {request.dataset!r}, expected 'simulated' (or empty)")
        try:
            config = preset(request.preset or "tiny").with_overrides(dict(request.overrides))
        except ValueError as error:
            raise InvalidInput(f"ghosts: {error}") from None
        seed = int(request.seed or 7)

        def report(epoch: EpochReport) -> None:
            progress(task_service_pb2.TrainProgress(
                epoch=epoch.epoch, total_epochs=epoch.total_epochs, metrics=epoch.metrics,
                message=f"{epoch.stage} stage, lr {epoch.learning_rate:g}, {epoch.seconds:.1f} s",
            ))

        result = train_model(config, seed=seed, on_epoch=report, show_progress=False)
        with tempfile.TemporaryDirectory() as directory:
            weights = save_weights(result.detector, Path(directory) / f"{config.name}.safetensors")
            model = self.registry.register({weights.name: weights}, name=config.name, metrics=result.metrics,
                                           config=config.to_dict(), data_seed=seed, set_latest=False)
        return model.to_proto()

    def evaluate(self, request: task_service_pb2.EvaluateRequest) -> task_service_pb2.EvaluateResponse:
        assert self._detector is not None and self._config is not None
        self.model_ref(request.model_version)
        dataset = request.dataset or "simulated-test"
        if dataset == "simulated-test":
            model_scores, baseline_scores = score_simulated_with_baseline(
                self._detector.detector, self._config, seed=int(request.seed or 7),
                count=self.evaluate_images or self._config.test_images)
        elif dataset == "real":
            model_scores, baseline_scores = score_real_heldout(self._detector.detector, self._config)
        elif dataset == "real-crossval":
            return self._crossval()
        else:
            raise NotFound(f"ghosts: dataset {dataset!r} unknown; expected 'simulated-test', 'real' or 'real-crossval'")
        return task_service_pb2.EvaluateResponse(
            model=self._ref, dataset=dataset, metrics=headline(model_scores), baseline_metrics=headline(baseline_scores),
        )

    def _crossval(self) -> task_service_pb2.EvaluateResponse:
        """The committed real cross-validation figures (means over the folds), not recomputed."""
        if not CROSSVAL_RESULTS.exists():
            raise NotFound(f"ghosts: no cross-validation results at {CROSSVAL_RESULTS}")
        block = real_headline(json.loads(CROSSVAL_RESULTS.read_text()))
        metrics = {key: float(block[key]) for key in ("ap50", "ap50_std", "ap", "image_recall", "ccd_precision", "ccd_recall")}
        metrics.update({f"ap50_{c}": float(v["ap50"]) for c, v in block["per_class"].items()})
        return task_service_pb2.EvaluateResponse(model=self._ref, dataset="real-crossval", metrics=metrics)
