"""Exploding and vanishing gradients, judged per epoch and gated on the outcome.

Gradient sizes alone raise false alarms: healthy deep tanh nets reach 0.87
validation accuracy with a first/last-layer gradient ratio of 150-350 (measured
here). So both detectors fire only while the loss and the
accuracies have stopped improving.
"""

from __future__ import annotations

import numpy as np

from descentkit.diagnostics._detector import Detector, runs
from descentkit.diagnostics._divergence import lower_rate_phrase
from descentkit.diagnostics._finding import EXPLODING_GRADIENTS, VANISHING_GRADIENTS, Finding
from descentkit.diagnostics._record import TrainingRecord
from descentkit.diagnostics._signals import (
    epoch_medians,
    epoch_number,
    epoch_segments,
    epoch_step,
    learning_rate_at,
    median,
    not_improving,
    MIN_RELATIVE_IMPROVEMENT,
    epoch_index_of_step,
    finite,
    rate_in_force_text,
    rate_text,
)

# Exploding: an epoch's median global gradient norm 100x (two orders of magnitude)
# above the median of the first steps. Healthy SGD runs keep their gradient norm
# within about one order of magnitude of its start (it usually falls as the loss
# does), so 100x is growth no schedule or noise explains.
EXPLODING_GROWTH = 100.0
# 10,000x (four orders of magnitude) is critical: at any learning rate that trained
# at the start, steps are now 1e4 times larger.
EXPLODING_CRITICAL_GROWTH = 1e4
# The early reference: the median over the first 20 steps of the first epoch
# (enough to be robust to a few outlier batches, still "at the start").
EXPLODING_EARLY_STEPS = 20
# Vanishing: the first layer's gradient norm below 1e-4 of the last layer's. The
# healthy deep tanh nets above have ratios of 1/150-1/350 (about 3e-3); 1e-4 is
# 30x below the worst healthy ratio measured.
VANISHING_GRADIENT_RATIO = 1e-4
# ...or the first layer's update-to-weight ratio below 1e-6 per step: Karpathy's
# rule of thumb (CS231n) puts healthy updates near 1e-3 of the weights' scale; at
# 1e-6 the first layer needs 1,000 steps to move its weights by 0.1 %, i.e. it is frozen.
VANISHING_UPDATE_RATIO = 1e-6
# ...and 100x below the last layer's: a learning rate of 1e-6 makes every layer's
# updates tiny, and that is stalled training (runs of the tuning half of
# benchmarks/pathology_suite.py at rates of 1e-6 and 1e-7 read as vanishing without this).
VANISHING_RELATIVE_UPDATE = 1e-2
# The outcome is judged over the last 3 epochs: long enough that one noisy epoch
# neither clears nor condemns a run, short enough to prune a hopeless trial early.
GRADIENT_OUTCOME_WINDOW = 3
# Within an epoch, growth is also judged step by step: a learning rate a little too
# high takes the gradient norm from its start to inf within one epoch (measured on an
# 8-layer ReLU MLP: 1.5 -> inf in 50 steps), long before an epoch
# median could show it. Step norms are smoothed by a running median of 5 steps (as
# the divergence detector smooths the loss): one or two outlier batches never count.
EXPLODING_SUSTAIN_STEPS = 5
# A single step can explode too: its gradient norm `EXPLODING_GROWTH` times the median
# of the first (up to 5) steps' while the loss jumps 10x with it. The loss jump keeps
# a healthy run's rare large gradient (a hard batch) out: no batch is 10x harder than
# the one before it. Fitted on the tuning half of benchmarks/pathology_suite.py:
# full-batch adaptive steps too large for the curvature spike the gradient 400x and
# the loss 2,000x for one step, then come back.
EXPLODING_SPIKE_EARLY_STEPS = 5
EXPLODING_SPIKE_LOSS_JUMP = 10.0
# ...and gated on the step loss: not improving means the best smoothed loss of the
# last 20 steps (the early-reference length) is not 1 % below the best before them
# (MIN_RELATIVE_IMPROVEMENT, the epoch gate's threshold).
EXPLODING_STEP_WINDOW = EXPLODING_EARLY_STEPS


