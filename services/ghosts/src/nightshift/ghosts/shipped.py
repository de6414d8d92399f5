"""The model shipped in the package and how to load a weights file with its card.

A lower layer used by both the command line's I/O (:mod:`nightshift.ghosts.workflows`) and the
service (:mod:`nightshift.ghosts.servicer`), so that neither imports the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nightshift.core.devices import torch_device
from nightshift.core.registry import bundled_weights
from nightshift.ghosts.config import GhostsConfig
from nightshift.ghosts.model import GhostDetector, load_detector

__all__ = ["WEIGHTS_DIR", "shipped_weights", "load_model"]

WEIGHTS_DIR = Path(__file__).parent / "weights"
"""The package's weights folder (one ``.safetensors`` file and its JSON card)."""


def shipped_weights() -> tuple[Path, Path]:
    """(weights, card) of the default model shipped in the package.

    Raises
    ------
    FailedPrecondition
        If the package holds no weights (not trained yet: ``nightshift-ghosts train --preset default --ship``).
    """
    weights = bundled_weights(WEIGHTS_DIR, ".safetensors")
    return weights, weights.with_suffix(".json")


def load_model(weights: Path | None = None) -> tuple[GhostDetector, GhostsConfig, dict[str, Any]]:
    """(detector, config, card) of a weights file with its JSON card beside (default: the shipped model)."""
    weights, card_path = (weights, weights.with_suffix(".json")) if weights else shipped_weights()
    card = json.loads(card_path.read_text())
    config = GhostsConfig.from_dict(card["config"])
    return load_detector(weights, config, device=torch_device()), config, card
