"""Divergence: the loss or the gradients became non-finite, or the loss blew up."""

from __future__ import annotations

import numpy as np

from descentkit.diagnostics._detector import Detector, runs
from descentkit.diagnostics._finding import DIVERGENCE, Finding
from descentkit.diagnostics._record import TrainingRecord
from descentkit.diagnostics._signals import (
    chance_level,
    epoch_index_of_step,
    epoch_number,
    epoch_step,
    finite,
    is_cross_entropy,
    learning_rate_at,
    not_improving,
    rate_in_force_text,
    rate_text,
    sentence,
    training_loss,
)

# A sustained loss 10x above the best it reached is an order-of-magnitude rise: far
# beyond minibatch noise once the loss is smoothed over `DIVERGENCE_SUSTAIN_STEPS`
# (also the factor at which `fit` with a too-large SGD learning rate goes on to NaN
# within a few dozen steps in small MLPs measured here).
DIVERGENCE_BLOWUP_FACTOR = 10.0
# ...and the rise must give back at least half the starting loss, so a near-zero
# loss wobbling from 1e-4 to 1e-3 (an overfit net's noise) is not a blow-up, nor is
# the bad-batch spike of a nearly fitted net: healthy nets' 5-step median loss was
# measured jumping by 15-45 % of their start and coming back within 10 steps, while
# finite blow-ups climb past the starting loss itself.
DIVERGENCE_MIN_RISE_OF_START = 0.5
# A sustained loss 3x above where training started is worse than the untrained
# model by a wide margin (cross-entropy at 3x chance means confidently wrong
# predictions): critical, where a blow-up still below the start is a warning.
DIVERGENCE_START_FACTOR = 3.0
# A cross-entropy loss 10x its chance level (`record.chance_loss`, the best constant
# prediction's loss) for a whole epoch, with no progress, is an order of magnitude
# worse than knowing nothing: confidently wrong outputs (logits blown up by a rate or
# inputs far too large). No healthy classifier sits there: an untrained softmax
# scores about the chance level itself. Regression losses are not judged this way:
# an untrained net on targets far from zero starts orders of magnitude above their
# variance and is fine.
DIVERGENCE_CHANCE_FACTOR = 10.0
# ...judged over the last 2 epochs (the first epoch on its own step losses), so
# such a run stops after one or two epochs, not twenty.
DIVERGENCE_CHANCE_WINDOW = 2
# One step loss 10,000x its start is a blow-up even when the loss falls back at
# once: no minibatch is four orders of magnitude harder than the average one (a
# 500-sigma outlier target would be needed under MSE), and a step that large has
# thrown the weights far off; it counts once the loss stays up (below).
DIVERGENCE_SPIKE_FACTOR = 1e4
# A blow-up counts once the loss is still above its bound 6 steps after the first
# blown step (the median of the 3 steps ending there): a transient the loss comes
# back from is not divergence. Fitted on the tuning half of
# benchmarks/pathology_suite.py, where transients came back under 3x their start
# within 5 steps of a 1e4x jump (what they leave behind, dead units, is the
# finding); with the 2-step smoothing lag and a check after every step while a
# blow-up is pending, divergence that lasts is still seen within 10 steps of its start.
# A loss still above its bound there but 10x (the blow-up factor) below the episode's
# peak and within 10x of its start is on its way back: the episode stays pending
# (on the same tuning half, full-batch Adagrad came down from 7,855 to 4.56 at the
# check, 3.02x its start, and trained well after; the old rule stopped it there).
DIVERGENCE_CONFIRM_STEPS = 6
# Step losses are smoothed by a running median of 5 steps: one or two outlier
# batches never trigger, a blow-up lasting 3 of 5 steps does.
DIVERGENCE_SUSTAIN_STEPS = 5
# Smaller-rate suggestion for the advice: 3-10x smaller, the range within which
# SGD's stable rate is usually found again after divergence (one to one-and-a-half
# steps of a log-uniform learning-rate grid).
_SMALLER = (10.0, 3.0)


