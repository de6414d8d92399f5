"""IncliNET's networks in Keras 3, wired from small parts.

A twin network is a VGG-like backbone (blocks of 3x3 convolutions, batch normalisation, ReLU, 2x2
max pooling) followed by a head: the *regressor* head ends in tanh on the scaled label
``t = 2 (i - 45) / 45 - 1`` (so 45..90 deg maps to -1..1; trained with MSE or
:func:`range_cross_entropy`), the *classifier* head in a two-class
softmax (accept, reject-or-face-on). The *ensemble* model connects trained twins to one input and
is the single file that ships and is registered (native ``.keras``, loaded with ``safe_mode=True``).

Tensors: input images (batch, size, size, 3) float32 in [0, 1] (a view from
:mod:`nightshift.inclination.preprocess`); regressor output (batch, 1) in (-1, 1); classifier output
(batch, 2) probabilities; ensemble outputs ``inclination_scaled`` (batch, members) and
``class_probabilities`` (batch, 2 x members) with each member's (accept, reject) pair in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from nightshift.core.devices import configure_tensorflow
from nightshift.inclination.config import InclinationConfig

__all__ = [
    "vgg_backbone", "regression_head", "classification_head", "twin_network",
    "build_regressor", "build_classifier", "build_ensemble", "inference_ensemble", "load_ensemble", "scale_inclination",
    "unscale_inclination", "range_cross_entropy",
]

MIN_INCLINATION_DEG, MAX_INCLINATION_DEG = 45.0, 90.0
BATCH_NORM_MOMENTUM = 0.9  # running statistics settle within the few hundred steps of a CPU run


def scale_inclination(inclination_deg: np.ndarray) -> np.ndarray:
    """The seed's label scaling: 45..90 deg -> -1..1 (``2 (i - 45) / 45 - 1``)."""
    return 2 * (np.asarray(inclination_deg, dtype=np.float32) - MIN_INCLINATION_DEG) / (MAX_INCLINATION_DEG - MIN_INCLINATION_DEG) - 1


def unscale_inclination(scaled: np.ndarray) -> np.ndarray:
    """Inverse of :func:`scale_inclination`: -1..1 -> 45..90 deg."""
    return MIN_INCLINATION_DEG + (np.asarray(scaled, dtype=np.float64) + 1) / 2 * (MAX_INCLINATION_DEG - MIN_INCLINATION_DEG)


@keras.saving.register_keras_serializable(package="nightshift_inclination")
def range_cross_entropy(scaled_true, scaled_predicted):
    """Cross-entropy between true and predicted fractions of the 45..90 deg range, per image.

    The tanh output is a scaled sigmoid: ``u = (y + 1) / 2 = sigmoid(2 z)`` of the pre-activation
    ``z``, so every prediction lies in (45, 90) deg without clipping. Like MSE, the cross-entropy
    ``-(u log p + (1 - u) log(1 - p))`` is minimised by the conditional mean of ``u`` (it is a
    Bregman divergence), but its gradient with respect to ``z`` is ``2 (p - u)``: it does not vanish
    where the output saturates near 45 and 90 deg, as MSE's ``(p - u) (1 - y^2)`` does. Its minimum
    over ``p`` is the entropy of ``u``, not 0.
    """
    true = (keras.ops.convert_to_tensor(scaled_true, "float32") + 1) / 2
    predicted = keras.ops.clip((scaled_predicted + 1) / 2, keras.config.epsilon(), 1 - keras.config.epsilon())
    return keras.ops.mean(-(true * keras.ops.log(predicted) + (1 - true) * keras.ops.log(1 - predicted)), axis=-1)


def vgg_backbone(*, filters: Sequence[int], convs_per_block: int, name: str) -> keras.Sequential:
    """VGG blocks: (``convs_per_block`` x [3x3 conv, batch norm, ReLU], 2x2 max pool) per entry of ``filters``.

    Maps (batch, s, s, c) to (batch, s / 2^blocks, s / 2^blocks, filters[-1]).
    """
    layers: list[keras.Layer] = []
    for block, width in enumerate(filters):
        for conv in range(convs_per_block):
            layers += [
                keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_b{block}_conv{conv}"),
                keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_b{block}_bn{conv}"),
                keras.layers.ReLU(name=f"{name}_b{block}_relu{conv}"),
            ]
        layers.append(keras.layers.MaxPooling2D(name=f"{name}_b{block}_pool"))
    return keras.Sequential(layers, name=name)


