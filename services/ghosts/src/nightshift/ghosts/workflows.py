"""The outer I/O layer of the command line: files and stores in, the pure functions, files out."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.core.devices import device_label, torch_device
from nightshift.core.registry import bundled_weights
from nightshift.ghosts.config import GhostsConfig, data_ranges
from nightshift.ghosts.config import preset as config_preset
from nightshift.ghosts.model import GhostDetector, load_detector, save_weights, write_card
from nightshift.ghosts.train import EpochReport, train_model

__all__ = [
    "train_and_package", "register_if_configured", "shipped_weights", "load_model", "evaluate_model", "infer_files",
    "write_simulated", "benchmark",
]

_PACKAGE_WEIGHTS = Path(__file__).parent / "weights"


def shipped_weights() -> tuple[Path, Path]:
    """(weights, card) of the default model shipped in the package.

    Raises
    ------
    FailedPrecondition
        If the package holds no weights (not trained yet: ``nightshift-ghosts train --preset default --ship``).
    """
    weights = bundled_weights(_PACKAGE_WEIGHTS, ".safetensors")
    return weights, weights.with_suffix(".json")


def register_if_configured(weights: Path, card: Path) -> str | None:
    """Register a weights file and its card in the store named by ``NIGHTSHIFT_S3_*``; the version, or None."""
    if not os.environ.get("NIGHTSHIFT_S3_ENDPOINT"):
        return None
    from nightshift.core.registry import ModelRegistry
    from nightshift.core.store import ObjectStore

    info = json.loads(card.read_text())
    store = ObjectStore.from_env()
    store.ensure_bucket()
    model = ModelRegistry(store, "ghosts").register(
        {weights.name: weights}, name=info["name"], metrics=info["metrics"], config=info["config"], data_seed=info["data_seed"],
    )
    return model.version


def train_and_package(
    *,
    preset: str,
    overrides: Mapping[str, str],
    seed: int,
    output: Path,
    real_dir: Path | None,
    resume: bool = False,
    ship_to: Path | None = None,
) -> dict[str, Any]:
    """Train, score on the held-out simulated set, write weights + card + history, optionally ship/register."""
    from nightshift.ghosts.evaluate import score_simulated
    from nightshift.ghosts.realdata import load_real_images, split_real

    config = config_preset(preset).with_overrides(overrides)
    real_train = []
    if real_dir is not None and config.real_train_images > 0:
        real_train, _ = split_real(load_real_images(real_dir), config.real_train_images)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def report(epoch: EpochReport) -> None:
        line = {"epoch": epoch.epoch, "of": epoch.total_epochs, "stage": epoch.stage, "lr": epoch.learning_rate,
                "seconds": round(epoch.seconds, 1), **{k: round(v, 4) for k, v in epoch.metrics.items()}}
        print(json.dumps(line), flush=True)

    result = train_model(config, seed=seed, real_train=real_train, on_epoch=report, checkpoint=output / "checkpoint.pt", resume=resume)
    train_seconds = time.perf_counter() - started
    held_out = score_simulated(result.detector, config, seed=seed, count=config.test_images, device=torch_device())
    metrics = {**result.metrics, "test_ap50": held_out["ap50"], "test_ap": held_out["ap"], "train_seconds": train_seconds}
    weights = save_weights(result.detector, output / f"{config.name}.safetensors")
    card = write_card(weights.with_suffix(".json"), config=config, metrics=metrics, data_seed=seed)
    (output / "history.json").write_text(json.dumps([dataclasses.asdict(h) for h in result.history], indent=2) + "\n")
    if ship_to is not None:
        for old in (*ship_to.glob("*.safetensors"), *ship_to.glob("*.json")):
            old.unlink()
        for file in (weights, card):
            shutil.copyfile(file, ship_to / file.name)
            (ship_to / file.name).chmod(0o644)
    return {
        "weights": str(weights), "card": str(card), "metrics": metrics, "seed": seed, "preset": preset,
        "real_train_images": [r.name for r in real_train], "registered_version": register_if_configured(weights, card),
        "parameters": result.detector.parameter_count, "size_mb": weights.stat().st_size / 1e6,
        "data_ranges": data_ranges(config), "shipped": ship_to is not None,
    }


def load_model(weights: Path | None = None) -> tuple[GhostDetector, GhostsConfig, dict[str, Any]]:
    """(detector, config, card) of a weights file with its JSON card beside (default: the shipped model)."""
    weights, card_path = (weights, weights.with_suffix(".json")) if weights else shipped_weights()
    card = json.loads(card_path.read_text())
    config = GhostsConfig.from_dict(card["config"])
    return load_detector(weights, config, device=torch_device()), config, card


def evaluate_model(
    *, weights: Path | None, seed: int, count: int | None, real_dir: Path | None, output: Path, all_real: bool = False,
) -> dict[str, Any]:
    """Score a model and the baseline on held-out simulated images (and real ones); write plots; return figures."""
    from nightshift.ghosts.evaluate import (
        annotator_agreement, headline, plot_overlays, plot_pr_curves, score_real, score_simulated_with_baseline,
    )
    from nightshift.ghosts.realdata import load_real_images, split_real

    started = time.perf_counter()
    detector, config, card = load_model(weights)
    count = config.test_images if count is None else count
    model_scores, baseline_scores = score_simulated_with_baseline(detector, config, seed=seed, count=count)
    curves = {"simulated": (model_scores, baseline_scores)}
    figures: dict[str, Any] = {
        "model": card["name"], "seed": seed, "simulated_images": count, "score_threshold": config.score_threshold,
        **headline(model_scores), "baseline": headline(baseline_scores),
    }
    if real_dir is not None:
        images = load_real_images(real_dir)
        _, held_out = split_real(images, config.real_train_images)
        sets = {"real_heldout": held_out, **({"real_all": images} if all_real else {})}
        for name, subset in sets.items():
            real_model, real_baseline, predictions, _ = score_real(detector, config, subset)
            figures[name] = {**headline(real_model), "baseline": headline(real_baseline),
                             "images_scored": [r.name for r in subset]}
            curves[name] = (real_model, real_baseline)
            if name == "real_heldout":
                plot_overlays([r.image for r in subset], [r.artefacts for r in subset], predictions, [r.name for r in subset],
                              output / "overlays_real_heldout.png", score_threshold=config.score_threshold)
        common = sorted((real_dir / "annotations" / "common_core").glob("*.json"))
        if common:
            figures["annotators_ceiling"] = annotator_agreement(common, [r.name for r in images])
            figures["annotators_ceiling_heldout"] = annotator_agreement(common, [r.name for r in held_out])
    plot_pr_curves(curves, output / "pr_curves.png")
    figures["seconds"] = round(time.perf_counter() - started, 1)
    return figures


def _read_image(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 display image (H, W, 3), tile pixels (3, H, W) float32, WCS header string) of a JPEG/PNG/FITS file.

    A FITS image whose ``BUNIT`` is empty or ``8-bit`` holds display levels; any other unit is linear
    flux, put on the display scale as the service does with tiles (``preprocess.display_pixels``).
    """
    from nightshift.ghosts.preprocess import display_pixels, image_to_pixels

    if path.suffix.lower() in (".fits", ".fit", ".fz"):
        from astropy.io import fits

        with fits.open(path) as hdus:
            hdu = next(h for h in hdus if h.data is not None)
            data, header = np.asarray(hdu.data, dtype=np.float32), hdu.header
        pixels = np.repeat(data[None], 3, axis=0) if data.ndim == 2 else data
        pixels = display_pixels(pixels, [str(header.get("BUNIT", ""))] * pixels.shape[0])
        display = np.nan_to_num(pixels, nan=23.0).clip(0, 255).astype(np.uint8).transpose(1, 2, 0)
        return display, pixels, header.tostring()
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB"))
    return image, image_to_pixels(image), ""