def _nonfinite_after_recorded(values: np.ndarray) -> np.ndarray:
    """Steps where a signal is +-inf, or NaN after it was recorded finite at an earlier
    step: NaN also means "not recorded", so a NaN counts only once the signal exists."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return np.zeros(0, dtype=bool)
    seen = np.maximum.accumulate(np.isfinite(values))
    seen_before = np.concatenate(([False], seen[:-1]))
    return np.isinf(values) | (np.isnan(values) & seen_before)


def lower_rate_phrase(record: TrainingRecord, index: int) -> str:
    """"lower the learning rate ..." for the rate in force at epoch `index`, with numbers:
    below the largest lower rate this run trained stably at, else 3-10x smaller."""
    rate = learning_rate_at(record, index)
    if rate is None:
        return "lower the learning rate 3-10x"
    earlier = np.asarray(record.learning_rate[:index], dtype=np.float64)
    stable = earlier[np.isfinite(earlier) & (earlier < rate)]
    if len(stable):
        return (
            f"lower the learning rate below {rate_in_force_text(record, index)}, to at most {rate_text(stable.max())} "
            "(the largest rate seen stable in this run)"
        )
    low, high = rate / _SMALLER[0], rate / _SMALLER[1]
    return f"lower the learning rate from {rate_in_force_text(record, index)} to {rate_text(low)}-{rate_text(high)} (3-10x smaller)"


class DivergenceDetector(Detector):
    """Detects divergence: the first non-finite loss or gradient (critical), a finite
    loss that blows up (sustained 10x its best, or 3x its start: critical), and a
    cross-entropy that stays 10x above the task's chance level (critical).

    The start is the median of the first step losses; when the chance level is
    known it is capped at the larger of the first step's loss and the chance level,
    so a loss that blows up within its first few steps still has a start to rise from.

    Works on step signals alone (mid-epoch, before any epoch logs), so a callback
    can call it every few steps and stop training right after the first NaN.

    Args:
        blowup_factor: a smoothed loss this many times its best so far is a blow-up
            (default `DIVERGENCE_BLOWUP_FACTOR`, 10).
        start_factor: a smoothed loss this many times the starting loss is a critical
            blow-up (default `DIVERGENCE_START_FACTOR`, 3).
        sustain_steps: step losses are smoothed by a running median over this many
            steps (default `DIVERGENCE_SUSTAIN_STEPS`, 5).
        confirm_steps: a blow-up counts when the loss is still up this many steps
            after it started (default `DIVERGENCE_CONFIRM_STEPS`, 6), or at the
            epoch's end.

    Example:
        >>> findings = DivergenceDetector()(record)
    """

    symptom = DIVERGENCE

    def __init__(
        self,
        blowup_factor: float = DIVERGENCE_BLOWUP_FACTOR,
        start_factor: float = DIVERGENCE_START_FACTOR,
        sustain_steps: int = DIVERGENCE_SUSTAIN_STEPS,
        confirm_steps: int = DIVERGENCE_CONFIRM_STEPS,
    ) -> None:
        self.blowup_factor = self._above_one("blowup_factor", blowup_factor)
        self.start_factor = self._above_one("start_factor", start_factor)
        self.sustain_steps = self._count("sustain_steps", sustain_steps)
        self.confirm_steps = self._count("confirm_steps", confirm_steps, minimum=2)

    def __call__(self, record: TrainingRecord) -> list[Finding]:
        nonfinite, index = self._first_nonfinite(record)
        # The blow-up is looked for only before the first non-finite value: after it
        # the run is over, and one finding says so.
        limit_step = nonfinite.step if nonfinite is not None else None
        findings = self._blowups(record, limit_step, index)
        if not findings:
            findings = self._above_chance(record, index)
        if nonfinite is not None:
            findings.append(nonfinite)
        return findings

    # ------------------------------------------------------------ far above chance
    def _above_chance(self, record: TrainingRecord, limit_epoch: int | None) -> list[Finding]:
        """The first epoch whose cross-entropy is `DIVERGENCE_CHANCE_FACTOR` above the
        chance level and not improving (or with a validation loss as far above it):
        one critical finding (the run is hopeless)."""
        chance = chance_level(record)
        if chance is None or not is_cross_entropy(record):
            return []
        loss = training_loss(record)[:limit_epoch]
        if not len(loss):
            return []
        stuck = not_improving(record, DIVERGENCE_CHANCE_WINDOW, len(loss))
        # A validation loss as far above chance at the same epoch's end says the same of
        # the weights training ended the epoch with, with or without progress on the way.
        val = record.series("val_loss")[: len(loss)]
        val_far = np.zeros(len(loss), dtype=bool)
        val_far[: len(val)] = np.isfinite(val) & (val > DIVERGENCE_CHANCE_FACTOR * chance)
        far = np.isfinite(loss) & (loss > DIVERGENCE_CHANCE_FACTOR * chance)
        hits = np.flatnonzero(far & (stuck | val_far))
        if not len(hits):
            return []
        index = int(hits[0])
        ratio = float(loss[index] / chance)
        return [
            Finding(
                symptom=DIVERGENCE,
                severity="critical",
                epoch=epoch_number(record, index),
                step=epoch_step(record, index),
                message=(
                    f"The loss stays at {loss[index]:.4g}, {ratio:.3g}x the chance level ({chance:.4g}, the loss "
                    "of predicting the label frequencies): the outputs are confidently wrong and not improving."
                ),
                advice=(
                    f"{_divergence_advice(record, index)[:-1]}; check that the inputs are normalized "
                    "(zero mean, unit variance)."
                ),
                evidence={
                    "loss": float(loss[index]),
                    "chance_loss": float(chance),
                    "ratio_to_chance": ratio,
                    "window_epochs": DIVERGENCE_CHANCE_WINDOW,
                    "learning_rate": _or_nan(learning_rate_at(record, index)),
                },
            )
        ]

    # ------------------------------------------------------------ non-finite
    def _first_nonfinite(self, record: TrainingRecord) -> tuple[Finding | None, int | None]:
        """The first non-finite loss or gradient, and the index of its epoch."""
        steps = record.steps
        grad_bad = _nonfinite_after_recorded(record.grad_norm)
        loss_bad = _nonfinite_after_recorded(record.step_loss)
        bad = (record.nonfinite > 0) | grad_bad | loss_bad
        step_hit = int(np.argmax(bad)) if bad.any() else None
        step_epoch = epoch_index_of_step(record, int(steps[step_hit])) if step_hit is not None else None

        # Epoch logs: the training loss is always logged, so NaN there is real; other
        # losses (val_loss with validation_freq > 1) are NaN when absent, so only inf counts.
        epoch_bad = np.zeros(record.n_epochs, dtype=bool)
        for key, values in record.history.items():
            if not key.endswith("loss"):
                continue
            values = np.asarray(values, dtype=np.float64)
            epoch_bad |= ~np.isfinite(values) if key == "loss" else np.isinf(values)
        epoch_hit = int(np.argmax(epoch_bad)) if epoch_bad.any() else None

        if step_hit is not None and (epoch_hit is None or step_epoch <= epoch_hit):
            index, step = step_epoch, int(steps[step_hit])
            what = []
            if record.nonfinite[step_hit] > 0:
                layers = int(record.nonfinite[step_hit])
                what.append(f"non-finite gradients in {layers} layer{'s' if layers != 1 else ''}")
            if grad_bad[step_hit]:
                what.append(f"gradient norm {record.grad_norm[step_hit]}")
            if loss_bad[step_hit]:
                what.append(f"loss {record.step_loss[step_hit]}")
            earlier = finite(record.step_loss[:step_hit])
            evidence = {
                "step": step,
                "nonfinite_gradients": float(record.nonfinite[step_hit]),
                "grad_norm": float(record.grad_norm[step_hit]),
                "loss": float(record.step_loss[step_hit]),
                "last_finite_loss": float(earlier[-1]) if len(earlier) else float("nan"),
                "last_finite_grad_norm": _last_finite(record.grad_norm[:step_hit]),
                "learning_rate": _or_nan(learning_rate_at(record, index)),
            }
            message = f"Training diverged at step {step}: {', '.join(what) or 'non-finite values'}."
        elif epoch_hit is not None:
            index, step = epoch_hit, epoch_step(record, epoch_hit)
            logged = {k: float(v[epoch_hit]) for k, v in record.history.items() if k.endswith("loss")}
            evidence = {
                "step": step,
                **logged,
                "learning_rate": _or_nan(learning_rate_at(record, index)),
            }
            shown = ", ".join(f"{k}={v}" for k, v in logged.items() if not np.isfinite(v))
            message = f"Training diverged in epoch {epoch_number(record, index)}: {shown}."
        else:
            return None, None
        finding = Finding(
            symptom=DIVERGENCE,
            severity="critical",
            epoch=epoch_number(record, index),
            step=step,
            message=message,
            advice=_divergence_advice(record, index),
            evidence=evidence,
        )
        return finding, index

    # ------------------------------------------------------------ blow-up
    def _blowups(self, record: TrainingRecord, limit_step: int | None, limit_epoch: int | None) -> list[Finding]:
        steps = record.steps
        step_loss = record.step_loss
        if limit_step is not None:
            keep = steps < limit_step
            steps, step_loss = steps[keep], step_loss[keep]
        recorded = np.isfinite(step_loss)
        if recorded.sum() >= 2:
            where = steps[recorded]
            loss = step_loss[recorded]
            # Full-batch steps have no minibatch noise to smooth: the window is at most
            # the steps of an epoch (1 for full-batch training).
            window = min(self.sustain_steps, len(loss), _steps_per_epoch(record) or self.sustain_steps)
            start = starting_loss(loss, window, chance_level(record), self.blowup_factor)
            complete = _epoch_complete(record, where, self.confirm_steps)
            findings = self._spike(record, loss, where, start, complete, window)
            if len(loss) <= window:
                return findings
        else:  # epoch losses: an epoch mean is already sustained over many steps
            loss = training_loss(record)[: limit_epoch if limit_epoch is not None else None]
            loss = loss[: int(np.argmin(np.isfinite(loss))) if not np.isfinite(loss).all() else None]
            where = None
            window = 1
            complete = True
            findings = []
            if len(loss) < 2:
                return []
            start = float(loss[0])
        if len(loss) < window + 1 or not np.isfinite(start):
            return findings
        smooth = np.median(np.lib.stride_tricks.sliding_window_view(loss, window), axis=1)
        best = np.minimum.accumulate(smooth)
        rise_floor = DIVERGENCE_MIN_RISE_OF_START * abs(start)
        blown = (smooth > self.blowup_factor * best) & (smooth - best > rise_floor)
        critical = smooth > self.start_factor * abs(start)
        spiked = min((f.step for f in findings), default=None)
        for first, _ in runs(blown | critical, merge_gap=2 * window):
            severity = "critical" if critical[first] else "warning"
            bound = self.start_factor * abs(start) if severity == "critical" else max(
                self.blowup_factor * best[first], best[first] + rise_floor)
            at = first + window - 1  # index into `loss` of the window's last value
            if where is not None:
                # Still blown up `confirm_steps` after its first blown step, or a transient
                # the loss came back from (dated from that first step, not the window's end).
                onset = first + int(np.argmax(loss[first : at + 1] > bound))
                if not self._confirmed(loss, onset, bound, complete, window, start):
                    continue
                step = int(where[at])
                if spiked is not None and spiked <= step:
                    continue  # the spike that started it is already the finding
                index = epoch_index_of_step(record, step)
            else:
                index = at
                step = epoch_step(record, index)
            ratio = smooth[first] / best[first] if best[first] > 0 else float("inf")
            findings.append(
                Finding(
                    symptom=DIVERGENCE,
                    severity=severity,
                    epoch=epoch_number(record, index),
                    step=step,
                    message=(
                        f"Loss blew up to {smooth[first]:.4g}, {smooth[first] / abs(start):.3g}x its start ({start:.4g})."
                        if severity == "critical"
                        else f"Loss blew up to {smooth[first]:.4g}, {ratio:.3g}x its best so far "
                        f"({best[first]:.4g}; it started at {start:.4g})."
                    ),
                    advice=_divergence_advice(record, index),
                    evidence={
                        "loss": float(smooth[first]),
                        "best_loss": float(best[first]),
                        "start_loss": start,
                        "ratio_to_best": float(ratio),
                        "ratio_to_start": float(smooth[first] / abs(start)) if start else float("inf"),
                        "smoothed_over": "steps" if where is not None else "epochs",
                        "window": window,
                        "learning_rate": _or_nan(learning_rate_at(record, index)),
                    },
                )
            )
        return sorted(findings, key=lambda f: f.step if f.step is not None else -1)

    def _confirmed(self, loss: np.ndarray, onset: int, bound: float, complete: bool, window: int,
                   start: float) -> bool:
        """Whether the loss is still above `bound` `confirm_steps` after `onset` (the
        median of the 3 steps ending there) and not on its way back. Until then the
        episode is pending, unless the epoch is over (`_epoch_complete`): then the
        steps that followed it decide.

        Without minibatch noise (full-batch steps, `window` 1) there is no outlier to
        take a median over: a loss that came back under `bound` at any step of the
        window came back. On the tuning half of benchmarks/pathology_suite.py, a
        full-batch momentum-0.99 regression swung between 0.02-0.6 and its start of
        3 every third step (oscillating loss) and the 3-step median called it a
        lasting blow-up.

        On its way back (`_returning`): a loss still above `bound` but already
        `blowup_factor` below the peak of its episode, and no longer `blowup_factor`
        above the start, is coming back, not diverging; the episode stays pending as
        long as the loss stays above `bound`, and counts at the first step it stops
        coming back."""
        check = onset + self.confirm_steps
        if check < len(loss):
            if window == 1:
                above = loss[onset + 1 :] > bound
                stay = len(above) if above.all() else int(np.argmin(above))  # steps still above
                if onset + stay < check:
                    return False
                at = np.arange(check, onset + stay + 1)
                level = loss[at]
            else:
                medians = np.median(np.lib.stride_tricks.sliding_window_view(loss[check - 2 :], 3), axis=1)
                above = medians > bound
                stay = len(above) if above.all() else int(np.argmin(above))
                at, level = np.arange(check, check + stay), medians[:stay]
            peak = np.maximum.accumulate(loss[onset:])[at - onset]
            return bool(np.any(~self._returning(level, peak, start)))
        later = loss[onset + 1 :]
        if not (complete and len(later)):
            return False
        level = float(np.median(later[-3:]))
        return level > bound and not self._returning(np.asarray([level]), np.asarray([loss[onset:].max()]), start)[0]

    def _returning(self, level: np.ndarray, peak: np.ndarray, start: float) -> np.ndarray:
        """Whether a blown-up loss at `level` is on its way back: `blowup_factor` below the
        episode's `peak` so far and within `blowup_factor` of the `start`."""
        return (level * self.blowup_factor <= peak) & (level <= self.blowup_factor * abs(start))

    def _spike(self, record: TrainingRecord, loss: np.ndarray, where: np.ndarray, start: float,
               complete: bool, window: int) -> list[Finding]:
        """A single step loss `DIVERGENCE_SPIKE_FACTOR` above the start that the loss
        has not come back from: one step that large throws the weights far off."""
        if not start or not np.isfinite(start):
            return []
        bound = self.start_factor * abs(start)
        for at in np.flatnonzero(loss > DIVERGENCE_SPIKE_FACTOR * abs(start)).tolist():
            if not self._confirmed(loss, at, bound, complete, window, start):
                continue
            step = int(where[at])
            index = epoch_index_of_step(record, step)
            return [
                Finding(
                    symptom=DIVERGENCE,
                    severity="critical",
                    epoch=epoch_number(record, index),
                    step=step,
                    message=(
                        f"The loss jumped to {loss[at]:.4g} at step {step}, {loss[at] / abs(start):.3g}x its start "
                        f"({start:.4g}), and stayed far above it."
                    ),
                    advice=_divergence_advice(record, index),
                    evidence={
                        "loss": float(loss[at]),
                        "start_loss": start,
                        "ratio_to_start": float(loss[at] / abs(start)),
                        "smoothed_over": "none (one step)",
                        "learning_rate": _or_nan(learning_rate_at(record, index)),
                    },
                )
            ]
        return []


