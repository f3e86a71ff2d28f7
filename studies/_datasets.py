"""Built-in dataset loaders. Every one loads offline (bundled, system-packaged or generated data).

`DATASETS` maps a study file's `dataset.name` to `loader(seed=0, **options) -> Dataset`.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from descentkit.studies._dataset import Dataset
from descentkit.studies._files import load_csv, load_npz, split_validation, standardize_features

# Where Debian's `dataset-fashion-mnist` package puts the four idx files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_MNIST_INSTALL_HINT = (
    "Fashion-MNIST not found in {dirs} and the download failed; "
    "install it offline with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu)"
)


def _option_error(option: str, message: str) -> ValueError:
    return ValueError(f"options.{option}: {message}")


def _subset_size(option: str, value: int | None, available: int) -> int:
    if value is None:
        return available
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= available:
        raise _option_error(option, f"must be an integer from 1 to {available}, got {value!r}")
    return value


def load_digits(seed: int = 0, validation_fraction: float = 0.25) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    x = (bunch.data / 16.0).astype("float32")
    y = bunch.target.astype("int64")
    x_train, x_val, y_train, y_val = split_validation(x, y, validation_fraction, seed, stratify=True)
    return Dataset(x_train, y_train, x_val, y_val, task="multiclass", num_classes=10, name="digits")


# --- Fashion-MNIST ----------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """An array from an idx file (the MNIST format: big-endian header, then uint8 data), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise ValueError(f"{path} holds {len(raw) - offset} bytes of data but its header promises {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _keras_cache_dir() -> Path:
    """Where `keras.datasets.fashion_mnist.load_data()` keeps its downloads."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets" / "fashion-mnist"


def fashion_mnist_dirs() -> list[Path]:
    """The folders searched for Fashion-MNIST, in order: the Debian package's, then the Keras cache."""
    return [FASHION_MNIST_SYSTEM_DIR, _keras_cache_dir()]


def _find_fashion_mnist(data_dir: str | None, download: bool) -> dict[str, np.ndarray]:
    dirs = [Path(data_dir).expanduser()] if data_dir is not None else fashion_mnist_dirs()
    for folder in dirs:
        if all((folder / name).is_file() for name in FASHION_MNIST_FILES.values()):
            return {key: read_idx(folder / name) for key, name in FASHION_MNIST_FILES.items()}
    if download and data_dir is None:
        try:
            import keras

            (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
            return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        except Exception:  # offline, proxy, disk full: the hint below is the fix in every case
            pass
    where = " or ".join(str(d) for d in dirs)
    if data_dir is not None:
        raise _option_error("data_dir", f"no Fashion-MNIST idx files ({', '.join(FASHION_MNIST_FILES.values())}) in {where}; "
                            "fix the path or leave data_dir out to use `apt-get install dataset-fashion-mnist`")
    raise ValueError(FASHION_MNIST_INSTALL_HINT.format(dirs=where))


def load_fashion_mnist(
    seed: int = 0,
    train_size: int | None = 10000,
    val_size: int | None = 10000,
    data_dir: str | None = None,
    download: bool = True,
) -> Dataset:
    """Fashion-MNIST: 28x28 grey images of clothing, 10 classes; pixels scaled to [0, 1].

    Read from Debian's `dataset-fashion-mnist` package (/usr/share/datasets/fashion-mnist),
    else the Keras cache (~/.keras/datasets/fashion-mnist), else downloaded by Keras.
    Validation comes from the official test split. Images have shape (28, 28, 1).

    Args:
        seed: picks the random subsets.
        train_size: training images drawn from the 60,000 (default 10,000; null for all).
        val_size: validation images drawn from the 10,000 test images (default all 10,000).
        data_dir: a folder holding the four idx files instead of the places above.
        download: when the files are nowhere, let Keras download them (default True).
    """
    arrays = _find_fashion_mnist(data_dir, download)
    rng = np.random.default_rng(seed)
    n_train = _subset_size("train_size", train_size, len(arrays["y_train"]))
    n_val = _subset_size("val_size", val_size, len(arrays["y_test"]))
    train = np.sort(rng.permutation(len(arrays["y_train"]))[:n_train])
    val = np.sort(rng.permutation(len(arrays["y_test"]))[:n_val])

    def images(x: np.ndarray) -> np.ndarray:
        return (x.astype("float32") / 255.0)[..., None]

    return Dataset(
        images(arrays["x_train"][train]), arrays["y_train"][train].astype("int64"),
        images(arrays["x_test"][val]), arrays["y_test"][val].astype("int64"),
        task="multiclass", num_classes=10, name="fashion-mnist",
    )


# --- scikit-learn's bundled tables ------------------------------------------------

def load_breast_cancer(seed: int = 0, validation_fraction: float = 0.25) -> Dataset:
    """Wisconsin diagnostic breast cancer (scikit-learn, bundled): 569 tumours, 30 features, binary.

    Label 1 is benign, 0 malignant (scikit-learn's coding). Features are
    standardized with the training split's mean and deviation.
    """
    from sklearn.datasets import load_breast_cancer as _load

    bunch = _load()
    x_train, x_val, y_train, y_val = split_validation(bunch.data, bunch.target, validation_fraction, seed, stratify=True)
    x_train, x_val = standardize_features(x_train, x_val)
    return Dataset(x_train, y_train.astype("int64"), x_val, y_val.astype("int64"), task="binary", name="breast-cancer")


def load_diabetes(seed: int = 0, validation_fraction: float = 0.25) -> Dataset:
    """Diabetes progression (scikit-learn, bundled): 442 patients, 10 features, regression.

    Features and the target are standardized with the training split's mean and
    deviation, so the validation MSE reads as a fraction of the target's variance
    (MSE 0.5 is R^2 about 0.5; the raw target's deviation is about 77).
    """
    from sklearn.datasets import load_diabetes as _load

    bunch = _load(scaled=False)
    x_train, x_val, y_train, y_val = split_validation(bunch.data, bunch.target, validation_fraction, seed, stratify=False)
    x_train, x_val = standardize_features(x_train, x_val)
    y_train, y_val = standardize_features(y_train[:, None], y_val[:, None])
    return Dataset(x_train, y_train[:, 0], x_val, y_val[:, 0], task="regression", name="diabetes")


# --- generated sequences ----------------------------------------------------------

def adding_problem(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` sequences of the adding problem: inputs (n, length, 2), targets (n,).

    Channel 0 holds random numbers in [0, 1); channel 1 marks two of them, one in
    each half of the sequence; the target is the sum of the two marked numbers.
    """
    values = rng.random((n, length), dtype=np.float32)
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    markers = np.zeros((n, length), dtype=np.float32)
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return np.stack([values, markers], axis=-1), targets.astype("float32")


def load_adding_problem(seed: int = 0, length: int = 50, train_size: int = 10000, val_size: int = 2000) -> Dataset:
    """The adding problem (Hochreiter & Schmidhuber 1997): regress the sum of two marked numbers in a sequence.

    The classic test of long-range memory in recurrent nets and of exploding
    gradients under SGD (Pascanu, Mikolov & Bengio 2013). Generated from `seed`,
    nothing to download. Predicting the mean (1.0) scores MSE 1/6 = 0.167; a net
    that solved the task scores below 0.01.

    Args:
        seed: generates the sequences (train and validation from independent streams).
        length: time steps per sequence (default 50; longer is harder).
        train_size, val_size: number of training and validation sequences.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise _option_error("length", f"must be an integer of at least 2, got {length!r}")
    for option, value in (("train_size", train_size), ("val_size", val_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _option_error(option, f"must be a positive integer, got {value!r}")
    train_rng, val_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    x_train, y_train = adding_problem(train_size, length, train_rng)
    x_val, y_val = adding_problem(val_size, length, val_rng)
    return Dataset(x_train, y_train, x_val, y_val, task="regression", name="adding-problem")


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "fashion-mnist": load_fashion_mnist,
    "breast-cancer": load_breast_cancer,
    "diabetes": load_diabetes,
    "adding-problem": load_adding_problem,
    "csv": load_csv,
    "npz": load_npz,
}
