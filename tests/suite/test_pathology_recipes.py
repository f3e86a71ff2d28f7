"""A fast subset of the pathology suite: one training recipe per symptom, two healthy ones.

Each recipe is small data + a small Keras model + SGD settings that reproduce one
pathology (benchmarks/pathology_suite.py holds three per symptom, three seeds
each, and the recall table); here each runs once, seed 0, for a few epochs, with
`TrainingMonitor(stop_on=(), verbose=0, probe_data=x_val[:256])`, and the test
says the monitor names the symptom (warning or critical), or, for a healthy
recipe, nothing but overfitting. The recipes are defined here, not imported from
the benchmark: tests never import benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pytest

from descentkit.callbacks import TrainingMonitor

pytestmark = pytest.mark.slow

BAD = ("warning", "critical")


@dataclass
class Run:
    model: Any
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    epochs: int
    batch_size: int


def _digits(n_train: int | None = None, scale: float = 1.0, label_noise: float = 0.0):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(bunch.target))
    x, y = bunch.data[order].astype("float32") / 16.0, bunch.target[order].astype("int64")
    x_val, y_val, x, y = x[:450], y[:450], x[450:], y[450:]
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-8
    x, x_val = (x - mean) / std, (x_val - mean) / std
    if n_train is not None:
        x, y = x[:n_train], y[:n_train]
    if label_noise:
        flip = rng.random(len(y)) < label_noise
        y = np.where(flip, rng.integers(0, 10, len(y)), y)
    return x * scale, y, x_val * scale, y_val


def _regression(n: int = 800, scale: float = 1.0):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 10)).astype("float32")
    y = (x @ rng.normal(size=10) + np.sin(x[:, 0]) + 0.1 * rng.normal(size=n)).astype("float32")[:, None]
    return x[200:] * scale, y[200:], x[:200] * scale, y[:200]


def _mlp(x: np.ndarray, hidden: list[int], activation: str = "relu", out: int = 10, **dense: Any) -> keras.Model:
    layers: list[Any] = [keras.Input(x.shape[1:])]
    layers += [keras.layers.Dense(h, activation=activation, **dense) for h in hidden]
    layers.append(keras.layers.Dense(out, activation="softmax" if out > 1 else None))
    return keras.Sequential(layers)


def _sgd(model: keras.Model, lr: float, momentum: float = 0.0, regression: bool = False) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=momentum),
        loss="mse" if regression else "sparse_categorical_crossentropy",
        metrics=None if regression else ["accuracy"],
    )
    return model


def _classifier(data, hidden, lr, epochs, batch=32, momentum=0.0, activation="relu", **dense) -> Run:
    x, y, x_val, y_val = data
    return Run(_sgd(_mlp(x, hidden, activation, **dense), lr, momentum), x, y, x_val, y_val, epochs, batch)


def _regressor(data, hidden, lr, epochs, batch=32, momentum=0.0, activation="relu") -> Run:
    x, y, x_val, y_val = data
    return Run(_sgd(_mlp(x, hidden, activation, out=1), lr, momentum, regression=True), x, y, x_val, y_val, epochs, batch)


# symptom -> a recipe that reproduces it (the benchmark's first-listed or fastest one)
RECIPES: dict[str, Callable[[], Run]] = {
    "divergence": lambda: _regressor(_regression(scale=1e3), [32], lr=0.01, epochs=2),
    "exploding_gradients": lambda: _classifier(
        _digits(), [64] * 8, lr=0.6, momentum=0.9, epochs=3, kernel_initializer="he_normal"
    ),
    "vanishing_gradients": lambda: _classifier(
        _digits(), [64] * 12, lr=0.05, epochs=3, activation="tanh",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=0),
    ),
    "overfitting": lambda: _classifier(
        _digits(n_train=100, label_noise=0.3), [512, 512], lr=0.05, momentum=0.9, epochs=15, batch=20
    ),
    "dead_units": lambda: _classifier(
        _digits(), [128, 128], lr=0.05, epochs=2, bias_initializer=keras.initializers.Constant(-5.0)
    ),
    "saturated_activations": lambda: _classifier(_digits(scale=100.0), [128, 128], lr=0.01, epochs=3, activation="tanh"),
    "oscillating_loss": lambda: _regressor(_regression(), [], lr=0.5, momentum=0.97, epochs=12, batch=1000),
    "stalled_training": lambda: _classifier(_digits(n_train=600), [64, 64], lr=1e-6, epochs=7),
}

HEALTHY: dict[str, Callable[[], Run]] = {
    "digits_mlp": lambda: _classifier(_digits(), [128, 64], lr=0.05, momentum=0.9, epochs=6),
    "deep_tanh_8": lambda: _classifier(_digits(), [64] * 8, lr=0.02, momentum=0.9, epochs=6, activation="tanh"),
}


def _train(recipe: Callable[[], Run]) -> TrainingMonitor:
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    run = recipe()
    monitor = TrainingMonitor(stop_on=(), verbose=0, probe_data=run.x_val[:256])
    run.model.fit(
        run.x, run.y, epochs=run.epochs, batch_size=run.batch_size,
        validation_data=(run.x_val, run.y_val), callbacks=[monitor], verbose=0,
    )
    return monitor


@pytest.mark.parametrize("symptom", list(RECIPES))
def test_recipe_reproduces_its_symptom_and_the_monitor_names_it(symptom):
    monitor = _train(RECIPES[symptom])
    named = {f.symptom for f in monitor.findings if f.severity in BAD}
    assert symptom in named, f"{symptom} not found; findings: {[str(f) for f in monitor.findings]}"
    first = min(f.step for f in monitor.findings if f.symptom == symptom and f.severity in BAD)
    assert first is not None and first >= 1  # dated by an optimizer step


@pytest.mark.parametrize("name", list(HEALTHY))
def test_healthy_recipe_raises_nothing_but_overfitting(name):
    monitor = _train(HEALTHY[name])
    unexpected = [str(f) for f in monitor.findings if f.severity in BAD and f.symptom != "overfitting"]
    assert unexpected == []
