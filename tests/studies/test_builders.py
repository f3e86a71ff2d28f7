"""Each model builder builds for its tasks, honours l1/l2/dropout and its options, and runs a forward pass."""

from __future__ import annotations

import numpy as np
import pytest

from descentkit.studies import MODELS, Dataset


def _data(shape: tuple[int, ...], task: str, n: int = 8) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.random((n, *shape), dtype=np.float32)
    y = rng.random(n, dtype=np.float32) if task == "regression" else (np.arange(n) % (5 if task == "multiclass" else 2))
    return Dataset(x, y, x, y, task=task, num_classes=5 if task == "multiclass" else None)


def _forward(model, data: Dataset) -> np.ndarray:
    out = np.asarray(model(data.x_val[:4], training=False))
    assert out.shape == (4, data.output_units)
    assert np.all(np.isfinite(out))
    return out


CASES = [
    ("mlp", (12,), {}),
    ("mlp", (6, 6), {}),
    ("cnn", (28, 28, 1), {}),
    ("cnn", (10, 10), {"filters": [4]}),
    ("conv1d", (30, 2), {}),
    ("conv1d", (30,), {"filters": [8], "kernel_size": 3}),
    ("rnn", (15, 2), {}),
    ("rnn", (15,), {"cell": "gru", "units": [8, 8]}),
    ("rnn", (15, 3), {"cell": "lstm", "units": 4}),
]


@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
@pytest.mark.parametrize(("name", "shape", "options"), CASES, ids=[f"{n}-{'x'.join(map(str, s))}" for n, s, _ in CASES])
def test_builder_runs_a_forward_pass_for_each_task(name, shape, options, task):
    data = _data(shape, task)
    model = MODELS[name]({}, data, **options)
    out = _forward(model, data)
    assert model.layers[-1].get_config()["activation"] == data.output_activation
    if task == "multiclass":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "cnn", "conv1d", "rnn"])
def test_regularization_comes_from_params(name):
    import keras

    shape = {"mlp": (12,), "cnn": (8, 8, 1), "conv1d": (10, 2), "rnn": (10, 2)}[name]
    data = _data(shape, "binary")
    plain = MODELS[name]({}, data)
    regular = MODELS[name]({"l1": 1e-5, "l2": 1e-3, "dropout": 0.25}, data)
    assert not plain.losses and not any(isinstance(layer, keras.layers.Dropout) for layer in plain.layers)
    assert regular.losses, "L1/L2 penalties reach the loss"
    assert any(isinstance(layer, keras.layers.Dropout) and layer.rate == 0.25 for layer in regular.layers)
    _forward(regular, data)


def test_rnn_cell_and_activation_options():
    import keras

    data = _data((12, 2), "regression")
    assert isinstance(MODELS["rnn"]({}, data).layers[0], keras.layers.SimpleRNN)
    model = MODELS["rnn"]({"activation": "relu"}, data, cell="gru", units=[6])
    assert isinstance(model.layers[0], keras.layers.GRU) and model.layers[0].get_config()["activation"] == "relu"
    with pytest.raises(ValueError, match="unknown recurrent cell 'elman'; choose one of simple, gru, lstm"):
        MODELS["rnn"]({}, data, cell="elman")


def test_cnn_and_sequence_models_reject_inputs_of_the_wrong_rank():
    with pytest.raises(ValueError, match=r"the cnn model needs images of shape \(height, width\[, channels\]\)"):
        MODELS["cnn"]({}, _data((12,), "binary"))
    with pytest.raises(ValueError, match=r"a sequence model needs inputs of shape \(time steps, channels\)"):
        MODELS["conv1d"]({}, _data((4, 4, 1), "binary"))


def test_cnn_activation_comes_from_params():
    model = MODELS["cnn"]({"activation": "tanh"}, _data((8, 8, 1), "binary"), filters=[4], dense_units=8)
    conv = next(layer for layer in model.layers if layer.name == "conv_0")
    assert conv.get_config()["activation"] == "tanh"
