"""Fixtures for the studies tests: the Fashion-MNIST files when the Debian package is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from descentkit.studies._datasets import FASHION_MNIST_FILES, FASHION_MNIST_SYSTEM_DIR


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The Debian package's Fashion-MNIST folder; skips the test when it is not installed (tests never download)."""
    if not all((FASHION_MNIST_SYSTEM_DIR / name).is_file() for name in FASHION_MNIST_FILES.values()):
        pytest.skip(f"Fashion-MNIST is not in {FASHION_MNIST_SYSTEM_DIR}: `apt-get install dataset-fashion-mnist`")
    return FASHION_MNIST_SYSTEM_DIR


@pytest.fixture(scope="session")
def fashion_small(fashion_dir: Path):
    """A small seeded Fashion-MNIST subset read from the Debian package."""
    from descentkit.studies._datasets import load_fashion_mnist

    return load_fashion_mnist(seed=0, train_size=200, val_size=100, data_dir=str(fashion_dir))
