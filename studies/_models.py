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


def _dropout_rate(params: Mapping[str, Any]) -> float:
    return float(params.get("dropout", 0.0) or 0.0)


def _sequence_input(data: Dataset) -> list[Any]:
    """Input layers giving (time steps, channels): a 1-D row becomes one channel."""
    import keras

    shape = data.input_shape
    if len(shape) == 1:
        return [keras.Input(shape=shape), keras.layers.Reshape((shape[0], 1))]
    if len(shape) != 2:
        raise ValueError(f"a sequence model needs inputs of shape (time steps, channels) or (time steps,), got {shape}")
    return [keras.Input(shape=shape)]


def build_cnn(
    params: Mapping[str, Any],
    data: Dataset,
    filters: Sequence[int] = (32, 64),
    kernel_size: int = 3,
    dense_units: int = 128,
    activation: str = "relu",
) -> Any:
    """A small image CNN: per entry of `filters`, Conv2D (same padding) then 2x2 max pooling; then Dense and the output.

    Grey images of shape (height, width) get a channel axis. Dropout (`params["dropout"]`)
    follows the last pooling and the dense layer; L1/L2 apply to every kernel.
    """
    import keras

    filters = params.get("filters", filters)
    activation = params.get("activation", activation)
    dense_units = int(params.get("dense_units", dense_units))
    dropout = _dropout_rate(params)
    reg = kernel_regularizer(params)
    shape = data.input_shape
    if len(shape) not in (2, 3):
        raise ValueError(f"the cnn model needs images of shape (height, width[, channels]), got inputs of shape {shape}")
    layers: list[Any] = [keras.Input(shape=shape)]
    if len(shape) == 2:
        layers.append(keras.layers.Reshape((*shape, 1)))
    for i, width in enumerate(filters):
        layers.append(keras.layers.Conv2D(int(width), int(kernel_size), padding="same", activation=activation,
                                          kernel_regularizer=reg, name=f"conv_{i}"))
        layers.append(keras.layers.MaxPooling2D(2))
    layers.append(keras.layers.Flatten())
    if dropout > 0:
        layers.append(keras.layers.Dropout(dropout))
    if dense_units > 0:
        layers.append(keras.layers.Dense(dense_units, activation=activation, kernel_regularizer=reg, name="hidden"))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(data.output_units, activation=data.output_activation, kernel_regularizer=reg, name="output"))
    return keras.Sequential(layers, name="cnn")


def build_conv1d(
    params: Mapping[str, Any],
    data: Dataset,
    filters: Sequence[int] = (32, 32),
    kernel_size: int = 5,
    activation: str = "relu",
) -> Any:
    """A 1-D CNN for sequences: Conv1D layers (same padding), global average pooling, the output.

    Inputs are (time steps, channels) or (time steps,). Dropout follows each
    convolution; L1/L2 apply to every kernel.
    """
    import keras

    filters = params.get("filters", filters)
    activation = params.get("activation", activation)
    dropout = _dropout_rate(params)
    reg = kernel_regularizer(params)
    layers = _sequence_input(data)
    for i, width in enumerate(filters):
        layers.append(keras.layers.Conv1D(int(width), int(kernel_size), padding="same", activation=activation,
                                          kernel_regularizer=reg, name=f"conv_{i}"))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.GlobalAveragePooling1D())
    layers.append(keras.layers.Dense(data.output_units, activation=data.output_activation, kernel_regularizer=reg, name="output"))
    return keras.Sequential(layers, name="conv1d")


RECURRENT_CELLS = ("simple", "gru", "lstm")


def build_rnn(
    params: Mapping[str, Any],
    data: Dataset,
    units: Sequence[int] | int = (64,),
    cell: str = "simple",
    activation: str = "tanh",
) -> Any:
    """A recurrent net for sequences: stacked SimpleRNN, GRU or LSTM layers, the last state feeds the output.

    `cell: simple` (Elman) is the one whose gradients explode or vanish over long
    sequences under plain SGD; gru and lstm are the gated remedies. L1/L2 apply
    to the input and recurrent kernels; dropout follows each recurrent layer.
    """
    import keras

    units = params.get("units", units)
    if isinstance(units, int):
        units = [units] * int(params.get("layers", 1))
    cell = params.get("cell", cell)
    activation = params.get("activation", activation)
    if cell not in RECURRENT_CELLS:
        raise ValueError(f"unknown recurrent cell {cell!r}; choose one of {', '.join(RECURRENT_CELLS)}")
    layer_class = {"simple": keras.layers.SimpleRNN, "gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[cell]
    dropout = _dropout_rate(params)
    layers = _sequence_input(data)
    for i, width in enumerate(units):
        layers.append(layer_class(
            int(width), activation=activation, return_sequences=i < len(units) - 1,
            kernel_regularizer=kernel_regularizer(params), recurrent_regularizer=kernel_regularizer(params),
            name=f"{cell}_{i}",
        ))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(data.output_units, activation=data.output_activation,
                                     kernel_regularizer=kernel_regularizer(params), name="output"))
    return keras.Sequential(layers, name=f"rnn_{cell}")


MODELS: dict[str, Callable[..., Any]] = {
    "mlp": build_mlp,
    "cnn": build_cnn,
    "conv1d": build_conv1d,
    "rnn": build_rnn,
}
