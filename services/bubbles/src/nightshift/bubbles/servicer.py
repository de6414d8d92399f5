"""The bubbles task as the runtime serves it: contract types in, the service's code, contract types out.

Accepted tiles: bands ("irac4", "mips24") = (8 um, 24 um), float32, 300 x 300 pixels (the ingest
service's windows resized to ``output_px = 300``), any linear intensity unit (MJy/sr from ingest);
NaN pixels are treated as the channel minimum after normalisation.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from nightshift.bubbles.config import BAND_FWHM_ARCSEC, BANDS, IMAGE_SIZE, BubblesConfig, preset
from nightshift.bubbles.infer import SSDWindowDetector, circle_of_box, pixel_scale_arcsec
from nightshift.bubbles.model import load_weights, save_weights, shipped_weights, smoke_check
from nightshift.bubbles.preprocess import preprocess_batch
from nightshift.bubbles.train import train_model
from nightshift.core.devices import torch_device
from nightshift.core.errors import FailedPrecondition, InvalidInput, NotFound
from nightshift.core.model import ProgressCallback, TaskModel
from nightshift.core.registry import ModelRegistry, resolve_checkpoint
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import Tile, TileSpec
from nightshift.v1 import results_pb2, task_service_pb2, tile_pb2

__all__ = ["BubblesModel"]


def _tile_sky(tile: Tile) -> tuple[WCS | None, float]:
    """The tile's celestial WCS (None without one) and pixel scale in arcsec (0 when unknown)."""
    if not tile.message.wcs_cards:
        return None, tile.message.pixel_scale_arcsec
    wcs = WCS(fits.Header.fromstring(tile.wcs_header)).celestial
    return wcs, tile.message.pixel_scale_arcsec or pixel_scale_arcsec(wcs)


