"""Model builders and optimizers for the suite's recipes: MLPs (deep tanh/sigmoid ones
included), CNNs, recurrent nets, and every optimizer a user's `fit` brings."""

from __future__ import annotations

from typing import Any

from pathology.data import Data


def _head(data: Data, output_initializer: Any = "glorot_uniform", output_bias: Any = "zeros",
          sigmoid: bool = False) -> Any:
    """The output layer: linear for regression, softmax over the classes, or (`sigmoid`,
    two classes) one sigmoid unit trained with binary cross-entropy, as most users'
    binary classifiers are."""
    import keras

    if sigmoid:
        if data.classes != 2:
            raise ValueError(f"a sigmoid head needs two classes, not {data.classes}")
        return keras.layers.Dense(1, activation="sigmoid", kernel_initializer=output_initializer,
                                  bias_initializer=output_bias, name="out")
    if data.classes is None:
        return keras.layers.Dense(data.y.shape[-1], kernel_initializer=output_initializer,
                                  bias_initializer=output_bias, name="out")
    return keras.layers.Dense(data.classes, activation="softmax", kernel_initializer=output_initializer,
                              bias_initializer=output_bias, name="out")


def mlp(data: Data, hidden: list[int], activation: str = "relu", kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros", dropout: float = 0.0, l2: float = 0.0,
        output_initializer: Any = "glorot_uniform", output_bias: Any = "zeros", sigmoid_head: bool = False) -> Any:
    import keras

    layers: list[Any] = [keras.Input(data.x.shape[1:])]
    if data.x.ndim > 2:
        layers.append(keras.layers.Flatten())
    for units in hidden:
        layers.append(keras.layers.Dense(units, activation=activation, kernel_initializer=kernel_initializer,
                                         bias_initializer=bias_initializer,
                                         kernel_regularizer=keras.regularizers.L2(l2) if l2 else None))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(_head(data, output_initializer, output_bias, sigmoid=sigmoid_head))
    return keras.Sequential(layers)


def cnn(data: Data, filters: tuple[int, ...] = (16, 32), dense: int = 64, activation: str = "relu",
        kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros", pool: bool = True) -> Any:
    """Conv2D blocks (3x3, same padding, 2x2 max-pool after each when `pool`), then one dense layer."""
    import keras

    layers: list[Any] = [keras.Input(data.x.shape[1:])]
    for f in filters:
        layers.append(keras.layers.Conv2D(f, 3, padding="same", activation=activation,
                                          kernel_initializer=kernel_initializer, bias_initializer=bias_initializer))
        if pool:
            layers.append(keras.layers.MaxPooling2D(2))
    layers.append(keras.layers.Flatten())
    layers.append(keras.layers.Dense(dense, activation=activation, kernel_initializer=kernel_initializer,
                                     bias_initializer=bias_initializer))
    layers.append(_head(data))
    return keras.Sequential(layers)


def rnn(data: Data, kind: str = "gru", units: int = 32, activation: str = "tanh",
        recurrent_initializer: Any = "orthogonal", kernel_initializer: Any = "glorot_uniform",
        dense: int | None = None) -> Any:
    """One recurrent layer (SimpleRNN, GRU or LSTM) over the sequence, then the head."""
    import keras

    cls = {"simple": keras.layers.SimpleRNN, "gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[kind]
    layers: list[Any] = [keras.Input(data.x.shape[1:]),
                         cls(units, activation=activation, recurrent_initializer=recurrent_initializer,
                             kernel_initializer=kernel_initializer)]
    if dense:
        layers.append(keras.layers.Dense(dense, activation="relu"))
    layers.append(_head(data))
    return keras.Sequential(layers)


def schedule(kind: str, lr: float, **kw: Any) -> Any:
    """A Keras learning-rate schedule starting at `lr`: "exp" (ExponentialDecay), "piecewise"
    (PiecewiseConstantDecay: `boundaries` in steps, `factors` times lr), "cosine" (CosineDecay)."""
    import keras

    if kind == "exp":
        return keras.optimizers.schedules.ExponentialDecay(lr, decay_steps=kw.get("decay_steps", 100),
                                                           decay_rate=kw.get("decay_rate", 0.9))
    if kind == "piecewise":
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            kw["boundaries"], [lr * f for f in kw.get("factors", [1.0] + [0.1 ** (i + 1) for i in range(len(kw["boundaries"]))])])
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=kw.get("decay_steps", 1000),
                                                      alpha=kw.get("alpha", 0.0))
    raise ValueError(f"unknown schedule {kind!r}")


def optimizer(name: str, lr: Any, **kw: Any) -> Any:
    """`name` in sgd, momentum, nesterov, adam, rmsprop, adagrad; `lr` a number or a schedule;
    `momentum` (default 0.9 for momentum/nesterov), `clipnorm`, `clipvalue` pass through."""
    import keras

    if name in ("sgd", "momentum", "nesterov"):
        momentum = kw.pop("momentum", 0.0 if name == "sgd" else 0.9)
        return keras.optimizers.SGD(learning_rate=lr, momentum=momentum, nesterov=name == "nesterov", **kw)
    cls = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "adagrad": keras.optimizers.Adagrad}
    return cls[name](learning_rate=lr, **kw)


def compile_model(model: Any, data: Data, opt: Any) -> Any:
    if data.classes is None:
        model.compile(optimizer=opt, loss="mse")
    elif getattr(model.layers[-1].activation, "__name__", None) == "sigmoid":  # `_head(sigmoid=True)`
        model.compile(optimizer=opt, loss="binary_crossentropy", metrics=["accuracy"])
    else:
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def normal(stddev: float, seed: int) -> Any:
    import keras

    return keras.initializers.RandomNormal(stddev=stddev, seed=seed)


def scaled(scale: float, seed: int) -> Any:
    """Fan-in variance scaling by `scale` (1.0 is LeCun, 2.0 is He)."""
    import keras

    return keras.initializers.VarianceScaling(scale=scale, mode="fan_in", distribution="truncated_normal", seed=seed)


def const(value: float) -> Any:
    import keras

    return keras.initializers.Constant(value)
