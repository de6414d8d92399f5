"""Training on simulated galaxies: regressor and twin classifier per ensemble member, then the ensemble.

The regressor learns the scaled inclination (tanh output; MSE or, with ``regression_loss =
"range_cross_entropy"``, the cross-entropy on the fraction of the range) of accepted galaxies only; the
classifier learns accept vs reject-or-face-on from class-balanced batches (half of each, as the
seed balances its batches). Every batch is freshly augmented. After each epoch the network is
checkpointed (weights and optimiser state, native ``.keras``; the dropout layers' random state,
which a ``.keras`` file leaves out, in ``state.json``) so an interrupted run resumes where it
stopped, bit for bit; a run is deterministic for a seed on CPU (each epoch reseeds every generator).
At the end the twins are joined into one ensemble file, the uncertainty scale is fitted on the
validation set, and the model is written with its card and registered when a registry is given.

A shipped ensemble grows without retraining its members: ``train(..., extend_from=ensemble.keras)``
takes members ``0..m-1`` (their ``regressor_k`` / ``classifier_k`` sub-models, untouched) from the
saved ensemble and its card, trains only members ``m..N-1`` (``N = config.ensemble_size``; member
indices continue, so every new member has its own initialisation, dropout and augmentation streams,
seeded by ``(seed, member)``), refits the uncertainty scale on the validation set and writes the
joined ensemble. A new member is the same, bit for bit on CPU, as member ``k`` of a run that trained
all N at once. The card records each member's training time and the validation figures of the
first 1, 2, .., N members (the gain per member).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from nightshift.core.devices import configure_tensorflow
from nightshift.core.registry import ModelRegistry, RegisteredModel
from nightshift.inclination.config import InclinationConfig
from nightshift.inclination.evaluate import calibration, mae, rms, roc_auc
from nightshift.inclination.infer import Predictor
from nightshift.inclination.model import (build_classifier, build_ensemble, build_regressor, inference_ensemble, range_cross_entropy,
                                          scale_inclination)
from nightshift.inclination.preprocess import augment, stretch, view
from nightshift.inclination.simulate import SimulatedGalaxies, SimulationOverrides, simulate_galaxies

__all__ = ["MODEL_NAME", "WEIGHTS_FILE", "CARD_FILE", "EpochReport", "TrainResult", "simulate_split", "initial_network",
           "ensemble_members", "train"]

MODEL_NAME = "inclinet-vgg"
WEIGHTS_FILE = "inclinet.keras"
CARD_FILE = "inclinet.json"
_NETWORKS = ("regressor", "classifier")


@dataclasses.dataclass(frozen=True)
class EpochReport:
    """Progress after one epoch of one network (``epoch`` counts all networks' epochs, 1-based)."""

    network: str
    epoch: int
    total_epochs: int
    metrics: dict[str, float]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """The written model: weights and card paths, validation metrics, and its registry entry if any."""

    weights: Path
    card: Path
    metrics: dict[str, float]
    registered: RegisteredModel | None


def simulate_split(config: InclinationConfig, *, seed: int, split: str, galaxies: int,
                   overrides: SimulationOverrides = SimulationOverrides()) -> SimulatedGalaxies:
    """The simulated galaxies of one split with the configuration's label fractions (and observing overrides)."""
    return simulate_galaxies(galaxies, size=config.image_size, seed=seed, split=split,
                             face_on_fraction=config.face_on_fraction, reject_fraction=config.reject_fraction, overrides=overrides)


def _fingerprint(config: InclinationConfig, seed: int) -> str:
    # without ensemble_size: member k's training does not depend on how many members there are, so a run
    # grown to more members (same output directory) resumes the members it already has
    values = {k: v for k, v in config.to_dict().items() if k != "ensemble_size"}
    return hashlib.sha256(json.dumps([values, seed], sort_keys=True).encode()).hexdigest()[:16]


def _seed_for(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] % 2**31)


def _seed_generators(layer: keras.Layer) -> list[keras.random.SeedGenerator]:
    """The random-state holders (dropout) of ``layer`` and the layers inside it, in a fixed order."""
    own = getattr(layer, "seed_generator", None)
    found = [own] if isinstance(own, keras.random.SeedGenerator) else []
    for inner in getattr(layer, "layers", []):
        found += _seed_generators(inner)
    return found


