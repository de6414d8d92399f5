"""The clusters TaskModel: the contract's tiles in, SegmentationMaps with cluster detections out.

Thin: tiles are stacked and handed to :mod:`nightshift.clusters.infer`; the probability map goes
back as a ``SegmentationMap`` (by object-store reference when a store is configured, inline
otherwise) with one ``Detection`` per cluster found (circle in pixels,
sky position from the tile's WCS, radius, peak probability, label "cluster").
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nightshift.clusters.bundle import bundled_weights, smoke_check
from nightshift.clusters.config import ClustersConfig, get_config
from nightshift.core.codec import encode_array
from nightshift.core.errors import FailedPrecondition, NotFound
from nightshift.core.model import ProgressCallback, TaskModel
from nightshift.core.registry import ModelRegistry, resolve_checkpoint
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import Tile, TileSpec
from nightshift.v1 import results_pb2, task_service_pb2, tile_pb2

__all__ = ["ClustersModel", "bundled_weights"]

_DATASETS = {"simulated-test": "test", "simulated-held-out": "held-out"}


def _spec(config: ClustersConfig) -> TileSpec:
    return TileSpec(bands=config.band_names, height=config.patch_px, width=config.patch_px, dtype=np.dtype("float32"),
                    max_batch_tiles=256, preferred_batch_tiles=32)


class ClustersModel(TaskModel):
    """Galaxy clusters in Planck HFI patches by U-Net segmentation.

    Parameters
    ----------
    store : ObjectStore, optional
        The object store of the server: model registry and probability maps by reference.
    weights : Path, optional
        The bundled model file (default: the one shipped in the package).
    evaluation_overrides : dict, optional
        Config fields replaced for the simulated sky of ``Evaluate`` (e.g. a smaller sky in tests).
    """

    task = "clusters"
    summary = "Galaxy clusters (thermal SZ) in Planck HFI HEALPix patches: U-Net probability maps and detections"
    output_kind = task_service_pb2.OUTPUT_KIND_SEGMENTATION

    def __init__(self, *, store: ObjectStore | None = None, weights: Path | None = None,
                 evaluation_overrides: dict[str, object] | None = None) -> None:
        self.store = store
        self.weights = Path(weights) if weights is not None else bundled_weights()
        self.card = json.loads(self.weights.with_suffix(".json").read_text())
        self.config = ClustersConfig.from_dict(self.card["config"])
        self.spec = _spec(self.config)
        self.evaluation_overrides = dict(evaluation_overrides or {})
        self.registry = ModelRegistry(store, self.task, smoke=smoke_check) if store is not None else None
        self._network = None
        self._ref = results_pb2.ModelRef()
        self._cache = tempfile.TemporaryDirectory(prefix="clusters-models-")

    def load(self) -> None:
        from nightshift.clusters.model import load_model
        from nightshift.core.devices import configure_tensorflow

        configure_tensorflow()
        checkpoint = resolve_checkpoint(self.task, self.weights, store=self.store, cache_dir=self._cache.name, smoke=smoke_check)
        self.config = ClustersConfig.from_dict(checkpoint.config)
        self.spec = _spec(self.config)
        self._ref = checkpoint.ref
        self._network = load_model(str(checkpoint.weights))

    def warmup(self) -> None:
        from nightshift.clusters.infer import predict_probabilities

        predict_probabilities(self._network, np.zeros((1, *self.spec_shape()), np.float32))

    def unload(self) -> None:
        self._network = None
        self._cache.cleanup()

    def spec_shape(self) -> tuple[int, int, int]:
        return len(self.spec.bands), self.spec.height, self.spec.width

    def serving_model(self) -> results_pb2.ModelRef:
        return self._ref

    def models(self) -> list[task_service_pb2.ModelVersion]:
        return [m.to_proto() for m in self.registry.versions()] if self.registry is not None else []

    def infer(self, tiles: Sequence[Tile], model: results_pb2.ModelRef) -> list[results_pb2.TileResult]:
        from nightshift.clusters.infer import find_detections, predict_probabilities, sky_positions, tile_wcs

        if not tiles:
            return []
        probability = predict_probabilities(self._network, np.stack([t.pixels for t in tiles]))
        pixel_arcmin = self.config.pixel_scale_arcmin
        found = find_detections(probability, threshold=self.config.threshold, min_pixels=self.config.min_pixels,
                                max_radius_px=self.config.max_radius_arcmin / pixel_arcmin)
        found = sky_positions(found, [tile_wcs(t.wcs_header) for t in tiles])
        results = []
        for index, tile in enumerate(tiles):
            mine = np.flatnonzero(found.tile == index)
            detections = [results_pb2.Detection(
                tile_id=tile.tile_id, model=model, label="cluster", score=float(found.score[i]),
                circle=results_pb2.PixelCircle(x=float(found.x[i]), y=float(found.y[i]), radius=float(found.radius_px[i])),
                sky=tile_pb2.SkyPosition(lon_deg=float(found.glon[i]) % 360.0, lat_deg=float(found.glat[i]),
                                         frame=tile_pb2.SKY_FRAME_GALACTIC) if np.isfinite(found.glon[i]) else None,
                radius_arcsec=float(found.radius_px[i] * pixel_arcmin * 60.0),
            ) for i in mine]
            segmentation = results_pb2.SegmentationMap(
                tile_id=tile.tile_id, model=model, detections=detections,
                probability=encode_array(probability[index], store=self.store, inline_limit_bytes=0),
            )
            results.append(results_pb2.TileResult(tile_id=tile.tile_id, segmentations=[segmentation]))
        return results

    def train(self, request: task_service_pb2.TrainRequest, progress: ProgressCallback) -> task_service_pb2.ModelVersion:
        from nightshift.clusters.train import train_model

        if self.registry is None:
            raise FailedPrecondition("training registers a model version: the server needs an object store")
        if request.dataset not in ("", "simulated"):
            raise NotFound(f"dataset {request.dataset!r}: the clusters service trains on 'simulated'")
        overrides = dict(request.overrides)
        if request.seed:
            overrides["seed"] = str(request.seed)
        config = get_config(request.preset or "default", overrides=overrides)

        def report(epoch: int, total: int, metrics: dict[str, float]) -> None:
            progress(task_service_pb2.TrainProgress(epoch=epoch, total_epochs=total, metrics=metrics,
                                                    message=f"epoch {epoch}/{total}"))

        with tempfile.TemporaryDirectory(prefix="clusters-train-") as work:
            result = train_model(config, output_dir=Path(work), progress=report, registry=self.registry, show_progress=False)
        return self.registry.get(result.version).to_proto()

    def evaluate(self, request: task_service_pb2.EvaluateRequest) -> task_service_pb2.EvaluateResponse:
        """Score the held-out cells of the config's evaluation skies (never trained on), or of the sky ``request.seed``."""
        from nightshift.clusters.datasets import simulated_data
        from nightshift.clusters.evaluate import evaluate_skies

        if request.dataset not in _DATASETS:
            raise NotFound(f"dataset {request.dataset!r}: expected one of {sorted(_DATASETS)}")
        model = self.model_ref(request.model_version)
        config = self.config.with_evaluation_protocol().with_overrides(self.evaluation_overrides)
        cells = config.held_out_cells if _DATASETS[request.dataset] == "held-out" else tuple(config.test_cells)
        skies = []
        for sky_seed in (request.seed,) if request.seed else config.evaluation_seeds:
            data = simulated_data(config.with_overrides({"seed": sky_seed, "validation_cells": [], "test_cells": list(cells)}), ("test",))
            skies.append((data.splits["test"], data.truth))
        scores = evaluate_skies(self._network, skies, config, cells).metrics
        headline = ("completeness", "purity", "completeness_all")
        return task_service_pb2.EvaluateResponse(
            model=model, dataset=request.dataset,
            metrics={k: float(scores[k]) for k in headline if scores[k] == scores[k]},
            baseline_metrics={k: float(scores["baseline"][k]) for k in headline if scores["baseline"][k] == scores["baseline"][k]},
        )
