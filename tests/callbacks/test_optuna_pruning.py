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


def test_a_diverging_trial_of_a_real_sweep_ends_pruned_never_failed(data, tmp_path):
    """Through the tuner's objective and Optuna's own loop: the trial ends PRUNED with the
    reason and its findings, the healthy one COMPLETE, no FAIL and no NaN handed to Optuna."""
    from descentkit.tuner import StudyConfig, run_sweep

    x, y = data

    def build(params):
        # the diverging configuration scales its inputs to infinity: a NaN loss at the first step
        scale = [keras.layers.Rescaling(float("inf"))] if params["learning_rate"] > 1 else []
        return keras.Sequential([keras.Input((8,)), *scale, keras.layers.Dense(16, activation="relu"),
                                 keras.layers.Dense(1, activation="sigmoid")])

    config = StudyConfig(name="prune", max_epochs=3, pruner="none", first_trial="sampler", sampler="random",
                         prune_on=["divergence"], objective={"metric": "val_accuracy", "direction": "maximize"},
                         search_space={"learning_rate": {"type": "categorical", "choices": [0.05, 1000.0]},
                                       "batch_size": 32})
    study = optuna.create_study(study_name="prune", storage=f"sqlite:///{tmp_path / 'p.db'}", direction="maximize")
    for rate in (1000.0, 0.05):
        study.enqueue_trial({"learning_rate": rate})
    split = int(len(x) * 0.75)
    result = run_sweep(config, data=(x[:split], y[:split], x[split:], y[split:]), build_model=build, trials=2,
                       storage=f"sqlite:///{tmp_path / 'p.db'}", progress=False, tracking=False)
    diverged, healthy = result.study.trials
    assert diverged.state == optuna.trial.TrialState.PRUNED, diverged.user_attrs.get("error_message")
    assert diverged.user_attrs["prune_reason"] == "divergence"
    assert "divergence" in diverged.user_attrs["symptoms"]
    assert all(math.isfinite(v) for v in diverged.intermediate_values.values())
    assert healthy.state == optuna.trial.TrialState.COMPLETE and math.isfinite(healthy.value)
    assert result.summary.counts == {"COMPLETE": 1, "PRUNED": 1}


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