def initial_network(config: InclinationConfig, *, kind: str, member: int, seed: int) -> keras.Model:
    """The untrained network a run starts from: seeded, so the same for the same (seed, member)."""
    if kind not in _NETWORKS:
        raise ValueError(f"kind {kind!r}: expected one of {_NETWORKS}")
    keras.utils.set_random_seed(_seed_for(seed, member, _NETWORKS.index(kind), 0))
    builder = build_regressor if kind == "regressor" else build_classifier
    return builder(config=config, member=member)


class _Trainer:
    """Trains the networks of one run, epoch by epoch, with checkpoints in ``checkpoint_dir``."""

    def __init__(self, config: InclinationConfig, *, seed: int, checkpoint_dir: Path, progress: Callable[[EpochReport], None] | None,
                 show_progress: bool, first_member: int = 0) -> None:
        self.config, self.seed = config, seed
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress
        self.show_progress = show_progress
        self.state_path = checkpoint_dir / "state.json"
        fingerprint = _fingerprint(config, seed)
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.state = state if state.get("fingerprint") == fingerprint else {"fingerprint": fingerprint, "epochs_done": {}}
        self.total_epochs = (config.ensemble_size - first_member) * (config.epochs + config.classifier_epochs)
        self.epochs_before = 0

    def _compile(self, network: keras.Model, kind: str, steps: int) -> None:
        epochs = self.config.epochs if kind == "regressor" else self.config.classifier_epochs
        schedule = keras.optimizers.schedules.CosineDecay(self.config.learning_rate, decay_steps=max(epochs * steps, 1))
        regression_loss = range_cross_entropy if self.config.regression_loss == "range_cross_entropy" else "mean_squared_error"
        loss = regression_loss if kind == "regressor" else "sparse_categorical_crossentropy"
        network.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)

    def _batches(self, kind: str, labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        size = self.config.batch_size
        if kind == "regressor":
            order = rng.permutation(np.flatnonzero(labels >= -1))
            return [order[k : k + size] for k in range(0, len(order), size)]
        positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        steps = max(1, len(labels) // size)
        if len(positives) == 0 or len(negatives) == 0:
            raise ValueError("the classifier needs both accepted and rejected galaxies in the training set")
        half = size // 2
        return [np.concatenate([rng.choice(negatives, size - half), rng.choice(positives, half)]) for _ in range(steps)]

    def fit(self, kind: str, member: int, images: np.ndarray, targets: np.ndarray, validation: Callable[[keras.Model], dict[str, float]]) -> keras.Model:
        """Train (or resume, or reload when finished) one network; targets < 0 are left out of regression."""
        name = f"{kind}_{member}"
        epochs = self.config.epochs if kind == "regressor" else self.config.classifier_epochs
        path = self.checkpoint_dir / f"{name}.keras"
        done = int(self.state["epochs_done"].get(name, 0))
        kind_id = _NETWORKS.index(kind)
        if done and path.exists():
            network = keras.saving.load_model(path, safe_mode=True)
            for generator, state in zip(_seed_generators(network), self.state.get("seed_states", {}).get(name, [])):
                generator.state.assign(np.array(state, dtype=generator.state.dtype))
        else:
            done = 0
            network = initial_network(self.config, kind=kind, member=member, seed=self.seed)
        steps = len(self._batches(kind, targets, np.random.default_rng(0)))
        if not done:
            self._compile(network, kind, steps)
        for epoch in range(done, epochs):
            keras.utils.set_random_seed(_seed_for(self.seed, member, kind_id, epoch + 1))
            rng = np.random.default_rng([self.seed, member, kind_id, epoch + 1])
            losses = []
            batches = tqdm(self._batches(kind, targets, rng), desc=f"{name} epoch {epoch + 1}/{epochs}", disable=not self.show_progress,
                           leave=False, unit="batch")
            for indices in batches:
                x = augment(images[indices], rng, rotation=self.config.rotation)
                y = targets[indices].astype(np.float32 if kind == "regressor" else np.int32)
                losses.append(float(network.train_on_batch(x, y)))
                batches.set_postfix(loss=f"{np.mean(losses):.4f}")
            metrics = {"train_loss": float(np.mean(losses)), **validation(network)}
            network.save(path)
            self.state["epochs_done"][name] = epoch + 1
            self.state.setdefault("seed_states", {})[name] = [keras.ops.convert_to_numpy(g.state).tolist()
                                                              for g in _seed_generators(network)]
            self.state_path.write_text(json.dumps(self.state, indent=2))
            report = EpochReport(network=name, epoch=self.epochs_before + epoch + 1, total_epochs=self.total_epochs, metrics=metrics)
            if self.show_progress:
                tqdm.write(f"{name} epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
            if self.progress is not None:
                self.progress(report)
        self.epochs_before += epochs
        return network


def ensemble_members(ensemble: keras.Model) -> tuple[list[keras.Model], list[keras.Model]]:
    """The trained twins of a joined ensemble: (regressors, classifiers), member 0 first.

    Raises
    ------
    ValueError
        The model has no ``regressor_0`` / ``classifier_0``, or unequal or non-consecutive members.
    """
    names = {layer.name for layer in ensemble.layers}
    count = 0
    while f"regressor_{count}" in names and f"classifier_{count}" in names:
        count += 1
    expected = {f"{kind}_{k}" for kind in _NETWORKS for k in range(count)}
    extra = sorted(n for n in names - expected if n.startswith(_NETWORKS))
    if count == 0 or extra:
        raise ValueError(f"ensemble {ensemble.name!r} has twins {sorted(n for n in names if n.startswith(_NETWORKS))}: "
                         "expected regressor_k and classifier_k for k = 0, 1, ..")
    return ([ensemble.get_layer(f"regressor_{k}") for k in range(count)],
            [ensemble.get_layer(f"classifier_{k}") for k in range(count)])


def _base_ensemble(config: InclinationConfig, seed: int, weights: Path, card: Path | None) -> tuple[list, list, dict[str, Any]]:
    """The members of the ensemble to extend and its card, checked against the run's config and seed."""
    from nightshift.inclination.model import load_ensemble

    card = card if card is not None else weights.with_suffix(".json")
    info = json.loads(Path(card).read_text())
    regressors, classifiers = ensemble_members(load_ensemble(weights))
    base_config = InclinationConfig.from_dict(info["config"])
    if base_config.ensemble_size != len(regressors):
        raise ValueError(f"{weights}: {len(regressors)} members, but its card {card} says ensemble_size {base_config.ensemble_size}")
    differ = sorted(k for k, v in config.to_dict().items() if k != "ensemble_size" and base_config.to_dict()[k] != v)
    if differ:
        raise ValueError(f"extending {weights}: config fields {differ} differ from its card's "
                         f"({', '.join(f'{k}={base_config.to_dict()[k]!r}' for k in differ)}); new members need the same config")
    if info.get("data_seed") != seed:
        raise ValueError(f"extending {weights}: its members were trained with seed {info.get('data_seed')}, not {seed}")
    if config.ensemble_size <= len(regressors):
        raise ValueError(f"extending {weights}: ensemble_size {config.ensemble_size}, expected more than its {len(regressors)} members")
    return regressors, classifiers, info


def train(
    config: InclinationConfig,
    *,
    seed: int,
    output_dir: str | Path,
    registry: ModelRegistry | None = None,
    progress: Callable[[EpochReport], None] | None = None,
    show_progress: bool = True,
    extend_from: str | Path | None = None,
    extend_card: str | Path | None = None,
) -> TrainResult:
    """Simulate, train every network, join the ensemble, calibrate, write and register it.

    Parameters
    ----------
    config : InclinationConfig
        Dataset sizes, networks and schedule.
    seed : int
        Seed of the simulated data, the initialisation and the augmentation.
    output_dir : path
        Receives ``inclinet.keras``, ``inclinet.json`` (the card) and ``checkpoints/`` (per-epoch
        checkpoints: a rerun with the same config and seed resumes from them).
    registry : ModelRegistry, optional
        Where the final model is registered (with metrics, the exact config and the seed).
    progress : callable, optional
        Called with an :class:`EpochReport` after every epoch.
    show_progress : bool
        Show progress bars and per-epoch lines on the terminal.
    extend_from : path, optional
        A saved ensemble (trained with the same config but fewer members, and ``seed``) whose members
        are kept as they are: only members ``m..config.ensemble_size - 1`` are trained.
    extend_card : path, optional
        Its card (default: beside it, ``.json``).
    """
    started = time.perf_counter()
    device = configure_tensorflow()
    if device == "cpu":  # bit-for-bit reruns on CPU; some GPU kernels have no deterministic version
        tf.config.experimental.enable_op_determinism()
    regressors, classifiers, members = [], [], []
    extended: dict[str, Any] | None = None
    if extend_from is not None:
        regressors, classifiers, base = _base_ensemble(config, seed, Path(extend_from), Path(extend_card) if extend_card else None)
        members = base.get("members") or [{"member": 0, "training_time_s": base["metrics"]["training_time_s"], "device": base.get("device"),
                                           "note": "the whole run's wall time (simulation and validation included)"}]
        extended = {"members": len(regressors), "metrics": base["metrics"]}
    output_dir = Path(output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    training = simulate_split(config, seed=seed, split="train", galaxies=config.train_galaxies)
    validation = simulate_split(config, seed=seed, split="validation", galaxies=config.validation_galaxies)
    train_images, validation_images = stretch(training.images), stretch(validation.images)
    validation_view = view(validation_images, "colour")
    regression_targets = np.where(training.accepted, scale_inclination(training.inclination_deg), -2.0)
    reject_targets = (~training.accepted).astype(np.int32)

    def regression_validation(network: keras.Model) -> dict[str, float]:
        scaled = network.predict(validation_view[validation.accepted], verbose=0, batch_size=256)[:, 0]
        residual = 45 + 22.5 * (scaled + 1) - validation.inclination_deg[validation.accepted]
        return {"validation_rms_deg": rms(residual)}

    def classifier_validation(network: keras.Model) -> dict[str, float]:
        probabilities = network.predict(validation_view, verbose=0, batch_size=256)[:, 1]
        return {"validation_reject_auc": roc_auc(probabilities, ~validation.accepted)}

    trainer = _Trainer(config, seed=seed, checkpoint_dir=checkpoint_dir, progress=progress, show_progress=show_progress,
                       first_member=len(regressors))
    for member in range(len(regressors), config.ensemble_size):
        member_started = time.perf_counter()
        regressors.append(trainer.fit("regressor", member, train_images, regression_targets, regression_validation))
        classifiers.append(trainer.fit("classifier", member, train_images, reject_targets, classifier_validation))
        members.append({"member": member, "training_time_s": time.perf_counter() - member_started, "device": device})
    by_members = []
    for count in range(1, config.ensemble_size):  # the gain per member, on the validation set
        subset = build_ensemble(regressors[:count], classifiers[:count], image_size=config.image_size)
        by_members.append({"members": count, **_validation_metrics(Predictor(subset, config=config), validation)})
    ensemble = inference_ensemble(regressors, classifiers, config=config)  # weights only, no optimiser state
    metrics = _validation_metrics(Predictor(ensemble, config=config), validation)
    by_members.append({"members": config.ensemble_size, **metrics})
    metrics["training_time_s"] = time.perf_counter() - started
    weights = output_dir / WEIGHTS_FILE
    ensemble.save(weights)
    card = output_dir / CARD_FILE
    info: dict[str, Any] = {"name": MODEL_NAME, "metrics": metrics, "config": config.to_dict(), "data_seed": seed, "device": device,
                            "members": members, "validation_by_members": by_members}
    if extended is not None:
        info["extended_from"] = extended
    card.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    registered = None
    if registry is not None:
        registered = registry.register({WEIGHTS_FILE: weights}, name=MODEL_NAME, metrics=metrics, config=config.to_dict(), data_seed=seed)
    return TrainResult(weights=weights, card=card, metrics=metrics, registered=registered)


def _validation_metrics(predictor: Predictor, validation: SimulatedGalaxies) -> dict[str, float]:
    """Validation metrics of the joined ensemble with test-time views, and the fitted uncertainty scale."""
    estimates = predictor.measure(validation.images)
    accepted = validation.accepted
    residual = estimates.inclination_deg[accepted] - validation.inclination_deg[accepted]
    spread = estimates.spread_deg[accepted]
    # the scale that puts 68.3 % of validation errors inside one sigma
    scale = float(np.quantile(np.abs(residual) / spread, 0.683)) if residual.size else 1.0
    metrics = {
        "validation_rms_deg": rms(residual), "validation_mae_deg": mae(residual),
        "validation_reject_auc": roc_auc(estimates.reject_probability, ~accepted),
        "uncertainty_scale": max(scale, 1e-3),
    }
    metrics.update({f"validation_{k}": v for k, v in calibration(residual, spread * metrics["uncertainty_scale"]).items()})
    return metrics
