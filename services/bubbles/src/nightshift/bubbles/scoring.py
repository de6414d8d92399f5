"""The model and the baseline scored: on held-out simulated fields and on the real sky.

Simulated fields: the paper's box-coverage rule (:mod:`nightshift.bubbles.evaluate`). The real sky: the
registered composites against every MWP DR1 bubble in them, with a stricter rule.

Hit rule (position and size): a detection matches a catalogue bubble when its centre lies within
``CENTRE_TOLERANCE`` (0.5) catalogue radii of the bubble's and its radius is within ``RADIUS_RATIO``
(0.5 to 2) of the catalogue's effective radius. Matching is one to one: detections in descending score,
each to the nearest free bubble it matches. Recall: the fraction of catalogue bubbles matched (all, and
the high-quality subset as "clear"); precision: the fraction of detections matched to a catalogue
bubble. An unmatched detection is not necessarily false (MWP volunteers missed bubbles): the overlays
show every one.

The threshold scored on a field is chosen on the other fields (leave one field out): the highest
recall of all bubbles at precision >= ``PRECISION_FLOOR`` there, else the best F1; the reported
figures sum the fields, each at its own threshold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.bubbles.baseline import FILL_WEIGHTS, RingTemplateDetector
from nightshift.bubbles.config import BubblesConfig, data_seeds, hard_test_config
from nightshift.bubbles.evaluate import SWEEP_THRESHOLDS, Counts, count_hits, f_beta, headline, score_sweep, truth_hits
from nightshift.bubbles.infer import FieldDetection, WindowDetector
from nightshift.bubbles.model import BubbleSSD
from nightshift.bubbles.realdata import (CATALOGUE_FILE, DEFAULT_REAL_DIR, CatalogueBubble, RealField, catalogue_in_field,
                                         load_composites)
from nightshift.bubbles.simulate import Field

__all__ = ["FieldRows", "simulated_rows", "field_counts", "field_intervals", "CONTRAST_BINS", "RADIUS_BINS_ARCSEC", "recall_bins", "best_f2", "tune_baseline", "score_simulated", "CENTRE_TOLERANCE", "RADIUS_RATIO", "PRECISION_FLOOR",
           "HIT_RULE", "RealCounts", "real_intervals", "match_catalogue", "real_counts", "choose_threshold", "leave_one_field_out", "real_check", "score_real"]

FieldRows = tuple[np.ndarray, np.ndarray, np.ndarray, list[bool]]
"""One field's detection boxes (n, 4), scores (n,), truth boxes (m, 4) and clear flags (m,)."""

def _rows(detections: Sequence[FieldDetection], truths: np.ndarray, clear: Sequence[bool]) -> FieldRows:
    boxes = np.array([d.box() for d in detections]).reshape(-1, 4)
    return boxes, np.array([d.score for d in detections]), truths.reshape(-1, 4), list(clear)


def _field_rows(fields: Sequence[Field], detector: WindowDetector, config: BubblesConfig) -> list[FieldRows]:
    from nightshift.bubbles.infer import detect_field

    return [_rows(detect_field(f.pixels, f.header, detector, config, min_score=SWEEP_THRESHOLDS[0]),
                  np.array([b.box() for b in f.bubbles]), [b.clear for b in f.bubbles]) for f in fields]


def simulated_rows(model: BubbleSSD, config: BubblesConfig, *, seed: int, count: int, baseline: RingTemplateDetector,
                   hard: bool = False) -> tuple[list[Field], list[FieldRows], list[FieldRows]]:
    """Held-out fields of run ``seed`` and, per field, the model's and the baseline's detections from score 0.5 with the truth.

    ``hard``: the harder sky's test fields (:func:`~nightshift.bubbles.config.hard_test_config`, seed ``hard_test``) instead
    of the default sky's; the detectors run with ``config`` either way.
    """
    from nightshift.bubbles.infer import SSDWindowDetector
    from nightshift.bubbles.simulate import simulate_fields

    sky = hard_test_config(config) if hard else config
    fields = simulate_fields(sky, data_seeds(seed)["hard_test" if hard else "test"], count)
    return fields, _field_rows(fields, SSDWindowDetector(model), config), _field_rows(fields, baseline, config)


