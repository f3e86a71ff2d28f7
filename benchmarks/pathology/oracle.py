"""The suite's oracle: a Keras callback that measures a run from Keras' own outputs, and
the verdicts that say, from those measurements alone, which symptoms the run has.

Nothing here reads descentkit's recorder or probe. `OracleRecorder` measures:

- the per-step training loss, recovered from the running mean that Keras logs at
  each batch end (`loss_k = (N_k mean_k - N_{k-1} mean_{k-1}) / n_k`, N the samples
  seen this epoch: Keras weights its loss tracker by batch size);
- at train begin and at every epoch end, on a held batch of 256 training samples:
  the loss (an explicit forward pass), the gradient of the data loss with respect
  to each layer's weights (`tf.GradientTape`, raw: before any clipping), and the
  outputs of every ReLU, tanh and sigmoid layer (a separate `keras.Model` from the
  inputs to those layers' outputs);
- the epoch logs (loss, val_loss, accuracy, val_accuracy);
- when a `TrainingMonitor` is given, the optimizer step at which each symptom
  first appears in `monitor.findings` as a warning or critical finding (looked at
  in every batch-begin, batch-end and epoch-end hook; place the recorder after
  the monitor in `callbacks`), and whether training was stopped early.

`verdicts(measurements)` then decides each symptom with thresholds fixed before
descentkit was run on any recipe (module constants below). Each is what the
symptom means to a person looking at the run, not what a detector computes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

HELD_BATCH = 256

# divergence: the loss is non-finite, or above DIVERGENCE_FACTOR times the smaller of
# its first steps' value (median of the first FIRST_STEPS step losses) and the task's
# chance-level loss, and has not come back under that bound when training ends.
DIVERGENCE_FACTOR = 10.0
FIRST_STEPS = 5
# exploding_gradients: the held-batch gradient norm (all weights) at some epoch end
# is non-finite or above EXPLODING_GROWTH times its value at train begin.
EXPLODING_GROWTH = 100.0
# vanishing_gradients: the median over measurements of the first layer's over the
# last layer's held-batch gradient norm is below VANISHING_RATIO, and the run made
# little progress: its final training loss is less than VANISHING_PROGRESS below the
# smaller of its first steps' loss and the chance-level loss.
VANISHING_RATIO = 1e-3
VANISHING_PROGRESS = 0.25
# overfitting: val_loss ends OVERFIT_RISE above its minimum, reached before the last
# epoch, while the training loss keeps falling: it ends below its value at that
# minimum and rises (by more than OSCILLATING_RISE) in under a third of the epochs
# since (so an oscillating loss is not taken for overfitting); at least 5 epochs.
OVERFIT_RISE = 0.15
OVERFIT_MIN_EPOCHS = 5
# dead_units: at the end, at least DEAD_FRACTION of some ReLU layer's units output 0
# for every sample (and every position) of the held batch.
DEAD_FRACTION = 0.5
# saturated_activations: at the end, at least SATURATED_FRACTION of some tanh or
# sigmoid layer's outputs on the held batch are saturated: |tanh| > 0.99, sigmoid
# below 0.01 or above 0.99. Both are about hidden layers: the output layer is not
# watched (a binary classifier's sigmoid output beyond 0.01/0.99 is its confidence;
# no recipe before the sigmoid-head ones had a ReLU, tanh or sigmoid output layer, so
# this changed no earlier label).
SATURATED_FRACTION = 0.5
TANH_SATURATION = 0.99
SIGMOID_SATURATION = 0.01
# oscillating_loss: over the loss series (per step for full-batch runs, per epoch
# otherwise; at least 6 points), at least OSCILLATING_UPS of the changes are rises of
# more than OSCILLATING_RISE of the previous value, and there is no net progress: the
# median of the last third is more than OSCILLATING_PROGRESS times the first third's.
OSCILLATING_UPS = 1 / 3
OSCILLATING_RISE = 0.05
OSCILLATING_PROGRESS = 0.5
OSCILLATING_MIN_POINTS = 6
# stalled_training: the final training loss is at least STALLED_LOSS times the
# chance-level loss, or (classification) the final validation accuracy is within
# STALLED_ACCURACY of chance accuracy.
STALLED_LOSS = 0.95
STALLED_ACCURACY = 0.05
# healthy: trains well: validation accuracy closes at least HEALTHY_GAP of the gap
# from chance to 1, or (regression) validation MSE explains at least HEALTHY_R2 of
# the validation variance (diabetes, the noisiest table, tops out near 0.5); and no pathology oracle but overfitting fires.
HEALTHY_GAP = 0.5
HEALTHY_R2 = 0.4

SYMPTOMS = ("divergence", "exploding_gradients", "vanishing_gradients", "overfitting", "dead_units",
            "saturated_activations", "oscillating_loss", "stalled_training")
BAD_SEVERITIES = ("warning", "critical")

# Symptoms that a primary symptom brings with it, so a secondary oracle hit among these
# is a consequence, not a second label (a diverged ReLU net ends with dead units; a
# net whose gradients vanish stalls). Any other secondary hit is shown as unrelated.
RELATED: dict[str, frozenset[str]] = {
    "divergence": frozenset(SYMPTOMS) - {"overfitting"},
    # large steps that blow gradients up also saturate tanh units and knock ReLUs off
    "exploding_gradients": frozenset({"oscillating_loss", "stalled_training", "saturated_activations", "dead_units"}),
    "vanishing_gradients": frozenset({"stalled_training"}),
    "overfitting": frozenset(),
    "dead_units": frozenset({"vanishing_gradients", "stalled_training"}),
    "saturated_activations": frozenset({"vanishing_gradients", "stalled_training"}),
    "oscillating_loss": frozenset(),
    "stalled_training": frozenset(),
    "healthy": frozenset({"overfitting"}),
}


def _float(value: Any) -> float:
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return float("nan")


def _finite_or_str(value: float) -> Any:
    return value if math.isfinite(value) else str(value)


def _as_float(value: Any) -> float:
    """A measurement back as a float ("nan" and "inf" are stored as strings for JSON)."""
    return float(value)


def _watched_layers(model: Any) -> list[tuple[Any, str]]:
    """(layer, activation name) for every hidden layer whose output is a ReLU, tanh or sigmoid."""
    import keras

    watched = []
    for layer in model.layers[:-1]:  # hidden layers: the recipes' models are Sequential
        if isinstance(layer, (keras.layers.GRU, keras.layers.LSTM)):
            continue  # gated outputs are not an activation's output
        activation = getattr(layer, "activation", None)
        name = getattr(activation, "__name__", None)
        if name in ("relu", "tanh", "sigmoid"):
            watched.append((layer, name))
    return watched


def make_recorder(held_x: np.ndarray, held_y: np.ndarray, n_train: int, batch_size: int, loss: str,
                  monitor: Any = None) -> Any:
    """An `OracleRecorder` callback (see the module docstring); its `measurements` dict is
    JSON-ready after `fit`. The class is made here so that the verdicts alone import
    without TensorFlow (`--rediagnose`)."""
    import keras
    import tensorflow as tf

    class OracleRecorder(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.held_x = tf.constant(held_x[:HELD_BATCH])
            self.held_y = tf.constant(held_y[:HELD_BATCH])
            self.loss_fn = keras.losses.get(loss)
            self.monitor = monitor
            self.measurements: dict[str, Any] = {"step_loss": [], "steps": [], "epochs": [], "detections": {},
                                                 "stopped_at": None}
            self._prev = (0, 0.0)  # (samples seen this epoch, running mean)

        # ---------------------------------------------------------- measuring
        def _probe(self, step: int, epoch: int | None, logs: dict[str, Any] | None) -> dict[str, Any]:
            model = self.model
            layers = [layer for layer in model.layers if layer.trainable_weights]
            with tf.GradientTape() as tape:
                pred = model(self.held_x, training=False)
                target = self.held_y
                if len(pred.shape) == len(target.shape) + 1 and pred.shape[-1] == 1:  # a sigmoid head
                    target = tf.reshape(target, (-1, 1))
                value = tf.reduce_mean(self.loss_fn(target, pred))
            weights = [w for layer in layers for w in layer.trainable_weights]
            grads = tape.gradient(value, weights)
            norms, i = [], 0
            for layer in layers:
                n = len(layer.trainable_weights)
                sq = sum(float(tf.reduce_sum(tf.square(g))) for g in grads[i:i + n] if g is not None)
                norms.append(math.sqrt(sq) if math.isfinite(sq) else float("nan"))
                i += n
            total = math.sqrt(sum(n * n for n in norms)) if all(math.isfinite(n) for n in norms) else float("nan")
            dead, saturated = {}, {}
            outputs = self._activations(self.held_x)
            for (layer, act), out in zip(self._watched, outputs):
                out = np.asarray(out)
                if act == "relu":
                    per_unit = out.reshape(-1, out.shape[-1])
                    dead[layer.name] = float(np.mean(np.all(per_unit == 0, axis=0)))
                elif act == "tanh":
                    saturated[layer.name] = float(np.mean(np.abs(out) > TANH_SATURATION))
                else:
                    saturated[layer.name] = float(np.mean((out < SIGMOID_SATURATION) | (out > 1 - SIGMOID_SATURATION)))
            row = {
                "epoch": epoch, "step": step, "held_loss": _finite_or_str(_float(value)),
                "grad_norm": _finite_or_str(total), "layer_grad_norms": [_finite_or_str(n) for n in norms],
                "dead_fraction": dead, "saturated_fraction": saturated,
            }
            if logs is not None:
                row["logs"] = {k: _finite_or_str(_float(v)) for k, v in logs.items()
                               if k in ("loss", "val_loss", "accuracy", "val_accuracy")}
            return row

        def _activations(self, x: Any) -> list[Any]:
            if not self._watched:
                return []
            out = self._activation_model(x, training=False)
            return out if isinstance(out, (list, tuple)) else [out]

        def _step(self) -> int:
            return int(self.model.optimizer.iterations.numpy())

        def _look(self) -> None:
            """Dates each symptom's first warning/critical finding by the optimizer step now."""
            if self.monitor is None:
                return
            seen = self.measurements["detections"]
            step = None
            for finding in self.monitor.findings:
                if finding.severity in BAD_SEVERITIES and finding.symptom not in seen:
                    step = self._step() if step is None else step
                    seen[finding.symptom] = {"step": step, "finding_step": finding.step,
                                             "finding_epoch": finding.epoch, "severity": finding.severity}

        # ---------------------------------------------------------- hooks
        def on_train_begin(self, logs: Any = None) -> None:
            self._watched = _watched_layers(self.model)
            if self._watched:
                self._activation_model = keras.Model(self.model.inputs, [layer.output for layer, _ in self._watched])
            self.measurements["initial"] = self._probe(self._step(), None, None)
            self.measurements["watched"] = {layer.name: act for layer, act in self._watched}

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._prev = (0, 0.0)

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            self._look()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            mean = _float((logs or {}).get("loss", float("nan")))
            seen = min((batch + 1) * batch_size, n_train)
            prev_seen, prev_mean = self._prev
            if not math.isfinite(mean):
                loss_k = mean
            else:
                loss_k = (seen * mean - prev_seen * prev_mean) / max(seen - prev_seen, 1)
            self._prev = (seen, mean)
            self.measurements["step_loss"].append(_finite_or_str(loss_k))
            self.measurements["steps"].append(self._step())
            self._look()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self._look()
            self.measurements["epochs"].append(self._probe(self._step(), epoch, logs or {}))
            if self.model.stop_training and self.measurements["stopped_at"] is None:
                self.measurements["stopped_at"] = self._step()

    return OracleRecorder()


