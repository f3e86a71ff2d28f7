"""A fast subset of the labelled pathology suite: one recipe per symptom and two healthy ones.

Each recipe is small data + a small Keras model + an optimizer (the full suite,
benchmarks/pathology_suite.py, holds 8 or more per symptom and 30 or more healthy,
split into a tuning and a validation half). Each is trained on seed 0, twice:

- with an oracle alone: a callback that reads only Keras' own outputs (the logged
  loss, gradients from `tf.GradientTape` on a held batch, activations from a
  separate `keras.Model` over the layers) and says, with its own thresholds,
  whether the labelled pathology is really there. That the oracle confirms the
  label is the first test: the recipe is a valid example of its symptom.
- with `TrainingMonitor(verbose=0)` at its defaults: the second test says it
  raises the label as a warning or critical finding (healthy: nothing but
  overfitting). The label is the oracle's, not the detector's opinion.

The recipes and the oracle are written here, not imported from the benchmark:
tests never import benchmarks. Thresholds match the suite's oracle
(benchmarks/pathology/oracle.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from descentkit.callbacks import TrainingMonitor

pytestmark = pytest.mark.slow

BAD = ("warning", "critical")
HELD = 256

# The oracle's thresholds (benchmarks/pathology/oracle.py says why each).
DIVERGENCE_FACTOR = 10.0  # x the smaller of the first steps' loss and the chance-level loss
EXPLODING_GROWTH = 100.0  # held-batch gradient norm over its value at train begin
VANISHING_RATIO, VANISHING_PROGRESS = 1e-3, 0.25
OVERFIT_RISE = 0.15
DEAD_FRACTION = SATURATED_FRACTION = 0.5
OSCILLATING_RISE, OSCILLATING_UPS, OSCILLATING_PROGRESS = 0.05, 1 / 3, 0.5
STALLED_LOSS, STALLED_ACCURACY = 0.95, 0.05
HEALTHY_GAP, HEALTHY_R2 = 0.5, 0.4


# ---------------------------------------------------------------------------- data
@dataclass
class Data:
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: int | None

    @property
    def chance_loss(self) -> float:
        if self.classes is None:
            return float(np.var(self.y))
        freq = np.bincount(self.y, minlength=self.classes) / len(self.y)
        freq = freq[freq > 0]
        return float(-(freq * np.log(freq)).sum())

    @property
    def chance_accuracy(self) -> float | None:
        if self.classes is None:
            return None
        return float(np.mean(self.y_val == np.bincount(self.y).argmax()))


def _table(x: np.ndarray, y: np.ndarray, classes: int | None, scale: float = 1.0, n_train: int | None = None,
           label_noise: float = 0.0) -> Data:
    order = np.random.default_rng(0).permutation(len(x))
    n_val = int(round(len(x) * 0.25))
    x_tr, y_tr, x_val, y_val = x[order[n_val:]], y[order[n_val:]], x[order[:n_val]], y[order[:n_val]]
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-8
    x_tr, x_val = ((x_tr - mean) / std).astype("float32"), ((x_val - mean) / std).astype("float32")
    if n_train is not None:
        x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    if label_noise:
        rng = np.random.default_rng(1000)
        y_tr = np.where(rng.random(len(y_tr)) < label_noise, rng.integers(0, classes, len(y_tr)), y_tr)
    if classes is None:
        mu, sd = y_tr.mean(), y_tr.std()
        y_tr, y_val = ((y_tr - mu) / sd).astype("float32")[:, None], ((y_val - mu) / sd).astype("float32")[:, None]
    return Data(x_tr * scale, y_tr, x_val * scale, y_val, classes)


def _digits(**options: Any) -> Data:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _table(bunch.data, bunch.target, 10, **options)


def _breast_cancer() -> Data:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return _table(bunch.data, bunch.target, 2)


def _diabetes() -> Data:
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    return _table(bunch.data, bunch.target.astype("float64"), None)


def _regression(scale: float = 1.0) -> Data:
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=1600, n_features=10, n_informative=5, noise=5.0, random_state=0)
    return _table(x, y + 30 * np.tanh(x[:, 0]), None, scale=scale)


# ---------------------------------------------------------------------------- recipes
@dataclass
class Recipe:
    data: Data
    model: keras.Model
    epochs: int
    batch_size: int


def _recipe(data: Data, hidden: list[int], optimizer: keras.optimizers.Optimizer, epochs: int, batch: int,
            activation: str = "relu", **dense: Any) -> Recipe:
    layers: list[Any] = [keras.Input(data.x.shape[1:])]
    layers += [keras.layers.Dense(h, activation=activation, **dense) for h in hidden]
    if data.classes is None:
        layers.append(keras.layers.Dense(1))
        loss, metrics = "mse", None
    else:
        layers.append(keras.layers.Dense(data.classes, activation="softmax"))
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    model = keras.Sequential(layers)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return Recipe(data, model, epochs, batch)


SGD, Adam, RMSprop = keras.optimizers.SGD, keras.optimizers.Adam, keras.optimizers.RMSprop

# label -> recipe (each one of the suite's recipes, cut to the fewest epochs that still show it)
RECIPES: dict[str, Callable[[], Recipe]] = {
    "divergence": lambda: _recipe(_regression(scale=1e3), [32], SGD(0.01), 3, 32),
    "exploding_gradients": lambda: _recipe(_diabetes(), [32], RMSprop(0.3), 30, 1000),
    "vanishing_gradients": lambda: _recipe(
        _digits(), [64] * 12, SGD(0.05), 3, 32, "sigmoid",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.05, seed=0)),
    "overfitting": lambda: _recipe(_digits(n_train=100, label_noise=0.3), [512, 512], SGD(0.05, momentum=0.9), 15, 10),
    "dead_units": lambda: _recipe(_digits(), [128, 128], SGD(0.05), 2, 32,
                                  bias_initializer=keras.initializers.Constant(-5.0)),
    "saturated_activations": lambda: _recipe(_digits(scale=100.0), [128, 128], SGD(0.01), 3, 32, "tanh"),
    "oscillating_loss": lambda: _recipe(_diabetes(), [], SGD(0.3, momentum=0.98), 30, 1000),
    "stalled_training": lambda: _recipe(_digits(), [64, 64], SGD(1e-6), 3, 32),
}
HEALTHY: dict[str, Callable[[], Recipe]] = {
    "digits_mlp_momentum": lambda: _recipe(_digits(), [128, 64], SGD(0.05, momentum=0.9), 6, 32),
    "breast_cancer_mlp_adam": lambda: _recipe(_breast_cancer(), [32, 16], Adam(1e-3), 15, 32),
}


# ---------------------------------------------------------------------------- oracle
class Oracle(keras.callbacks.Callback):
    """Per-step losses from Keras' running mean, and on a held batch at train begin and
    every epoch end: the loss, per-layer gradient norms (`tf.GradientTape`) and the
    dead or saturated fraction of each ReLU/tanh/sigmoid layer's outputs."""

    def __init__(self, data: Data, batch_size: int) -> None:
        super().__init__()
        self.x, self.y = tf.constant(data.x[:HELD]), tf.constant(data.y[:HELD])
        self.n, self.batch_size = len(data.x), batch_size
        self.step_loss: list[float] = []
        self.rows: list[dict[str, Any]] = []
        self._prev = (0, 0.0)

    def _probe(self, logs: dict[str, Any] | None) -> dict[str, Any]:
        layers = [layer for layer in self.model.layers if layer.trainable_weights]
        loss_fn = keras.losses.get(self.model.loss)
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(loss_fn(self.y, self.model(self.x, training=False)))
        grads = tape.gradient(value, [w for layer in layers for w in layer.trainable_weights])
        norms, i = [], 0
        for layer in layers:
            n = len(layer.trainable_weights)
            norms.append(math.sqrt(sum(float(tf.reduce_sum(g * g)) for g in grads[i:i + n])))
            i += n
        dead, saturated = [0.0], [0.0]
        watched = [(layer, layer.activation.__name__) for layer in layers[:-1]
                   if getattr(layer.activation, "__name__", "") in ("relu", "tanh", "sigmoid")]
        if watched:
            outputs = keras.Model(self.model.inputs, [layer.output for layer, _ in watched])(self.x)
            for (_, act), out in zip(watched, outputs if len(watched) > 1 else [outputs]):
                out = np.asarray(out)
                if act == "relu":
                    dead.append(float(np.mean(np.all(out == 0, axis=0))))
                elif act == "tanh":
                    saturated.append(float(np.mean(np.abs(out) > 0.99)))
                else:
                    saturated.append(float(np.mean((out < 0.01) | (out > 0.99))))
        return {"held_loss": float(value), "norms": norms, "grad": math.sqrt(sum(n * n for n in norms)),
                "dead": max(dead), "saturated": max(saturated), "logs": dict(logs or {})}

    def on_train_begin(self, logs: Any = None) -> None:
        self.initial = self._probe(None)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._prev = (0, 0.0)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        mean = float(logs["loss"])
        seen = min((batch + 1) * self.batch_size, self.n)
        prev_seen, prev_mean = self._prev
        self.step_loss.append(mean if not math.isfinite(mean) else
                              (seen * mean - prev_seen * prev_mean) / max(seen - prev_seen, 1))
        self._prev = (seen, mean)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.rows.append(self._probe(logs))