def infer_files(paths: list[Path], *, output: Path, weights: Path | None, score_threshold: float | None) -> dict[str, Any]:
    """Find artefacts in image files; write a catalogue (FITS, ECSV, CSV, DS9), masks as RLE JSON and overlays."""
    from nightshift.ghosts.artefacts import uncompressed_rle
    from nightshift.ghosts.evaluate import plot_overlays
    from nightshift.ghosts.infer import Detector, catalogue_row, findings, write_instance_catalogue

    detector, config, card = load_model(weights)
    threshold = config.score_threshold if score_threshold is None else score_threshold
    read = [_read_image(p) for p in paths]
    found = Detector(detector).predict([pixels for _, pixels, _ in read], score_threshold=threshold)
    rows, records = [], []
    for path, (_, _, header), artefacts in zip(paths, read, found):
        rows += [catalogue_row(path.name, a, header) for a in artefacts]
        summary = findings(artefacts, score_threshold=threshold)
        records.append({"image": path.name, "has_artefacts": summary.has_artefacts, "ccds": summary.ccds, "instances": [
            {"label": a.label, "score": a.score, "box": a.box, "rle": {"size": list(a.mask.shape), "counts": uncompressed_rle(a.mask)}}
            for a in artefacts]})
    output.mkdir(parents=True, exist_ok=True)
    meta = {"MODEL": card["name"], "THRESH": threshold, "INPUT": ",".join(str(p) for p in paths)}
    files = write_instance_catalogue(rows, output / "ghosts", meta=meta)
    (output / "instances.json").write_text(json.dumps(records) + "\n")
    plot_overlays([d for d, _, _ in read], [[] for _ in read], found, [p.name for p in paths], output / "overlays.png",
                  score_threshold=threshold)
    return {"images": len(paths), "instances": len(rows), "with_artefacts": sum(r["has_artefacts"] for r in records),
            "files": [str(f) for f in (*files, output / "instances.json", output / "overlays.png")]}


