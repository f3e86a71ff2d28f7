"""descentkit.callbacks: Keras callbacks that watch a `fit` for training pathologies.

Each monitor collects signals (per-step gradient norms from inside the compiled
train step, per-epoch logs, a hidden-activation probe), runs the detectors of
`descentkit.diagnostics` on them and acts: prints, records, stops training.
`OptunaPruning` and `MLflowLogger` are the adapters. Keras, Optuna and MLflow are
imported on first use of a callback, never when this package is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "ActivationMonitor": "activation_monitor",
    "DivergenceMonitor": "divergence_monitor",
    "GradientMonitor": "gradient_monitor",
    "MLflowLogger": "mlflow_logger",
    "OptunaPruning": "optuna_pruning",
    "OverfittingMonitor": "overfitting_monitor",
    "TrainingMonitor": "training_monitor",
}

__all__ = sorted(_HOMES)

if TYPE_CHECKING:
    from descentkit.callbacks.activation_monitor import ActivationMonitor
    from descentkit.callbacks.divergence_monitor import DivergenceMonitor
    from descentkit.callbacks.gradient_monitor import GradientMonitor
    from descentkit.callbacks.mlflow_logger import MLflowLogger
    from descentkit.callbacks.optuna_pruning import OptunaPruning
    from descentkit.callbacks.overfitting_monitor import OverfittingMonitor
    from descentkit.callbacks.training_monitor import TrainingMonitor


def __getattr__(name: str) -> Any:
    """The callbacks are imported (with Keras) on first use, so that the package's
    Keras-free helpers serve the tuner's command line without importing TensorFlow."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
