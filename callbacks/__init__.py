"""descentkit.callbacks: Keras callbacks that watch a `fit` for training pathologies.

Each monitor collects signals (per-step gradient norms from inside the compiled
train step, per-epoch logs, a hidden-activation probe), runs the detectors of
`descentkit.diagnostics` on them and acts: prints, records, stops training.
`OptunaPruning` and `MLflowLogger` are the adapters; Optuna and MLflow are imported
lazily, never when this package is imported.
"""

from descentkit.callbacks.activation_monitor import ActivationMonitor
from descentkit.callbacks.divergence_monitor import DivergenceMonitor
from descentkit.callbacks.gradient_monitor import GradientMonitor
from descentkit.callbacks.mlflow_logger import MLflowLogger
from descentkit.callbacks.optuna_pruning import OptunaPruning
from descentkit.callbacks.overfitting_monitor import OverfittingMonitor
from descentkit.callbacks.training_monitor import TrainingMonitor

__all__ = [
    "ActivationMonitor",
    "DivergenceMonitor",
    "GradientMonitor",
    "MLflowLogger",
    "OptunaPruning",
    "OverfittingMonitor",
    "TrainingMonitor",
]