def write_simulated(output: Path, *, count: int, seed: int, first_index: int) -> list[Path]:
    """Write simulated exposures as JPEGs plus ``truth.json`` (per image: label and COCO uncompressed RLE mask)."""
    from PIL import Image

    from nightshift.ghosts.artefacts import uncompressed_rle
    from nightshift.ghosts.simulate import simulate_dataset

    output.mkdir(parents=True, exist_ok=True)
    paths, truth = [], {}
    for index, exposure in enumerate(simulate_dataset(count, seed, first_index=first_index)):
        path = output / f"sim_{seed}_{first_index + index:07d}.jpg"
        Image.fromarray(exposure.image).save(path, quality=95)  # a second, light compression of the simulated JPEG
        truth[path.name] = [{"label": a.label, "box": a.box, "rle": {"size": list(a.mask.shape), "counts": uncompressed_rle(a.mask)}}
                            for a in exposure.artefacts]
        paths.append(path)
    (output / "truth.json").write_text(json.dumps({"seed": seed, "first_index": first_index, "images": truth}) + "\n")
    return paths


def benchmark(*, tiles: int, batch_size: int, seed: int) -> dict[str, Any]:
    """Service Infer over gRPC with tiles by reference vs the bare model, on simulated exposures."""
    from nightshift.core.bench import benchmark_service
    from nightshift.core.s3server import start_local_s3
    from nightshift.core.tiles import make_tile
    from nightshift.ghosts.config import BANDS
    from nightshift.ghosts.preprocess import image_to_pixels
    from nightshift.ghosts.servicer import GhostsModel
    from nightshift.ghosts.simulate import simulate_dataset
    from nightshift.v1 import tile_pb2

    device = device_label()
    with start_local_s3("rclone") as s3:
        store = s3.store()
        bands = [tile_pb2.Band(name=b, unit="8-bit") for b in BANDS]
        messages = [make_tile(image_to_pixels(e.image), bands=bands, survey="DES", field=f"bench-{i}", store=store, inline_limit_bytes=0)
                    for i, e in enumerate(simulate_dataset(tiles, seed, first_index=3_000_000))]
        figures = benchmark_service(GhostsModel(store=store), messages, store=store, batch_size=batch_size, device=device)
    return figures
