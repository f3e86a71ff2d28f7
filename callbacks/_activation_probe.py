"""Dead and saturated units of a model's hidden layers, measured on a fixed probe batch.

`ActivationProbe` builds, once, a `keras.Model` from the model's inputs to the
outputs of its hidden ReLU-family and tanh/sigmoid layers (Dense or Conv layers with
such an activation, and standalone `Activation`/`ReLU` layers; the layers that
produce the model's outputs are left out), then measures per layer:
- the fraction of dead ReLU units: a unit whose output is 0 for every sample of
  the probe batch (and every position, for convolutions);
- the fraction of saturated outputs: |tanh| > 0.99, or sigmoid < 0.01 or > 0.99.
Subclassed models have no graph to cut: the probe is skipped with a logged note.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Default probe size: big enough that a unit silent on every sample is really
# dead, small enough to cost a fraction of one train step per epoch.
PROBE_SAMPLES = 256
# A tanh output beyond +-0.99 has a derivative below 0.02 (1 - 0.99**2): the unit
# barely learns. Sigmoid's 0.01/0.99 is the same criterion for its range.
TANH_SATURATION = 0.99
SIGMOID_SATURATION = 0.01

_RELU_FAMILY = ("relu", "relu6")
_SQUASHING = ("tanh", "sigmoid")


def activation_name(layer: Any) -> str | None:
    """The name of the activation a layer applies to its output, or None."""
    import keras

    if isinstance(layer, keras.layers.ReLU):
        no_slope = not float(getattr(layer, "negative_slope", 0.0) or 0.0)
        no_threshold = not float(getattr(layer, "threshold", 0.0) or 0.0)
        return "relu" if no_slope and no_threshold else None
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", None)


def _output_layers(model: Any) -> set[int]:
    """The ids of the layers that produce the model's outputs (a Sequential's last layer).

    They are left out of the probe: a sigmoid output of a well-trained binary classifier
    is below 0.01 or above 0.99 on most samples (measured here: 92 % of a 97 %-accurate
    MLP's outputs), which is confidence; its cross-entropy gradient (p - y) does not
    vanish there. Dead and saturated units are a matter of the hidden layers."""
    import keras

    layers = list(getattr(model, "layers", []) or [])
    if isinstance(model, keras.Sequential):
        return {id(layers[-1])} if layers else set()
    found = set()
    for tensor in keras.tree.flatten(getattr(model, "outputs", None) or []):
        history = getattr(tensor, "_keras_history", None)
        operation = getattr(history, "operation", None) if history is not None else None
        if operation is not None:
            found.add(id(operation))
    return found


def probe_batch(data: Any, samples: int = PROBE_SAMPLES) -> Any:
    """The inputs `x` of `data` (x, or an (x, y[, w]) tuple), cut to `samples`."""
    import keras

    x = data[0] if isinstance(data, tuple) and len(data) in (2, 3) else data
    return keras.tree.map_structure(lambda a: np.asarray(a)[:samples], x)


class ActivationProbe:
    """Measures dead and saturated unit fractions per layer on a fixed batch.

    Args:
        x: the probe inputs (already cut to size).
    """

    def __init__(self, x: Any) -> None:
        self.x = x
        self._model: Any = None
        self._layers: list[tuple[str, str]] = []  # (layer name, activation name)
        self._built = False
        self._fractions: Any = None
        self._x_tensors: Any = None
        self.skipped_reason: str | None = None

    def _build(self, model: Any) -> None:
        import keras

        self._built = True
        candidates = []
        outputs_of = _output_layers(model)
        for layer in model.layers:
            if id(layer) in outputs_of:
                continue  # an output layer's saturation is the model's confidence, not a symptom
            name = activation_name(layer)
            if name in _RELU_FAMILY or name in _SQUASHING:
                candidates.append((layer, name))
        if not candidates:
            self.skipped_reason = "no ReLU, tanh or sigmoid layer"
            return
        try:
            inputs = model.inputs
            if not inputs:
                raise ValueError("the model has no symbolic inputs")
            outputs = [layer.output for layer, _ in candidates]
            # The probe is called like the model: one tensor, or the model's input structure.
            structure = getattr(model, "_inputs_struct", None)
            self._model = keras.Model(inputs[0] if len(inputs) == 1 else (structure or inputs), outputs)
        except Exception as exc:  # subclassed models have no graph of layers to cut
            self.skipped_reason = f"cannot read hidden activations of {type(model).__name__}: {exc}"
            logger.info("descentkit: activation probe skipped: %s", self.skipped_reason)
            return
        self._layers = [(layer.name, name) for layer, name in candidates]

    def measure(self, model: Any) -> tuple[dict[str, float], dict[str, float]]:
        """Per-layer (dead fraction, saturated fraction) dicts; empty when skipped."""
        if not self._built:
            self._build(model)
        if self._model is None:
            return {}, {}
        if self._fractions is None:
            self._fractions, self._x_tensors = self._compile()
        fractions = self._fractions(self._x_tensors).numpy()
        dead: dict[str, float] = {}
        saturated: dict[str, float] = {}
        for (layer, name), value in zip(self._layers, fractions.tolist()):
            (dead if name in _RELU_FAMILY else saturated)[layer] = float(value)
        return dead, saturated

    def _compile(self) -> tuple[Any, Any]:
        """One compiled function from the probe inputs to every layer's fraction: an
        eager pass and the host-side reductions cost a small model's epoch 2-4 % here."""
        import tensorflow as tf

        probe, kinds = self._model, [name for _, name in self._layers]

        @tf.function(autograph=False)
        def fractions(x: Any) -> Any:
            outputs = probe(x, training=False)
            if len(kinds) == 1:
                outputs = [outputs]
            values = []
            for kind, out in zip(kinds, outputs):
                out = tf.cast(out, tf.float32)
                units = tf.reshape(out, [-1, out.shape[-1] if out.shape.rank > 1 else 1])
                if kind in _RELU_FAMILY:  # dead: zero on every sample (and position)
                    hit = tf.reduce_all(tf.equal(units, 0.0), axis=0)
                elif kind == "tanh":
                    hit = tf.abs(units) > TANH_SATURATION
                else:
                    hit = (units < SIGMOID_SATURATION) | (units > 1 - SIGMOID_SATURATION)
                values.append(tf.reduce_mean(tf.cast(hit, tf.float32)))
            return tf.stack(values)

        return fractions, tf.nest.map_structure(tf.convert_to_tensor, self.x)