def _exploding_advice(record: TrainingRecord, index: int) -> str:
    return (
        f"Clip gradients with clipnorm=1.0, {lower_rate_phrase(record, index)}, "
        "and check the weight init (Glorot/He for the activation)."
    )


class ExplodingGradientsDetector(Detector):
    """Detects exploding gradients: norms 100x above their start while the loss does
    not improve.

    Args:
        growth: an epoch's median global gradient norm this many times the early
            median is exploding (default `EXPLODING_GROWTH`, 100).
        critical_growth: growth from which the finding is critical (default 1e4).
        window: epochs over which the loss must have stopped improving (default 3).

    Example:
        >>> findings = ExplodingGradientsDetector()(record)
    """

    symptom = EXPLODING_GRADIENTS

    def __init__(
        self,
        growth: float = EXPLODING_GROWTH,
        critical_growth: float = EXPLODING_CRITICAL_GROWTH,
        window: int = GRADIENT_OUTCOME_WINDOW,
    ) -> None:
        self.growth = self._above_one("growth", growth)
        self.critical_growth = self._above_one("critical_growth", critical_growth)
        if self.critical_growth < self.growth:
            raise ValueError(
                f"ExplodingGradientsDetector: critical_growth must be >= growth ({self.growth!r}) "
                f"but got {critical_growth!r}."
            )
        self.window = self._count("window", window)

    def __call__(self, record: TrainingRecord) -> list[Finding]:
        early = median(finite(record.grad_norm)[:EXPLODING_EARLY_STEPS])
        overflow = self._overflow(record)
        findings = [overflow] if overflow is not None else []
        if not np.isfinite(early) or early <= 0:
            return findings
        limit = np.searchsorted(record.steps, overflow.step) if overflow is not None else len(record.steps)
        findings = self._step_growth(record, early, limit) + findings
        spike = self._spike(record, limit)
        if spike is not None and all(f.step is None or spike.step < f.step for f in findings):
            findings.append(spike)
        first_step = min((f.step for f in findings), default=None)
        # The epoch view adds slower growth seen before any step-level episode; once
        # one is found, later epochs belong to it.
        for finding in self._epoch_growth(record, early):
            if first_step is None or finding.step is None or finding.step < first_step:
                findings.append(finding)
        return sorted(findings, key=lambda f: (f.step if f.step is not None else -1))

    # ------------------------------------------------------------ overflow
    def _overflow(self, record: TrainingRecord) -> Finding | None:
        """The first step whose gradient overflowed (non-finite values or norm) after a
        step with finite gradients and loss: growth beyond float range, critical."""
        norms, loss = record.grad_norm, record.step_loss
        bad = (record.nonfinite > 0) | np.isinf(norms)
        seen = np.maximum.accumulate(np.isfinite(norms)) if len(norms) else np.zeros(0, dtype=bool)
        bad |= np.isnan(norms) & np.concatenate(([False], seen[:-1]))
        if not bad.any():
            return None
        at = int(np.argmax(bad))
        if at == 0 or not np.isfinite(norms[at - 1]) or np.isinf(loss[at - 1]):
            return None  # non-finite from the first step: the data, not growth
        step = int(record.steps[at])
        index = epoch_index_of_step(record, step)
        last = float(norms[at - 1])
        early = median(finite(norms[:at])[:EXPLODING_EARLY_STEPS])
        rate = learning_rate_at(record, index)
        return Finding(
            symptom=EXPLODING_GRADIENTS,
            severity="critical",
            epoch=epoch_number(record, index),
            step=step,
            message=(
                f"Gradients overflowed at step {step} (norm {norms[at]}, last finite {last:.3g}, "
                f"{early:.3g} at the start)."
            ),
            advice=_exploding_advice(record, index),
            evidence={
                "grad_norm": float(norms[at]),
                "last_finite_grad_norm": last,
                "early_grad_norm": early,
                "growth": float("inf"),
                "nonfinite_gradients": float(record.nonfinite[at]),
                "learning_rate": float("nan") if rate is None else rate,
            },
        )

    # ------------------------------------------------------------ one-step spike
    def _spike(self, record: TrainingRecord, limit: int) -> Finding | None:
        """The first step whose gradient norm is `growth` times the first steps' and whose
        loss jumped `EXPLODING_SPIKE_LOSS_JUMP` times with it: an explosion too short for
        the running median (a full-batch adaptive step too large for the curvature
        throws the loss up 1,000x for one step, then it comes back).

        The jump is measured over the rise that ends at the step: from the last step
        before the loss began to climb, through every step it kept climbing (one step,
        or two or three when each step overshoots further than the last). The start
        reference stops there too, so the blow-up's own first steps never raise it."""
        norms, loss = record.grad_norm[:limit], record.step_loss[:limit]
        keep = np.isfinite(norms) & np.isfinite(loss)
        steps, norms, loss = record.steps[:limit][keep], norms[keep], loss[keep]
        if len(norms) < 2:
            return None
        head = EXPLODING_SPIKE_EARLY_STEPS
        # rise_start[i]: the last step at or before i - 1 from which the loss climbed
        # without a break up to step i
        climbing = np.concatenate(([False], loss[1:] > loss[:-1]))
        breaks = np.where(~climbing, np.arange(len(loss)), 0)
        rise_start = np.maximum.accumulate(breaks)
        rise_start = np.concatenate(([0], np.where(climbing[1:], rise_start[:-1], np.arange(len(loss) - 1))))
        # the reference: the median of the first min(rise start + 1, head) norms
        prefix = np.array([float(np.median(norms[:n])) for n in range(1, min(len(norms), head) + 1)])
        earlies = prefix[np.minimum(rise_start + 1, len(prefix)) - 1]
        earlies[0] = np.nan
        for i in np.flatnonzero((earlies > 0) & (norms > self.growth * earlies)):
            early, before = float(earlies[i]), int(rise_start[i])
            jump = max(loss[i], loss[i + 1] if i + 1 < len(loss) else -np.inf)
            if not (loss[before] > 0 and jump > EXPLODING_SPIKE_LOSS_JUMP * loss[before]):
                continue
            step = int(steps[i])
            index = epoch_index_of_step(record, step)
            rate = learning_rate_at(record, index)
            growth = float(norms[i] / early)
            over = "" if before == i - 1 else f" over steps {int(steps[before + 1])}-{step}"
            return Finding(
                symptom=EXPLODING_GRADIENTS,
                severity="warning",  # a burst, come back from: critical is for growth that lasts
                epoch=epoch_number(record, index),
                step=step,
                message=(
                    f"The gradient norm spiked {growth:.3g}x at step {step} ({norms[i]:.3g} vs {early:.3g} at the start) "
                    f"and the loss jumped from {loss[before]:.4g} to {jump:.4g} with it{over}."
                ),
                advice=_exploding_advice(record, index),
                evidence={
                    "grad_norm": float(norms[i]),
                    "early_grad_norm": early,
                    "growth": growth,
                    "loss_before": float(loss[before]),
                    "loss_after": float(jump),
                    "rise_steps": i - before,
                    # the loss moved with the gradient, not after it (`link_causes`)
                    "loss_jumped_with_it": True,
                    "smoothed_over": "none (one step)" if before == i - 1 else f"none ({i - before} climbing steps)",
                    "learning_rate": float("nan") if rate is None else rate,
                },
            )
        return None

    # ------------------------------------------------------------ step growth
    def _step_growth(self, record: TrainingRecord, early: float, limit: int) -> list[Finding]:
        width = EXPLODING_SUSTAIN_STEPS
        norms = record.grad_norm[:limit]
        loss = record.step_loss[:limit]
        keep = np.isfinite(norms) & np.isfinite(loss)
        if keep.sum() < width + 1:
            return []
        steps, norms, loss = record.steps[:limit][keep], norms[keep], loss[keep]
        smooth = np.median(np.lib.stride_tricks.sliding_window_view(norms, width), axis=1)
        smooth_loss = np.median(np.lib.stride_tricks.sliding_window_view(loss, width), axis=1)
        stuck = _not_improving(smooth_loss, EXPLODING_STEP_WINDOW)
        growth = smooth / early
        findings = []
        for first, _ in runs((growth > self.growth) & stuck, merge_gap=EXPLODING_STEP_WINDOW):
            at = first + width - 1
            step = int(steps[at])
            index = epoch_index_of_step(record, step)
            rate = learning_rate_at(record, index)
            findings.append(
                Finding(
                    symptom=EXPLODING_GRADIENTS,
                    severity="critical" if growth[first] >= self.critical_growth else "warning",
                    epoch=epoch_number(record, index),
                    step=step,
                    message=(
                        f"Gradient norm grew {growth[first]:.3g}x in {step} steps (running median {smooth[first]:.3g} "
                        f"vs {early:.3g} at the start) while the loss stopped improving."
                    ),
                    advice=_exploding_advice(record, index),
                    evidence={
                        "median_grad_norm": float(smooth[first]),
                        "early_grad_norm": early,
                        "growth": float(growth[first]),
                        "smoothed_over": "steps",
                        "window": width,
                        "learning_rate": float("nan") if rate is None else rate,
                    },
                )
            )
        return findings

    # ------------------------------------------------------------ epoch growth
    def _epoch_growth(self, record: TrainingRecord, early: float) -> list[Finding]:
        segments = epoch_segments(record)
        if not segments or segments[0].stop <= segments[0].start:
            return []
        norms = epoch_medians(record, "grad_norm", record.grad_norm, segments)
        growth = norms / early
        stuck = not_improving(record, self.window, len(segments))
        exploding = np.isfinite(growth) & (growth > self.growth) & stuck
        findings = []
        for start, _ in runs(exploding):
            layer_norms = per_epoch_layers(record, segments[start])
            worst = int(np.nanargmax(layer_norms)) if np.isfinite(layer_norms).any() else None
            severity = "critical" if growth[start] >= self.critical_growth else "warning"
            rate = learning_rate_at(record, start)
            findings.append(
                Finding(
                    symptom=EXPLODING_GRADIENTS,
                    severity=severity,
                    epoch=epoch_number(record, start),
                    step=epoch_step(record, start),
                    message=(
                        f"Gradient norm grew {growth[start]:.3g}x (median {norms[start]:.3g} vs {early:.3g} "
                        "at the start) while the loss stopped improving."
                    ),
                    advice=_exploding_advice(record, start),
                    evidence={
                        "median_grad_norm": float(norms[start]),
                        "early_grad_norm": early,
                        "growth": float(growth[start]),
                        "largest_layer": record.layer_names[worst] if worst is not None and record.layer_names else None,
                        "largest_layer_grad_norm": float(layer_norms[worst]) if worst is not None else float("nan"),
                        "learning_rate": float("nan") if rate is None else rate,
                        "window_epochs": self.window,
                    },
                )
            )
        return findings


