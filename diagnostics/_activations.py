"""Dead ReLU units and saturated tanh/sigmoid units, from the per-epoch activation probe."""

from __future__ import annotations

import numpy as np

from descentkit.diagnostics._detector import Detector, runs
from descentkit.diagnostics._divergence import lower_rate_phrase
from descentkit.diagnostics._finding import DEAD_UNITS, SATURATED_ACTIVATIONS, Finding
from descentkit.diagnostics._record import TrainingRecord
from descentkit.diagnostics._signals import epoch_number, epoch_step, not_improving

# Half the units of a layer dead (zero on every probe sample) halves its width: a
# warning. Freshly He-initialised ReLU layers have essentially no dead units on a
# batch of a few hundred samples, and healthy trained ones typically 0-40 %.
DEAD_WARNING_FRACTION = 0.5
# 90 % dead and the loss no longer improving: the layer has collapsed (a too-large
# learning rate knocks most ReLUs off in a few steps), critical.
DEAD_CRITICAL_FRACTION = 0.9
# A layer with every unit dead (99 %: all of a layer of up to 100 units) passes
# nothing forward and no gradient back: the network's output no longer depends on
# its inputs and no step can revive those units. Hopeless whatever the loss does: critical.
DEAD_ALL_FRACTION = 0.99
# Half the outputs saturated (|tanh| > 0.99, sigmoid outside 0.01-0.99, as the probe
# measures): at those points the derivative is below 0.02, so half the layer passes
# back almost no gradient.
SATURATED_FRACTION = 0.5
# 80 % of a layer's outputs saturated is a warning even while the loss improves: the
# layer passes gradient back through at most a fifth of its outputs and trains, if
# at all, through its few unsaturated units. Measured here: tanh/sigmoid MLPs fed
# inputs x100 or initialised with N(0, 3-4) sit at 85-97 % and keep learning slowly
# through the other layers, while healthy tanh/sigmoid nets (Glorot init, deep tanh
# nets included) measured below 50 %.
SATURATED_SEVERE_FRACTION = 0.8
# Saturation must last 2 measured epochs: a transient saturation right after a large
# early step often recovers within an epoch.
SATURATED_PATIENCE = 2
# The outcome window, as for the gradient detectors.
ACTIVATION_OUTCOME_WINDOW = 3


def _worst_layer(fractions: dict[str, list[float]], n_epochs: int) -> tuple[np.ndarray, list[str | None]]:
    """Per epoch, the largest fraction over layers and which layer (NaN/None if unmeasured)."""
    worst = np.full(n_epochs, np.nan)
    names: list[str | None] = [None] * n_epochs
    for layer, values in fractions.items():
        values = np.asarray(values[:n_epochs], dtype=np.float64)
        for i, v in enumerate(values):
            if np.isfinite(v) and not (v <= worst[i]):
                worst[i], names[i] = v, layer
    return worst, names


def _measured_runs(mask: np.ndarray, measured: np.ndarray, min_length: int = 1) -> list[int]:
    """Epoch indices where runs of True start, counting measured epochs only (epochs
    without a probe neither break nor extend a run)."""
    where = np.flatnonzero(measured)
    return [int(where[s]) for s, _ in runs(mask[where], min_length=min_length)]