class BubblesModel(TaskModel):
    """SSD300 detections of infrared bubbles in 8 um + 24 um tiles.

    Parameters
    ----------
    store : ObjectStore, optional
        Registry store: the shipped model is registered there and the pinned
        (``NIGHTSHIFT_MODEL_VERSION``) or latest version is served; without one the shipped weights.
    weights : Path, optional
        A safetensors file (its JSON card beside) to serve instead of the shipped one.
    evaluate_fields : int, optional
        Held-out simulated fields scored by ``Evaluate`` (default: the configuration's ``test_fields``).
    """

    task = "bubbles"
    summary = "Infrared bubbles (PAH shells) in Spitzer 8 um + 24 um tiles, as circles with sky positions (SSD300)"
    output_kind = task_service_pb2.OUTPUT_KIND_DETECTIONS

    def __init__(self, *, store: ObjectStore | None = None, weights: Path | None = None, evaluate_fields: int | None = None) -> None:
        self.spec = TileSpec(bands=BANDS, height=IMAGE_SIZE, width=IMAGE_SIZE, dtype=np.dtype("float32"),
                             max_batch_tiles=128, preferred_batch_tiles=16)
        self.store = store
        self.weights = weights
        self.evaluate_fields = evaluate_fields
        self.registry = ModelRegistry(store, self.task, smoke=smoke_check) if store is not None else None
        self._detector: SSDWindowDetector | None = None
        self._config: BubblesConfig | None = None
        self._ref = results_pb2.ModelRef()

    def load(self) -> None:
        cache = Path(tempfile.gettempdir()) / "nightshift-models"
        served = resolve_checkpoint(self.task, self.weights or shipped_weights(), store=self.store, cache_dir=cache,
                                    smoke=smoke_check)
        self._config = BubblesConfig.from_dict(served.config)
        self._detector = SSDWindowDetector(load_weights(served.weights, self._config, device=torch_device()))
        self._ref = served.ref

    def warmup(self) -> None:
        assert self._detector is not None
        self._detector(np.zeros((1, 2, IMAGE_SIZE, IMAGE_SIZE), np.float32))

    def serving_model(self) -> results_pb2.ModelRef:
        return self._ref

    def models(self) -> list[task_service_pb2.ModelVersion]:
        return [m.to_proto() for m in self.registry.versions()] if self.registry is not None else []

    def infer(self, tiles: Sequence[Tile], model: results_pb2.ModelRef) -> list[results_pb2.TileResult]:
        assert self._detector is not None and self._config is not None
        skies = [_tile_sky(t) for t in tiles]
        windows = preprocess_batch([t.pixels for t in tiles], fwhm8_px=[
            max(1.0, BAND_FWHM_ARCSEC[0] / scale) if scale else 2.0 for _, scale in skies])
        results = []
        for tile, (wcs, scale), (boxes, scores) in zip(tiles, skies, self._detector(windows)):
            keep = scores >= self._config.score_threshold
            results.append(results_pb2.TileResult(tile_id=tile.tile_id, detections=[
                self._detection(tile, box, float(score), wcs, scale, model) for box, score in zip(boxes[keep], scores[keep])]))
        return results

    @staticmethod
    def _detection(tile: Tile, box: np.ndarray, score: float, wcs: WCS | None, scale: float,
                   model: results_pb2.ModelRef) -> results_pb2.Detection:
        x, y, radius = circle_of_box(box)
        detection = results_pb2.Detection(
            tile_id=tile.tile_id, model=model, score=score, label="bubble", radius_arcsec=radius * scale,
            circle=results_pb2.PixelCircle(x=x - 0.5, y=y - 0.5, radius=radius),  # 0-based pixel-centre coordinates
        )
        if wcs is not None:
            lon, lat = wcs.pixel_to_world_values(x - 0.5, y - 0.5)
            galactic = wcs.wcs.ctype[0].startswith("GLON")
            detection.sky.CopyFrom(tile_pb2.SkyPosition(
                lon_deg=float(lon) % 360.0, lat_deg=float(lat),
                frame=tile_pb2.SKY_FRAME_GALACTIC if galactic else tile_pb2.SKY_FRAME_ICRS))
        return detection

    def train(self, request: task_service_pb2.TrainRequest, progress: ProgressCallback) -> task_service_pb2.ModelVersion:
        if self.registry is None:
            raise FailedPrecondition("bubbles: no object store configured, so no model registry (set NIGHTSHIFT_S3_*)")
        if request.dataset not in ("", "simulated"):
            raise InvalidInput(f"bubbles: training dataset {request.dataset!r}, expected 'simulated' (or empty)")
        try:
            config = preset(request.preset or "tiny").with_overrides(dict(request.overrides))
        except ValueError as error:
            raise InvalidInput(f"bubbles: {error}") from None
        seed = int(request.seed or 7)

        def report(epoch) -> None:
            progress(task_service_pb2.TrainProgress(epoch=epoch.epoch, total_epochs=epoch.total_epochs, metrics=epoch.metrics,
                                                    message=f"{epoch.seconds:.1f} s"))

        result = train_model(config, seed=seed, on_epoch=report, show_progress=False)
        with tempfile.TemporaryDirectory() as directory:
            weights = save_weights(result.model, Path(directory) / f"{config.name}.safetensors")
            registered = self.registry.register(
                {weights.name: weights}, name=config.name, metrics=result.metrics, config=result.config.to_dict(), data_seed=seed,
                set_latest=False)
        return registered.to_proto()

    def evaluate(self, request: task_service_pb2.EvaluateRequest) -> task_service_pb2.EvaluateResponse:
        from nightshift.bubbles.scoring import score_real, score_simulated

        assert self._detector is not None and self._config is not None
        self.model_ref(request.model_version)
        dataset = request.dataset or "simulated-test"
        if dataset == "simulated-test":
            model_scores, baseline_scores = score_simulated(self._detector.model, self._config, seed=int(request.seed or 7),
                                                            count=self.evaluate_fields or self._config.test_fields)
        elif dataset == "real":
            model_scores, baseline_scores = score_real(self._detector.model, self._config)
        else:
            raise NotFound(f"bubbles: dataset {dataset!r} unknown; expected 'simulated-test' or 'real'")
        return task_service_pb2.EvaluateResponse(model=self._ref, dataset=dataset, metrics=model_scores,
                                                 baseline_metrics=baseline_scores)
