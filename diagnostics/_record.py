"""`TrainingRecord`: the signals of one training run, per optimizer step and per epoch.

The callbacks fill it while a model trains; the detectors read it. It holds only
numbers, so a run read back from MLflow or a Keras `History.history` dict can be
re-diagnosed later with no TensorFlow at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class _Growing:
    """An append-only float array that grows by doubling (amortised O(1) appends)."""

    def __init__(self, width: int | None = None) -> None:
        self._width = width
        self._data = np.empty((0,) if width is None else (0, width), dtype=np.float64)
        self._n = 0

    def extend(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64)
        if self._width is not None and rows.ndim == 1:
            rows = rows.reshape(-1, self._width)
        need = self._n + len(rows)
        if need > len(self._data):
            new = np.empty((max(need, 2 * len(self._data), 64),) + self._data.shape[1:])
            new[: self._n] = self._data[: self._n]
            self._data = new
        self._data[self._n : need] = rows
        self._n = need

    @property
    def values(self) -> np.ndarray:
        return self._data[: self._n]


class TrainingRecord:
    """Per-step and per-epoch signals of one training run.

    Per optimizer step (all optional but `steps`): the global gradient L2 norm,
    per-layer gradient L2 norms, the number of layers with non-finite gradients,
    per-layer update-to-weight ratios `||delta w|| / ||w||`, and the batch loss.
    Per epoch: the Keras logs (losses and metrics), the learning rate in force,
    the optimizer step at the epoch's end, and per-layer fractions of dead
    (ReLU-family) units and saturated (tanh/sigmoid) pre-activations.

    `chance_loss`, when known, is the loss of the best constant prediction for the
    task: the entropy of the label frequencies for cross-entropy, the variance of
    the targets for MSE (see `chance_loss`). Divergence and stalled training are
    judged against it.

    Args:
        layer_names: names of the layers whose per-layer signals are recorded,
            in model order (first layer first). Per-layer arrays have one column each.

    Example:
        >>> rec = TrainingRecord(["dense", "dense_1"])
        >>> rec.add_steps([1, 2], grad_norm=[0.5, 0.4])
        >>> rec.add_epoch(0, {"loss": 0.9, "val_loss": 1.0}, learning_rate=0.01, step=2)
    """

    def __init__(self, layer_names: Sequence[str] = ()) -> None:
        self.layer_names: list[str] = list(layer_names)
        n_layers = len(self.layer_names)
        self._steps = _Growing()
        self._grad_norm = _Growing()
        self._loss = _Growing()
        self._nonfinite = _Growing()
        self._layer_grad_norms = _Growing(n_layers)
        self._update_ratio = _Growing(n_layers)
        self.epochs: list[int] = []
        self.history: dict[str, list[float]] = {}
        self.learning_rate: list[float] = []
        self.epoch_end_step: list[int | None] = []
        self.dead_fraction: dict[str, list[float]] = {}
        self.saturated_fraction: dict[str, list[float]] = {}
        # The learning rate of the epoch in progress, before `add_epoch` records it:
        # lets a mid-epoch diagnosis (divergence in the first epoch) quote the rate.
        self.current_learning_rate: float | None = None
        # The loss of the best constant prediction for the task (`chance_loss`): what a
        # model that learned nothing but the label frequencies (or the target mean) scores.
        # None when unknown; the monitors set it from the loss and the labels they see.
        self.chance_loss: float | None = None
        # The Keras loss's name ("sparse_categorical_crossentropy", "mse", ...), if known.
        self.loss_name: str | None = None
        # Per-epoch verdicts the detectors derived from this record, with the inputs
        # they came from (`descentkit.diagnostics._signals.memoized`): a monitor
        # diagnoses the whole record at every epoch end, and only new epochs need work.
        self._memo: dict[tuple, tuple[list[np.ndarray], list]] = {}

    # ------------------------------------------------------------------ writing
    def add_steps(
        self,
        steps: Sequence[int] | np.ndarray,
        *,
        grad_norm: Sequence[float] | np.ndarray | None = None,
        layer_grad_norms: np.ndarray | None = None,
        nonfinite: Sequence[float] | np.ndarray | None = None,
        update_ratio: np.ndarray | None = None,
        loss: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        """Append the signals of consecutive optimizer steps (missing ones as NaN)."""
        steps = np.asarray(steps, dtype=np.float64).reshape(-1)
        n = len(steps)
        if n == 0:
            return
        n_layers = len(self.layer_names)

        def col(values: Any, width: int | None = None) -> np.ndarray:
            shape = (n,) if width is None else (n, width)
            if values is None:
                return np.full(shape, np.nan)
            arr = np.asarray(values, dtype=np.float64)
            if arr.shape != shape:
                raise ValueError(f"expected an array of shape {shape} for {n} steps, got {arr.shape}")
            return arr

        self._steps.extend(steps)
        self._grad_norm.extend(col(grad_norm))
        self._loss.extend(col(loss))
        self._nonfinite.extend(col(nonfinite))
        self._layer_grad_norms.extend(col(layer_grad_norms, n_layers))
        self._update_ratio.extend(col(update_ratio, n_layers))

    def add_epoch(
        self,
        epoch: int,
        logs: Mapping[str, float] | None = None,
        *,
        learning_rate: float | None = None,
        step: int | None = None,
        dead_fraction: Mapping[str, float] | None = None,
        saturated_fraction: Mapping[str, float] | None = None,
    ) -> None:
        """Append one epoch's logs and per-epoch signals (0-based `epoch`)."""
        index = len(self.epochs)
        self.epochs.append(int(epoch))
        for key, value in (logs or {}).items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            self.history.setdefault(key, [np.nan] * index).append(value)
        for series in self.history.values():  # keys missing this epoch stay aligned
            if len(series) < index + 1:
                series.append(np.nan)
        self.learning_rate.append(np.nan if learning_rate is None else float(learning_rate))
        self.epoch_end_step.append(None if step is None else int(step))
        for target, values in ((self.dead_fraction, dead_fraction), (self.saturated_fraction, saturated_fraction)):
            for layer, value in (values or {}).items():
                target.setdefault(layer, [np.nan] * index).append(float(value))
            for series in target.values():
                if len(series) < index + 1:
                    series.append(np.nan)

    # ------------------------------------------------------------------ reading
    @property
    def steps(self) -> np.ndarray:
        """Optimizer global steps of the recorded step signals, shape (n,)."""
        return self._steps.values.astype(np.int64)

    @property
    def grad_norm(self) -> np.ndarray:
        """Global gradient L2 norm per step, shape (n,)."""
        return self._grad_norm.values

    @property
    def layer_grad_norms(self) -> np.ndarray:
        """Per-layer gradient L2 norms per step, shape (n, len(layer_names))."""
        return self._layer_grad_norms.values

    @property
    def nonfinite(self) -> np.ndarray:
        """Layers whose gradient had a non-finite value (or whose sum of squares overflowed) per step, shape (n,)."""
        return self._nonfinite.values

    @property
    def update_ratio(self) -> np.ndarray:
        """Per-layer update-to-weight ratio per step, shape (n, len(layer_names))."""
        return self._update_ratio.values

    @property
    def step_loss(self) -> np.ndarray:
        """Loss per step (NaN where not recorded), shape (n,)."""
        return self._loss.values

    @property
    def n_epochs(self) -> int:
        return len(self.epochs)

    def series(self, key: str) -> np.ndarray:
        """One per-epoch series of the logs (e.g. "loss", "val_accuracy") as floats."""
        return np.asarray(self.history.get(key, []), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form of the per-epoch signals (the step signals are summarised)."""
        return {
            "epochs": list(self.epochs),
            "history": {k: [float(v) for v in vals] for k, vals in self.history.items()},
            "learning_rate": list(self.learning_rate),
            "epoch_end_step": list(self.epoch_end_step),
            "dead_fraction": {k: list(v) for k, v in self.dead_fraction.items()},
            "saturated_fraction": {k: list(v) for k, v in self.saturated_fraction.items()},
            "layer_names": list(self.layer_names),
            "chance_loss": self.chance_loss,
            "loss_name": self.loss_name,
            "n_steps": int(len(self.steps)),
        }

    @classmethod
    def from_history(
        cls,
        history: Mapping[str, Sequence[float]],
        *,
        learning_rate: Sequence[float] | None = None,
    ) -> TrainingRecord:
        """A record holding only per-epoch logs: a Keras `History.history` dict or the
        same series read back from elsewhere, for post-hoc diagnosis.

        A "learning_rate" (or "lr") series in `history` is used as the learning rate.
        """
        lengths = {len(v) for v in history.values()}
        if len(lengths) > 1:
            raise ValueError(f"history series have different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        lr = learning_rate if learning_rate is not None else history.get("learning_rate", history.get("lr"))
        rec = cls()
        for epoch in range(n):
            logs = {k: v[epoch] for k, v in history.items() if k not in ("learning_rate", "lr")}
            rec.add_epoch(epoch, logs, learning_rate=None if lr is None else lr[epoch])
        return rec
