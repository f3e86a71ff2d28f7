"""Each built-in data set loads offline with the shapes, dtypes, task and value ranges its study expects."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from descentkit.studies import DATASETS, Dataset
from descentkit.studies import _datasets
from descentkit.studies._datasets import FASHION_MNIST_FILES, load_fashion_mnist, read_idx


def test_every_builtin_dataset_is_registered():
    assert {"digits", "fashion-mnist", "breast-cancer", "diabetes", "adding-problem", "csv", "npz"} <= set(DATASETS)


def test_digits_is_ten_classes_scaled_to_unit_range():
    data = DATASETS["digits"](seed=0)
    assert data.x_train.shape == (1347, 64) and data.x_val.shape == (450, 64)
    assert data.task == "multiclass" and data.num_classes == 10
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0


def test_breast_cancer_is_binary_with_features_standardized_on_train_only():
    data = DATASETS["breast-cancer"](seed=0)
    assert isinstance(data, Dataset)
    assert data.task == "binary" and data.num_classes == 2 and data.output_activation == "sigmoid"
    assert data.loss == "binary_crossentropy"
    assert data.x_train.shape == (426, 30) and data.x_val.shape == (143, 30)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert set(np.unique(data.y_train)) == {0, 1}
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1.0, atol=1e-3)
    assert not np.allclose(data.x_val.mean(axis=0), 0.0, atol=1e-4)  # the validation rows were not used to fit the scaler


def test_breast_cancer_split_is_stratified_and_seeded():
    a, b, c = (DATASETS["breast-cancer"](seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.y_val, c.y_val) or not np.array_equal(a.x_val, c.x_val)
    assert abs(a.y_train.mean() - a.y_val.mean()) < 0.02


def test_diabetes_is_regression_with_standardized_features_and_target():
    data = DATASETS["diabetes"](seed=0)
    assert data.task == "regression" and data.num_classes is None and data.loss == "mean_squared_error"
    assert data.metrics == ["mae", "mse"]  # mse: the objective without the L2 penalty
    assert data.x_train.shape == (331, 10) and data.x_val.shape == (111, 10)
    assert data.y_train.dtype == np.float32 and data.y_train.ndim == 1
    assert abs(data.y_train.mean()) < 1e-4 and abs(data.y_train.std() - 1.0) < 1e-3
    np.testing.assert_allclose(data.x_train.std(axis=0), 1.0, atol=1e-3)


def test_adding_problem_targets_are_the_sum_of_the_two_marked_numbers():
    data = DATASETS["adding-problem"](seed=3, length=20, train_size=64, val_size=16)
    assert data.task == "regression"
    assert data.x_train.shape == (64, 20, 2) and data.x_val.shape == (16, 20, 2)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.float32
    values, markers = data.x_train[..., 0], data.x_train[..., 1]
    assert values.min() >= 0.0 and values.max() < 1.0
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :10].sum(axis=1) == 1), "one marker in the first half"
    np.testing.assert_allclose(data.y_train, (values * markers).sum(axis=1), rtol=1e-6)


def test_adding_problem_is_deterministic_in_its_seed():
    a, b, c = (DATASETS["adding-problem"](seed=s, length=10, train_size=8, val_size=8) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.x_train, a.x_val)


@pytest.mark.parametrize(
    ("options", "expected"),
    [({"length": 1}, "options.length: must be an integer of at least 2, got 1"),
     ({"train_size": 0}, "options.train_size: must be a positive integer, got 0")],
)
def test_adding_problem_rejects_bad_options(options, expected):
    with pytest.raises(ValueError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        DATASETS["adding-problem"](**options)


# --- Fashion-MNIST ----------------------------------------------------------------

def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_fashion_dir(tmp_path: Path) -> Path:
    """Four idx files in the Debian/Keras layout: 30 train and 12 test 28x28 images."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (30, 28, 28)), "y_train": np.arange(30) % 10,
        "x_test": rng.integers(0, 256, (12, 28, 28)), "y_test": np.arange(12) % 10,
    }
    for key, name in FASHION_MNIST_FILES.items():
        _write_idx(tmp_path / name, arrays[key])
    return tmp_path


def test_idx_files_are_parsed_from_their_header(tiny_fashion_dir):
    images = read_idx(tiny_fashion_dir / FASHION_MNIST_FILES["x_train"])
    labels = read_idx(tiny_fashion_dir / FASHION_MNIST_FILES["y_train"])
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.arange(30) % 10)


def test_a_truncated_idx_file_is_reported(tmp_path):
    path = tmp_path / "bad-idx1-ubyte.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(5))
    with pytest.raises(ValueError, match="holds 5 bytes of data but its header promises 10"):
        read_idx(path)


def test_fashion_loader_scales_pixels_and_draws_seeded_subsets(tiny_fashion_dir):
    data = load_fashion_mnist(seed=1, train_size=20, val_size=5, data_dir=str(tiny_fashion_dir))
    assert data.x_train.shape == (20, 28, 28, 1) and data.x_val.shape == (5, 28, 28, 1)
    assert data.x_train.dtype == np.float32 and 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    again = load_fashion_mnist(seed=1, train_size=20, val_size=5, data_dir=str(tiny_fashion_dir))
    np.testing.assert_array_equal(data.y_train, again.y_train)
    np.testing.assert_array_equal(data.x_val, again.x_val)


def test_fashion_subset_larger_than_the_split_names_the_option(tiny_fashion_dir):
    with pytest.raises(ValueError, match=r"^options\.train_size: must be an integer from 1 to 30, got 31$"):
        load_fashion_mnist(train_size=31, data_dir=str(tiny_fashion_dir))


def test_fashion_data_dir_without_the_files_names_the_option(tmp_path):
    with pytest.raises(ValueError, match=r"^options\.data_dir: no Fashion-MNIST idx files .* fix the path"):
        load_fashion_mnist(data_dir=str(tmp_path))


def test_fashion_nowhere_says_which_package_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(_datasets, "fashion_mnist_dirs", lambda: [tmp_path / "system", tmp_path / "keras"])
    with pytest.raises(ValueError) as caught:
        load_fashion_mnist(download=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_fashion_mnist_from_the_debian_package(fashion_dir):
    data = DATASETS["fashion-mnist"](seed=0)
    assert data.name == "fashion-mnist" and data.task == "multiclass" and data.num_classes == 10
    assert data.x_train.shape == (10000, 28, 28, 1) and data.x_val.shape == (10000, 28, 28, 1)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    assert set(np.unique(data.y_train)) == set(range(10))
    assert 800 < np.bincount(data.y_train).min()  # a uniform subset of balanced classes


def test_fashion_subsets_can_be_switched_off(tiny_fashion_dir):
    data = load_fashion_mnist(train_size=None, val_size=None, data_dir=str(tiny_fashion_dir))
    assert data.x_train.shape == (30, 28, 28, 1) and data.x_val.shape == (12, 28, 28, 1)
