import numpy as np
import pytest

from descentkit.diagnostics import (
    DEAD_UNITS,
    SATURATED_ACTIVATIONS,
    DeadUnitsDetector,
    SaturatedActivationsDetector,
    TrainingRecord,
    episode_key,
)


def _record(losses, dead=None, saturated=None, accuracy=None):
    record = TrainingRecord()
    for i, loss in enumerate(losses):
        logs = {"loss": loss}
        if accuracy is not None:
            logs["accuracy"] = accuracy[i]
        record.add_epoch(
            i,
            logs,
            learning_rate=0.3,
            step=(i + 1) * 50,
            dead_fraction={k: v[i] for k, v in (dead or {}).items()},
            saturated_fraction={k: v[i] for k, v in (saturated or {}).items()},
        )
    return record


FLAT = [2.30, 2.30, 2.29, 2.30, 2.30, 2.30, 2.30, 2.30]
IMPROVING = [2.0, 1.5, 1.1, 0.8, 0.6, 0.45, 0.35, 0.3]


def test_dead_units_warn_above_half_then_turn_critical_when_loss_stalls():
    dead = {"dense": [0.1, 0.2, 0.6, 0.7, 0.95, 0.96, 0.97, 0.97], "dense_1": [0.0] * 8}
    findings = DeadUnitsDetector()(_record(FLAT, dead=dead))
    assert [(f.severity, f.epoch, f.step) for f in findings] == [("warning", 3, 150), ("critical", 5, 250)]
    assert findings[1].evidence["layer"] == "dense"
    assert findings[1].evidence["dead_fraction"] == pytest.approx(0.95)
    assert "LeakyReLU" in findings[1].advice and "He" in findings[1].advice and "0.3" in findings[1].advice


def test_mostly_dead_layer_while_loss_improves_is_only_a_warning():
    dead = {"dense": [0.95] * 8}
    (f,) = DeadUnitsDetector()(_record(IMPROVING, dead=dead))
    assert (f.severity, f.epoch) == ("warning", 1)
    assert f.evidence["loss_improving"] is True


def test_dead_units_one_finding_per_episode_as_epochs_arrive():
    dead = {"dense": [0.1, 0.2, 0.6, 0.7, 0.95, 0.96, 0.97, 0.97]}
    keys = {episode_key(f) for n in range(1, 9) for f in DeadUnitsDetector()(_record(FLAT[:n], dead={"dense": dead["dense"][:n]}))}
    assert keys == {(DEAD_UNITS, "step", 150), (DEAD_UNITS, "step", 250)}


def test_unprobed_epochs_neither_break_nor_start_episodes():
    nan = float("nan")
    dead = {"dense": [0.6, nan, 0.7, nan, 0.8, nan, 0.8, nan]}  # probed every other epoch
    (f,) = DeadUnitsDetector()(_record(IMPROVING, dead=dead))
    assert f.epoch == 1


def test_saturation_for_two_epochs_with_flat_loss_is_reported():
    saturated = {"tanh_1": [0.2, 0.3, 0.7, 0.8, 0.8, 0.85, 0.9, 0.9]}
    (f,) = SaturatedActivationsDetector()(_record(FLAT, saturated=saturated))
    assert (f.symptom, f.severity, f.epoch, f.step) == (SATURATED_ACTIVATIONS, "warning", 3, 150)
    assert f.evidence["layer"] == "tanh_1"
    assert "normalize the inputs" in f.advice.lower() and "Glorot" in f.advice


def test_saturation_while_training_improves_is_quiet():
    saturated = {"tanh_1": [0.7] * 8}
    accuracy = list(np.linspace(0.3, 0.9, 8))
    assert SaturatedActivationsDetector()(_record(IMPROVING, saturated=saturated, accuracy=accuracy)) == []


def test_one_saturated_epoch_is_not_enough():
    saturated = {"tanh_1": [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.9]}
    assert SaturatedActivationsDetector()(_record(FLAT, saturated=saturated)) == []


def test_activation_detectors_validate_fractions():
    with pytest.raises(ValueError, match="1.5"):
        DeadUnitsDetector(warning_fraction=1.5)
    with pytest.raises(ValueError, match="critical_fraction.*0.3"):
        DeadUnitsDetector(critical_fraction=0.3)
    with pytest.raises(ValueError, match="patience.*0"):
        SaturatedActivationsDetector(patience=0)