def _dense_head(*, units: int, dropout: float, outputs: int, activation: str, name: str) -> keras.Sequential:
    return keras.Sequential([
        keras.layers.Flatten(name=f"{name}_flatten"),
        keras.layers.Dense(units, activation="relu", name=f"{name}_hidden"),
        keras.layers.Dropout(dropout, name=f"{name}_dropout"),
        keras.layers.Dense(outputs, activation=activation, name=f"{name}_output"),
    ], name=name)


def regression_head(*, units: int, dropout: float, name: str = "regression_head") -> keras.Sequential:
    """Flatten, dense ReLU, dropout, one tanh output: the scaled inclination in (-1, 1)."""
    return _dense_head(units=units, dropout=dropout, outputs=1, activation="tanh", name=name)


def classification_head(*, units: int, dropout: float, name: str = "classification_head") -> keras.Sequential:
    """Flatten, dense ReLU, dropout, two-class softmax: P(accept), P(reject or face-on)."""
    return _dense_head(units=units, dropout=dropout, outputs=2, activation="softmax", name=name)


def twin_network(backbone: keras.Layer, head: keras.Layer, *, image_size: int, name: str) -> keras.Model:
    """Connect a backbone and a head on (batch, image_size, image_size, 3) images."""
    images = keras.Input((image_size, image_size, 3), name="images")
    return keras.Model(images, head(backbone(images)), name=name)


def build_regressor(*, config: InclinationConfig, member: int = 0) -> keras.Model:
    """The inclination regressor of ensemble member ``member``."""
    name = f"regressor_{member}"
    return twin_network(
        vgg_backbone(filters=config.filters, convs_per_block=config.convs_per_block, name=f"{name}_backbone"),
        regression_head(units=config.dense_units, dropout=config.dropout, name=f"{name}_head"),
        image_size=config.image_size, name=name,
    )


def build_classifier(*, config: InclinationConfig, member: int = 0) -> keras.Model:
    """The twin reject/face-on classifier of ensemble member ``member``."""
    name = f"classifier_{member}"
    return twin_network(
        vgg_backbone(filters=config.classifier_filters, convs_per_block=config.convs_per_block, name=f"{name}_backbone"),
        classification_head(units=config.classifier_dense_units, dropout=config.dropout, name=f"{name}_head"),
        image_size=config.image_size, name=name,
    )


def build_ensemble(regressors: Sequence[keras.Model], classifiers: Sequence[keras.Model], *, image_size: int) -> keras.Model:
    """One model running every trained twin on the same images (see the module docstring for outputs)."""
    if not regressors or len(regressors) != len(classifiers):
        raise ValueError(f"{len(regressors)} regressors and {len(classifiers)} classifiers: expected equal, non-zero counts")
    images = keras.Input((image_size, image_size, 3), name="images")

    def joined(outputs: list, name: str):  # Concatenate needs two or more inputs
        return keras.layers.Concatenate(name=name)(outputs) if len(outputs) > 1 else keras.layers.Identity(name=name)(outputs[0])

    outputs = {
        "inclination_scaled": joined([r(images) for r in regressors], "inclination_scaled"),
        "class_probabilities": joined([c(images) for c in classifiers], "class_probabilities"),
    }
    return keras.Model(images, outputs, name="inclinet_ensemble")


def inference_ensemble(regressors: Sequence[keras.Model], classifiers: Sequence[keras.Model], *, config: InclinationConfig) -> keras.Model:
    """:func:`build_ensemble` of fresh, uncompiled copies of the twins (same names and weights): the file to ship.

    A trained twin carries its optimiser (Adam's two moments per weight), which ``save`` would write
    too, tripling the file; the copies hold the weights only. Twins are named ``regressor_k`` /
    ``classifier_k``; the copies keep ``k``.
    """
    def copy(network: keras.Model, builder) -> keras.Model:
        member = int(network.name.rsplit("_", 1)[1])
        fresh = builder(config=config, member=member)
        fresh.set_weights(network.get_weights())
        return fresh

    return build_ensemble([copy(r, build_regressor) for r in regressors], [copy(c, build_classifier) for c in classifiers],
                          image_size=config.image_size)


def load_ensemble(path: str | Path) -> keras.Model:
    """Load a saved ensemble safely (``safe_mode=True``: no arbitrary code is deserialised)."""
    configure_tensorflow()
    return keras.saving.load_model(Path(path), compile=False, safe_mode=True)