def oracle_symptoms(oracle: Oracle, data: Data, batch_size: int) -> tuple[set[str], bool]:
    """The symptoms the oracle sees, and whether the run trained well (the suite's definitions)."""
    rows = oracle.rows
    step = np.array(oracle.step_loss, dtype=np.float64)
    train = np.array([float(r["logs"].get("loss", np.nan)) for r in rows])
    val = np.array([float(r["logs"].get("val_loss", np.nan)) for r in rows])
    first = step[:5][np.isfinite(step[:5])]
    reference = min(float(np.median(first)), data.chance_loss) if len(first) else data.chance_loss
    seen: set[str] = set()
    bound = DIVERGENCE_FACTOR * reference
    if not math.isfinite(rows[-1]["held_loss"]) or rows[-1]["held_loss"] > bound:
        seen.add("divergence")
    grads = np.array([r["grad"] for r in rows])
    if not np.isfinite(grads).all() or np.nanmax(grads) > EXPLODING_GROWTH * oracle.initial["grad"]:
        seen.add("exploding_gradients")
    ratios = [r["norms"][0] / r["norms"][-1] for r in [oracle.initial] + rows
              if len(r["norms"]) > 1 and math.isfinite(r["norms"][0]) and r["norms"][-1] > 0]
    if ratios and np.median(ratios) < VANISHING_RATIO and (reference - train[-1]) / reference < VANISHING_PROGRESS:
        seen.add("vanishing_gradients")
    if len(val) >= 5 and np.isfinite(val).all():
        best = int(np.argmin(val))
        after = train[best:]
        rises = np.mean(after[1:] > (1 + OSCILLATING_RISE) * after[:-1]) if len(after) > 1 else 0.0
        if best < len(val) - 1 and val[-1] > (1 + OVERFIT_RISE) * val[best] and train[-1] < train[best] and rises < 1 / 3:
            seen.add("overfitting")
    if rows[-1]["dead"] >= DEAD_FRACTION:
        seen.add("dead_units")
    if rows[-1]["saturated"] >= SATURATED_FRACTION:
        seen.add("saturated_activations")
    series = step if math.ceil(len(data.x) / batch_size) == 1 else train
    if len(series) >= 6 and np.isfinite(series).all():
        third = len(series) // 3
        if (np.mean(series[1:] > (1 + OSCILLATING_RISE) * series[:-1]) >= OSCILLATING_UPS
                and np.median(series[-third:]) > OSCILLATING_PROGRESS * np.median(series[:third])):
            seen.add("oscillating_loss")
    accuracy = float(rows[-1]["logs"].get("val_accuracy", np.nan))
    if not math.isfinite(train[-1]) or train[-1] >= STALLED_LOSS * data.chance_loss or (
            data.classes is not None and not accuracy > data.chance_accuracy + STALLED_ACCURACY):
        seen.add("stalled_training")
    if data.classes is None:
        trains_well = bool(1 - val[-1] / np.var(data.y_val) >= HEALTHY_R2)
    else:
        trains_well = bool(accuracy >= data.chance_accuracy + HEALTHY_GAP * (1 - data.chance_accuracy))
    return seen, trains_well