def starting_loss(loss: np.ndarray, window: int = DIVERGENCE_SUSTAIN_STEPS, chance: float | None = None,
                  blowup_factor: float = DIVERGENCE_BLOWUP_FACTOR) -> float:
    """The loss a blow-up is measured from: the median of the first `window` finite
    step losses `loss`. That window may hold the blow-up already: the start is then
    the first step's loss or the chance level, whichever is larger (without a chance
    level, the first step's loss once it is `blowup_factor` below the median: no two
    batches of an untrained net differ that much)."""
    start = float(np.median(loss[:window]))
    if chance is not None:
        return min(start, max(float(loss[0]), chance))
    if float(loss[0]) * blowup_factor < start:
        return float(loss[0])
    return start


def _steps_per_epoch(record: TrainingRecord) -> int | None:
    """The median number of optimizer steps per completed epoch, if known."""
    ends = np.asarray([e for e in record.epoch_end_step if e is not None], dtype=np.float64)
    if not len(ends):
        return None
    return max(1, int(np.median(np.diff(np.concatenate(([0.0], ends))))))


def _epoch_complete(record: TrainingRecord, where: np.ndarray, confirm_steps: int) -> bool:
    """Whether the last recorded step ends an epoch at which a pending blow-up is
    decided by the steps that followed it (an epoch-end diagnosis).

    Only epochs of at least `confirm_steps` steps decide early. A shorter epoch
    (full-batch training: one step) is followed by the next ones, each diagnosed, so
    the confirming steps arrive within `confirm_steps` optimizer steps anyway; deciding
    at each one-step epoch's end judged a blow-up on the one step after it. On the
    tuning half of benchmarks/pathology_suite.py, full-batch Adagrad and RMSprop steps
    threw the loss up 30-2,000x and it came back under 3x its start within 1-4 steps
    (exploding gradients by the oracle's held-batch gradient, trains well after), yet
    all were called divergence at step 2 and stopped there.
    """
    ends = [e for e in record.epoch_end_step if e is not None]
    if not (ends and len(where) and ends[-1] >= where[-1]):
        return False
    per_epoch = _steps_per_epoch(record)
    return per_epoch is None or per_epoch >= confirm_steps


def _divergence_advice(record: TrainingRecord, index: int) -> str:
    return f"{sentence(lower_rate_phrase(record, index))}, and consider clipping gradients with clipnorm=1.0."


def _last_finite(values: np.ndarray) -> float:
    values = finite(values)
    return float(values[-1]) if len(values) else float("nan")


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
