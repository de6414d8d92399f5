"""The model shipped in the package (where its weights and card are) and the registry's smoke check of a version.

The lowest layer shared by the servicer, ``infer``, ``evaluate``, ``night`` and the CLI, so that
none of them imports another for it (the servicer is the thin top layer; nothing imports it but
the CLI). TensorFlow is imported only when a smoke check runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nightshift.clusters.config import ClustersConfig
from nightshift.core import registry as model_registry

__all__ = ["WEIGHTS_DIR", "bundled_weights", "smoke_check"]

WEIGHTS_DIR = Path(__file__).with_name("weights")


def bundled_weights() -> Path:
    """The default model shipped in the package (one ``.keras`` file beside its JSON card)."""
    return model_registry.bundled_weights(WEIGHTS_DIR, ".keras")


def _smoke_outputs(weights: Path, config: dict[str, Any]) -> np.ndarray:
    from keras import ops

    from nightshift.clusters.model import load_model

    patch = ClustersConfig.from_dict(config)
    tiles = model_registry.smoke_input(1, patch.patch_px, patch.patch_px, len(patch.band_names))  # channels last
    return ops.convert_to_numpy(load_model(str(weights))(tiles, training=False))


smoke_check = model_registry.weights_smoke(".keras", _smoke_outputs)
"""The registry's check of a clusters version before it becomes ``LATEST``: it loads and gives finite probabilities."""