def field_counts(rows: Sequence[FieldRows], threshold: float) -> list[Counts]:
    """Each field's counts of the detections scoring at least ``threshold``."""
    return [count_hits(boxes[scores >= threshold], truths, clear) for boxes, scores, truths, clear in rows]


_INTERVAL_FIGURES = ("detection_rate", "detection_rate_all", "precision", "f2")


def _summed(per_field: np.ndarray, fields: np.ndarray) -> Counts:
    return Counts(*(int(v) for v in per_field[np.asarray(fields, int)].sum(axis=0)))


def field_intervals(model: Sequence[Counts], baseline: Sequence[Counts]) -> tuple[dict[str, float], dict[str, float]]:
    """95% bootstrap intervals over fields (the unit: bubbles in one field share its sky) of the model's and the baseline's
    figures (``<figure>_ci95_low`` / ``_high``), and of the model's F2 minus the baseline's on the same resampled fields
    (``f2_over_baseline_ci95_*``, in the model's)."""
    from nightshift.core.stats import bootstrap_interval

    arrays = [np.array([dataclasses.astuple(c) for c in counts]).reshape(-1, len(dataclasses.fields(Counts))) for counts in (model, baseline)]
    fields = np.arange(len(model))
    intervals: tuple[dict[str, float], dict[str, float]] = ({}, {})
    for figures, per_field in zip(intervals, arrays):
        for name in _INTERVAL_FIGURES:
            low, high = bootstrap_interval(lambda f, a=per_field, n=name: getattr(_summed(a, f), n), fields)
            figures.update({f"{name}_ci95_low": low, f"{name}_ci95_high": high})
    low, high = bootstrap_interval(lambda f: _summed(arrays[0], f).f2 - _summed(arrays[1], f).f2, fields)
    intervals[0].update(f2_over_baseline_ci95_low=low, f2_over_baseline_ci95_high=high)
    return intervals


CONTRAST_BINS = (0.15, 0.3, 0.5, 1.0, 1.5)
"""Edges of the 8 um shell contrast bins (shell peak over the diffuse 8 um level) of the harder sky's recall."""
RADIUS_BINS_ARCSEC = (14.0, 30.0, 60.0, 120.0, 240.0)
"""Edges of the radius bins, in arcsec (the simulator's radii: 14..240")."""


def recall_bins(fields: Sequence[Field], rows: Sequence[FieldRows], threshold: float, attribute: str,
                edges: Sequence[float]) -> list[dict[str, float | None]]:
    """Bubbles and clear bubbles hit at ``threshold`` in bins of a truth ``attribute`` (``contrast``, ``radius_arcsec``).

    Each bin ``[low, high)`` (the last one closed) gives ``bubbles``, ``hit``, ``clear``, ``clear_hit`` and the rates
    ``detection_rate`` (clear) and ``detection_rate_all`` (None for a bin without such bubbles).
    """
    hits = np.concatenate([truth_hits(boxes[scores >= threshold], truths) for boxes, scores, truths, _ in rows] or [np.zeros(0, bool)])
    values = np.array([getattr(b, attribute) for f in fields for b in f.bubbles], float)
    clear = np.array([b.clear for f in fields for b in f.bubbles], bool)
    bins = []
    for index, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (values >= low) & ((values <= high) if index == len(edges) - 2 else (values < high))
        counts = Counts(int(hits[inside & clear].sum()), int((inside & clear).sum()), int(hits[inside].sum()), int(inside.sum()))
        bins.append({"low": float(low), "high": float(high), "bubbles": counts.all_total, "hit": counts.all_hit,
                     "clear": counts.clear_total, "clear_hit": counts.clear_hit,
                     "detection_rate": counts.detection_rate if counts.clear_total else None,
                     "detection_rate_all": counts.detection_rate_all if counts.all_total else None})
    return bins


