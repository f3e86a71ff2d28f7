"""The chance-level loss of a task: what the best constant prediction scores.

A model that learned nothing about its inputs can still learn the label
frequencies (or the target mean) through its output bias; the loss it then
reaches is the task's chance level. A loss far above it is worse than knowing
nothing (divergence); a loss that stays at it has learned nothing (stalled).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_SPARSE_CE = ("sparse_categorical_crossentropy",)
_CE = ("categorical_crossentropy",)
_BINARY_CE = ("binary_crossentropy",)
_MSE = ("mean_squared_error", "mse")
_MAE = ("mean_absolute_error", "mae")


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def chance_loss(loss: str | None, y: Any = None, output_units: int | None = None) -> float | None:
    """The loss of the best constant prediction for a task, or None when unknown.

    - cross-entropy: the entropy of the label frequencies in `y`; without labels,
      `ln(output_units)` (uniform classes) or `ln 2` for a binary loss;
    - mean squared error: the variance of the targets; mean absolute error: their
      mean absolute deviation from the median (both need `y`).

    Args:
        loss: the Keras loss name (`"sparse_categorical_crossentropy"`, `"mse"`, ...).
        y: the labels or targets of some training or validation samples, or None.
        output_units: the width of the model's output, used without labels.

    Example:
        >>> chance_loss("sparse_categorical_crossentropy", y=[0, 1, 1, 2])
        1.0397...
    """
    if loss is None:
        return None
    name = loss.lower()
    labels = None if y is None else np.asarray(y, dtype=np.float64)
    if labels is not None and (labels.size == 0 or not np.isfinite(labels).all()):
        labels = None
    if name in _SPARSE_CE:
        if labels is None:
            return math.log(output_units) if output_units and output_units > 1 else None
        counts = np.bincount(labels.reshape(-1).astype(np.int64).clip(min=0))
        return _entropy(counts / counts.sum())
    if name in _CE:
        if labels is None or labels.ndim < 2:
            return math.log(output_units) if output_units and output_units > 1 else None
        freq = labels.reshape(-1, labels.shape[-1]).mean(axis=0)
        return _entropy(freq / freq.sum()) if freq.sum() > 0 else None
    if name in _BINARY_CE:
        if labels is None:
            return math.log(2.0)
        p = labels.reshape(len(labels), -1).mean(axis=0).clip(0.0, 1.0)
        return float(np.mean([_entropy(np.array([q, 1.0 - q])) for q in p]))
    if labels is None:
        return None
    targets = labels.reshape(len(labels), -1)
    if name in _MSE:
        return float(targets.var(axis=0).mean())
    if name in _MAE:
        return float(np.abs(targets - np.median(targets, axis=0)).mean())
    return None
