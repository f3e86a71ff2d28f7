"""Post-hoc diagnosis: every detector (or the named ones) over one record or a Keras history."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from descentkit.diagnostics._activations import DeadUnitsDetector, SaturatedActivationsDetector
from descentkit.diagnostics._causes import link_causes
from descentkit.diagnostics._detector import Detector
from descentkit.diagnostics._divergence import DivergenceDetector
from descentkit.diagnostics._finding import PREFLIGHT_SYMPTOMS, TRAINING_SYMPTOMS, Finding
from descentkit.diagnostics._gradients import ExplodingGradientsDetector, VanishingGradientsDetector
from descentkit.diagnostics._loss_dynamics import OscillatingLossDetector, StalledTrainingDetector
from descentkit.diagnostics._overfitting import OverfittingDetector
from descentkit.diagnostics._record import TrainingRecord

# The default detector of each training symptom, in `TRAINING_SYMPTOMS` order.
DETECTORS: dict[str, type[Detector]] = {
    cls.symptom: cls
    for cls in (
        DivergenceDetector,
        ExplodingGradientsDetector,
        VanishingGradientsDetector,
        OverfittingDetector,
        DeadUnitsDetector,
        SaturatedActivationsDetector,
        OscillatingLossDetector,
        StalledTrainingDetector,
    )
}


def _order(finding: Finding) -> tuple[int, int, int]:
    return (
        finding.epoch if finding.epoch is not None else -1,
        finding.step if finding.step is not None else -1,
        TRAINING_SYMPTOMS.index(finding.symptom) if finding.symptom in TRAINING_SYMPTOMS else len(TRAINING_SYMPTOMS),
    )


def diagnose(record: TrainingRecord, symptoms: Iterable[str] | None = None) -> list[Finding]:
    """Runs the default detector of each symptom (all training symptoms by default)
    over `record`; returns their findings in the order they happened, each
    consequence of another linked to its root (`link_causes`).

    Each detector returns one finding per episode, dated by its start, so calling
    this again on a longer record returns the same findings for ongoing episodes;
    dedupe with `episode_key`.

    Args:
        record: the signals of one run.
        symptoms: training symptom names to diagnose (a single name is accepted too).

    Example:
        >>> findings = diagnose(record, symptoms=["divergence", "exploding_gradients"])
    """
    if symptoms is None:
        names: Sequence[str] = TRAINING_SYMPTOMS
    elif isinstance(symptoms, str):
        names = (symptoms,)
    else:
        names = tuple(symptoms)
    for name in names:
        if name in PREFLIGHT_SYMPTOMS:
            raise ValueError(f"diagnose received symptom {name!r}, a data check: use preflight_checks(x, y, ...) for it.")
        if name not in DETECTORS:
            raise ValueError(f"diagnose received unknown symptom {name!r}; expected names among: {', '.join(DETECTORS)}.")
    findings = [f for name in dict.fromkeys(names) for f in DETECTORS[name]()(record)]
    return link_causes(sorted(findings, key=_order))


def diagnose_history(
    history: Mapping[str, Sequence[float]] | Any,
    learning_rate: Sequence[float] | float | None = None,
) -> list[Finding]:
    """Diagnoses a Keras `History` (or its `.history` dict, or the same series read
    back from MLflow) with the detectors that need only epoch logs.

    Args:
        history: `model.fit(...)` 's return value or its `history` dict: per-epoch
            lists of "loss", "val_loss", "accuracy", ... A "learning_rate" (or "lr")
            series is used as the learning rate.
        learning_rate: the learning rate per epoch, or one constant rate.

    Example:
        >>> findings = diagnose_history(model.fit(x, y, validation_split=0.2, epochs=30))
    """
    series = getattr(history, "history", history)
    if not isinstance(series, Mapping):
        raise TypeError(f"diagnose_history expects a Keras History or its .history dict but got {type(history).__name__}.")
    if learning_rate is not None and not isinstance(learning_rate, (list, tuple)) and not hasattr(learning_rate, "__len__"):
        n = len(next(iter(series.values()), []))
        learning_rate = [float(learning_rate)] * n
    record = TrainingRecord.from_history(series, learning_rate=learning_rate)
    return diagnose(record)
