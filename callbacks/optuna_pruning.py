"""`OptunaPruning`: reports a metric to an Optuna trial each epoch and stops pruned trials."""

from __future__ import annotations

import math
import warnings
from typing import Any

import keras

from descentkit.diagnostics import DIVERGENCE

# The prune reason when Optuna's own pruner decided (not a pathology).
PRUNER = "pruner"


class OptunaPruning(keras.callbacks.Callback):
    """Reports `logs[monitor]` to an Optuna trial every epoch and stops the trial when pruned.

    Each epoch calls `trial.report(value, epoch)` then `trial.should_prune()`. A
    pruned trial stops with `model.stop_training = True` and records why in
    `prune_reason`: "pruner" for Optuna's pruner, or the symptom name when the
    linked `TrainingMonitor` stopped training for a pathology. A non-finite value
    is never reported (it would poison the pruner): the trial is marked pruned
    with reason "divergence". The callback never raises inside `fit`; the caller
    raises `optuna.TrialPruned` after `fit` when `prune_reason` is set. Optuna
    itself is not imported here: any object with `report` and `should_prune` works.

    Args:
        trial: the `optuna.trial.Trial` to report to.
        monitor: the log key to report (default "val_accuracy").
        training_monitor: a `TrainingMonitor` (or sibling) on the same `fit`,
            whose `stopped_by` finding becomes the prune reason.

    Attributes:
        prune_reason: None, "pruner", or a symptom name such as "divergence".

    Example:

    ```python
    import optuna
    from descentkit.callbacks import OptunaPruning, TrainingMonitor

    def objective(trial):
        model = build(trial)
        monitor = TrainingMonitor(verbose=0)
        pruning = OptunaPruning(trial, monitor="val_accuracy", training_monitor=monitor)
        history = model.fit(x, y, epochs=10, validation_split=0.2, callbacks=[monitor, pruning])
        if pruning.prune_reason is not None:
            trial.set_user_attr("prune_reason", pruning.prune_reason)
            raise optuna.TrialPruned(pruning.prune_reason)
        return max(history.history["val_accuracy"])
    ```
    """

    def __init__(self, trial: Any, monitor: str = "val_accuracy", training_monitor: Any = None) -> None:
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be the name of a logged metric, e.g. 'val_accuracy', but got {monitor!r}.")
        self.trial = trial
        self.monitor = monitor
        self.training_monitor = training_monitor
        self.prune_reason: str | None = None
        self._warned_missing = False

    @property
    def pruned(self) -> bool:
        return self.prune_reason is not None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.prune_reason = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.prune_reason is not None:
            return
        if self._take_monitor_reason():
            return
        value = (logs or {}).get(self.monitor)
        if value is None:
            if not self._warned_missing:
                self._warned_missing = True
                warnings.warn(
                    f"OptunaPruning received monitor={self.monitor!r}, but it is not among the logged "
                    f"metrics {sorted(logs or {})}; nothing is reported to the trial. Pass one of those.",
                    stacklevel=2,
                )
            return
        value = float(value)
        if not math.isfinite(value):
            self._prune(DIVERGENCE)
            return
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self._prune(PRUNER)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # The monitor may sit after this callback and have stopped training at the
        # last epoch end, after ours ran.
        if self.prune_reason is None:
            self._take_monitor_reason()

    def _take_monitor_reason(self) -> bool:
        stopped_by = getattr(self.training_monitor, "stopped_by", None)
        if stopped_by is None:
            return False
        self._prune(stopped_by.symptom)
        return True

    def _prune(self, reason: str) -> None:
        self.prune_reason = reason
        if self.model is not None:
            self.model.stop_training = True
