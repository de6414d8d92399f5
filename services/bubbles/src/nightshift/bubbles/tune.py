"""Bayesian hyperparameter search as the paper does it: optuna's TPE over the training's step settings.

Searched: the AdamW learning rate and weight decay (log-uniform) and the two batch sizes of one
optimisation step, positives (``bubble_batch``, the paper's ``Ring_mini_batch``) and negatives
(``nonbubble_batch``, ``NonRing_mini_batch``). Each trial is :func:`~nightshift.bubbles.train.train_model`
on the same simulated fields; its value is the best validation F2 of its epochs. Trials whose
per-epoch validation F2 falls below the median of earlier trials at the same epoch are pruned
(optuna's ``MedianPruner``). With a storage file the study is kept in SQLite and a later call with
the same file continues it up to ``trials`` finished trials.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nightshift.bubbles.config import BubblesConfig
from nightshift.bubbles.train import EpochReport, train_model

__all__ = ["SEARCH_SPACE", "tune"]

SEARCH_SPACE: dict[str, tuple[float, float]] = {
    "learning_rate": (1e-4, 1e-2),
    "weight_decay": (1e-5, 1e-1),
    "bubble_batch": (2, 16),
    "nonbubble_batch": (1, 16),
}
"""Bounds of each searched config field: the two rates log-uniform, the two batch sizes integers (log-uniform)."""


def _suggest(trial: Any) -> dict[str, Any]:
    return {name: (trial.suggest_float(name, low, high, log=True) if isinstance(low, float)
                   else trial.suggest_int(name, low, high, log=True)) for name, (low, high) in SEARCH_SPACE.items()}


def tune(config: BubblesConfig, *, seed: int, trials: int, epochs: int, storage: Path | None = None,
         study_name: str | None = None) -> dict[str, Any]:
    """Search learning rate, weight decay and the two batch sizes for the best validation F2.

    Parameters
    ----------
    config : BubblesConfig
        The base configuration; each trial replaces the searched fields and ``epochs``.
    seed : int
        Seed of the simulated fields and the training (the same in every trial) and of the TPE sampler.
    trials : int
        Finished trials (complete or pruned) the study should hold at the end, earlier calls' included.
    epochs : int
        Epochs per trial (early stopping may end a trial sooner).
    storage : Path, optional
        SQLite file keeping the study, so an interrupted search resumes; in memory when omitted.
    study_name : str, optional
        Name of the study in ``storage`` (default: ``<config.name>-tune``).

    Returns
    -------
    dict
        ``best_params``, ``best_f2``, ``best_trial``, ``best_threshold`` (the best trial's validation
        threshold), ``train_overrides`` (``FIELD=VALUE`` for ``train --set``), ``finished``, ``pruned``
        and ``trials`` (number, state, value, params of each).
    """
    import optuna

    def objective(trial: optuna.Trial) -> float:
        trial_config = dataclasses.replace(config, epochs=epochs, **_suggest(trial))

        def report(epoch: EpochReport) -> None:
            trial.report(epoch.metrics["val_f2"], epoch.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation F2 {epoch.metrics['val_f2']:.3f} at epoch {epoch.epoch} below the median")

        result = train_model(trial_config, seed=seed, on_epoch=report, show_progress=False)
        trial.set_user_attr("val_threshold", result.metrics["val_threshold"])
        trial.set_user_attr("best_epoch", result.metrics["best_epoch"])
        return result.metrics["val_f2"]

    study = optuna.create_study(
        study_name=study_name or f"{config.name}-tune", direction="maximize", load_if_exists=True,
        storage=None if storage is None else f"sqlite:///{Path(storage).resolve()}",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),  # epochs count from 1: prune from the 2nd
    )
    # Seeded past the trials already stored: a resumed study would otherwise draw its first parameters again.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    remaining = trials - len(study.get_trials(deepcopy=False, states=finished_states))
    if remaining > 0:
        study.optimize(objective, n_trials=remaining)
    best = study.best_trial
    return {
        "best_params": best.params, "best_f2": best.value, "best_trial": best.number,
        "best_threshold": best.user_attrs.get("val_threshold"),
        "train_overrides": [f"{k}={v}" for k, v in best.params.items()],
        "finished": len(study.get_trials(deepcopy=False, states=finished_states)),
        "pruned": len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))),
        "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                    "val_f2_by_epoch": {str(k): v for k, v in t.intermediate_values.items()}} for t in study.trials],
    }
