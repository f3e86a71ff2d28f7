"""The shape of the loss curve: oscillating without progress, or stalled far from done."""

from __future__ import annotations

import numpy as np

from descentkit.diagnostics._detector import Detector, runs
from descentkit.diagnostics._divergence import lower_rate_phrase
from descentkit.diagnostics._finding import OSCILLATING_LOSS, STALLED_TRAINING, Finding
from descentkit.diagnostics._record import TrainingRecord
from descentkit.diagnostics._signals import (
    Progress,
    chance_level,
    epoch_number,
    epoch_step,
    learning_rate_at,
    memoized,
    not_improving,
    rate_in_force_text,
    rate_text,
    sentence,
    start_loss,
    training_loss,
)

# Oscillation is judged on the epoch loss over windows of 6 epochs (5 differences):
# epoch means average out minibatch noise, so a zig-zag there is the optimizer
# overshooting, not sampling noise. Step losses are not used: their noise alone
# changes sign every other step in healthy runs.
OSCILLATION_WINDOW = 6
# At least 3 of the 4 possible sign changes of the first difference: up-down-up-down.
OSCILLATION_MIN_SIGN_CHANGES = 3
# Swings of at least 10 % of the loss per epoch: a converging epoch loss moves
# smoothly, and a plateaued one by well under 1 % per epoch.
OSCILLATION_MIN_AMPLITUDE = 0.1
# ...and of at least 5 % of the starting loss: once a run has cut its loss 20x, swings
# of 10 % of what is left are minibatch and momentum noise, not overshooting (a
# healthy deep tanh net zig-zagged by 27 % of a 0.1 epoch loss, 1.2 % of its 2.3
# start, while its validation accuracy kept rising; overshooting SGD swings by 20 %
# or more of its start).
OSCILLATION_MIN_AMPLITUDE_OF_START = 0.05

# Stalled: no progress (1 % on the loss, 0.5 points of accuracy, see _signals) over
# 5 epochs: long enough that a slow but steady run (1 %/epoch)
# is never flagged.
STALL_EPOCHS = 5
# ...while the loss is still above half its starting value: trained classifiers
# divide their cross-entropy by far more than 2 (ln 10 = 2.3 down to 0.3 or less on
# 10-class image data), so a run stuck above half its start has not learned much.
STALL_MAX_PROGRESS_FRACTION = 0.5
# Runs that reached this accuracy or this loss have converged and are never stalled.
CONVERGED_ACCURACY = 0.99
CONVERGED_LOSS = 1e-3
# A run whose best loss is still above 90 % of its start has learned nothing: critical.
STALL_NEVER_LEARNED_FRACTION = 0.9
# Judged against the task's chance level (`record.chance_loss`, the loss of the best
# constant prediction): training and validation losses within 5 % of it, or above it
# (`AT_CHANCE_FRACTION`), have learned nothing about the inputs. Three epochs there
# is enough to call the run hopeless (critical): the model has had hundreds of steps
# to learn even the output bias, and the chance level is a fixed point it is not leaving.
STALL_AT_CHANCE_EPOCHS = 3


