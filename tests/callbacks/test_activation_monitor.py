"""The activation probe: dead ReLU units and saturated tanh/sigmoid units."""

from __future__ import annotations

import keras
import numpy as np
import pytest

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


def _binary(functional: bool) -> keras.Model:
    if functional:
        inputs = keras.Input((8,))
        hidden = keras.layers.Dense(32, activation="tanh", name="hidden")(inputs)
        return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(hidden))
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="tanh", name="hidden"),
                             keras.layers.Dense(1, activation="sigmoid", name="out")])


@pytest.mark.parametrize("functional", [False, True], ids=["sequential", "functional"])
def test_a_confident_sigmoid_output_of_a_binary_classifier_is_not_saturation(data, functional):
    # a well-trained binary classifier: most sigmoid outputs end below 0.01 or above
    # 0.99 (its confidence), which the probe must not read as saturated units
    x, y = data
    keras.utils.set_random_seed(0)
    model = _binary(functional)
    model.compile(keras.optimizers.SGD(0.5, momentum=0.9), "binary_crossentropy", metrics=["accuracy"])
    monitor = ActivationMonitor(probe_data=x, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=15, verbose=0, callbacks=[monitor])
    confident = np.mean(np.abs(model.predict(x, verbose=0) - 0.5) > 0.49)

    assert history.history["accuracy"][-1] > 0.95 and confident > 0.5  # the output is confident...
    assert set(monitor.record.saturated_fraction) == {"hidden"}  # ...and not probed
    assert "saturated_activations" not in {f.symptom for f in monitor.findings}
