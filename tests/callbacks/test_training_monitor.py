"""TrainingMonitor and its narrower siblings on real small fits."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from descentkit.callbacks import (
    ActivationMonitor,
    DivergenceMonitor,
    GradientMonitor,
    OverfittingMonitor,
    TrainingMonitor,
)
from descentkit.diagnostics import SYMPTOMS, Finding


def _first_nonfinite_step(record) -> int:
    bad = (record.nonfinite > 0) | ~np.isfinite(record.grad_norm) | np.isinf(record.step_loss)
    assert bad.any(), "the run was expected to diverge"
    return int(record.steps[np.argmax(bad)])


def _diverging_fit(model, x, y, monitor, **compile_kwargs):
    model.compile(keras.optimizers.SGD(1e3), "sparse_categorical_crossentropy", **compile_kwargs)
    model.fit(x * 1e3, y, batch_size=8, epochs=3, verbose=0, callbacks=[monitor])
    return int(model.optimizer.iterations.numpy())


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_divergence_stops_training_within_8_steps(data, make_mlp, steps_per_execution, capsys):
    x, y = data
    monitor = TrainingMonitor(verbose=1)
    last_step = _diverging_fit(make_mlp(), x, y, monitor, steps_per_execution=steps_per_execution)

    first_bad = _first_nonfinite_step(monitor.record)
    assert 0 <= last_step - first_bad <= 8
    assert last_step < 32  # stopped inside the first epoch (32 steps), not at its end
    assert isinstance(monitor.stopped_by, Finding)
    assert monitor.stopped_by.symptom == "divergence"
    assert monitor.stopped_by.severity == "critical"
    assert monitor.stopped_by.step <= first_bad
    printed = capsys.readouterr().out
    assert "Epoch 1: TrainingMonitor found divergence (critical) at step" in printed
    assert "Advice:" in printed


def test_divergence_monitor_alone_stops_a_diverging_run(data, make_mlp):
    x, y = data
    monitor = DivergenceMonitor(verbose=0)
    last_step = _diverging_fit(make_mlp(), x, y, monitor)

    assert monitor.stopped_by is not None and monitor.stopped_by.symptom == "divergence"
    assert last_step - _first_nonfinite_step(monitor.record) <= 8
    assert {f.symptom for f in monitor.findings} == {"divergence"}


def test_a_healthy_run_has_no_warning_or_critical_finding(data, make_mlp, capsys):
    x, y = data
    model = make_mlp()
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    monitor = TrainingMonitor(probe_data=(x[:128], y[:128]))
    model.fit(x, y, batch_size=32, epochs=3, validation_split=0.25, verbose=0, callbacks=[monitor])

    serious = [f for f in monitor.findings if f.severity != "info"]
    assert serious == [], monitor.summary()
    assert monitor.stopped_by is None
    assert capsys.readouterr().out == ""
    assert monitor.record.n_epochs == 3
    assert set(monitor.record.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert set(monitor.record.dead_fraction) == {model.layers[0].name, model.layers[1].name}


def test_findings_are_reported_as_text_and_json(data, make_mlp):
    x, y = data
    monitor = TrainingMonitor(verbose=0)
    _diverging_fit(make_mlp(), x, y, monitor)

    assert "divergence" in monitor.summary()
    as_dicts = monitor.findings_as_dicts()
    assert json.loads(monitor.to_json()) == as_dicts
    # with no data given, the preflight checks ran on a sample of fit's own x (x1e3)
    assert [d["symptom"] for d in as_dicts[:2]] == ["unnormalized_inputs", "divergence"]
    # every finding once, though the detectors ran on the growing record many times
    keys = [(f.symptom, f.epoch, f.step) for f in monitor.findings]
    assert len(keys) == len(set(keys))


def test_preflight_flags_unnormalized_inputs_before_training(data, make_mlp, capsys):
    x, y = data
    model = make_mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    monitor = TrainingMonitor(stop_on=(), preflight_data=(x * 1e4 + 50.0, y))
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[monitor])

    preflight = [f for f in monitor.findings if f.epoch is None and f.step is None]
    assert "unnormalized_inputs" in {f.symptom for f in preflight}
    assert "Before training: TrainingMonitor found unnormalized_inputs" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TrainingMonitor(stop_on=("divergance",)), "'divergance' is not a symptom"),
        (lambda: TrainingMonitor(stop_on="nan"), "'nan' is not a symptom"),
        (lambda: GradientMonitor(stop_on="divergence"), "does not watch 'divergence'"),
        (lambda: TrainingMonitor(check_every=20), "check_every must be an integer from 1 to 8"),
        (lambda: TrainingMonitor(verbose=3), "verbose must be 0, 1 or 2"),
        (lambda: ActivationMonitor(), "pass a batch of inputs to probe"),
    ],
)
def test_bad_arguments_are_refused_with_the_value_quoted(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_every_symptom_name_is_accepted_by_training_monitor():
    assert TrainingMonitor(stop_on=SYMPTOMS).stop_on == SYMPTOMS


def test_overfitting_monitor_flags_a_memorizing_net():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 2, size=64)  # labels are noise: only memorizing lowers the loss
    x_val = rng.normal(size=(64, 8)).astype("float32")
    y_val = rng.integers(0, 2, size=64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(2)])
    model.compile(
        keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    monitor = OverfittingMonitor(stop=True, verbose=0)
    model.fit(x, y, batch_size=64, epochs=150, validation_data=(x_val, y_val), verbose=0, callbacks=[monitor])

    assert monitor._recorder is None  # epoch logs only: nothing added to the train step
    assert [f.symptom for f in monitor.findings] == ["overfitting"]
    assert monitor.stopped_by is monitor.findings[0]
    assert monitor.record.n_epochs < 150


def test_stop_severity_is_validated_with_the_choices_named():
    import pytest

    from descentkit.callbacks import TrainingMonitor

    with pytest.raises(ValueError, match="stop_severity='fatal'.*'warning', 'critical'"):
        TrainingMonitor(stop_severity="fatal")


@pytest.mark.parametrize("steps_per_execution", [1, 4])
@pytest.mark.parametrize("bad_step", [2, 8, 9, 15])
def test_divergence_at_any_step_stops_training_within_8_steps(data, make_mlp, steps_per_execution, bad_step):
    # A NaN input sample makes the loss and every gradient non-finite at exactly one
    # chosen step, wherever it falls between two looks at the ring buffer.
    x, y = data
    x = x.copy()
    x[(bad_step - 1) * 8] = np.nan
    model = make_mlp()
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy", steps_per_execution=steps_per_execution)
    monitor = TrainingMonitor(verbose=0)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[monitor])

    last_step = int(model.optimizer.iterations.numpy())
    assert _first_nonfinite_step(monitor.record) == bad_step
    # the layers whose gradient the NaN reached (ReLU stops it after the first layer)
    layer_norms = monitor.record.layer_grad_norms[bad_step - 1]
    assert not np.isfinite(layer_norms[0])
    assert monitor.record.nonfinite[bad_step - 1] == np.sum(~np.isfinite(layer_norms)) >= 1
    assert np.all(monitor.record.nonfinite[: bad_step - 1] == 0)
    assert bad_step <= last_step <= bad_step + 8
    assert monitor.stopped_by is not None and monitor.stopped_by.symptom == "divergence"
