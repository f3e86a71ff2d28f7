"""Small data and models shared by the callback tests (each fit: 256 samples, 8 features)."""

from __future__ import annotations

import keras
import numpy as np
import pytest


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32")
    return x, y


def mlp(hidden: int = 16, activation: str = "relu") -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(hidden, activation=activation),
            keras.layers.Dense(hidden, activation=activation),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )


@pytest.fixture
def make_mlp():
    return mlp


@pytest.fixture
def float32_policy_after():
    yield
    keras.mixed_precision.set_global_policy("float32")
