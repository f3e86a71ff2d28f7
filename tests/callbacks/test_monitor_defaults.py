"""`TrainingMonitor()` with no arguments: it samples fit's own data for the activation
probe, the chance level and the preflight checks, stops hopeless runs, and gives one
advice per root cause. The user cases are a wine-data model as a new user writes it."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from descentkit.callbacks import TrainingMonitor
from descentkit.diagnostics import CAUSES, DEAD_UNITS, DIVERGENCE, chance_loss, top_finding

SERIOUS = ("warning", "critical")


def _fit(model, x, y, monitor, **kwargs):
    model.compile(kwargs.pop("optimizer", keras.optimizers.SGD(0.05)), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model.fit(x, y, verbose=0, callbacks=[monitor], **{"batch_size": 32, "epochs": 2, **kwargs})


def test_without_probe_data_it_probes_a_sample_of_the_validation_data(data, make_mlp):
    x, y = data
    monitor = TrainingMonitor(verbose=0)
    _fit(make_mlp(), x[:192], y[:192], monitor, validation_data=(x[192:], y[192:]))

    assert monitor.probe_source == "validation data"
    assert len(monitor.record.dead_fraction) == 2  # both hidden ReLU layers, every epoch
    assert all(len(v) == 2 for v in monitor.record.dead_fraction.values())
    assert monitor.record.chance_loss == pytest.approx(chance_loss("sparse_categorical_crossentropy", y=y[192:]))


def test_without_validation_data_it_probes_the_first_training_samples(data, make_mlp):
    x, y = data
    monitor = TrainingMonitor(verbose=0)
    _fit(make_mlp(), x, y, monitor)
    assert monitor.probe_source == "training data"
    assert monitor.record.chance_loss == pytest.approx(chance_loss("sparse_categorical_crossentropy", y=y))
    assert monitor.record.dead_fraction


def test_a_dataset_is_sampled_too(data, make_mlp):
    x, y = data
    monitor = TrainingMonitor(verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    make = make_mlp()
    make.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    make.fit(dataset, epochs=1, verbose=0, callbacks=[monitor])
    assert monitor.probe_source == "training data" and monitor.record.dead_fraction


def test_a_python_generator_is_never_consumed_by_the_probe(data, make_mlp):
    x, y = data
    served = []

    def batches():
        for i in range(8):
            served.append(i)
            yield x[i * 32 : (i + 1) * 32], y[i * 32 : (i + 1) * 32]

    monitor = TrainingMonitor(verbose=0)
    model = make_mlp()
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    model.fit(batches(), epochs=1, steps_per_epoch=8, verbose=0, callbacks=[monitor])
    assert served == list(range(8))  # fit trained on every batch, none went to the probe
    assert monitor.probe_source is None and monitor.record.dead_fraction == {}
    # without labels, the chance level of a 2-class softmax is ln 2
    assert monitor.record.chance_loss == pytest.approx(math.log(2))


# ----------------------------------------------------------------- the wine user cases
@pytest.fixture
def wine():
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order].astype("float32"), y[order]  # unscaled, as a new user passes them
    keras.utils.set_random_seed(0)
    return x[40:], y[40:], x[:40], y[:40]


def _wine_model(activation):
    return keras.Sequential([
        keras.Input((13,)),
        keras.layers.Dense(32, activation=activation),
        keras.layers.Dense(32, activation=activation),
        keras.layers.Dense(3, activation="softmax"),
    ])


@pytest.mark.parametrize(("activation", "root"), [("relu", DEAD_UNITS), ("tanh", DIVERGENCE)])
def test_a_huge_rate_on_unscaled_wine_is_found_and_stopped_in_the_first_epoch(wine, activation, root, capsys):
    x, y, x_val, y_val = wine
    monitor = TrainingMonitor()
    history = _fit(_wine_model(activation), x, y, monitor, optimizer=keras.optimizers.SGD(5.0, momentum=0.9),
                   epochs=30, batch_size=16, validation_data=(x_val, y_val))

    # Finite losses all along. relu: one step of 2.6e10, then every unit of the first
    # layer dead (the loss back near 2): dead_units, critical. tanh: 25-300x the chance
    # level for good: divergence. Either stops the run in epoch 1 by default.
    assert np.isfinite(history.history["loss"]).all()
    assert monitor.stopped_by is not None and monitor.stopped_by.symptom == root
    assert monitor.stopped_by.severity == "critical"
    assert len(history.history["loss"]) == 1
    assert top_finding(monitor.findings).symptom == root
    assert "unnormalized_inputs" in {f.symptom for f in monitor.findings}
    # one root, one advice: what the root explains points to it, and no finding says "raise"
    for f in monitor.findings:
        if f.severity in SERIOUS and f.symptom in CAUSES.get(root, ()):
            assert f.evidence["caused_by"] == root, f
        if f.epoch is not None:
            assert "raise the learning rate" not in f.advice.lower(), f
    assert f"Epoch 1: TrainingMonitor found {root} (critical)" in capsys.readouterr().out


def test_all_dead_relus_stop_a_run_under_the_default_stop_on(wine):
    x, y, x_val, y_val = wine
    mean, std = x.mean(axis=0), x.std(axis=0)
    x, x_val = (x - mean) / std, (x_val - mean) / std
    model = _wine_model("relu")
    first = model.layers[0]
    first.set_weights([first.get_weights()[0], np.full(32, -50.0, dtype="float32")])  # every unit dead
    monitor = TrainingMonitor(verbose=0)
    history = _fit(model, x, y, monitor, epochs=10, validation_data=(x_val, y_val))
    assert monitor.stopped_by.symptom == DEAD_UNITS and monitor.stopped_by.severity == "critical"
    assert len(history.history["loss"]) == 1


def test_messages_date_a_finding_when_seen_and_since_when(wine, capsys):
    x, y, x_val, y_val = wine
    mean, std = x.mean(axis=0), x.std(axis=0)
    x, x_val = (x - mean) / std, (x_val - mean) / std
    # 16 samples, a wide net, no regularization: it overfits within a few epochs
    monitor = TrainingMonitor(stop_on=())
    _fit(keras.Sequential([keras.Input((13,)), keras.layers.Dense(256, activation="relu"),
                           keras.layers.Dense(3, activation="softmax")]),
         x[:16], y[:16], monitor, optimizer=keras.optimizers.SGD(0.2, momentum=0.9), epochs=40, batch_size=4,
         validation_data=(x_val, y_val))
    overfit = [f for f in monitor.findings if f.symptom == "overfitting"]
    assert overfit, monitor.summary()
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "found overfitting" in line)
    seen = int(line.split(":")[0].split()[1])  # "Epoch N: ..." is when it was seen
    assert seen >= overfit[0].epoch
    if seen != overfit[0].epoch:
        assert f"since epoch {overfit[0].epoch}" in line
    assert f"by epoch {seen}" in line  # the message counts epochs the same way
