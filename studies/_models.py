"""Built-in model builders: `builder(params, data, **options) -> keras.Model` (uncompiled).

`params` holds the sampled hyperparameters; regularization reaches the model
through it: `l2` and `l1` (kernel penalties) and `dropout` (rate after each
hidden layer). The tuner compiles the model with the sampled SGD variant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from descentkit.studies._dataset import Dataset


def kernel_regularizer(params: Mapping[str, Any]):
    """An L1/L2 kernel regularizer from `params["l1"]`/`params["l2"]`, or None."""
    import keras

    l1 = float(params.get("l1", 0.0) or 0.0)
    l2 = float(params.get("l2", 0.0) or 0.0)
    if l1 == 0.0 and l2 == 0.0:
        return None
    return keras.regularizers.L1L2(l1=l1, l2=l2)


def build_mlp(
    params: Mapping[str, Any],
    data: Dataset,
    units: Sequence[int] = (128, 64),
    activation: str = "relu",
) -> Any:
    """A multilayer perceptron: Dense hidden layers with optional dropout after each."""
    import keras

    units = params.get("units", units)
    if isinstance(units, int):
        units = [units] * int(params.get("layers", 2))
    activation = params.get("activation", activation)
    dropout = float(params.get("dropout", 0.0) or 0.0)
    reg = kernel_regularizer(params)
    layers: list[Any] = [keras.Input(shape=data.input_shape)]
    if len(data.input_shape) > 1:
        layers.append(keras.layers.Flatten())
    for i, width in enumerate(units):
        layers.append(keras.layers.Dense(int(width), activation=activation, kernel_regularizer=reg, name=f"hidden_{i}"))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(data.output_units, activation=data.output_activation, kernel_regularizer=reg, name="output"))
    return keras.Sequential(layers, name="mlp")


MODELS: dict[str, Callable[..., Any]] = {
    "mlp": build_mlp,
}
