"""Overfitting: val_loss rising for several epochs while the training loss keeps falling."""

from __future__ import annotations

import numpy as np

from descentkit.diagnostics._detector import Detector
from descentkit.diagnostics._finding import OVERFITTING, Finding
from descentkit.diagnostics._record import TrainingRecord
from descentkit.diagnostics._signals import epoch_number, epoch_step, training_loss

# val_loss must stay above its best for 3 epochs: Keras's EarlyStopping examples
# and most tutorials use a patience of 2-5; 3 waits out one or two noisy epochs
# of a small validation set without wasting many.
OVERFITTING_PATIENCE = 3
# ...and end at least 2 % above its best: smaller rises are within the epoch-to-epoch
# noise of val_loss on a few hundred validation samples.
OVERFITTING_MIN_RISE = 0.02
# ...while the training loss has fallen at least 1 % below its value at the best
# epoch (the gap grows because training still fits the training set).
OVERFITTING_MIN_TRAIN_IMPROVEMENT = 0.01


class OverfittingDetector(Detector):
    """Detects overfitting: val_loss above its best for `patience` epochs and 2 %
    higher, while the training loss keeps falling and the gap between them grows.

    One finding per best epoch, dated at the first epoch after it.

    Args:
        patience: epochs val_loss must stay above its best (default 3).
        min_rise: relative rise of val_loss above its best (default 0.02).
        min_train_improvement: relative fall of the training loss since the best
            epoch (default 0.01).

    Example:
        >>> findings = OverfittingDetector()(record)
    """

    symptom = OVERFITTING

    def __init__(
        self,
        patience: int = OVERFITTING_PATIENCE,
        min_rise: float = OVERFITTING_MIN_RISE,
        min_train_improvement: float = OVERFITTING_MIN_TRAIN_IMPROVEMENT,
    ) -> None:
        self.patience = self._count("patience", patience)
        self.min_rise = self._positive("min_rise", min_rise)
        self.min_train_improvement = self._fraction("min_train_improvement", min_train_improvement)

    def __call__(self, record: TrainingRecord) -> list[Finding]:
        val = record.series("val_loss")
        loss = training_loss(record)
        if len(val) != record.n_epochs or not np.isfinite(val).any():
            return []
        findings = []
        reported: set[int] = set()
        best = None
        for i in range(len(val)):
            if not np.isfinite(val[i]):
                continue
            if best is None or val[i] < val[best]:
                best = i
                continue
            if best in reported or i - best < self.patience or not np.isfinite(loss[i]) or not np.isfinite(loss[best]):
                continue
            gap_then, gap_now = val[best] - loss[best], val[i] - loss[i]
            if (
                val[i] > val[best] * (1 + self.min_rise)
                and loss[i] < loss[best] * (1 - self.min_train_improvement)
                and gap_now > gap_then
            ):
                reported.add(best)
                findings.append(self._finding(record, best, i, val, loss))
        return findings

    def _finding(self, record: TrainingRecord, best: int, now: int, val: np.ndarray, loss: np.ndarray) -> Finding:
        start = best + 1
        best_epoch = epoch_number(record, best)
        return Finding(
            symptom=OVERFITTING,
            severity="warning",
            epoch=epoch_number(record, start),
            step=epoch_step(record, start),
            message=(
                f"val_loss rose from {val[best]:.4g} (best, epoch {best_epoch}) to {val[now]:.4g} by epoch "
                f"{epoch_number(record, now)} while the training loss fell from {loss[best]:.4g} to {loss[now]:.4g}."
            ),
            advice=(
                f"Stop earlier: best val_loss at epoch {best_epoch} (EarlyStopping(restore_best_weights=True)); "
                "or regularize: add L2 1e-4 or dropout 0.2, or get more data."
            ),
            evidence={
                "best_epoch": best_epoch,
                "best_val_loss": float(val[best]),
                "val_loss": float(val[now]),
                "train_loss_at_best": float(loss[best]),
                "train_loss": float(loss[now]),
                "gap_at_best": float(val[best] - loss[best]),
                "gap": float(val[now] - loss[now]),
                "confirmed_epoch": epoch_number(record, now),
            },
        )