class OscillatingLossDetector(Detector):
    """Detects an oscillating loss: the epoch loss zig-zags by 10 % or more (and by 5 %
    of its starting value) with no net progress over a window of epochs.

    Args:
        window: epochs judged at once (default 6).
        min_sign_changes: sign changes of the epoch-to-epoch difference needed
            (default 3, of `window` - 2 possible).
        min_amplitude: mean absolute epoch-to-epoch change, relative to the mean
            loss (default 0.1).

    Example:
        >>> findings = OscillatingLossDetector()(record)
    """

    symptom = OSCILLATING_LOSS

    def __init__(
        self,
        window: int = OSCILLATION_WINDOW,
        min_sign_changes: int = OSCILLATION_MIN_SIGN_CHANGES,
        min_amplitude: float = OSCILLATION_MIN_AMPLITUDE,
    ) -> None:
        self.window = self._count("window", window, minimum=4)
        self.min_sign_changes = self._count("min_sign_changes", min_sign_changes)
        if self.min_sign_changes > self.window - 2:
            raise ValueError(
                f"OscillatingLossDetector: min_sign_changes must be at most window - 2 ({self.window - 2}) "
                f"but got {min_sign_changes!r}."
            )
        self.min_amplitude = self._positive("min_amplitude", min_amplitude)

    def _judge(self, values: np.ndarray, start: float) -> tuple[bool, dict[str, float]]:
        diffs = np.diff(values)
        sign_changes = int(np.sum(diffs[1:] * diffs[:-1] < 0))
        scale = float(np.mean(np.abs(values)))
        amplitude = float(np.mean(np.abs(diffs))) / scale if scale > 0 else 0.0
        of_start = float(np.mean(np.abs(diffs))) / abs(start) if np.isfinite(start) and start else float("inf")
        half = len(values) // 2
        progress = float(np.mean(values[:half]) - np.mean(values[half:])) / scale if scale > 0 else 0.0
        oscillating = (
            sign_changes >= self.min_sign_changes
            and amplitude >= self.min_amplitude
            and of_start >= OSCILLATION_MIN_AMPLITUDE_OF_START
            and progress < amplitude
        )
        return oscillating, {
            "sign_changes": sign_changes,
            "relative_amplitude": amplitude,
            "amplitude_of_start": of_start,
            "net_progress": progress,
        }

    def __call__(self, record: TrainingRecord) -> list[Finding]:
        loss = training_loss(record)
        n = len(loss)
        if n < self.window:
            return []
        start = start_loss(record)

        def verdict(i: int) -> tuple[bool, dict[str, float]]:  # the window of epochs ending at i
            values = loss[i - self.window + 1 : i + 1]
            if i < self.window - 1 or not np.isfinite(values).all():
                return False, {}
            return self._judge(values, start)

        key = ("oscillating_loss", self.window, self.min_sign_changes, self.min_amplitude)
        verdicts = memoized(record, key, [loss, np.array([start])], n, verdict)
        findings = []
        for first, _ in runs([v[0] for v in verdicts], merge_gap=self.window - 1):
            start = first - self.window + 1
            values = loss[start : first + 1]
            rate = learning_rate_at(record, first)
            findings.append(
                Finding(
                    symptom=OSCILLATING_LOSS,
                    severity="warning",
                    epoch=epoch_number(record, start),
                    step=epoch_step(record, start),
                    message=(
                        f"The loss oscillates over epochs {epoch_number(record, start)}-"
                        f"{epoch_number(record, first)} (swings of {verdicts[first][1]['relative_amplitude']:.0%}, "
                        f"{verdicts[first][1]['sign_changes']} reversals) without net progress."
                    ),
                    advice=(
                        f"{sentence(lower_rate_phrase(record, first))}, raise the batch size, "
                        "or lower the momentum (e.g. 0.9 to 0.5)."
                    ),
                    evidence={
                        **verdicts[first][1],
                        "losses": [float(v) for v in values],
                        "learning_rate": float("nan") if rate is None else rate,
                    },
                )
            )
        return findings


