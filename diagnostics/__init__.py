"""descentkit.diagnostics: numpy-only detectors of training pathologies.

Signals in (a `TrainingRecord`), `Finding`s out. No TensorFlow, Keras, Optuna or
MLflow is imported here, so detectors run on synthetic traces and on histories
read back from anywhere.

Every detector is a pure function of the whole record that returns one finding
per episode, dated by the episode's start: re-running it on a longer record
returns the same finding (symptom, epoch, step) for an ongoing episode, so a
caller dedupes on `episode_key(finding)`. Findings that follow from another (dead
units -> vanishing gradients) are linked to their root by `link_causes`, and
`top_finding` names the one that explains a run.
"""

from descentkit.diagnostics._activations import DeadUnitsDetector, SaturatedActivationsDetector
from descentkit.diagnostics._causes import CAUSES, link_causes, top_finding
from descentkit.diagnostics._chance import chance_loss
from descentkit.diagnostics._detector import Detector, episode_key
from descentkit.diagnostics._diagnose import DETECTORS, diagnose, diagnose_history
from descentkit.diagnostics._divergence import DivergenceDetector
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
from descentkit.diagnostics._gradients import ExplodingGradientsDetector, VanishingGradientsDetector
from descentkit.diagnostics._lr_range import LRRange, analyze_lr_range, exponential_rates, plot_lr_range
from descentkit.diagnostics._loss_dynamics import OscillatingLossDetector, StalledTrainingDetector
from descentkit.diagnostics._overfitting import OverfittingDetector
from descentkit.diagnostics._preflight import preflight_checks
from descentkit.diagnostics._record import TrainingRecord

__all__ = [
    "CAUSES",
    "DEAD_UNITS",
    "DETECTORS",
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
    "DeadUnitsDetector",
    "Detector",
    "DivergenceDetector",
    "ExplodingGradientsDetector",
    "Finding",
    "LRRange",
    "OscillatingLossDetector",
    "OverfittingDetector",
    "SaturatedActivationsDetector",
    "StalledTrainingDetector",
    "TrainingRecord",
    "VanishingGradientsDetector",
    "analyze_lr_range",
    "chance_loss",
    "diagnose",
    "diagnose_history",
    "episode_key",
    "exponential_rates",
    "link_causes",
    "plot_lr_range",
    "preflight_checks",
    "summarize",
    "top_finding",
]
