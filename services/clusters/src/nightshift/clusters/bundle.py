"""The model shipped in the package: where its weights and card are.

The lowest layer shared by the servicer, ``infer``, ``evaluate``, ``night`` and the CLI, so that
none of them imports another for it (the servicer is the thin top layer; nothing imports it but
the CLI).
"""

from __future__ import annotations

from pathlib import Path

from nightshift.core import registry as model_registry

__all__ = ["WEIGHTS_DIR", "bundled_weights"]

WEIGHTS_DIR = Path(__file__).with_name("weights")


def bundled_weights() -> Path:
    """The default model shipped in the package (one ``.keras`` file beside its JSON card)."""
    return model_registry.bundled_weights(WEIGHTS_DIR, ".keras")