class StalledTrainingDetector(Detector):
    """Detects stalled training: no progress in loss, val_loss or accuracy for 5
    epochs while the loss is still above half its starting value (warning), or for
    3 epochs with the training and validation losses at the task's chance level
    (critical: nothing about the inputs was learned).

    Converged runs (accuracy 0.99, loss 1e-3) are never stalled, nor are runs whose
    validation metrics still improve.

    Args:
        epochs: epochs without progress (default 5).
        max_progress_fraction: a stalled loss is above this fraction of its start
            (default 0.5).
        chance_epochs: epochs without progress at the chance level (default 3).

    Example:
        >>> findings = StalledTrainingDetector()(record)
    """

    symptom = STALLED_TRAINING

    def __init__(
        self,
        epochs: int = STALL_EPOCHS,
        max_progress_fraction: float = STALL_MAX_PROGRESS_FRACTION,
        chance_epochs: int = STALL_AT_CHANCE_EPOCHS,
    ) -> None:
        self.epochs = self._count("epochs", epochs, minimum=2)
        self.max_progress_fraction = self._fraction("max_progress_fraction", max_progress_fraction)
        self.chance_epochs = self._count("chance_epochs", chance_epochs, minimum=2)

    def __call__(self, record: TrainingRecord) -> list[Finding]:
        loss = training_loss(record)
        start = start_loss(record)
        chance = chance_level(record)
        n = len(loss)
        has_start = bool(np.isfinite(start) and start > 0)
        if n < min(self.epochs + 1, self.chance_epochs) or (not has_start and chance is None):
            return []
        progress = Progress(record)
        stuck = not_improving(record, self.epochs, n)
        # "Little progress" is measured from what an untrained model scores: the
        # chance level when it is above the first steps' loss (those steps already
        # learned). A regression on noisy targets (R^2 0.5) ends at 36 % of its target
        # variance but 58 % of a start its first epoch had already halved; on the
        # tuning half of benchmarks/pathology_suite.py that healthy run, annealed by
        # a cosine schedule, was called stalled at 58 % of its start.
        reference = max(start, chance) if chance is not None and has_start else start

        def verdict(i: int) -> int:
            """0: not stalled; 1: stalled; 2: stalled at the chance level."""
            if not np.isfinite(loss[i]):
                return 0
            accuracy = progress.best_accuracy(i)
            if loss[i] <= CONVERGED_LOSS or (accuracy is not None and accuracy >= CONVERGED_ACCURACY):
                return 0
            if chance is not None and i >= self.chance_epochs - 1 and progress.at_chance(
                    slice(i - self.chance_epochs + 1, i + 1)):
                return 2
            if has_start and i >= self.epochs and stuck[i] and loss[i] > self.max_progress_fraction * reference:
                return 1
            return 0

        key = ("stalled_training", self.epochs, self.max_progress_fraction, self.chance_epochs, start,
               np.nan if chance is None else chance, reference)
        inputs = [*progress.inputs(), loss]
        verdicts = np.array(memoized(record, key, inputs, n, verdict), dtype=np.int64)
        findings = []
        for first, _ in runs(verdicts > 0):
            at_chance = verdicts[first] == 2
            window = self.chance_epochs if at_chance else self.epochs
            plateau = first - window + 1
            best = float(np.nanmin(loss[: first + 1]))
            never_learned = has_start and best > STALL_NEVER_LEARNED_FRACTION * start
            rate = learning_rate_at(record, first)
            accuracy = progress.best_accuracy(first)
            raise_rate = (
                f"raise the learning rate from {rate_in_force_text(record, first)} (e.g. 3-10x, to {rate_text(3 * rate)}-{rate_text(10 * rate)})"
                if rate is not None
                else "raise the learning rate 3-10x"
            )
            if at_chance:
                seen = f"loss {loss[first]:.4g} against a chance level of {chance:.4g}: nothing about the inputs was learned."
            else:
                seen = f"loss {loss[first]:.4g}, {loss[first] / start:.0%} of its start ({start:.4g})" + (
                    ", it never learned." if never_learned else "."
                )
            findings.append(
                Finding(
                    symptom=STALLED_TRAINING,
                    severity="critical" if at_chance or never_learned else "warning",
                    epoch=epoch_number(record, plateau),
                    step=epoch_step(record, plateau),
                    message=(
                        f"No progress for {window} epochs (epochs {epoch_number(record, plateau)}-"
                        f"{epoch_number(record, first)}): {seen}"
                    ),
                    advice=(
                        f"{sentence(raise_rate)}; check that the labels match the inputs and the loss; "
                        "check for vanishing gradients."
                    ),
                    evidence={
                        "loss": float(loss[first]),
                        "start_loss": start,
                        "best_loss": best,
                        "chance_loss": float("nan") if chance is None else chance,
                        "loss_fraction_of_start": float(loss[first] / start) if has_start else float("nan"),
                        "best_accuracy": float("nan") if accuracy is None else accuracy,
                        "epochs_without_progress": window,
                        "learning_rate": float("nan") if rate is None else rate,
                    },
                )
            )
        return findings
