import pytest

from descentkit.diagnostics import OVERFITTING, OverfittingDetector, TrainingRecord, episode_key

LOSS = [1.0, 0.7, 0.5, 0.4, 0.32, 0.26, 0.21, 0.17, 0.14, 0.12]
VAL_LOSS = [1.05, 0.8, 0.62, 0.55, 0.57, 0.60, 0.64, 0.69, 0.75, 0.82]  # best at epoch index 3


def _record(n=len(LOSS), loss=LOSS, val_loss=VAL_LOSS):
    steps = [(i + 1) * 100 for i in range(n)]
    record = TrainingRecord()
    for i in range(n):
        record.add_epoch(i, {"loss": loss[i], "val_loss": val_loss[i]}, learning_rate=0.01, step=steps[i])
    return record


def test_overfitting_reports_best_epoch_and_growing_gap():
    (f,) = OverfittingDetector()(_record())
    assert (f.symptom, f.severity) == (OVERFITTING, "warning")
    assert f.epoch == 5 and f.step == 500  # the episode starts right after the best epoch
    assert f.evidence["best_epoch"] == 4
    assert f.evidence["best_val_loss"] == pytest.approx(0.55)
    assert f.evidence["gap"] > f.evidence["gap_at_best"]
    assert "best val_loss at epoch 4" in f.advice and "L2 1e-4" in f.advice and "dropout 0.2" in f.advice


def test_overfitting_one_finding_per_episode_as_epochs_arrive():
    seen = [OverfittingDetector()(_record(n)) for n in range(1, len(LOSS) + 1)]
    assert len({episode_key(f) for findings in seen for f in findings}) == 1
    assert seen[5] == []  # two epochs above the best: not yet
    assert seen[6] and seen[6][0].evidence["confirmed_epoch"] == 7  # three epochs: confirmed
    assert seen[-1] == [f for f in seen if f][0]


def test_overfitting_needs_val_loss():
    record = TrainingRecord.from_history({"loss": LOSS})
    assert OverfittingDetector()(record) == []


def test_val_loss_rising_with_training_loss_is_not_overfitting():
    rising = [0.5 + 0.05 * i for i in range(10)]
    assert OverfittingDetector()(_record(loss=[v - 0.1 for v in rising], val_loss=rising)) == []


def test_val_loss_still_improving_is_not_overfitting():
    val = [1.05, 0.8, 0.62, 0.55, 0.52, 0.50, 0.49, 0.48, 0.47, 0.46]
    assert OverfittingDetector()(_record(val_loss=val)) == []


def test_overfitting_validates_patience():
    with pytest.raises(ValueError, match="patience.*0"):
        OverfittingDetector(patience=0)
