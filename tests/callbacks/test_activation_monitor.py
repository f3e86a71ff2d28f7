"""The activation probe: dead ReLU units and saturated tanh/sigmoid units."""

from __future__ import annotations

import keras
import numpy as np

from descentkit.callbacks import ActivationMonitor


def _net(activation: str) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation=activation, name="hidden"),
            keras.layers.Dense(2, activation="softmax", name="out"),
        ]
    )


def test_a_relu_layer_with_a_big_negative_bias_is_flagged_dead(data):
    x, y = data
    model = _net("relu")
    kernel, bias = model.get_layer("hidden").get_weights()
    model.get_layer("hidden").set_weights([kernel, bias - 100.0])
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    monitor = ActivationMonitor(probe_data=x, verbose=0)
    model.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[monitor])

    assert monitor.record.dead_fraction == {"hidden": [1.0, 1.0]}
    assert {f.symptom for f in monitor.findings} == {"dead_units"}
    first = monitor.findings[0]
    assert first.epoch == 1 and first.severity in ("warning", "critical")
    assert first.evidence["layer"] == "hidden"


def test_tanh_on_huge_inputs_is_flagged_saturated(data):
    x, y = data
    model = _net("tanh")
    # a tiny rate: the saturated net cannot improve, which the detector requires
    model.compile(keras.optimizers.SGD(1e-6), "sparse_categorical_crossentropy")
    monitor = ActivationMonitor(validation_data=(x * 1e3, y), verbose=0)
    model.fit(x * 1e3, y, batch_size=32, epochs=3, verbose=0, callbacks=[monitor])

    assert min(monitor.record.saturated_fraction["hidden"]) > 0.9
    assert [f.symptom for f in monitor.findings] == ["saturated_activations"]
    assert monitor.findings[0].evidence["layer"] == "hidden"


def test_healthy_activations_are_measured_and_not_flagged(data):
    x, y = data
    model = keras.Model(*_functional_io())
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    monitor = ActivationMonitor(probe_data=x, activation_freq=2, verbose=0)
    model.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[monitor])

    record = monitor.record
    # probed at the 2nd epoch only; the ReLU layer and the standalone sigmoid Activation
    assert np.isnan(record.dead_fraction["relu"][0]) and record.dead_fraction["relu"][1] < 0.5
    assert record.saturated_fraction["squash"][1] < 0.5
    assert monitor.findings == []


def _functional_io():
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, name="linear")(inputs)
    hidden = keras.layers.ReLU(name="relu")(hidden)
    hidden = keras.layers.Dense(8, name="linear_2")(hidden)
    hidden = keras.layers.Activation("sigmoid", name="squash")(hidden)
    return inputs, keras.layers.Dense(2, activation="softmax")(hidden)
