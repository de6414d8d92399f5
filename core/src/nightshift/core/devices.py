"""The compute device of a service, for the PyTorch and the TensorFlow services alike.

The frameworks are imported when called: core depends on neither, each service on its own.
"""

from __future__ import annotations

import platform

__all__ = ["torch_device", "device_label", "configure_tensorflow"]


def torch_device():
    """``torch.device("cuda")`` when a GPU is visible, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_label() -> str:
    """What a benchmark ran on: the GPU's name, else ``cpu (<processor>)``."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()})"


def configure_tensorflow(*, seed: int | None = None) -> str:
    """Let TensorFlow grow GPU memory as needed (it takes all of it otherwise) and, given ``seed``, be deterministic.

    Returns ``gpu:<count>`` or ``cpu``.
    """
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised by an earlier call: growth was set then
            pass
    if seed is not None:
        keras.utils.set_random_seed(seed)
        tf.config.experimental.enable_op_determinism()
    return f"gpu:{len(gpus)}" if gpus else "cpu"
