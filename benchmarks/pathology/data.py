"""The suite's data families, each a `Data` with its task's chance-level loss.

Families: scikit-learn's bundled tables (digits, breast_cancer, wine, iris,
diabetes), its generators (make_classification, make_moons, make_regression),
Fashion-MNIST subsets (3000 train, 1000 validation images) read from the Debian
package's IDX files, and generated sequences (the adding problem, parity, sine
forecasting). Every loader takes the seed, which draws the split and any noise,
so seeds 0, 1, 2 are three different draws of the same recipe.
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Data:
    """Train and validation arrays; `classes` is None for a regression task."""

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: int | None
    family: str

    @property
    def chance_loss(self) -> float:
        """The training loss of the best input-blind prediction: the cross-entropy of
        predicting the training class frequencies, or for regression the MSE of
        predicting the training mean (the variance of y)."""
        if self.classes is None:
            return float(np.var(self.y))
        freq = np.bincount(self.y.ravel(), minlength=self.classes) / self.y.size
        freq = freq[freq > 0]
        return float(-(freq * np.log(freq)).sum())

    @property
    def chance_accuracy(self) -> float | None:
        """The validation accuracy of always predicting the most frequent training class."""
        if self.classes is None:
            return None
        majority = np.bincount(self.y.ravel(), minlength=self.classes).argmax()
        return float(np.mean(self.y_val.ravel() == majority))


def _split(x: np.ndarray, y: np.ndarray, seed: int, val_fraction: float = 0.25):
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * val_fraction))
    return x[order[n_val:]], y[order[n_val:]], x[order[:n_val]], y[order[:n_val]]


def _standardize(x: np.ndarray, x_val: np.ndarray):
    axes = tuple(range(x.ndim - 1))
    mean, std = x.mean(axis=axes), x.std(axis=axes) + 1e-8
    return ((x - mean) / std).astype("float32"), ((x_val - mean) / std).astype("float32")


def _finish(x, y, x_val, y_val, classes, family, seed, *, standardize=True, scale=1.0, n_train=None,
            label_noise=0.0, shuffle_labels=False) -> Data:
    """The options every table shares: standardize on the training split (or not: the
    'unnormalized inputs' recipes), multiply by `scale`, keep `n_train` samples, flip a
    fraction of training labels, or shuffle all labels (train and validation)."""
    x, x_val = x.astype("float32"), x_val.astype("float32")
    if standardize:
        x, x_val = _standardize(x, x_val)
    if n_train is not None:
        x, y = x[:n_train], y[:n_train]
    rng = np.random.default_rng(seed + 1000)
    if label_noise and classes:
        flip = rng.random(len(y)) < label_noise
        y = np.where(flip, rng.integers(0, classes, len(y)), y)
    if shuffle_labels:
        y, y_val = rng.permutation(y), rng.permutation(y_val)
    ytype = "int64" if classes else "float32"
    return Data(x * scale, y.astype(ytype), x_val * scale, y_val.astype(ytype), classes, family)


def _regression_target(y: np.ndarray, standardize_y: bool, y_train: np.ndarray) -> np.ndarray:
    if not standardize_y:
        return y.astype("float32")
    return ((y - y_train.mean()) / y_train.std()).astype("float32")


# ---------------------------------------------------------------- scikit-learn's tables
def digits(seed: int, **options) -> Data:
    """8x8 handwritten digits, 1797 images, 10 classes; pixels 0-16."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _finish(*_split(bunch.data, bunch.target, seed), 10, "digits", seed, **options)


def digits_images(seed: int, **options) -> Data:
    """Digits as (8, 8, 1) images for CNNs, pixels scaled to [0, 1] (standardized per pixel by default)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0)[..., None]
    options.setdefault("standardize", False)
    return _finish(*_split(x, bunch.target, seed), 10, "digits", seed, **options)


def breast_cancer(seed: int, **options) -> Data:
    """569 tumours, 30 features of very different scales, binary."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return _finish(*_split(bunch.data, bunch.target, seed), 2, "breast_cancer", seed, **options)


def wine(seed: int, **options) -> Data:
    """178 wines, 13 chemical features (proline up to ~1700), 3 classes."""
    from sklearn.datasets import load_wine

    bunch = load_wine()
    return _finish(*_split(bunch.data, bunch.target, seed), 3, "wine", seed, **options)


def iris(seed: int, **options) -> Data:
    """150 flowers, 4 features, 3 classes."""
    from sklearn.datasets import load_iris

    bunch = load_iris()
    return _finish(*_split(bunch.data, bunch.target, seed), 3, "iris", seed, **options)