class DeadUnitsDetector(Detector):
    """Detects dead ReLU units: a layer with half its units dead (warning), or 90 %
    dead while the loss no longer improves (critical).

    Args:
        warning_fraction: dead fraction of a layer that warns (default 0.5).
        critical_fraction: dead fraction that is critical when the loss has stopped
            improving (default 0.9).
        window: epochs over which the loss must have stopped improving (default 3).

    Example:
        >>> findings = DeadUnitsDetector()(record)
    """

    symptom = DEAD_UNITS

    def __init__(
        self,
        warning_fraction: float = DEAD_WARNING_FRACTION,
        critical_fraction: float = DEAD_CRITICAL_FRACTION,
        window: int = ACTIVATION_OUTCOME_WINDOW,
    ) -> None:
        self.warning_fraction = self._fraction("warning_fraction", warning_fraction)
        self.critical_fraction = self._fraction("critical_fraction", critical_fraction)
        if self.critical_fraction < self.warning_fraction:
            raise ValueError(
                f"DeadUnitsDetector: critical_fraction must be >= warning_fraction ({self.warning_fraction!r}) "
                f"but got {critical_fraction!r}."
            )
        self.window = self._count("window", window)

    def __call__(self, record: TrainingRecord) -> list[Finding]:
        worst, layers = _worst_layer(record.dead_fraction, record.n_epochs)
        measured = np.isfinite(worst)
        if not measured.any():
            return []
        stuck = not_improving(record, self.window)
        all_dead = measured & (worst >= DEAD_ALL_FRACTION)
        critical = set(_measured_runs(measured & (((worst > self.critical_fraction) & stuck) | all_dead), measured))
        warning = set(_measured_runs(measured & (worst > self.warning_fraction), measured)) - critical
        findings = []
        for start in sorted(critical | warning):
            severity = "critical" if start in critical else "warning"
            layer = layers[start]
            all_layers = {k: float(v[start]) for k, v in record.dead_fraction.items() if start < len(v)}
            findings.append(
                Finding(
                    symptom=DEAD_UNITS,
                    severity=severity,
                    epoch=epoch_number(record, start),
                    step=epoch_step(record, start),
                    message=(
                        f"{worst[start]:.0%} of the units of layer {layer!r} are dead (zero on every probe sample)"
                        + (
                            ": the output no longer depends on the inputs."
                            if all_dead[start]
                            else " and the loss stopped improving." if severity == "critical" else "."
                        )
                    ),
                    advice=(
                        f"Use LeakyReLU (or ELU) with He initialisation, and {lower_rate_phrase(record, start)}: "
                        "large steps knock ReLUs off."
                    ),
                    evidence={
                        "layer": layer,
                        "dead_fraction": float(worst[start]),
                        "dead_fraction_by_layer": all_layers,
                        "loss_improving": bool(not stuck[start]),
                    },
                )
            )
        return findings


class SaturatedActivationsDetector(Detector):
    """Detects saturated tanh/sigmoid units: half a layer's outputs saturated for two
    measured epochs while the loss does not improve, or 80 % of them whatever the loss does.

    Args:
        fraction: saturated fraction of a layer that counts (default 0.5).
        patience: measured epochs it must last (default 2).
        window: epochs over which the loss must have stopped improving (default 3).
        severe_fraction: saturated fraction that counts even while the loss
            improves (default `SATURATED_SEVERE_FRACTION`, 0.8).

    Example:
        >>> findings = SaturatedActivationsDetector()(record)
    """

    symptom = SATURATED_ACTIVATIONS

    def __init__(
        self,
        fraction: float = SATURATED_FRACTION,
        patience: int = SATURATED_PATIENCE,
        window: int = ACTIVATION_OUTCOME_WINDOW,
        severe_fraction: float = SATURATED_SEVERE_FRACTION,
    ) -> None:
        self.fraction = self._fraction("fraction", fraction)
        self.patience = self._count("patience", patience)
        self.window = self._count("window", window)
        self.severe_fraction = self._fraction("severe_fraction", severe_fraction)
        if self.severe_fraction < self.fraction:
            raise ValueError(
                f"SaturatedActivationsDetector: severe_fraction must be >= fraction ({self.fraction!r}) "
                f"but got {severe_fraction!r}."
            )

    def __call__(self, record: TrainingRecord) -> list[Finding]:
        worst, layers = _worst_layer(record.saturated_fraction, record.n_epochs)
        measured = np.isfinite(worst)
        if not measured.any():
            return []
        stuck = not_improving(record, self.window)
        findings = []
        saturated = measured & (((worst > self.fraction) & stuck) | (worst > self.severe_fraction))
        for start in _measured_runs(saturated, measured, self.patience):
            layer = layers[start]
            all_layers = {k: float(v[start]) for k, v in record.saturated_fraction.items() if start < len(v)}
            findings.append(
                Finding(
                    symptom=SATURATED_ACTIVATIONS,
                    severity="warning",
                    epoch=epoch_number(record, start),
                    step=epoch_step(record, start),
                    message=(
                        f"{worst[start]:.0%} of the outputs of layer {layer!r} are saturated, for {self.patience} "
                        "or more epochs"
                        + (", and the loss stopped improving." if stuck[start] else ".")
                    ),
                    advice=(
                        "Normalize the inputs (zero mean, unit variance), use Glorot initialisation, add "
                        f"BatchNormalization before the activation, or {lower_rate_phrase(record, start)}."
                    ),
                    evidence={
                        "layer": layer,
                        "saturated_fraction": float(worst[start]),
                        "saturated_fraction_by_layer": all_layers,
                        "patience_epochs": self.patience,
                        "loss_improving": bool(not stuck[start]),
                    },
                )
            )
        return findings