def _not_improving(loss: np.ndarray, window: int) -> np.ndarray:
    """Per step i (from 1): the best loss of the last `window` steps (from step 1 on)
    is not `MIN_RELATIVE_IMPROVEMENT` below the best before them. Step 0: False.

    Vectorised (a prefix minimum and a sliding one): the monitor runs it on the whole
    record at every epoch end, so it must stay linear in the record's length.
    """
    n = len(loss)
    stuck = np.zeros(n, dtype=bool)
    if n < 2:
        return stuck
    i = np.arange(1, n)
    split = np.maximum(1, i - window + 1)  # the recent window is [split, i]
    before = np.minimum.accumulate(loss)[split - 1]
    recent = np.empty(n - 1)
    short = i < window  # the window still starts at step 1
    recent[short] = np.minimum.accumulate(loss[1:])[i[short] - 1]
    if (~short).any():
        recent[~short] = np.lib.stride_tricks.sliding_window_view(loss, window).min(axis=1)[split[~short]]
    stuck[1:] = ~(before - recent >= MIN_RELATIVE_IMPROVEMENT * np.abs(before))
    return stuck


def per_epoch_layers(record: TrainingRecord, segment: slice, values: np.ndarray | None = None) -> np.ndarray:
    """Per-layer medians of one epoch's per-layer step signals (NaN where none)."""
    values = record.layer_grad_norms if values is None else values
    block = values[segment]
    if not block.size:
        return np.full(values.shape[1] if values.ndim == 2 else 0, np.nan)
    out = np.full(block.shape[1], np.nan)
    for j in range(block.shape[1]):
        out[j] = median(block[:, j])
    return out


