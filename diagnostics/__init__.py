"""descentkit.diagnostics: numpy-only detectors of training pathologies.

Signals in (a `TrainingRecord`), `Finding`s out. No TensorFlow, Keras, Optuna or
MLflow is imported here, so detectors run on synthetic traces and on histories
read back from anywhere.
"""

from descentkit.diagnostics._finding import (
    DEAD_UNITS,
    DIVERGENCE,
    EXPLODING_GRADIENTS,
    NONFINITE_INPUTS,
    OSCILLATING_LOSS,
    OUTPUT_LOSS_MISMATCH,
    OVERFITTING,
    PREFLIGHT_SYMPTOMS,
    SATURATED_ACTIVATIONS,
    SEVERITIES,
    STALLED_TRAINING,
    SYMPTOMS,
    TRAINING_SYMPTOMS,
    UNNORMALIZED_INPUTS,
    VANISHING_GRADIENTS,
    Finding,
    summarize,
)
from descentkit.diagnostics._record import TrainingRecord

__all__ = [
    "DEAD_UNITS",
    "DIVERGENCE",
    "EXPLODING_GRADIENTS",
    "NONFINITE_INPUTS",
    "OSCILLATING_LOSS",
    "OUTPUT_LOSS_MISMATCH",
    "OVERFITTING",
    "PREFLIGHT_SYMPTOMS",
    "SATURATED_ACTIVATIONS",
    "SEVERITIES",
    "STALLED_TRAINING",
    "SYMPTOMS",
    "TRAINING_SYMPTOMS",
    "UNNORMALIZED_INPUTS",
    "VANISHING_GRADIENTS",
    "Finding",
    "TrainingRecord",
    "summarize",
]