# ---------------------------------------------------------------------------- training
def _fit(make: Callable[[], Recipe], callback: keras.callbacks.Callback | None) -> tuple[Recipe, Any]:
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    recipe = make()
    probe = callback if callback is not None else Oracle(recipe.data, recipe.batch_size)
    d = recipe.data
    recipe.model.fit(d.x, d.y, epochs=recipe.epochs, batch_size=recipe.batch_size,
                     validation_data=(d.x_val, d.y_val), callbacks=[probe], verbose=0)
    return recipe, probe


def _oracle_sees(make: Callable[[], Recipe]) -> tuple[set[str], bool]:
    recipe, oracle = _fit(make, None)
    return oracle_symptoms(oracle, recipe.data, recipe.batch_size)


def _monitor_names(make: Callable[[], Recipe]) -> TrainingMonitor:
    _, monitor = _fit(make, TrainingMonitor(verbose=0))
    return monitor


@pytest.mark.parametrize("symptom", list(RECIPES))
def test_recipe_is_a_valid_example_of_its_symptom(symptom):
    seen, _ = _oracle_sees(RECIPES[symptom])
    assert symptom in seen, f"the oracle does not see {symptom}; it sees {sorted(seen)}"


@pytest.mark.parametrize("name", list(HEALTHY))
def test_healthy_recipe_is_healthy_by_the_oracle(name):
    seen, trains_well = _oracle_sees(HEALTHY[name])
    assert trains_well and not seen - {"overfitting"}, f"trains_well={trains_well}, oracle sees {sorted(seen)}"


@pytest.mark.parametrize("symptom", list(RECIPES))
def test_monitor_at_defaults_raises_the_oracles_label(symptom):
    monitor = _monitor_names(RECIPES[symptom])
    named = {f.symptom for f in monitor.findings if f.severity in BAD}
    assert symptom in named, f"{symptom} not raised; findings: {[str(f) for f in monitor.findings]}"


@pytest.mark.parametrize("name", list(HEALTHY))
def test_monitor_at_defaults_raises_nothing_but_overfitting_on_a_healthy_run(name):
    monitor = _monitor_names(HEALTHY[name])
    unexpected = [str(f) for f in monitor.findings if f.severity in BAD and f.symptom != "overfitting"]
    assert unexpected == []
