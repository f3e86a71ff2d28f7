"""A run's gradient health per epoch: the few numbers a sweep keeps of each trial.

`epoch_health` reduces a `TrainingRecord`'s per-step signals to per-epoch numbers
(global gradient norm median and max, per-layer medians of the gradient norm and
of the update-to-weight ratio, dead and saturated fractions), small enough to be
stored with the study and re-logged later. `health_metrics` turns them into the
per-epoch metrics a dashboard charts; `health_record` rebuilds an epoch-resolution
record from them, so the diagnostic figure of a trial can be drawn by whichever
process logs it, and again from the stored study.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from descentkit.diagnostics._record import TrainingRecord
from descentkit.diagnostics._signals import epoch_segments

# A chart or a figure needs no more than 4 significant digits, and the health of
# every trial is stored with the study: 4 digits keep it a few kilobytes.
SIGNIFICANT_DIGITS = 4


def _round(value: Any) -> float | None:
    """A JSON-ready number: None for NaN (not measured), inf kept (an exploding norm is news)."""
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return value
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _reduce(values: np.ndarray, reduce: Any) -> float:
    seen = values[~np.isnan(values)]
    return float(reduce(seen)) if seen.size else float("nan")


def _numbers(values: Sequence[Any] | None) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values or []], dtype=np.float64)


def epoch_health(record: TrainingRecord | None) -> dict[str, Any]:
    """The record's gradient health per epoch, as JSON-ready lists (one entry per epoch).

    Keys: `layers`; `step` (optimizer step at each epoch's end), `learning_rate`,
    `grad_norm_median`, `grad_norm_max` (global norm over the epoch's steps),
    `nonfinite_steps` (steps whose gradient had a non-finite value);
    `layer_grad_norm` and `update_ratio` (per epoch, one median per layer);
    `dead_fraction` and `saturated_fraction` ({layer: per-epoch values}, only the
    layers measured). Not measured: None.

    Example:
        >>> health = epoch_health(monitor.record)
        >>> health["grad_norm_max"][-1]
    """
    if record is None or record.n_epochs == 0:
        return {}
    segments = epoch_segments(record)
    medians, maxima, layer_norms, ratios, nonfinite = [], [], [], [], []
    n_layers = len(record.layer_names)
    for segment in segments:
        nonfinite.append(int(np.sum(np.nan_to_num(record.nonfinite[segment]) > 0)))
        norms = record.grad_norm[segment]
        medians.append(_round(_reduce(norms, np.median)))
        maxima.append(_round(_reduce(norms, np.max)))
        layer_norms.append([_round(_reduce(record.layer_grad_norms[segment, j], np.median)) for j in range(n_layers)])
        ratios.append([_round(_reduce(record.update_ratio[segment, j], np.median)) for j in range(n_layers)])
    return {
        "layers": list(record.layer_names),
        "step": list(record.epoch_end_step),
        "learning_rate": [_round(v) for v in record.learning_rate],
        "grad_norm_median": medians,
        "grad_norm_max": maxima,
        "nonfinite_steps": nonfinite,
        "layer_grad_norm": layer_norms,
        "update_ratio": ratios,
        "dead_fraction": {k: [_round(v) for v in series] for k, series in record.dead_fraction.items()},
        "saturated_fraction": {k: [_round(v) for v in series] for k, series in record.saturated_fraction.items()},
    }


def extend_health(earlier: Mapping[str, Any] | None, later: Mapping[str, Any] | None) -> dict[str, Any]:
    """The health of a run trained in segments (a trial resumed from a checkpoint): `later` after `earlier`."""
    if not earlier:
        return dict(later or {})
    if not later:
        return dict(earlier)
    n_before = len(earlier.get("step", []))
    out: dict[str, Any] = {"layers": list(later.get("layers") or earlier.get("layers") or [])}
    for key in ("step", "learning_rate", "grad_norm_median", "grad_norm_max", "nonfinite_steps", "layer_grad_norm",
                "update_ratio"):
        out[key] = list(earlier.get(key, [])) + list(later.get(key, []))
    for key in ("dead_fraction", "saturated_fraction"):
        first, second = earlier.get(key) or {}, later.get(key) or {}
        n_after = len(later.get("step", []))
        out[key] = {layer: list(first.get(layer, [None] * n_before)) + list(second.get(layer, [None] * n_after))
                    for layer in {**first, **second}}
    return out


def _extreme(values: Sequence[Any], reduce: Any) -> float | None:
    seen = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(reduce(seen)) if seen else None


def health_metrics(health: Mapping[str, Any] | None) -> list[dict[str, float]]:
    """Per epoch (by index), the gradient-health metrics a dashboard charts:
    `grad_norm/median`, `grad_norm/max` (global norm), `grad_norm/first_last_ratio`
    (first layer's median norm over the last layer's: vanishing gradients show as a
    tiny ratio), `update_ratio/max` and `update_ratio/min` (the layers updating
    fastest and slowest against their weights), `dead_fraction/max` and
    `saturated_fraction/max` (the worst layer), each only when measured."""
    if not health:
        return []
    n = len(health.get("step", []))
    out: list[dict[str, float]] = []
    for i in range(n):
        row: dict[str, float] = {}
        for key, name in (("grad_norm_median", "grad_norm/median"), ("grad_norm_max", "grad_norm/max")):
            value = (health.get(key) or [None] * n)[i]
            if value is not None:
                row[name] = float(value)
        layers = (health.get("layer_grad_norm") or [[]] * n)[i]
        if len(layers) > 1 and layers[0] is not None and layers[-1]:
            row["grad_norm/first_last_ratio"] = float(layers[0]) / float(layers[-1])
        ratios = (health.get("update_ratio") or [[]] * n)[i]
        for name, reduce in (("update_ratio/max", max), ("update_ratio/min", min)):
            value = _extreme(ratios, reduce)
            if value is not None:
                row[name] = value
        for key in ("dead_fraction", "saturated_fraction"):
            value = _extreme([series[i] for series in (health.get(key) or {}).values() if i < len(series)], max)
            if value is not None:
                row[f"{key}/max"] = value
        out.append(row)
    return out


def health_record(history: Mapping[str, Sequence[Any]], health: Mapping[str, Any] | None) -> TrainingRecord:
    """An epoch-resolution `TrainingRecord` from per-epoch logs and `epoch_health`:
    one "step" per epoch (at the epoch's end step) holding the epoch's medians, for
    `plot_training` to draw a run whose per-step signals were not kept."""
    health = health or {}
    layers = list(health.get("layers") or [])
    record = TrainingRecord(layers)
    n = max([len(v) for v in history.values()] + [len(health.get("step", []))], default=0)
    steps = health.get("step") or []
    known = [i for i in range(min(n, len(steps))) if steps[i] is not None]
    if known:
        width = len(layers)

        def rows(key: str) -> np.ndarray:
            table = health.get(key) or []
            return np.array([[np.nan if v is None else float(v) for v in (table[i] if i < len(table) else [None] * width)]
                             for i in known], dtype=np.float64).reshape(len(known), width)

        nonfinite = health.get("nonfinite_steps") or []
        record.add_steps([steps[i] for i in known], grad_norm=_numbers([health["grad_norm_median"][i] for i in known]),
                         layer_grad_norms=rows("layer_grad_norm"), update_ratio=rows("update_ratio"),
                         nonfinite=_numbers([nonfinite[i] if i < len(nonfinite) else None for i in known]))
    rates = health.get("learning_rate") or []
    for i in range(n):
        logs = {k: (np.nan if v[i] is None else v[i]) for k, v in history.items() if i < len(v)}
        record.add_epoch(
            i, logs,
            learning_rate=rates[i] if i < len(rates) and rates[i] is not None else None,
            step=steps[i] if i < len(steps) else None,
            dead_fraction={k: s[i] for k, s in (health.get("dead_fraction") or {}).items() if i < len(s) and s[i] is not None},
            saturated_fraction={k: s[i] for k, s in (health.get("saturated_fraction") or {}).items()
                                if i < len(s) and s[i] is not None},
        )
    return record
