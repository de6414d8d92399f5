"""The filaments TaskModel: N(H2) tiles in, SegmentationMaps with per-filament Detections out.

Thin: tiles are stacked and handed to :mod:`nightshift.filaments.infer`. Each tile's result holds
one ``SegmentationMap`` (the probability map, by object-store reference when a store is configured)
with one ``Detection`` per filament (bounding box, sky position of the centroid and contour polygon
from the tile's WCS, mean probability as score, label "filament", and as ``properties`` what
``infer`` writes in its catalogue: ``area_px2``, ``skeleton_length_px``, ``mean_nh2_per_cm2``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nightshift.core.codec import encode_array
from nightshift.core.errors import FailedPrecondition, InvalidInput, NotFound
from nightshift.core.model import ProgressCallback, TaskModel
from nightshift.core.registry import ModelRegistry, resolve_checkpoint
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import Tile, TileSpec
from nightshift.filaments.config import BAND, FilamentsConfig, preset
from nightshift.filaments.model import bundled_weights, smoke_check
from nightshift.v1 import results_pb2, task_service_pb2, tile_pb2

__all__ = ["FilamentsModel"]

_FRAMES = {"galactic": tile_pb2.SKY_FRAME_GALACTIC, "icrs": tile_pb2.SKY_FRAME_ICRS}
_DATASETS = ("simulated-test", "real-validation")


def _spec(config: FilamentsConfig) -> TileSpec:
    return TileSpec(bands=(BAND,), height=config.tile_px, width=config.tile_px, dtype=np.dtype("float32"),
                    max_batch_tiles=64, preferred_batch_tiles=8)


class FilamentsModel(TaskModel):
    """Galactic filaments in Herschel N(H2) tiles by U-Net segmentation.

    Parameters
    ----------
    store : ObjectStore, optional
        The server's object store: model registry, and probability maps by reference.
    weights : Path, optional
        The bundled model file (default: the one shipped in the package).
    inline_limit_bytes : int
        Largest probability map carried inline when a store is configured.
    evaluation_overrides : dict, optional
        Config fields replaced for ``Evaluate`` (e.g. fewer test maps in tests).
    real_data_dir : Path, optional
        The real cut-out for the ``real-validation`` dataset (default: ``config.default_real_data_dir()``).
    test_time_views : int, optional
        Dihedral views averaged per inference patch (``FilamentsConfig.test_time_views``; default: the
        served model's config), for ``Infer`` and ``Evaluate`` alike.
    """

    task = "filaments"
    summary = "Galactic filaments in Herschel N(H2) column-density tiles: U-Net probability maps and filament instances"
    output_kind = task_service_pb2.OUTPUT_KIND_SEGMENTATION

    def __init__(self, *, store: ObjectStore | None = None, weights: Path | None = None, inline_limit_bytes: int = 64 * 1024,
                 evaluation_overrides: dict[str, object] | None = None, real_data_dir: Path | None = None,
                 test_time_views: int | None = None) -> None:
        from nightshift.filaments.model import load_checkpoint

        self.store = store
        self.weights = Path(weights) if weights is not None else bundled_weights()
        self.inline_limit_bytes = inline_limit_bytes
        self.evaluation_overrides = dict(evaluation_overrides or {})
        self.real_data_dir = real_data_dir
        self.registry = ModelRegistry(store, self.task, smoke=smoke_check) if store is not None else None
        self.test_time_views = test_time_views
        _, config, _ = load_checkpoint(self.weights)
        self.config = self._served(config)
        self.spec = _spec(self.config)
        self._network = None
        self._ref = results_pb2.ModelRef()
        self._cache = tempfile.TemporaryDirectory(prefix="filaments-models-")

    def load(self) -> None:
        from nightshift.core.devices import torch_device
        from nightshift.filaments.model import load_network

        served = resolve_checkpoint(self.task, self.weights, store=self.store, cache_dir=self._cache.name, smoke=smoke_check)
        self.config = self._served(FilamentsConfig.from_dict(served.config))
        self.spec = _spec(self.config)
        self._network = load_network(served.weights, self.config, torch_device())
        self._ref = served.ref

    def _served(self, config: FilamentsConfig) -> FilamentsConfig:
        if self.test_time_views is None:
            return config
        return config.with_overrides({"test_time_views": self.test_time_views})

    def warmup(self) -> None:
        from nightshift.filaments.infer import predict_probability

        predict_probability(self._network, np.ones((self.config.patch_px, self.config.patch_px), np.float32), self.config)

    def unload(self) -> None:
        self._network = None
        self._cache.cleanup()

    def serving_model(self) -> results_pb2.ModelRef:
        return self._ref

    def models(self) -> list[task_service_pb2.ModelVersion]:
        return [m.to_proto() for m in self.registry.versions()] if self.registry is not None else []

    def infer(self, tiles: Sequence[Tile], model: results_pb2.ModelRef) -> list[results_pb2.TileResult]:
        from nightshift.filaments.infer import find_filaments, predict_probability, sky_filaments

        if not tiles:
            return []
        column_density = np.stack([t.pixels[0] for t in tiles])
        probabilities = predict_probability(self._network, column_density, self.config)
        results = []
        for tile, probability, image in zip(tiles, probabilities, column_density):
            _, filaments = find_filaments(probability, image, threshold=self.config.threshold,
                                          min_area_px=self.config.min_instance_px)
            sky = sky_filaments(filaments, tile.wcs_header)
            detections = []
            for index, filament in enumerate(filaments):
                detection = results_pb2.Detection(
                    tile_id=tile.tile_id, model=model, label="filament", score=filament.mean_probability,
                    box=results_pb2.PixelBox(x_min=filament.box[0], y_min=filament.box[1], x_max=filament.box[2], y_max=filament.box[3]),
                    properties=filament.properties(),
                )
                if sky is not None:
                    frame = _FRAMES[sky.frame]
                    detection.sky.CopyFrom(tile_pb2.SkyPosition(lon_deg=float(sky.lon_deg[index]), lat_deg=float(sky.lat_deg[index]),
                                                                frame=frame))
                    detection.outline.extend(tile_pb2.SkyPosition(lon_deg=float(lon), lat_deg=float(lat), frame=frame)
                                             for lon, lat in sky.outlines_deg[index])
                detections.append(detection)
            segmentation = results_pb2.SegmentationMap(
                tile_id=tile.tile_id, model=model, detections=detections,
                probability=encode_array(probability, store=self.store, inline_limit_bytes=self.inline_limit_bytes),
            )
            results.append(results_pb2.TileResult(tile_id=tile.tile_id, segmentations=[segmentation]))
        return results

    def train(self, request: task_service_pb2.TrainRequest, progress: ProgressCallback) -> task_service_pb2.ModelVersion:
        from nightshift.filaments.train import train_model

        if self.registry is None:
            raise FailedPrecondition("training registers a model version: the server needs an object store")
        if request.dataset not in ("", "simulated"):
            raise NotFound(f"dataset {request.dataset!r}: the filaments service trains on 'simulated' (plus the real cut-out when present)")
        overrides = dict(request.overrides)
        if request.seed:
            overrides["seed"] = str(request.seed)
        try:
            config = preset(request.preset or "default", **overrides)
        except ValueError as error:
            raise InvalidInput(str(error)) from None

        def report(epoch: int, total: int, metrics: dict[str, float]) -> None:
            progress(task_service_pb2.TrainProgress(epoch=epoch, total_epochs=total, metrics=metrics, message=f"epoch {epoch}/{total}"))

        with tempfile.TemporaryDirectory(prefix="filaments-train-") as work:
            result = train_model(config, output_dir=Path(work), progress=report, registry=self.registry,
                                 real_data_dir=self.real_data_dir, show_progress=False)
        return self.registry.get(result.version).to_proto()

    def evaluate(self, request: task_service_pb2.EvaluateRequest) -> task_service_pb2.EvaluateResponse:
        from nightshift.filaments.config import default_real_data_dir
        from nightshift.filaments.evaluate import HEADLINE, evaluate_real, evaluate_simulated
        from nightshift.filaments.realdata import load_real_cutout, real_data_available

        if request.dataset not in _DATASETS:
            raise NotFound(f"dataset {request.dataset!r}: expected one of {list(_DATASETS)}")
        model = self.model_ref(request.model_version)
        config = self.config.with_overrides(self.evaluation_overrides)
        if request.dataset == "simulated-test":
            scored, _ = evaluate_simulated(self._network, config, seed=int(request.seed) or None)
        else:
            directory = self.real_data_dir or default_real_data_dir()
            if not real_data_available(directory):
                raise FailedPrecondition(f"dataset 'real-validation': the real Hi-GAL cut-out is not at {directory}")
            scored, _ = evaluate_real(self._network, config, load_real_cutout(directory))
        figures = scored.figures()
        return task_service_pb2.EvaluateResponse(
            model=model, dataset=request.dataset,
            metrics={k: figures[k] for k in HEADLINE if figures[k] == figures[k]},
            baseline_metrics={k: figures["baseline"][k] for k in HEADLINE if figures["baseline"][k] == figures["baseline"][k]},
        )
