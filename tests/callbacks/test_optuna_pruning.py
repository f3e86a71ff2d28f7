"""OptunaPruning with a real in-memory Optuna study."""

from __future__ import annotations

import math
import subprocess
import sys

import keras
import optuna
import pytest

from descentkit.callbacks import OptunaPruning, TrainingMonitor


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def _fit(model, x, y, callbacks, lr=0.05, epochs=3, scale=1.0):
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model.fit(
        x * scale, y, batch_size=32, epochs=epochs, validation_split=0.25, verbose=0, callbacks=callbacks
    ).history


def test_the_metric_is_reported_every_epoch(data, make_mlp):
    x, y = data
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    pruning = OptunaPruning(trial, monitor="val_accuracy")
    history = _fit(make_mlp(), x, y, [pruning])
    study.tell(trial, max(history["val_accuracy"]))

    assert study.trials[0].intermediate_values == dict(enumerate(history["val_accuracy"]))
    assert pruning.prune_reason is None


def test_the_pruner_stops_training_without_raising_and_says_why(data, make_mlp):
    x, y = data
    study = optuna.create_study(direction="maximize", pruner=_AlwaysPrune())
    trial = study.ask()
    pruning = OptunaPruning(trial, monitor="val_accuracy")
    history = _fit(make_mlp(), x, y, [pruning])

    assert pruning.prune_reason == "pruner"
    assert len(history["val_accuracy"]) == 1  # stopped after the first report
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED


def test_divergence_found_by_the_monitor_is_the_prune_reason(data, make_mlp):
    x, y = data
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    monitor = TrainingMonitor(verbose=0)
    pruning = OptunaPruning(trial, monitor="val_accuracy", training_monitor=monitor)
    history = _fit(make_mlp(), x, y, [monitor, pruning], lr=1e3, scale=1e3)

    assert pruning.prune_reason == "divergence"
    assert monitor.stopped_by.symptom == "divergence"
    assert len(history["loss"]) == 1
    assert all(math.isfinite(v) for v in study.trials[0].intermediate_values.values())
    # the tuner raises after fit, so the trial ends PRUNED, never FAIL
    with pytest.raises(optuna.TrialPruned):
        raise optuna.TrialPruned(pruning.prune_reason)


def test_a_nonfinite_value_is_never_reported(data, make_mlp):
    x, y = data
    study = optuna.create_study(direction="minimize")
    trial = study.ask()
    pruning = OptunaPruning(trial, monitor="val_loss")  # no monitor: the NaN itself decides
    # Inputs at inf make every loss NaN. (A huge learning rate alone is not a sure
    # NaN: its ReLUs may all die first and leave a large but finite loss.)
    history = _fit(make_mlp(), x, y, [pruning], scale=float("inf"), epochs=2)

    assert not math.isfinite(history["val_loss"][0])
    assert pruning.prune_reason == "divergence"
    assert study.trials[0].intermediate_values == {}


def test_importing_the_callbacks_imports_neither_optuna_nor_mlflow():
    code = "import sys, descentkit.callbacks; print('optuna' in sys.modules, 'mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