def best_f2(sweep: dict[float, Counts]) -> tuple[float, Counts]:
    """The threshold with the highest F2 and its counts."""
    return max(sweep.items(), key=lambda item: item[1].f2)


def tune_baseline(config: BubblesConfig, *, seed: int, fill_weights: Sequence[float] = FILL_WEIGHTS) -> tuple[RingTemplateDetector, dict[str, Any]]:
    """The ring baseline's 24 um weight and score threshold chosen on the validation fields of run ``seed``, as the SSD's threshold is.

    Each weight of ``fill_weights`` is run on the ``config.val_fields`` validation fields; the weight and
    threshold of the sweep with the highest F2 win (ties: the smaller weight). Returns the tuned detector
    and the record of every trial.
    """
    from nightshift.bubbles.simulate import simulate_fields

    fields = simulate_fields(config, data_seeds(seed)["val"], config.val_fields)
    trials = []
    for weight in fill_weights:
        threshold, counts = best_f2(score_sweep(_field_rows(fields, RingTemplateDetector(fill_weight=weight), config)))
        trials.append({"fill_weight": weight, "threshold": threshold, **headline(counts)})
    best = max(trials, key=lambda t: (t["f2"], -t["fill_weight"]))
    record = {"fill_weight": best["fill_weight"], "threshold": best["threshold"], "validation_seed": data_seeds(seed)["val"],
              "validation_fields": config.val_fields, "trials": trials}
    return RingTemplateDetector(fill_weight=best["fill_weight"], score_threshold=best["threshold"]), record


def score_simulated(model: BubbleSSD, config: BubblesConfig, *, seed: int, count: int) -> tuple[dict[str, float], dict[str, float]]:
    """Headline figures of the model and of the baseline (its defaults), each at its own validation-chosen threshold."""
    baseline = RingTemplateDetector()
    _, model_rows, baseline_rows = simulated_rows(model, config, seed=seed, count=count, baseline=baseline)
    model_counts = score_sweep(model_rows, [config.score_threshold])[config.score_threshold]
    baseline_counts = score_sweep(baseline_rows, [baseline.score_threshold])[baseline.score_threshold]
    return ({**headline(model_counts), "threshold": config.score_threshold},
            {**headline(baseline_counts), "threshold": baseline.score_threshold})


CENTRE_TOLERANCE = 0.5
RADIUS_RATIO = (0.5, 2.0)
PRECISION_FLOOR = 0.5
HIT_RULE = (f"centre within {CENTRE_TOLERANCE} catalogue radii and radius ratio in [{RADIUS_RATIO[0]}, {RADIUS_RATIO[1]}], "
            "one to one by descending score")


