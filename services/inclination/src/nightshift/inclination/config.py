"""The one configuration object of the inclination service, with its presets.

``tiny`` is for the tests (seconds on a CPU), ``default`` is the shipped model (about 35 minutes
on two shared CPU cores), ``paper`` is the seed's full configuration (128x128 tiles, an ensemble of 12
networks; a GPU job).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["InclinationConfig", "PRESETS", "REGRESSION_LOSSES", "ROTATIONS", "build_config"]

REGRESSION_LOSSES = ("mse", "range_cross_entropy")
ROTATIONS = ("right_angle", "any")


@dataclasses.dataclass(frozen=True)
class InclinationConfig:
    """Everything that defines a dataset, a network, its training and its inference.

    Parameters
    ----------
    preset : str
        Name of the preset the configuration started from.
    image_size : int
        Tile side in pixels (64 or 128): the field is about twice the galaxy's optical diameter.
    train_galaxies, validation_galaxies, test_galaxies : int
        Simulated galaxies in each split (all labels: accepted, face-on, rejected).
    face_on_fraction, reject_fraction : float
        Fractions of each split drawn face-on (inclination below 45 deg) and anomalous (rejected).
    filters : tuple of int
        Convolution filters of each VGG block of the inclination regressor.
    convs_per_block : int
        3x3 convolutions per VGG block.
    dense_units : int
        Units of the regressor's hidden dense layer.
    classifier_filters : tuple of int
        Filters of each VGG block of the twin reject classifier.
    classifier_dense_units : int
        Units of the classifier's hidden dense layer.
    dropout : float
        Dropout rate before each network's output layer.
    ensemble_size : int
        Regressor/classifier pairs trained with different seeds; inference takes the median.
    epochs, classifier_epochs : int
        Training epochs of each regressor and each classifier.
    batch_size : int
        Images per optimisation step.
    learning_rate : float
        Adam's initial learning rate (cosine decay to zero over the run).
    augmented_copies : int
        Test-time augmented copies of each tile (1..16) whose predictions are combined.
    regression_loss : str
        The regressor's loss on its bounded (tanh, 45..90 deg) output: ``"mse"`` (the seed's) or
        ``"range_cross_entropy"`` (cross-entropy on the fraction of the range, whose gradient does
        not vanish where the output saturates at the ends; see ``model.range_cross_entropy``).
    rotation : str
        Training rotations: ``"right_angle"`` (flips and 180 deg, the major axis stays horizontal) or
        ``"any"`` (also any angle 0..360 deg, as the seed augments).
    """

    preset: str
    image_size: int = 64
    train_galaxies: int = 6000
    validation_galaxies: int = 500
    test_galaxies: int = 1000
    face_on_fraction: float = 0.1
    reject_fraction: float = 0.2
    filters: tuple[int, ...] = (8, 16, 32, 64)
    convs_per_block: int = 2
    dense_units: int = 64
    classifier_filters: tuple[int, ...] = (8, 16, 32, 64)
    classifier_dense_units: int = 64
    dropout: float = 0.3
    ensemble_size: int = 1
    epochs: int = 24
    classifier_epochs: int = 4
    batch_size: int = 64
    learning_rate: float = 3e-4
    augmented_copies: int = 8
    regression_loss: str = "mse"
    rotation: str = "right_angle"

    def __post_init__(self) -> None:
        _require(self.image_size in (32, 64, 128), "image_size", self.image_size, "32, 64 or 128")
        for name in ("train_galaxies", "validation_galaxies", "test_galaxies", "ensemble_size", "epochs",
                     "classifier_epochs", "batch_size", "convs_per_block", "dense_units", "classifier_dense_units"):
            _require(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        for name in ("filters", "classifier_filters"):
            value = getattr(self, name)
            _require(len(value) >= 1 and all(f >= 1 for f in value), name, value, "a non-empty tuple of positive integers")
            _require(self.image_size % 2 ** len(value) == 0, name, value, f"at most log2({self.image_size}) blocks")
        _require(0 <= self.face_on_fraction and 0 <= self.reject_fraction and self.face_on_fraction + self.reject_fraction < 1,
                 "face_on_fraction + reject_fraction", (self.face_on_fraction, self.reject_fraction), "fractions summing below 1")
        _require(0 <= self.dropout < 1, "dropout", self.dropout, "a rate in [0, 1)")
        _require(self.learning_rate > 0, "learning_rate", self.learning_rate, "a positive rate")
        _require(1 <= self.augmented_copies <= 16, "augmented_copies", self.augmented_copies, "1..16")
        _require(self.regression_loss in REGRESSION_LOSSES, "regression_loss", self.regression_loss, f"one of {REGRESSION_LOSSES}")
        _require(self.rotation in ROTATIONS, "rotation", self.rotation, f"one of {ROTATIONS}")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-serialisable values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> InclinationConfig:
        """Rebuild a configuration written by :meth:`to_dict` (unknown keys are an error)."""
        return cls(**_coerce(values))

    def with_overrides(self, **overrides: Any) -> InclinationConfig:
        """A copy with some fields replaced (values checked as in construction)."""
        return dataclasses.replace(self, **_coerce(overrides))


def _require(condition: bool, name: str, value: object, expected: str) -> None:
    if not condition:
        raise ValueError(f"config field {name} = {value!r}: expected {expected}")


def _coerce(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check field names and turn JSON lists into the tuples the dataclass holds."""
    hints = typing.get_type_hints(InclinationConfig)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ValueError(f"unknown config fields {unknown}: expected some of {sorted(hints)}")
    coerced = {}
    for name, value in values.items():
        hint = hints[name]
        if typing.get_origin(hint) is tuple:
            coerced[name] = tuple(int(v) for v in value)
        elif hint is int and isinstance(value, float) and value.is_integer():
            coerced[name] = int(value)
        elif hint in (int, float, str) and not isinstance(value, hint if hint is not float else (int, float)):
            raise ValueError(f"config field {name} = {value!r}: expected a {hint.__name__}")
        else:
            coerced[name] = float(value) if hint is float else value
    return coerced


PRESETS: Mapping[str, InclinationConfig] = types.MappingProxyType({
    "tiny": InclinationConfig(
        preset="tiny", image_size=64, train_galaxies=256, validation_galaxies=32, test_galaxies=48,
        filters=(4, 8, 16), dense_units=16, classifier_filters=(4, 8), classifier_dense_units=8,
        epochs=6, classifier_epochs=1, batch_size=16, learning_rate=1e-3, augmented_copies=4,
    ),
    "default": InclinationConfig(preset="default", filters=(16, 32, 64, 128), epochs=32, classifier_epochs=16),
    "paper": InclinationConfig(
        preset="paper", image_size=128, train_galaxies=30000, validation_galaxies=2000, test_galaxies=3314,
        filters=(32, 64, 128, 256, 256), dense_units=256, classifier_filters=(16, 32, 64, 128, 128),
        classifier_dense_units=128, ensemble_size=12, epochs=40, classifier_epochs=15, learning_rate=1e-4, augmented_copies=16,
    ),
})


def build_config(*, preset: str = "default", **overrides: Any) -> InclinationConfig:
    """A preset's configuration with the caller's overrides.

    Raises
    ------
    ValueError
        Unknown preset, unknown field or a value outside its range.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[preset].with_overrides(**overrides)
