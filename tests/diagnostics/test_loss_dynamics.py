import numpy as np
import pytest

from descentkit.diagnostics import (
    OSCILLATING_LOSS,
    STALLED_TRAINING,
    OscillatingLossDetector,
    StalledTrainingDetector,
    TrainingRecord,
    episode_key,
)


def _history(**series):
    n = len(next(iter(series.values())))
    record = TrainingRecord()
    for i in range(n):
        record.add_epoch(i, {k: v[i] for k, v in series.items()}, learning_rate=0.05, step=(i + 1) * 100)
    return record


SMOOTH = [2.3 * np.exp(-0.4 * i) + 0.05 for i in range(15)]
ZIGZAG = [1.0, 0.8, 0.7, 1.1, 0.6, 1.2, 0.7, 1.0, 0.6, 1.1, 0.7, 1.0]


def test_oscillating_loss_reported_from_the_window_start():
    (f,) = OscillatingLossDetector()(_history(loss=ZIGZAG))
    assert (f.symptom, f.severity) == (OSCILLATING_LOSS, "warning")
    assert f.epoch == 1 and f.step == 100  # the first 6-epoch window zig-zags already
    assert f.evidence["sign_changes"] >= 3
    assert f.evidence["relative_amplitude"] >= 0.1
    assert "0.05" in f.advice and "batch size" in f.advice and "momentum" in f.advice


def test_oscillating_loss_one_finding_per_episode_as_epochs_arrive():
    seen = [OscillatingLossDetector()(_history(loss=ZIGZAG[:n])) for n in range(1, len(ZIGZAG) + 1)]
    assert {episode_key(f) for findings in seen for f in findings} == {(OSCILLATING_LOSS, "step", 100)}


def test_smooth_or_slightly_noisy_decay_does_not_oscillate():
    rng = np.random.default_rng(1)
    noisy = [v * (1 + 0.02 * rng.standard_normal()) for v in SMOOTH]
    assert OscillatingLossDetector()(_history(loss=SMOOTH)) == []
    assert OscillatingLossDetector()(_history(loss=noisy)) == []


def test_plateau_with_small_wiggles_does_not_oscillate():
    plateau = [0.30, 0.31, 0.30, 0.31, 0.30, 0.31, 0.30, 0.31]
    assert OscillatingLossDetector()(_history(loss=plateau)) == []


def test_stalled_training_from_the_start_is_critical():
    loss = [2.303, 2.302, 2.302, 2.303, 2.301, 2.302, 2.302, 2.302]
    accuracy = [0.100, 0.102, 0.101, 0.100, 0.102, 0.100, 0.101, 0.100]  # chance, for 10 classes
    (f,) = StalledTrainingDetector()(_history(loss=loss, accuracy=accuracy, val_accuracy=accuracy))
    assert (f.symptom, f.severity) == (STALLED_TRAINING, "critical")
    assert f.epoch == 2 and f.step == 200  # no progress in epochs 2-6 over epoch 1
    assert f.evidence["loss_fraction_of_start"] == pytest.approx(1.0, abs=0.01)
    assert "raise the learning rate from 0.05" in f.advice.lower() and "labels" in f.advice


def test_stalled_after_early_progress_is_a_warning():
    loss = [2.3, 1.8, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6]
    (f,) = StalledTrainingDetector()(_history(loss=loss))
    assert (f.severity, f.epoch) == ("warning", 4)  # the first epoch without progress


def test_stalled_training_one_finding_per_episode_as_epochs_arrive():
    loss = [2.3, 1.8, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6]
    keys = {episode_key(f) for n in range(1, 11) for f in StalledTrainingDetector()(_history(loss=loss[:n]))}
    assert keys == {(STALLED_TRAINING, "step", 400)}


def test_converged_runs_are_not_stalled():
    flat_low = [2.3, 0.5, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]
    assert StalledTrainingDetector()(_history(loss=flat_low)) == []
    high_but_accurate = [2.3, 1.6, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5]
    assert StalledTrainingDetector()(_history(loss=high_but_accurate, accuracy=[0.995] * 10)) == []


def test_flat_training_loss_with_improving_val_accuracy_is_not_stalled():
    loss = [2.3, 1.8, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6]
    val_accuracy = list(np.linspace(0.3, 0.6, 10))
    assert StalledTrainingDetector()(_history(loss=loss, val_accuracy=val_accuracy)) == []


def test_loss_dynamics_detectors_validate_arguments():
    with pytest.raises(ValueError, match="min_sign_changes.*9"):
        OscillatingLossDetector(window=6, min_sign_changes=9)
    with pytest.raises(ValueError, match="epochs.*1"):
        StalledTrainingDetector(epochs=1)