def diabetes(seed: int, standardize_y: bool = True, **options) -> Data:
    """442 patients, 10 features, regression of disease progression (y 25-346)."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    x, y, x_val, y_val = _split(bunch.data, bunch.target.astype("float64"), seed)
    y, y_val = _regression_target(y, standardize_y, y), _regression_target(y_val, standardize_y, y)
    return _finish(x, y[:, None], x_val, y_val[:, None], None, "diabetes", seed, **options)


# ---------------------------------------------------------------- scikit-learn's generators
def classification(seed: int, n: int = 2000, features: int = 20, classes: int = 4, flip_y: float = 0.01,
                   class_sep: float = 1.0, **options) -> Data:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=n, n_features=features, n_informative=min(features, 10), n_redundant=0,
                               n_classes=classes, n_clusters_per_class=1, flip_y=flip_y, class_sep=class_sep,
                               random_state=seed)
    return _finish(*_split(x, y, seed), classes, "make_classification", seed, **options)


def moons(seed: int, n: int = 1500, noise: float = 0.2, **options) -> Data:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return _finish(*_split(x, y, seed), 2, "make_moons", seed, **options)


def regression(seed: int, n: int = 1600, features: int = 10, noise: float = 5.0, standardize_y: bool = True,
               **options) -> Data:
    """make_regression with a tanh bend, so a hidden layer has something to learn."""
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=n, n_features=features, n_informative=features // 2, noise=noise,
                           random_state=seed)
    y = y + 30 * np.tanh(x[:, 0])
    x, y, x_val, y_val = _split(x, y, seed)
    y, y_val = _regression_target(y, standardize_y, y), _regression_target(y_val, standardize_y, y)
    return _finish(x, y[:, None], x_val, y_val[:, None], None, "make_regression", seed, **options)


# ---------------------------------------------------------------- Fashion-MNIST
def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(raw[3])]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * raw[3]).reshape(dims)


@functools.lru_cache(maxsize=1)
def _fashion_arrays() -> tuple[np.ndarray, ...]:
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        raise FileNotFoundError(f"Fashion-MNIST not found in {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist")
    return tuple(_read_idx(FASHION_MNIST_DIR / name) for name in (
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))


def fashion(seed: int, train_size: int = 3000, val_size: int = 1000, flat: bool = False, **options) -> Data:
    """A random subset of Fashion-MNIST (validation from the test split); pixels in [0, 1],
    images (28, 28, 1), or 784 standardized features with `flat=True`."""
    x_train, y_train, x_test, y_test = _fashion_arrays()
    rng = np.random.default_rng(seed)
    train = rng.choice(len(y_train), train_size, replace=False)
    val = rng.choice(len(y_test), val_size, replace=False)
    x, x_val = x_train[train] / 255.0, x_test[val] / 255.0
    if flat:
        x, x_val = x.reshape(len(x), -1), x_val.reshape(len(x_val), -1)
        options.setdefault("standardize", True)
    else:
        x, x_val = x[..., None], x_val[..., None]
        options.setdefault("standardize", False)
    return _finish(x, y_train[train], x_val, y_test[val], 10, "fashion_mnist", seed, **options)


# ---------------------------------------------------------------- generated sequences
def adding(seed: int, length: int = 30, n: int = 2000, **options) -> Data:
    """The adding problem (Hochreiter & Schmidhuber 1997): regress the sum of the two marked
    values of a sequence (one mark in each half). Predicting the mean scores MSE 1/6."""
    rng = np.random.default_rng(seed)
    values = rng.random((n, length))
    marks = np.zeros((n, length))
    rows = np.arange(n)
    first, second = rng.integers(0, length // 2, n), rng.integers(length // 2, length, n)
    marks[rows, first] = marks[rows, second] = 1.0
    x = np.stack([values, marks], axis=-1)
    y = (values[rows, first] + values[rows, second])[:, None]
    options.setdefault("standardize", False)
    return _finish(*_split(x, y, seed), None, "sequences", seed, **options)


def parity(seed: int, length: int = 8, n: int = 2000, **options) -> Data:
    """Sequences of random bits; class 1 when the count of ones is odd (a GRU learns it at length 8)."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (n, length))
    x = bits[..., None].astype("float64")
    y = bits.sum(axis=1) % 2
    options.setdefault("standardize", False)
    return _finish(*_split(x, y, seed), 2, "sequences", seed, **options)


def sine(seed: int, length: int = 20, n: int = 2000, noise: float = 0.05, **options) -> Data:
    """Forecast the next value of a noisy sine of random frequency and phase from the last `length` values."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.1, 0.5, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    t = np.arange(length + 1)[None, :]
    series = np.sin(freq * t + phase) + noise * rng.normal(size=(n, length + 1))
    x, y = series[:, :length, None], series[:, length:]
    options.setdefault("standardize", False)
    return _finish(*_split(x, y, seed), None, "sequences", seed, **options)
