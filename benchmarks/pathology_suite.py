"""A labelled pathology suite: recipes that reproduce each training symptom, and healthy ones.

Every recipe is small data + a small Keras model + SGD settings (a few seconds on
CPU). Each runs with `TrainingMonitor(stop_on=(), verbose=0, probe_data=x_val[:256])`
for every seed, and the table reports, per symptom:

- recall: the fraction of (recipe, seed) runs of that symptom in which the monitor
  raised that symptom with severity warning or critical;
- reproduced: the runs in which an independent check (`ORACLES`: plain numbers
  read off the run, with thresholds of their own, not the detectors') confirms the
  pathology is really there; each recipe should reproduce in at least 2 of 3 seeds;
- detection delay: the optimizer step of the first warning/critical finding of the
  symptom minus the recipe's onset step (`Recipe.onset_step`: 0, the first step,
  for every recipe here, whose pathology is built in from the start), median and max;
- false positives: the fraction of healthy runs with any warning/critical finding
  other than overfitting (small healthy runs may overfit, and saying so is right).

Healthy recipes include deep tanh nets that train well while their first-layer
gradient is 70x or more smaller than their last layer's (`first/last` column:
last-layer over first-layer gradient norm, the largest per-epoch median).

Usage:
    python benchmarks/pathology_suite.py [--seeds 3] [--symptom NAME|healthy] [--quick]
                                         [--recipe NAME] [--json out.json] [-v]

`--quick` runs one recipe per symptom and two healthy ones on one seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HEALTHY = "healthy"
BAD_SEVERITIES = ("warning", "critical")


# ---------------------------------------------------------------------------- data
@dataclass
class Data:
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: int | None  # None: regression


def _split(x: np.ndarray, y: np.ndarray, seed: int, val_fraction: float = 0.25) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_val = int(len(x) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def _standardize(x: np.ndarray, x_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-8
    return ((x - mean) / std).astype("float32"), ((x_val - mean) / std).astype("float32")


def digits(seed: int, n_train: int | None = None, scale: float = 1.0, standardize: bool = True,
           label_noise: float = 0.0, shuffle_labels: bool = False) -> Data:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = (bunch.data / 16.0).astype("float32"), bunch.target.astype("int64")
    x, y, x_val, y_val = _split(x, y, seed)
    if standardize:
        x, x_val = _standardize(x, x_val)
    rng = np.random.default_rng(seed + 100)
    if n_train is not None:
        x, y = x[:n_train], y[:n_train]
    if label_noise:
        flip = rng.random(len(y)) < label_noise
        y = np.where(flip, rng.integers(0, 10, len(y)), y)
    if shuffle_labels:
        y, y_val = rng.permutation(y), rng.permutation(y_val)
    return Data(x * scale, y, x_val * scale, y_val, 10)


def breast_cancer(seed: int, scale: float = 1.0, n_train: int | None = None, label_noise: float = 0.0) -> Data:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x, y, x_val, y_val = _split(bunch.data.astype("float32"), bunch.target.astype("int64"), seed)
    x, x_val = _standardize(x, x_val)
    if n_train is not None:
        x, y = x[:n_train], y[:n_train]
    if label_noise:
        rng = np.random.default_rng(seed + 100)
        y = np.where(rng.random(len(y)) < label_noise, 1 - y, y)
    return Data(x * scale, y, x_val * scale, y_val, 2)


def classification(seed: int, n: int = 2000, features: int = 20, classes: int = 4, flip_y: float = 0.01,
                   n_train: int | None = None, class_sep: float = 1.0, shuffle_labels: bool = False) -> Data:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=n, n_features=features, n_informative=min(features, 10),
                               n_redundant=0, n_classes=classes, n_clusters_per_class=1, flip_y=flip_y,
                               class_sep=class_sep, random_state=seed)
    x, y, x_val, y_val = _split(x.astype("float32"), y.astype("int64"), seed)
    x, x_val = _standardize(x, x_val)
    if n_train is not None:
        x, y = x[:n_train], y[:n_train]
    if shuffle_labels:
        rng = np.random.default_rng(seed + 100)
        y, y_val = rng.permutation(y), rng.permutation(y_val)
    return Data(x, y, x_val, y_val, classes)


def moons(seed: int, n: int = 1500, noise: float = 0.2) -> Data:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    x, y, x_val, y_val = _split(x.astype("float32"), y.astype("int64"), seed)
    x, x_val = _standardize(x, x_val)
    return Data(x, y, x_val, y_val, 2)


def regression(seed: int, n: int = 1600, features: int = 10, scale: float = 1.0) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    w = rng.normal(size=(features,)).astype("float32")
    y = (x @ w + np.sin(x[:, 0]) + 0.1 * rng.normal(size=n)).astype("float32")[:, None]
    x, y, x_val, y_val = _split(x, y, seed)
    return Data(x * scale, y, x_val * scale, y_val, None)


def adding(seed: int, length: int = 60, n: int = 2000) -> Data:
    """The adding problem (Hochreiter & Schmidhuber 1997): sum the two marked values."""
    rng = np.random.default_rng(seed)
    values = rng.random((n, length))
    marks = np.zeros((n, length))
    for i in range(n):
        marks[i, rng.choice(length, 2, replace=False)] = 1.0
    x = np.stack([values, marks], axis=-1).astype("float32")
    y = (values * marks).sum(axis=1, keepdims=True).astype("float32")
    x, y, x_val, y_val = _split(x, y, seed)
    return Data(x, y, x_val, y_val, None)


# ---------------------------------------------------------------------------- models
def mlp(data: Data, hidden: list[int], activation: str = "relu", kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros", output_initializer: Any = None) -> Any:
    import keras

    layers = [keras.Input(data.x.shape[1:])]
    if len(data.x.shape) > 2:
        layers.append(keras.layers.Flatten())
    for units in hidden:
        layers.append(keras.layers.Dense(units, activation=activation, kernel_initializer=kernel_initializer,
                                         bias_initializer=bias_initializer))
    out_init = output_initializer if output_initializer is not None else "glorot_uniform"
    if data.classes is None:
        layers.append(keras.layers.Dense(1, kernel_initializer=out_init))
    else:
        layers.append(keras.layers.Dense(data.classes, activation="softmax", kernel_initializer=out_init))
    return keras.Sequential(layers)


def compile_sgd(model: Any, data: Data, learning_rate: float, momentum: float = 0.0, nesterov: bool = False,
                **optimizer_kwargs: Any) -> Any:
    import keras

    optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
                                     **optimizer_kwargs)
    if data.classes is None:
        model.compile(optimizer=optimizer, loss="mse")
    else:
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def normal(stddev: float, seed: int) -> Any:
    import keras

    return keras.initializers.RandomNormal(stddev=stddev, seed=seed)


# ---------------------------------------------------------------------------- recipes
@dataclass
class Setup:
    model: Any
    data: Data
    epochs: int
    batch_size: int


@dataclass(frozen=True)
class Recipe:
    """One labelled training recipe: `build(seed)` returns a compiled model and its data."""

    name: str
    symptom: str  # a training symptom, or HEALTHY
    build: Callable[[int], Setup]
    note: str
    onset_step: int = 0  # the optimizer step where the pathology starts (0: from the first step)


def _setup(data: Data, model: Any, lr: float, epochs: int, batch: int, **sgd: Any) -> Setup:
    return Setup(compile_sgd(model, data, lr, **sgd), data, epochs, batch)


RECIPES: list[Recipe] = [
    # --------------------------------------------------------------- divergence
    Recipe("lr_far_too_large", "divergence",
           lambda s: _setup(d := digits(s), mlp(d, [128, 64]), lr=4.0, epochs=6, batch=32),
           "digits MLP 128-64 relu, SGD lr=4 (stable below ~0.5)"),
    Recipe("unnormalized_inputs_x1e3", "divergence",
           lambda s: _setup(d := regression(s, scale=1e3), mlp(d, [32]), lr=0.01, epochs=6, batch=32),
           "regression MLP 32 relu on inputs scaled x1e3, MSE, SGD lr=0.01"),
    Recipe("huge_momentum_no_clipping", "divergence",
           lambda s: _setup(d := regression(s), mlp(d, [64, 64]), lr=0.05, epochs=8, batch=32, momentum=0.995),
           "regression MLP 64-64 relu, SGD lr=0.05 momentum=0.995, no clipping"),
    # --------------------------------------------------------------- exploding gradients
    Recipe("deep_relu_large_init", "exploding_gradients",
           lambda s: _setup(d := digits(s), mlp(d, [64] * 10, kernel_initializer=normal(0.35, s)),
                            lr=0.01, epochs=10, batch=32),
           "digits 10x64 relu MLP, N(0, 0.35) init (2x He), no normalization, SGD lr=0.01"),
    Recipe("rnn_long_sequences_large_recurrent_init", "exploding_gradients",
           lambda s: _rnn_setup(s),
           "adding problem, 60 steps, SimpleRNN(32, relu) with orthogonal recurrent init gain 1.5, SGD lr=0.01"),
    Recipe("lr_slightly_high_deep_net", "exploding_gradients",
           lambda s: _setup(d := digits(s), mlp(d, [64] * 8, kernel_initializer="he_normal"),
                            lr=0.6, epochs=10, batch=32, momentum=0.9),
           # lr=0.3 exploded in only 1 of 3 seeds: in the other two the ReLUs died first
           "digits 8x64 relu MLP, He init, SGD lr=0.6 momentum=0.9 (stable below ~0.05)"),
    # --------------------------------------------------------------- vanishing gradients
    Recipe("deep_sigmoid_small_init", "vanishing_gradients",
           lambda s: _setup(d := digits(s), mlp(d, [64] * 12, "sigmoid", kernel_initializer=normal(0.05, s)),
                            lr=0.05, epochs=10, batch=32),
           "digits 12x64 sigmoid MLP, N(0, 0.05) init, SGD lr=0.05"),
    Recipe("deep_tanh_tiny_init", "vanishing_gradients",
           lambda s: _setup(d := digits(s), mlp(d, [64] * 12, "tanh", kernel_initializer=normal(0.01, s)),
                            lr=0.05, epochs=10, batch=32),
           "digits 12x64 tanh MLP, N(0, 0.01) init, SGD lr=0.05"),
    Recipe("deep_sigmoid_glorot", "vanishing_gradients",
           lambda s: _setup(d := classification(s), mlp(d, [64] * 15, "sigmoid"), lr=0.1, epochs=10, batch=32),
           "make_classification 15x64 sigmoid MLP, Glorot init (sigmoid' <= 0.25 per layer), SGD lr=0.1"),
    # --------------------------------------------------------------- overfitting
    Recipe("large_mlp_100_digits_noisy_labels", "overfitting",
           lambda s: _setup(d := digits(s, n_train=100, label_noise=0.3), mlp(d, [512, 512]),
                            lr=0.05, epochs=30, batch=20, momentum=0.9),
           "100 digits, 30% label noise, MLP 512-512 relu, SGD lr=0.05 momentum=0.9, 30 epochs"),
    Recipe("large_mlp_100_classification_noisy", "overfitting",
           lambda s: _setup(d := classification(s, n_train=100, flip_y=0.3), mlp(d, [512, 512]),
                            lr=0.05, epochs=30, batch=20, momentum=0.9),
           "make_classification 100 samples, flip_y=0.3, MLP 512-512 relu, 30 epochs"),
    Recipe("large_mlp_80_breast_cancer_noisy", "overfitting",
           lambda s: _setup(d := breast_cancer(s, n_train=80, label_noise=0.2), mlp(d, [512, 512]),
                            lr=0.05, epochs=30, batch=16, momentum=0.9),
           "breast_cancer 80 samples, 20% label noise, MLP 512-512 relu, 30 epochs"),
    # --------------------------------------------------------------- dead units
    Recipe("relu_big_negative_bias", "dead_units",
           lambda s: _setup(d := digits(s), mlp(d, [128, 128], bias_initializer=_const(-5.0)),
                            lr=0.05, epochs=8, batch=32),
           "digits MLP 128-128 relu, bias init -5, SGD lr=0.05"),
    Recipe("lr_kills_relus", "dead_units",
           lambda s: _setup(d := digits(s), mlp(d, [64, 64]), lr=3.0, epochs=6, batch=32, clipnorm=1.0),
           "digits MLP 64-64 relu, SGD lr=3 clipnorm=1 (clipping keeps it finite; the big steps knock units off)"),
    Recipe("relu_negative_bias_unnormalized_positive_inputs", "dead_units",
           lambda s: _setup(d := digits(s, standardize=False), mlp(d, [256], bias_initializer=_const(-2.0)),
                            lr=0.02, epochs=8, batch=32),
           "digits pixels in [0,1], MLP 256 relu, bias init -2, SGD lr=0.02"),
    # --------------------------------------------------------------- saturated activations
    Recipe("tanh_inputs_x100", "saturated_activations",
           lambda s: _setup(d := digits(s, scale=100.0), mlp(d, [128, 128], "tanh"), lr=0.01, epochs=10, batch=32),
           "digits standardized then x100, MLP 128-128 tanh, SGD lr=0.01"),
    Recipe("sigmoid_large_init", "saturated_activations",
           lambda s: _setup(d := classification(s), mlp(d, [128, 128], "sigmoid", kernel_initializer=normal(3.0, s)),
                            lr=0.01, epochs=10, batch=32),
           "make_classification MLP 128-128 sigmoid, N(0, 3) init, SGD lr=0.01"),
    Recipe("tanh_large_init_breast_cancer", "saturated_activations",
           lambda s: _setup(d := breast_cancer(s), mlp(d, [128, 128], "tanh", kernel_initializer=normal(4.0, s)),
                            lr=0.01, epochs=12, batch=16),
           "breast_cancer MLP 128-128 tanh, N(0, 4) init, SGD lr=0.01"),
    # --------------------------------------------------------------- oscillating loss
    Recipe("full_batch_linear_high_momentum", "oscillating_loss",
           lambda s: _setup(d := regression(s), mlp(d, []), lr=0.5, epochs=30, batch=2000, momentum=0.97),
           "regression, linear model, full-batch SGD lr=0.5 momentum=0.97 (lr x top curvature ~ 1.2)"),
    Recipe("full_batch_high_momentum", "oscillating_loss",
           lambda s: _setup(d := regression(s), mlp(d, [32], "tanh"), lr=0.1, epochs=30, batch=2000, momentum=0.97),
           "regression MLP 32 tanh, full-batch, SGD lr=0.1 momentum=0.97"),
    Recipe("full_batch_high_momentum_small_tanh", "oscillating_loss",
           lambda s: _setup(d := regression(s), mlp(d, [16], "tanh"), lr=0.2, epochs=30, batch=2000, momentum=0.97),
           "regression MLP 16 tanh, full-batch, SGD lr=0.2 momentum=0.97"),
    # --------------------------------------------------------------- stalled training
    Recipe("lr_1e-6", "stalled_training",
           lambda s: _setup(d := digits(s), mlp(d, [64, 64]), lr=1e-6, epochs=10, batch=32),
           "digits MLP 64-64 relu, SGD lr=1e-6"),
    Recipe("shuffled_labels", "stalled_training",
           lambda s: _setup(d := classification(s, n=4000, shuffle_labels=True), mlp(d, []), lr=0.05, epochs=12,
                            batch=32),
           "make_classification 4000 samples with labels shuffled (nothing to learn), softmax regression "
           "(too small to memorize), SGD lr=0.05"),
    Recipe("zero_init_deep_net", "stalled_training",
           lambda s: _setup(d := digits(s), mlp(d, [64] * 6, "tanh", kernel_initializer="zeros",
                                                output_initializer="zeros"), lr=0.05, epochs=10, batch=32),
           "digits 6x64 tanh MLP, all weights zero-initialised (symmetric units), SGD lr=0.05"),
    # --------------------------------------------------------------- healthy
    Recipe("digits_mlp", HEALTHY,
           lambda s: _setup(d := digits(s), mlp(d, [128, 64]), lr=0.05, epochs=12, batch=32, momentum=0.9),
           "digits MLP 128-64 relu, SGD lr=0.05 momentum=0.9"),
    Recipe("digits_mlp_plain_sgd", HEALTHY,
           lambda s: _setup(d := digits(s), mlp(d, [64]), lr=0.1, epochs=12, batch=32),
           "digits MLP 64 relu, plain SGD lr=0.1"),
    Recipe("breast_cancer_mlp", HEALTHY,
           lambda s: _setup(d := breast_cancer(s), mlp(d, [32, 16]), lr=0.05, epochs=15, batch=16, momentum=0.9),
           "breast_cancer MLP 32-16 relu, SGD lr=0.05 momentum=0.9"),
    Recipe("moons_mlp", HEALTHY,
           lambda s: _setup(d := moons(s), mlp(d, [32, 32]), lr=0.1, epochs=15, batch=32, momentum=0.9),
           "make_moons MLP 32-32 relu, SGD lr=0.1 momentum=0.9"),
    Recipe("classification_mlp_nesterov", HEALTHY,
           lambda s: _setup(d := classification(s), mlp(d, [64, 64]), lr=0.05, epochs=12, batch=32, momentum=0.9,
                            nesterov=True),
           "make_classification (4 classes) MLP 64-64 relu, SGD lr=0.05 Nesterov 0.9"),
    Recipe("regression_mlp", HEALTHY,
           lambda s: _setup(d := regression(s), mlp(d, [64, 32]), lr=0.01, epochs=12, batch=32, momentum=0.9),
           "regression MLP 64-32 relu, MSE, SGD lr=0.01 momentum=0.9"),
    Recipe("digits_shallow_sigmoid", HEALTHY,
           lambda s: _setup(d := digits(s), mlp(d, [64], "sigmoid"), lr=0.5, epochs=12, batch=32),
           "digits MLP 64 sigmoid, SGD lr=0.5"),
    Recipe("deep_tanh_8_digits", HEALTHY,
           lambda s: _setup(d := digits(s), mlp(d, [64] * 8, "tanh"), lr=0.02, epochs=15, batch=32, momentum=0.9),
           "digits 8x64 tanh MLP, Glorot, SGD lr=0.02 momentum=0.9"),
    Recipe("deep_tanh_12_digits", HEALTHY,
           lambda s: _setup(d := digits(s), mlp(d, [64] * 12, "tanh"), lr=0.02, epochs=15, batch=32, momentum=0.9),
           "digits 12x64 tanh MLP, Glorot, SGD lr=0.02 momentum=0.9"),
    Recipe("deep_tanh_10_classification", HEALTHY,
           lambda s: _setup(d := classification(s), mlp(d, [64] * 10, "tanh"), lr=0.02, epochs=15, batch=32,
                            momentum=0.9),
           "make_classification 10x64 tanh MLP, Glorot, SGD lr=0.02 momentum=0.9"),
    Recipe("deep_tanh_10_small_init", HEALTHY,
           lambda s: _setup(d := digits(s), mlp(d, [64] * 10, "tanh", kernel_initializer=_scaled(0.6, s),
                                                bias_initializer=normal(0.5, s + 1)),
                            lr=0.02, epochs=15, batch=32, momentum=0.9),
           # at lr=0.05 seeds 1 and 2 really oscillated (epoch loss 0.41 -> 0.80 -> 0.53,
           # val_accuracy 0.90 -> 0.73): not a healthy run, so the monitor was right
           "digits 10x64 tanh MLP, fan-in init scale 0.6 + N(0, 0.5) biases (ordered phase: gradients shrink "
           "backwards), SGD lr=0.02 momentum=0.9"),
    Recipe("deep_tanh_14_small_init", HEALTHY,
           lambda s: _setup(d := digits(s), mlp(d, [64] * 14, "tanh", kernel_initializer=_scaled(0.7, s),
                                                bias_initializer=normal(0.5, s + 1)),
                            lr=0.01, epochs=20, batch=32, momentum=0.9),
           "digits 14x64 tanh MLP, fan-in init scale 0.7 + N(0, 0.5) biases, SGD lr=0.01 momentum=0.9"),
    Recipe("deep_tanh_narrow_wide", HEALTHY,
           lambda s: _setup(d := digits(s), mlp(d, [256, 128, 64, 64, 32, 32, 32, 32, 32, 32], "tanh"), lr=0.03,
                            epochs=15, batch=32, momentum=0.9),
           "digits 10-layer tanh MLP narrowing 256..32, Glorot, SGD lr=0.03 momentum=0.9"),
]


def _scaled(scale: float, seed: int) -> Any:
    import keras

    return keras.initializers.VarianceScaling(scale=scale, mode="fan_in", distribution="truncated_normal", seed=seed)


def _const(value: float) -> Any:
    import keras

    return keras.initializers.Constant(value)


def _rnn_setup(seed: int) -> Setup:
    import keras

    data = adding(seed)
    model = keras.Sequential([
        keras.Input(data.x.shape[1:]),
        keras.layers.SimpleRNN(32, activation="relu",
                               recurrent_initializer=keras.initializers.Orthogonal(gain=1.5, seed=seed)),
        keras.layers.Dense(1),
    ])
    return Setup(compile_sgd(model, data, 0.01), data, 8, 32)


# ---------------------------------------------------------------------------- oracles
def _epoch_loss(record: Any) -> np.ndarray:
    return np.asarray(record.history.get("loss", []), dtype=np.float64)


def _steps(record: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(record.step_loss), np.asarray(record.grad_norm)


def _first_losses(record: Any) -> float:
    loss, _ = _steps(record)
    loss = loss[np.isfinite(loss)]
    return float(np.median(loss[:10])) if len(loss) else float("nan")


def _val_metric(run: dict[str, Any]) -> float:
    return run["final_val_accuracy"] if run["final_val_accuracy"] is not None else float("nan")


def _chance(run: dict[str, Any]) -> float:
    return run["chance_accuracy"] or 0.0


# Independent checks that the pathology really happened, on raw numbers of the run
# (deliberately other signals or thresholds than the detectors use).
ORACLES: dict[str, Callable[[dict[str, Any], Any], bool]] = {
    # The loss became non-finite, or ended above where it started.
    "divergence": lambda run, rec: bool(
        not np.isfinite(_epoch_loss(rec)).all() or np.nanmax(_epoch_loss(rec)) > 2 * _first_losses(rec)),
    # Some gradient norm exceeded 50x the median norm of the first 10 steps, or was non-finite.
    "exploding_gradients": lambda run, rec: bool(
        (np.asarray(rec.nonfinite) > 0).any() or not np.isfinite(rec.grad_norm[np.isfinite(rec.grad_norm)]).all()
        or np.nanmax(rec.grad_norm) > 50 * np.nanmedian(rec.grad_norm[:10])
        or not np.isfinite(rec.grad_norm).all()),
    # First-layer gradient under 1e-3 of the last layer's and the run stayed near chance.
    "vanishing_gradients": lambda run, rec: bool(
        run["first_last_ratio"] is not None and run["first_last_ratio"] > 1e3
        and _val_metric(run) < _chance(run) + 0.25),
    # val_loss ends 10 % above its minimum while the training loss ends below its value there.
    "overfitting": lambda run, rec: bool(_overfit(rec)),
    # Some layer ends with at least 40 % of its units dead.
    "dead_units": lambda run, rec: bool(
        max((v[-1] for v in rec.dead_fraction.values() if len(v)), default=0.0) >= 0.4),
    # Some layer had at least 40 % of its outputs saturated in the last epoch.
    "saturated_activations": lambda run, rec: bool(
        max((v[-1] for v in rec.saturated_fraction.values() if len(v)), default=0.0) >= 0.4),
    # The epoch loss went up in at least a third of the epochs.
    "oscillating_loss": lambda run, rec: bool(np.mean(np.diff(_epoch_loss(rec)) > 0) >= 1 / 3),
    # Validation accuracy ended within 10 points of chance.
    "stalled_training": lambda run, rec: bool(_val_metric(run) < _chance(run) + 0.1),
}


def _overfit(record: Any) -> bool:
    val = np.asarray(record.history.get("val_loss", []), dtype=np.float64)
    loss = _epoch_loss(record)
    if len(val) < 3 or not np.isfinite(val).any():
        return False
    best = int(np.nanargmin(val))
    return bool(val[-1] > 1.1 * val[best] and loss[-1] < loss[best])


# ---------------------------------------------------------------------------- running
# Where `--save-records` pickles each run's `TrainingRecord` (to re-diagnose offline).
RECORDS_DIR: str | None = None


def run_recipe(recipe: Recipe, seed: int) -> dict[str, Any]:
    import keras

    from descentkit.callbacks import TrainingMonitor

    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    setup = recipe.build(seed)
    data = setup.data
    monitor = TrainingMonitor(stop_on=(), verbose=0, probe_data=data.x_val[:256])
    start = time.perf_counter()
    setup.model.fit(data.x, data.y, epochs=setup.epochs, batch_size=setup.batch_size,
                    validation_data=(data.x_val, data.y_val), callbacks=[monitor], verbose=0)
    seconds = time.perf_counter() - start
    record = monitor.record
    bad = [f for f in monitor.findings if f.severity in BAD_SEVERITIES]
    val_acc = record.history.get("val_accuracy")
    run: dict[str, Any] = {
        "recipe": recipe.name,
        "symptom": recipe.symptom,
        "seed": seed,
        "seconds": seconds,
        "steps": int(record.steps[-1]) if len(record.steps) else 0,
        "findings": [(f.symptom, f.severity, f.epoch, f.step) for f in monitor.findings],
        "bad_symptoms": sorted({f.symptom for f in bad}),
        "final_loss": float(record.history["loss"][-1]),
        "final_val_accuracy": float(val_acc[-1]) if val_acc else None,
        "chance_accuracy": None if data.classes is None else float(np.bincount(data.y_val).max() / len(data.y_val)),
        "first_last_ratio": first_last_ratio(record),
    }
    steps = [f.step for f in bad if f.symptom == recipe.symptom and f.step is not None]
    run["detected"] = recipe.symptom in run["bad_symptoms"]
    run["delay"] = (min(steps) - recipe.onset_step) if steps else None
    run["max_dead"] = max((v[-1] for v in record.dead_fraction.values() if len(v)), default=None)
    run["max_saturated"] = max((v[-1] for v in record.saturated_fraction.values() if len(v)), default=None)
    run["probe_skipped"] = monitor._probe.skipped_reason if monitor._probe is not None else "no probe"
    if RECORDS_DIR:
        import pickle

        with open(os.path.join(RECORDS_DIR, f"{recipe.name}-{seed}.pkl"), "wb") as fh:
            pickle.dump({"run": dict(run), "record": record, "onset_step": recipe.onset_step}, fh)
    run["reproduced"] = ORACLES[recipe.symptom](run, record) if recipe.symptom in ORACLES else None
    return run


def rediagnose(folder: str) -> list[dict[str, Any]]:
    """The runs pickled by `--save-records`, diagnosed again by the current detectors
    (preflight findings kept as recorded): tunes detectors without retraining."""
    import glob
    import pickle

    from descentkit.diagnostics import PREFLIGHT_SYMPTOMS, diagnose

    runs = []
    for path in sorted(glob.glob(os.path.join(folder, "*.pkl"))):
        with open(path, "rb") as fh:
            saved = pickle.load(fh)
        run, record = saved["run"], saved["record"]
        findings = [f for f in run["findings"] if f[0] in PREFLIGHT_SYMPTOMS]
        findings += [(f.symptom, f.severity, f.epoch, f.step) for f in diagnose(record)]
        run["findings"] = findings
        run["bad_symptoms"] = sorted({f[0] for f in findings if f[1] in BAD_SEVERITIES})
        steps = [f[3] for f in findings if f[0] == run["symptom"] and f[1] in BAD_SEVERITIES and f[3] is not None]
        run["detected"] = run["symptom"] in run["bad_symptoms"]
        run["delay"] = (min(steps) - saved["onset_step"]) if steps else None
        run["reproduced"] = ORACLES[run["symptom"]](run, record) if run["symptom"] in ORACLES else None
        runs.append(run)
    order = {r.name: i for i, r in enumerate(RECIPES)}
    return sorted(runs, key=lambda r: (order.get(r["recipe"], len(order)), r["seed"]))


def first_last_ratio(record: Any) -> float | None:
    """Last-layer over first-layer gradient norm: the largest per-epoch median (the
    epoch where the first layer is most starved, which the vanishing detector judges)."""
    from descentkit.diagnostics._signals import epoch_segments, per_epoch

    norms = np.asarray(record.layer_grad_norms)
    if norms.ndim != 2 or norms.shape[1] < 2 or not len(norms):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = per_epoch(norms[:, -1] / norms[:, 0], epoch_segments(record))
    ratio = ratio[np.isfinite(ratio)]
    return float(ratio.max()) if len(ratio) else None


def summarize(runs: list[dict[str, Any]]) -> str:
    lines = []
    symptoms = [s for s in dict.fromkeys(r["symptom"] for r in runs) if s != HEALTHY]
    header = f"{'symptom':24} {'recall':>12} {'reproduced':>11} {'delay med':>10} {'delay max':>10}"
    lines.append(header)
    lines.append("-" * len(header))
    for symptom in symptoms:
        mine = [r for r in runs if r["symptom"] == symptom]
        hits = sum(r["detected"] for r in mine)
        repro = sum(bool(r["reproduced"]) for r in mine)
        delays = [r["delay"] for r in mine if r["delay"] is not None]
        med = f"{np.median(delays):.0f}" if delays else "-"
        mx = f"{max(delays)}" if delays else "-"
        lines.append(f"{symptom:24} {hits:>3}/{len(mine):<3} {hits / len(mine):4.2f} {repro:>5}/{len(mine):<5} "
                     f"{med:>10} {mx:>10}")
    healthy = [r for r in runs if r["symptom"] == HEALTHY]
    if healthy:
        fp = [r for r in healthy if set(r["bad_symptoms"]) - {"overfitting"}]
        lines.append("-" * len(header))
        lines.append(f"healthy false positives (any warning/critical but overfitting): {len(fp)}/{len(healthy)} "
                     f"= {len(fp) / len(healthy):.1%}")
        for r in fp:
            lines.append(f"  FP {r['recipe']} seed {r['seed']}: {r['bad_symptoms']}")
    lines.append("")
    lines.append("delay = optimizer step of the first warning/critical finding of the symptom minus the recipe's "
                 "onset step (0: the pathology is there from the first step).")
    return "\n".join(lines)


def per_recipe(runs: list[dict[str, Any]]) -> str:
    lines = [f"{'recipe':48} {'symptom':22} {'found':>6} {'repro':>6} {'val_acc':>8} {'first/last':>10} {'s/run':>6}"]
    for name in dict.fromkeys(r["recipe"] for r in runs):
        mine = [r for r in runs if r["recipe"] == name]
        accs = [r["final_val_accuracy"] for r in mine if r["final_val_accuracy"] is not None]
        ratios = [r["first_last_ratio"] for r in mine if r["first_last_ratio"] is not None]
        lines.append(
            f"{name:48} {mine[0]['symptom']:22} {sum(r['detected'] for r in mine) if mine[0]['symptom'] != HEALTHY else '-':>6} "
            f"{sum(bool(r['reproduced']) for r in mine) if mine[0]['symptom'] != HEALTHY else '-':>6} "
            f"{np.mean(accs) if accs else float('nan'):8.3f} {np.median(ratios) if ratios else float('nan'):10.1f} "
            f"{np.mean([r['seconds'] for r in mine]):6.1f}"
        )
    return "\n".join(lines)


QUICK = ("lr_far_too_large", "lr_slightly_high_deep_net", "deep_sigmoid_small_init", "large_mlp_100_digits_noisy_labels",
         "relu_big_negative_bias", "tanh_inputs_x100", "full_batch_linear_high_momentum", "lr_1e-6",
         "digits_mlp", "deep_tanh_12_digits")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per recipe (default 3)")
    parser.add_argument("--symptom", help="only the recipes of this symptom (or 'healthy')")
    parser.add_argument("--recipe", help="only this recipe")
    parser.add_argument("--quick", action="store_true", help="one recipe per symptom and two healthy, one seed")
    parser.add_argument("--json", help="write every run's numbers to this file")
    parser.add_argument("--save-records", help="pickle each run's TrainingRecord into this folder")
    parser.add_argument("--rediagnose", help="re-diagnose the records saved in this folder instead of training")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each run as it ends")
    args = parser.parse_args(argv)

    global RECORDS_DIR
    if args.rediagnose:
        runs = rediagnose(args.rediagnose)
        if args.verbose:
            for run in runs:
                print(f"{run['recipe']:48} seed {run['seed']} found={run['detected']!s:5} {run['findings']}")
        print(per_recipe(runs))
        print()
        print(summarize(runs))
        return 0
    if args.save_records:
        os.makedirs(args.save_records, exist_ok=True)
        RECORDS_DIR = args.save_records
    recipes = RECIPES
    if args.symptom:
        recipes = [r for r in recipes if r.symptom == args.symptom]
    if args.recipe:
        recipes = [r for r in recipes if r.name == args.recipe]
    seeds = args.seeds
    if args.quick:
        recipes = [r for r in recipes if r.name in QUICK]
        seeds = 1
    if not recipes:
        print(f"no recipe matches --symptom={args.symptom!r} --recipe={args.recipe!r}", file=sys.stderr)
        return 2
    runs = []
    started = time.perf_counter()
    for recipe in recipes:
        for seed in range(seeds):
            run = run_recipe(recipe, seed)
            runs.append(run)
            if args.verbose:
                ratio = run["first_last_ratio"]
                print(f"{recipe.name:48} seed {seed}  found={run['detected']!s:5} repro={run['reproduced']!s:5} "
                      f"delay={run['delay']}  val_acc={run['final_val_accuracy']}  "
                      f"first/last={'-' if ratio is None else f'{ratio:.1f}'}  {run['seconds']:.1f}s  "
                      f"dead={run['max_dead']} sat={run['max_saturated']} {run['findings']}", flush=True)
    print()
    print(per_recipe(runs))
    print()
    print(summarize(runs))
    print(f"\n{len(runs)} runs in {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(runs, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