# ---------------------------------------------------------------------------- verdicts
def _arr(values: list[Any]) -> np.ndarray:
    return np.array([_as_float(v) for v in values], dtype=np.float64)


def _bad(values: np.ndarray, bound: float) -> np.ndarray:
    return ~np.isfinite(values) | (values > bound)


def verdicts(m: dict[str, Any], chance_loss: float, chance_accuracy: float | None, steps_per_epoch: int,
             val_variance: float | None = None) -> dict[str, Any]:
    """Each symptom's oracle over one run's measurements: {symptom: bool, ...} plus the
    numbers they used (`numbers`) and the divergence onset step (`onset_step`)."""
    step_loss, steps = _arr(m["step_loss"]), np.array(m["steps"], dtype=np.int64)
    epochs = m["epochs"]
    held = _arr([e["held_loss"] for e in epochs])
    held_steps = np.array([e["step"] for e in epochs], dtype=np.int64)
    train = _arr([e["logs"].get("loss", "nan") for e in epochs])
    val = _arr([e["logs"].get("val_loss", "nan") for e in epochs])
    val_acc = [e["logs"].get("val_accuracy") for e in epochs]
    finite_first = step_loss[:FIRST_STEPS][np.isfinite(step_loss[:FIRST_STEPS])]
    first = float(np.median(finite_first)) if len(finite_first) else float("nan")
    reference = min(first, chance_loss) if math.isfinite(first) else chance_loss
    numbers: dict[str, Any] = {"chance_loss": chance_loss, "chance_accuracy": chance_accuracy,
                               "first_steps_loss": _finite_or_str(first)}
    out: dict[str, Any] = {}

    # divergence
    bound = DIVERGENCE_FACTOR * reference
    final_held = held[-1] if len(held) else float("nan")
    diverged = bool(len(held) and _bad(np.array([final_held]), bound)[0])
    onset = None
    if diverged:
        bad_steps = np.flatnonzero(_bad(step_loss, bound))
        for k in bad_steps:
            later = held_steps >= steps[k]
            if _bad(held[later], bound).all():
                onset = int(steps[k])
                break
        if onset is None:
            onset = int(held_steps[-1])
    out["divergence"] = diverged
    out["onset_step"] = onset
    numbers["divergence_bound"] = bound
    numbers["final_held_loss"] = _finite_or_str(float(final_held))
    numbers["max_step_loss"] = _finite_or_str(float(np.max(step_loss))) if len(step_loss) else None

    # exploding gradients
    g0 = _as_float(m["initial"]["grad_norm"])
    g = _arr([e["grad_norm"] for e in epochs])
    finite_g = g[np.isfinite(g)]
    growth = float(np.max(finite_g) / g0) if len(finite_g) and g0 > 0 else float("nan")
    out["exploding_gradients"] = bool(len(g) and (not np.isfinite(g).all() or growth > EXPLODING_GROWTH))
    numbers["nonfinite_gradients"] = bool(len(g) and not np.isfinite(g).all())
    numbers["grad_growth"] = _finite_or_str(growth)

    # vanishing gradients
    ratios = []
    for row in [m["initial"]] + epochs:
        norms = _arr(row["layer_grad_norms"])
        if len(norms) >= 2 and np.isfinite(norms[[0, -1]]).all() and norms[-1] > 0:
            ratios.append(norms[0] / norms[-1])
    ratio = float(np.median(ratios)) if ratios else float("nan")
    final_train = float(train[-1]) if len(train) else float("nan")
    progress = (reference - final_train) / reference if math.isfinite(final_train) else float("-inf")
    out["vanishing_gradients"] = bool(math.isfinite(ratio) and ratio < VANISHING_RATIO and progress < VANISHING_PROGRESS)
    numbers["first_last_ratio"] = _finite_or_str(ratio)
    numbers["progress"] = _finite_or_str(float(progress))

    # overfitting
    overfit = False
    if len(val) >= OVERFIT_MIN_EPOCHS and np.isfinite(val).all() and np.isfinite(train).all():
        best = int(np.argmin(val))
        after = train[best:]
        rises = float(np.mean(after[1:] > (1 + OSCILLATING_RISE) * after[:-1])) if len(after) > 1 else 0.0
        overfit = bool(best < len(val) - 1 and val[-1] > (1 + OVERFIT_RISE) * val[best] and train[-1] < train[best]
                       and rises < 1 / 3)
        numbers["val_rise"] = float(val[-1] / val[best] - 1)
    out["overfitting"] = overfit

    # dead units, saturated activations: at the end
    last = epochs[-1] if epochs else m["initial"]
    dead = max(last["dead_fraction"].values(), default=0.0)
    sat = max(last["saturated_fraction"].values(), default=0.0)
    out["dead_units"] = bool(dead >= DEAD_FRACTION)
    out["saturated_activations"] = bool(sat >= SATURATED_FRACTION)
    numbers["max_dead_fraction"] = dead
    numbers["max_saturated_fraction"] = sat

    # oscillating loss
    series = step_loss if steps_per_epoch == 1 else train
    ups_fraction, osc_progress = float("nan"), float("nan")
    oscillating = False
    if len(series) >= OSCILLATING_MIN_POINTS and np.isfinite(series).all():
        rises = series[1:] > (1 + OSCILLATING_RISE) * series[:-1]
        ups_fraction = float(np.mean(rises))
        third = max(len(series) // 3, 1)
        first_third, last_third = float(np.median(series[:third])), float(np.median(series[-third:]))
        osc_progress = 1 - last_third / first_third if first_third > 0 else float("nan")
        oscillating = bool(ups_fraction >= OSCILLATING_UPS and last_third > OSCILLATING_PROGRESS * first_third)
    out["oscillating_loss"] = oscillating
    numbers["ups_fraction"] = _finite_or_str(ups_fraction)
    numbers["oscillation_progress"] = _finite_or_str(osc_progress)

    # stalled training
    final_acc = _as_float(val_acc[-1]) if val_acc and val_acc[-1] is not None else None
    stalled = not math.isfinite(final_train) or final_train >= STALLED_LOSS * chance_loss
    if chance_accuracy is not None and final_acc is not None:
        stalled = stalled or not math.isfinite(final_acc) or final_acc <= chance_accuracy + STALLED_ACCURACY
    out["stalled_training"] = bool(stalled)
    numbers["final_train_loss"] = _finite_or_str(final_train)
    numbers["final_val_accuracy"] = None if final_acc is None else _finite_or_str(final_acc)

    # healthy: trains well above chance
    final_val = float(val[-1]) if len(val) else float("nan")
    if chance_accuracy is not None:
        trains_well = final_acc is not None and math.isfinite(final_acc) and (
            final_acc >= chance_accuracy + HEALTHY_GAP * (1 - chance_accuracy))
    else:
        r2 = 1 - final_val / val_variance if val_variance and math.isfinite(final_val) else float("-inf")
        numbers["val_r2"] = _finite_or_str(float(r2))
        trains_well = r2 >= HEALTHY_R2
    numbers["final_val_loss"] = _finite_or_str(final_val)
    out["trains_well"] = bool(trains_well)
    out["numbers"] = numbers
    return out


def confirms(label: str, verdict: dict[str, Any]) -> bool:
    """Whether one run's oracles confirm its label: the labelled symptom's oracle fires, or
    for "healthy", the run trains well and no oracle but overfitting fires."""
    if label == "healthy":
        return verdict["trains_well"] and not any(verdict[s] for s in SYMPTOMS if s != "overfitting")
    return bool(verdict[label])


def secondary(label: str, verdict: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The other oracles that fired: (related to the label, unrelated)."""
    hits = [s for s in SYMPTOMS if s != label and verdict[s]]
    related = RELATED.get(label, frozenset())
    return [s for s in hits if s in related], [s for s in hits if s not in related]
