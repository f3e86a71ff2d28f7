"""Built-in dataset loaders. Every one loads offline (bundled or system-packaged data)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from descentkit.studies._dataset import Dataset


def _split(x: np.ndarray, y: np.ndarray, validation_fraction: float, seed: int, stratify: bool):
    from sklearn.model_selection import train_test_split

    return train_test_split(
        x, y, test_size=validation_fraction, random_state=seed, stratify=y if stratify else None
    )


def load_digits(seed: int = 0, validation_fraction: float = 0.25) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    x = (bunch.data / 16.0).astype("float32")
    y = bunch.target.astype("int64")
    x_train, x_val, y_train, y_val = _split(x, y, validation_fraction, seed, stratify=True)
    return Dataset(x_train, y_train, x_val, y_val, task="multiclass", num_classes=10, name="digits")


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
}
