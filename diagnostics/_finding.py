"""The `Finding`: one diagnosed training pathology, with its evidence and advice."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

# The public symptom names (a public contract). They appear in
# findings, Optuna user attributes and MLflow tags: change them only on purpose.
DIVERGENCE = "divergence"
EXPLODING_GRADIENTS = "exploding_gradients"
VANISHING_GRADIENTS = "vanishing_gradients"
OVERFITTING = "overfitting"
DEAD_UNITS = "dead_units"
SATURATED_ACTIVATIONS = "saturated_activations"
OSCILLATING_LOSS = "oscillating_loss"
STALLED_TRAINING = "stalled_training"
NONFINITE_INPUTS = "nonfinite_inputs"
UNNORMALIZED_INPUTS = "unnormalized_inputs"
OUTPUT_LOSS_MISMATCH = "output_loss_mismatch"

TRAINING_SYMPTOMS = (
    DIVERGENCE,
    EXPLODING_GRADIENTS,
    VANISHING_GRADIENTS,
    OVERFITTING,
    DEAD_UNITS,
    SATURATED_ACTIVATIONS,
    OSCILLATING_LOSS,
    STALLED_TRAINING,
)
PREFLIGHT_SYMPTOMS = (NONFINITE_INPUTS, UNNORMALIZED_INPUTS, OUTPUT_LOSS_MISMATCH)
SYMPTOMS = TRAINING_SYMPTOMS + PREFLIGHT_SYMPTOMS

SEVERITIES = ("info", "warning", "critical")


def _jsonable(value: Any) -> Any:
    """Evidence values as plain JSON types (numpy scalars and arrays included)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": JSON has no literal for them
    return value


@dataclass(frozen=True)
class Finding:
    """One pathology seen in a training run.

    Args:
        symptom: one of `SYMPTOMS`.
        severity: "info", "warning" or "critical".
        epoch: the 1-based epoch where it was seen (Keras's "Epoch 3/10" is 3),
            or None (preflight checks).
        step: the optimizer's global step where it was seen, or None.
        message: one line saying what was seen.
        advice: one line saying what to change.
        evidence: the numbers that triggered it.
    """

    symptom: str
    severity: str
    epoch: int | None
    step: int | None
    message: str
    advice: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.symptom not in SYMPTOMS:
            raise ValueError(f"Unknown symptom {self.symptom!r}; expected one of {', '.join(SYMPTOMS)}.")
        if self.severity not in SEVERITIES:
            raise ValueError(f"Unknown severity {self.severity!r}; expected one of {', '.join(SEVERITIES)}.")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become strings)."""
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            symptom=data["symptom"],
            severity=data["severity"],
            epoch=data.get("epoch"),
            step=data.get("step"),
            message=data["message"],
            advice=data["advice"],
            evidence=dict(data.get("evidence") or {}),
        )

    def __str__(self) -> str:
        where = []
        if self.epoch is not None:
            where.append(f"epoch {self.epoch}")
        if self.step is not None:
            where.append(f"step {self.step}")
        at = f" ({', '.join(where)})" if where else ""
        return f"[{self.severity}] {self.symptom}{at}: {self.message} Advice: {self.advice}"


def summarize(findings: list[Finding]) -> str:
    """A readable multi-line summary of findings, most severe first."""
    if not findings:
        return "No training pathologies found."
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    lines = [f"{len(findings)} finding(s):"]
    for f in sorted(findings, key=lambda f: (order[f.severity], f.step or 0)):
        lines.append(f"  - {f}")
    return "\n".join(lines)
