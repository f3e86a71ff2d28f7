"""Fixtures for the studies tests: the Fashion-MNIST files when the Debian package is installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from descentkit.studies._datasets import FASHION_MNIST_FILES, FASHION_MNIST_SYSTEM_DIR


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The Debian package's Fashion-MNIST folder; skips the test when it is not installed (tests never
    download), and fails it under CI=true, where `.ci/run` must have installed it."""
    if not all((FASHION_MNIST_SYSTEM_DIR / name).is_file() for name in FASHION_MNIST_FILES.values()):
        reason = f"Fashion-MNIST is not in {FASHION_MNIST_SYSTEM_DIR}: `apt-get install dataset-fashion-mnist`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return FASHION_MNIST_SYSTEM_DIR


@pytest.fixture(scope="session")
def fashion_small(fashion_dir: Path):
    """A small seeded Fashion-MNIST subset read from the Debian package."""
    from descentkit.studies._datasets import load_fashion_mnist

    return load_fashion_mnist(seed=0, train_size=200, val_size=100, data_dir=str(fashion_dir))
