"""The U-Net family for cluster segmentation, built from small Keras parts, and its losses.

Every network maps raw tiles to a cluster probability per pixel:

- input: float32 tensor (batch, P, P, bands), channels last, each band in its unit (K_CMB or
  MJy/sr), NaN already replaced (see :mod:`nightshift.clusters.preprocess`);
- optionally (``subtract_tile_median``) :class:`TileMedianSubtraction`: each band's median over
  the tile subtracted, so the network never sees the absolute level of a band (the local dust
  and CIB brightness, and the arbitrary zero level of real maps), only the structure in the tile;
- :class:`ArcsinhMadScaling`: ``arcsinh(x / mad_std_b)`` per band with the robust scales fitted
  on the training split and stored in the model file, so a served tile needs no statistics;
- an encoder of ``len(filters)`` levels of (3x3 conv, batch norm, ReLU) x 2 with 2x2 max pooling;
- a decoder: plain skip connections (U-Net, Ronneberger+2015), attention-gated skips (Attention
  U-Net, Oktay+2018) or nested dense skips (U-Net++, Zhou+2018);
- output: float32 (batch, P, P, 1), a sigmoid probability in [0, 1].

Files are native ``.keras`` archives; every custom layer is registered, so they load with
``safe_mode=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import layers, ops

from nightshift.clusters.config import ClustersConfig

__all__ = ["TileMedianSubtraction", "ArcsinhMadScaling", "build_model", "unet", "attention_unet", "unet_plus_plus", "LOSSES", "make_loss", "load_model"]

_PACKAGE = "nightshift_clusters"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TileMedianSubtraction(layers.Layer):
    """Each band minus its median over the tile: inputs (batch, H, W, bands), same shape out."""

    def call(self, inputs):
        return inputs - ops.median(inputs, axis=(1, 2), keepdims=True)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ArcsinhMadScaling(layers.Layer):
    """``arcsinh(x / scale)`` per band (the seed's range compression), scales held as non-trainable weights.

    Parameters
    ----------
    bands : int
        Number of input bands (last axis).
    """

    def __init__(self, bands: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.bands = int(bands)
        self.scale = self.add_weight(name="scale", shape=(self.bands,), initializer="ones", trainable=False)

    def set_scales(self, scales: Sequence[float]) -> None:
        """Set the per-band robust scales (mad_std of the training split, in each band's unit)."""
        scales = np.asarray(scales, dtype="float32")
        if scales.shape != (self.bands,) or not np.all(scales > 0):
            raise ValueError(f"scales {scales.tolist()}: expected {self.bands} positive values")
        self.scale.assign(scales)

    def call(self, inputs):
        return ops.arcsinh(inputs / self.scale)

    def get_config(self) -> dict:
        return {**super().get_config(), "bands": self.bands}


def _conv_block(x, filters: int, name: str):
    """(3x3 conv, batch norm, ReLU) x 2; spatial size kept."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def _up(x, filters: int, name: str):
    """2x transposed-convolution upsampling."""
    return layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"{name}_up")(x)


def _attention_gate(skip, gating, filters: int, name: str):
    """Additive attention (Oktay+2018): the skip features weighted by a [0, 1] map from skip and gating signal."""
    theta = layers.Conv2D(filters, 1, name=f"{name}_theta")(skip)
    phi = layers.Conv2D(filters, 1, name=f"{name}_phi")(gating)
    joint = layers.Activation("relu", name=f"{name}_relu")(layers.Add(name=f"{name}_add")([theta, phi]))
    weights = layers.Conv2D(1, 1, activation="sigmoid", name=f"{name}_psi")(joint)
    return layers.Multiply(name=f"{name}_gate")([skip, weights])


def _encoder(x, filters: Sequence[int]):
    """Features of each level, finest first."""
    features = []
    for level, width in enumerate(filters):
        if level:
            x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
        x = _conv_block(x, width, f"enc{level}")
        features.append(x)
    return features


def unet(x, filters: Sequence[int]):
    """U-Net decoder over the encoder features of ``x``; returns the finest decoded features."""
    features = _encoder(x, filters)
    x = features[-1]
    for level in range(len(filters) - 2, -1, -1):
        x = layers.Concatenate(name=f"dec{level}_cat")([features[level], _up(x, filters[level], f"dec{level}")])
        x = _conv_block(x, filters[level], f"dec{level}")
    return x


def attention_unet(x, filters: Sequence[int]):
    """Attention U-Net: skips gated by the coarser level's upsampled features."""
    features = _encoder(x, filters)
    x = features[-1]
    for level in range(len(filters) - 2, -1, -1):
        up = _up(x, filters[level], f"dec{level}")
        gated = _attention_gate(features[level], up, max(filters[level] // 2, 1), f"att{level}")
        x = _conv_block(layers.Concatenate(name=f"dec{level}_cat")([gated, up]), filters[level], f"dec{level}")
    return x


def unet_plus_plus(x, filters: Sequence[int]):
    """U-Net++: node (i, j) joins all nodes (i, 0..j-1) and the upsampled node (i+1, j-1)."""
    nodes = {(i, 0): f for i, f in enumerate(_encoder(x, filters))}
    depth = len(filters)
    for j in range(1, depth):
        for i in range(depth - j):
            inputs = [nodes[(i, k)] for k in range(j)] + [_up(nodes[(i + 1, j - 1)], filters[i], f"x{i}{j}")]
            nodes[(i, j)] = _conv_block(layers.Concatenate(name=f"x{i}{j}_cat")(inputs), filters[i], f"x{i}{j}")
    return nodes[(0, depth - 1)]


_DECODERS: dict[str, Callable] = {"unet": unet, "attention_unet": attention_unet, "unet_plus_plus": unet_plus_plus}


def build_model(*, config: ClustersConfig, scales: Sequence[float] | None = None) -> keras.Model:
    """The network of ``config.architecture`` with ``config.filters``, input (P, P, bands), output (P, P, 1).

    Parameters
    ----------
    config : ClustersConfig
        Architecture, filters, patch size and bands.
    scales : sequence of float, optional
        Per-band robust scales for :class:`ArcsinhMadScaling` (default: ones), of median-subtracted
        tiles when ``config.subtract_tile_median``.
    """
    bands = len(config.bands)
    inputs = keras.Input((config.patch_px, config.patch_px, bands), name="tiles")
    x = TileMedianSubtraction(name="tile_median")(inputs) if config.subtract_tile_median else inputs
    scaling = ArcsinhMadScaling(bands, name="arcsinh_mad")
    x = _DECODERS[config.architecture](scaling(x), config.filters)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="probability")(x)
    model = keras.Model(inputs, outputs, name=f"clusters_{config.architecture}")
    if scales is not None:
        scaling.set_scales(scales)
    return model


def load_model(path: str) -> keras.Model:
    """A model file written by :func:`keras.Model.save`, loaded with ``safe_mode=True`` and no optimizer."""
    return keras.saving.load_model(path, compile=False, safe_mode=True)


# ---- losses: (y_true, y_pred) of shape (batch, P, P, 1), probabilities in [0, 1] -> scalar ----

_EPS = 1e-6


def _flat(y_true, y_pred):
    y_true = ops.reshape(ops.cast(y_true, "float32"), (ops.shape(y_true)[0], -1))
    y_pred = ops.clip(ops.reshape(y_pred, (ops.shape(y_pred)[0], -1)), _EPS, 1.0 - _EPS)
    return y_true, y_pred


def binary_crossentropy(y_true, y_pred):
    y_true, y_pred = _flat(y_true, y_pred)
    return -ops.mean(y_true * ops.log(y_pred) + (1.0 - y_true) * ops.log(1.0 - y_pred))


def focal(y_true, y_pred, *, gamma: float = 2.0, alpha: float = 0.25):
    """Focal loss (Lin+2017): cross-entropy down-weighting easy pixels by (1 - p_t)^gamma."""
    y_true, y_pred = _flat(y_true, y_pred)
    p_t = y_true * y_pred + (1.0 - y_true) * (1.0 - y_pred)
    alpha_t = y_true * alpha + (1.0 - y_true) * (1.0 - alpha)
    return -ops.mean(alpha_t * (1.0 - p_t) ** gamma * ops.log(p_t))


def _tversky_index(y_true, y_pred, alpha: float, beta: float):
    """TP / (TP + alpha FN + beta FP) per image, smoothed so empty images score 1."""
    y_true, y_pred = _flat(y_true, y_pred)
    tp = ops.sum(y_true * y_pred, axis=1)
    fn = ops.sum(y_true * (1.0 - y_pred), axis=1)
    fp = ops.sum((1.0 - y_true) * y_pred, axis=1)
    return (tp + 1.0) / (tp + alpha * fn + beta * fp + 1.0)


def dice(y_true, y_pred):
    """1 - Dice coefficient (the Tversky index with alpha = beta = 0.5)."""
    return 1.0 - ops.mean(_tversky_index(y_true, y_pred, 0.5, 0.5))


def tversky(y_true, y_pred):
    """1 - Tversky index with alpha = 0.7 on false negatives (Hashemi+2018), favouring completeness."""
    return 1.0 - ops.mean(_tversky_index(y_true, y_pred, 0.7, 0.3))


def focal_tversky(y_true, y_pred):
    """(1 - Tversky index)^0.75 (Abraham & Khan 2019)."""
    return ops.mean((1.0 - _tversky_index(y_true, y_pred, 0.7, 0.3)) ** 0.75)


def combo(y_true, y_pred):
    """Half cross-entropy, half Dice loss (Taghanaki+2018)."""
    return 0.5 * binary_crossentropy(y_true, y_pred) + 0.5 * dice(y_true, y_pred)


LOSSES: dict[str, Callable] = {
    "binary_crossentropy": binary_crossentropy, "focal": focal, "dice": dice,
    "tversky": tversky, "focal_tversky": focal_tversky, "combo": combo,
}


def make_loss(name: str) -> Callable:
    """The loss function called ``name`` (a key of :data:`LOSSES`)."""
    if name not in LOSSES:
        raise ValueError(f"loss {name!r}: expected one of {sorted(LOSSES)}")
    return LOSSES[name]