@dataclasses.dataclass(frozen=True)
class RealCounts:
    """Matches of one field (or a sum of fields) at one threshold."""

    clear_hit: int = 0
    clear_total: int = 0
    all_hit: int = 0
    all_total: int = 0
    detections: int = 0

    def __add__(self, other: RealCounts) -> RealCounts:
        return RealCounts(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    @property
    def recall_clear(self) -> float:
        return self.clear_hit / self.clear_total if self.clear_total else 1.0

    @property
    def recall_all(self) -> float:
        return self.all_hit / self.all_total if self.all_total else 1.0

    @property
    def precision(self) -> float:
        """Matched detections over detections (each match takes one detection)."""
        return self.all_hit / self.detections if self.detections else 1.0

    def figures(self) -> dict[str, float]:
        return {"recall_clear": self.recall_clear, "recall_all": self.recall_all, "precision": self.precision,
                "clear_bubbles": self.clear_total, "catalogue_bubbles": self.all_total, "clear_matched": self.clear_hit,
                "matched": self.all_hit, "detections": self.detections}


def real_intervals(counts: RealCounts) -> dict[str, float]:
    """95% bootstrap intervals of the real sky's recalls (over catalogue bubbles) and precision (over detections).

    The units are bubbles and detections, not fields: three composites give only ten distinct resamples of fields.
    """
    from nightshift.core.stats import bootstrap_interval

    intervals = {}
    for name, hit, total in (("recall_clear", counts.clear_hit, counts.clear_total), ("recall_all", counts.all_hit, counts.all_total),
                             ("precision", counts.all_hit, counts.detections)):
        low, high = bootstrap_interval(np.mean, np.r_[np.ones(hit), np.zeros(total - hit)])
        intervals.update({f"{name}_ci95_low": low, f"{name}_ci95_high": high})
    return intervals


def match_catalogue(found: Sequence[FieldDetection], bubbles: Sequence[CatalogueBubble]) -> np.ndarray:
    """For each detection (any order), the index of the catalogue bubble it matches, or -1."""
    matched = np.full(len(found), -1)
    free = np.ones(len(bubbles), dtype=bool)
    for i in sorted(range(len(found)), key=lambda k: -found[k].score):
        d = found[i]
        candidates = [(np.hypot(d.x_px - b.x_px, d.y_px - b.y_px), j) for j, b in enumerate(bubbles)
                      if free[j] and np.hypot(d.x_px - b.x_px, d.y_px - b.y_px) <= CENTRE_TOLERANCE * b.radius_px
                      and RADIUS_RATIO[0] <= d.radius_px / b.radius_px <= RADIUS_RATIO[1]]
        if candidates:
            matched[i] = min(candidates)[1]
            free[matched[i]] = False
    return matched


def real_counts(found: Sequence[FieldDetection], bubbles: Sequence[CatalogueBubble], threshold: float) -> RealCounts:
    """Counts of the detections at or above ``threshold`` against a field's catalogue bubbles."""
    kept = [d for d in found if d.score >= threshold]
    hit = {int(j) for j in match_catalogue(kept, bubbles) if j >= 0}
    return RealCounts(sum(bubbles[j].clear for j in hit), sum(b.clear for b in bubbles), len(hit), len(bubbles), len(kept))


def choose_threshold(sweep: dict[float, RealCounts]) -> float:
    """The threshold of the highest recall of all bubbles at precision >= the floor (ties: the higher threshold), else the best F1."""
    passing = [t for t, c in sweep.items() if c.precision >= PRECISION_FLOOR and c.detections]
    if passing:
        return max(passing, key=lambda t: (sweep[t].recall_all, t))
    return max(sweep, key=lambda t: (f_beta(sweep[t].precision, sweep[t].recall_all, beta=1.0), t))


def _detector_sweeps(fields: Sequence[RealField], catalogues: Sequence[list[CatalogueBubble]], detector, config: BubblesConfig,
                     thresholds: Sequence[float]) -> tuple[list[list[FieldDetection]], list[dict[float, RealCounts]]]:
    from nightshift.bubbles.infer import detect_field

    found = [detect_field(f.pixels, f.header, detector, config, min_score=thresholds[0]) for f in fields]
    return found, [{t: real_counts(d, c, t) for t in thresholds} for d, c in zip(found, catalogues)]


def leave_one_field_out(sweeps: list[dict[float, RealCounts]]) -> list[float]:
    """Each field's threshold, chosen on the sum of the other fields' sweeps."""
    thresholds = []
    for held_out in range(len(sweeps)):
        others = [s for i, s in enumerate(sweeps) if i != held_out] or sweeps
        thresholds.append(choose_threshold({t: sum((s[t] for s in others), RealCounts()) for t in sweeps[held_out]}))
    return thresholds


def real_check(model: BubbleSSD, config: BubblesConfig, real_dir: Path, *, overlays: Path | None = None,
               baseline: RingTemplateDetector | None = None) -> dict[str, Any]:
    """Score the model and the ring baseline (default: its defaults) on the real composites (leave-one-field-out thresholds);
    optionally draw overlays."""
    from nightshift.bubbles.infer import SSDWindowDetector

    fields = load_composites(real_dir)
    if not fields:
        raise FileNotFoundError(f"no GLM_*.jpg composites in {real_dir}")
    catalogues = [catalogue_in_field(real_dir / CATALOGUE_FILE, f.header, f.pixels.shape[1:]) for f in fields]
    figures: dict[str, Any] = {"hit_rule": HIT_RULE, "threshold_rule": "leave one field out: highest recall_all at precision "
                                                                       f">= {PRECISION_FLOOR} on the other fields"}
    for name, detector in (("model", SSDWindowDetector(model)), ("baseline", baseline or RingTemplateDetector())):
        found, sweeps = _detector_sweeps(fields, catalogues, detector, config, SWEEP_THRESHOLDS)
        thresholds = leave_one_field_out(sweeps)
        total = sum((s[t] for s, t in zip(sweeps, thresholds)), RealCounts())
        entry: dict[str, Any] = {
            **total.figures(), **real_intervals(total),
            "fields": {f.name: {**s[t].figures(), "threshold": t, "scale_arcsec": round(abs(f.header["CDELT2"]) * 3600.0, 3)}
                       for f, s, t in zip(fields, sweeps, thresholds)},
            "sweep": {f"{t:.2f}": sum((s[t] for s in sweeps), RealCounts()).figures() for t in SWEEP_THRESHOLDS},
        }
        if name == "model":
            figures.update(entry)
            if overlays is not None:
                figures["overlays"] = [str(_plot_overlay(f, c, d, t, overlays / f"overlay_real_{Path(f.name).stem}.png"))
                                       for f, c, d, t in zip(fields, catalogues, found, thresholds)]
        else:
            figures["baseline"] = entry
    return figures


def score_real(model: BubbleSSD, config: BubblesConfig) -> tuple[dict[str, float], dict[str, float]]:
    """The real check's totals (model, baseline) as flat figures for ``Evaluate``.

    Raises
    ------
    FailedPrecondition
        The real data is not on this server.
    """
    if not (DEFAULT_REAL_DIR / CATALOGUE_FILE).exists():
        from nightshift.core.errors import FailedPrecondition

        raise FailedPrecondition(f"bubbles: the real data ({DEFAULT_REAL_DIR}) is not available on this server")
    figures = real_check(model, config, DEFAULT_REAL_DIR)
    flat = ("recall_clear", "recall_all", "precision", "clear_bubbles", "catalogue_bubbles", "clear_matched", "matched", "detections")
    return ({k: float(figures[k]) for k in flat}, {k: float(figures["baseline"][k]) for k in flat})


def _plot_overlay(field: RealField, bubbles: Sequence[CatalogueBubble], found: Sequence[FieldDetection], threshold: float,
                  path: Path) -> Path:
    """A composite with matched detections (green), missed catalogue bubbles (red; solid: clear) and unmatched detections (cyan)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept = [d for d in found if d.score >= threshold]
    matched = match_catalogue(kept, bubbles)
    hit = set(int(j) for j in matched if j >= 0)
    figure, axis = plt.subplots(figsize=(12, 6.4))
    axis.imshow(field.rgb[::-1], origin="lower")
    for j, b in enumerate(bubbles):
        if j not in hit:
            axis.add_patch(plt.Circle((b.x_px, b.y_px), b.radius_px, fill=False, color="red", ls="-" if b.clear else "--", lw=1.2))
    for d, j in zip(kept, matched):
        axis.add_patch(plt.Circle((d.x_px, d.y_px), d.radius_px, fill=False, color="lime" if j >= 0 else "cyan", lw=1.2))
        axis.text(d.x_px, d.y_px + d.radius_px, f"{d.score:.2f}", color="lime" if j >= 0 else "cyan", fontsize=7)
    counts = real_counts(found, bubbles, threshold)
    axis.set_title(f"{field.name} at {abs(field.header['CDELT2']) * 3600:.2f}\"/px, threshold {threshold:.2f}: matched "
                   f"{counts.all_hit}/{counts.all_total} (clear {counts.clear_hit}/{counts.clear_total}), "
                   f"{counts.detections - counts.all_hit} unmatched detections (cyan); missed MWP: red (solid = clear)", fontsize=8)
    axis.set_xlim(0, field.rgb.shape[1])
    axis.set_ylim(0, field.rgb.shape[0])
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