class VanishingGradientsDetector(Detector):
    """Detects vanishing gradients: the first layer's gradient 1e-4 of the last
    layer's, or its updates below 1e-6 of its weights, while the loss does not improve.

    Args:
        gradient_ratio: first/last-layer gradient-norm ratio below which the first
            layer's gradient has vanished (default `VANISHING_GRADIENT_RATIO`, 1e-4).
        update_ratio: first-layer update-to-weight ratio below which it is frozen
            (default `VANISHING_UPDATE_RATIO`, 1e-6).
        window: epochs over which the loss must have stopped improving (default 3).

    Example:
        >>> findings = VanishingGradientsDetector()(record)
    """

    symptom = VANISHING_GRADIENTS

    def __init__(
        self,
        gradient_ratio: float = VANISHING_GRADIENT_RATIO,
        update_ratio: float = VANISHING_UPDATE_RATIO,
        window: int = GRADIENT_OUTCOME_WINDOW,
    ) -> None:
        self.gradient_ratio = self._positive("gradient_ratio", gradient_ratio)
        self.update_ratio = self._positive("update_ratio", update_ratio)
        self.window = self._count("window", window)

    def __call__(self, record: TrainingRecord) -> list[Finding]:
        segments = epoch_segments(record)
        n_layers = len(record.layer_names)
        if not segments or n_layers == 0:
            return []
        first_norm = epoch_medians(record, "first_layer_grad_norm", record.layer_grad_norms[:, 0], segments)
        last_norm = epoch_medians(record, "last_layer_grad_norm", record.layer_grad_norms[:, -1], segments)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = first_norm / last_norm if n_layers > 1 else np.full(len(segments), np.nan)
        first_update = epoch_medians(record, "first_layer_update_ratio", record.update_ratio[:, 0], segments)
        last_update = epoch_medians(record, "last_layer_update_ratio", record.update_ratio[:, -1], segments)
        tiny_gradient = np.isfinite(ratio) & (ratio < self.gradient_ratio)
        # Frozen relative to the last layer: with a tiny learning rate every layer's
        # updates are tiny (stalled training, not vanishing gradients).
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = first_update / last_update if n_layers > 1 else np.full(len(segments), np.nan)
        frozen = (np.isfinite(first_update) & (first_update < self.update_ratio)
                  & ~(np.isfinite(relative) & (relative >= VANISHING_RELATIVE_UPDATE)))
        stuck = not_improving(record, self.window, len(segments))
        findings = []
        for start, _ in runs((tiny_gradient | frozen) & stuck):
            rate = learning_rate_at(record, start)
            seen = []
            if tiny_gradient[start]:
                seen.append(f"first-layer gradient {ratio[start]:.2g} of the last layer's")
            if frozen[start]:
                seen.append(f"first-layer updates {first_update[start]:.2g} of its weights per step")
            raise_rate = f" or raise the learning rate from {rate_in_force_text(record, start)}" if rate is not None else " or raise the learning rate"
            findings.append(
                Finding(
                    symptom=VANISHING_GRADIENTS,
                    severity="warning",
                    epoch=epoch_number(record, start),
                    step=epoch_step(record, start),
                    message=f"Gradients vanish in the first layers ({'; '.join(seen)}) and the loss stopped improving.",
                    advice=(
                        "Use ReLU/LeakyReLU with He initialisation, add BatchNormalization or residual "
                        f"connections{raise_rate}."
                    ),
                    evidence={
                        "first_layer": record.layer_names[0],
                        "last_layer": record.layer_names[-1],
                        "first_layer_grad_norm": float(first_norm[start]),
                        "last_layer_grad_norm": float(last_norm[start]),
                        "first_last_ratio": float(ratio[start]),
                        "first_layer_update_ratio": float(first_update[start]),
                        "learning_rate": float("nan") if rate is None else rate,
                        "window_epochs": self.window,
                    },
                )
            )
        return findings
