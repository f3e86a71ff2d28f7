"""Reading a `TrainingRecord` the way detectors need it: per-epoch views of the step
signals, the training loss, whether training still makes progress, and where (epoch,
step) an episode starts.

Every function here is causal: its answer for epoch or step k depends only on the
record up to k, which is what keeps detectors' episodes stable as the record grows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from descentkit.diagnostics._record import TrainingRecord

# A loss that improves by less than 1 % of its value over the judged window has
# stopped making progress: converging runs of Keras classifiers improve their epoch
# loss by several percent per epoch, and epoch-to-epoch noise of a plateaued epoch
# loss is well under 1 % (epoch means average hundreds of minibatches).
MIN_RELATIVE_IMPROVEMENT = 0.01
# Accuracy must gain half a percentage point to count as progress: one sample in
# 200, about the resolution of the small validation sets descentkit's studies use.
MIN_ACCURACY_IMPROVEMENT = 0.005
# A loss within 5 % of the chance level (or above it) has learned nothing beyond the
# label frequencies: 5 % is about the noise of a small validation set's loss there.
AT_CHANCE_FRACTION = 0.95
# ...up to 3x it (the divergence detector's critical rise): a loss further above chance
# than that is blowing up, not stalling.
AT_CHANCE_CEILING = 3.0
# ...and falling by less than 5 % over the judged window: a run 25 % above chance that
# cut its loss 16 % in 3 epochs was on its way below it (a small binary MLP at a low
# rate, from the repository's sweep tests), while runs stuck at chance drift by 1 %.
AT_CHANCE_MAX_FALL = 0.05
# Within the first epoch (no epoch history yet) progress is judged on step losses:
# the median of the last quarter of the epoch's steps against the first quarter's,
# and only with at least this many recorded steps (fewer medians are too noisy).
MIN_STEPS_TO_JUDGE = 8


def finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def median(values: np.ndarray) -> float:
    values = finite(values)
    return float(np.median(values)) if len(values) else float("nan")


def epoch_segments(record: TrainingRecord) -> list[slice]:
    """For each completed epoch (by index), the slice of the step arrays it covers.

    Empty when the epoch's end step is unknown. Steps are assumed in increasing order.
    """
    ends = record.epoch_end_step
    known = [e for e in ends if e is not None]
    stops = iter(np.searchsorted(record.steps, np.asarray(known, dtype=np.int64), side="right").tolist())
    segments: list[slice] = []
    start = 0
    for end_step in ends:
        if end_step is None:
            segments.append(slice(start, start))
            continue
        stop = max(start, next(stops))
        segments.append(slice(start, stop))
        start = stop
    return segments


def per_epoch(values: np.ndarray, segments: list[slice], reduce: Callable[[np.ndarray], float] = median) -> np.ndarray:
    """One number per completed epoch: `reduce` over that epoch's step values (NaN if none)."""
    return np.array([reduce(values[s]) if s.stop > s.start else np.nan for s in segments], dtype=np.float64)


def _extends(old: np.ndarray, new: np.ndarray) -> bool:
    """Whether `new` starts with `old` (NaN equal to NaN)."""
    return len(new) >= len(old) and np.array_equal(old, new[: len(old)], equal_nan=True)


def memoized(record: TrainingRecord, key: tuple, inputs: Sequence[np.ndarray], n: int, item: Callable[[int], Any]) -> list:
    """`[item(i) for i in range(n)]`, reusing the items an earlier call on `record`
    computed while every one of `inputs` has only grown by appending since then.

    For causal per-epoch verdicts (item i reads the inputs up to epoch i): a monitor
    runs every detector on the whole record at each epoch end, and without this the
    work of one epoch end grows with the epochs already trained (15 ms at 60 epochs
    of a small MLP, a tenth of its epoch). An input that changed otherwise (a series
    rewritten, a different source) recomputes everything.
    """
    current = [np.asarray(a, dtype=np.float64).ravel() for a in inputs]
    memo = getattr(record, "_memo", None)
    items: list = []
    if memo is not None and key in memo:
        old_inputs, old_items = memo[key]
        if len(old_inputs) == len(current) and all(_extends(o, c) for o, c in zip(old_inputs, current)):
            items = old_items[:n]
    items = items + [item(i) for i in range(len(items), n)]
    if memo is not None:
        memo[key] = (current, items)
    return items


def epoch_medians(record: TrainingRecord, name: str, values: np.ndarray, segments: list[slice]) -> np.ndarray:
    """`per_epoch(values, segments)` (medians), memoised on the record under `name`."""
    bounds = np.array([(s.start, s.stop) for s in segments], dtype=np.float64)
    end = segments[-1].stop if segments else 0
    medians = memoized(record, ("epoch_medians", name), [bounds, values[:end]], len(segments),
                       lambda i: median(values[segments[i]]) if segments[i].stop > segments[i].start else np.nan)
    return np.array(medians, dtype=np.float64)


def not_improving(record: TrainingRecord, window: int, n: int | None = None) -> np.ndarray:
    """For each of the first `n` epoch indices (default every recorded epoch):
    `not Progress(record).improving(i, window)`, memoised on the record."""
    n = record.n_epochs if n is None else n
    progress = Progress(record)
    stuck = memoized(record, ("not_improving", window), progress.inputs(), n,
                     lambda i: not progress.improving(i, window))
    return np.array(stuck, dtype=bool)


def epoch_index_of_step(record: TrainingRecord, step: int) -> int:
    """The index (into the per-epoch lists) of the epoch holding `step`; the number of
    recorded epochs when the step is past every known epoch end (the epoch in progress)."""
    for index, end in enumerate(record.epoch_end_step):
        if end is not None and step <= end:
            return index
    return record.n_epochs


def epoch_number(record: TrainingRecord, index: int) -> int:
    """The 1-based epoch number of an epoch index, as Keras's progress bar counts
    ("Epoch 3/10" is 3; `record.epochs` holds Keras's 0-based callback numbers, and
    `fit(initial_epoch=...)` may start past 0). Findings, messages and MLflow steps
    all use this number."""
    if index < record.n_epochs:
        return int(record.epochs[index]) + 1
    return int(record.epochs[-1]) + 2 + index - record.n_epochs if record.epochs else index + 1


def epoch_step(record: TrainingRecord, index: int) -> int | None:
    """The optimizer step at the end of an epoch index, when known."""
    if index < len(record.epoch_end_step):
        return record.epoch_end_step[index]
    return None


def learning_rate_at(record: TrainingRecord, index: int) -> float | None:
    """The learning rate in force in epoch `index`: for the epoch in progress,
    `record.current_learning_rate` when set, else the last recorded one."""
    current = getattr(record, "current_learning_rate", None)
    if index >= record.n_epochs and current is not None and np.isfinite(current):
        return float(current)
    rates = np.asarray(record.learning_rate[: index + 1], dtype=np.float64)
    known = rates[np.isfinite(rates)]
    return float(known[-1]) if len(known) else None


def training_loss(record: TrainingRecord) -> np.ndarray:
    """The training loss per epoch: Keras's logged "loss", else the mean step loss of each epoch."""
    loss = record.series("loss")
    if len(loss) == record.n_epochs and record.n_epochs and np.isfinite(loss).any():
        return loss
    return per_epoch(record.step_loss, epoch_segments(record), lambda v: float(np.mean(v)) if len(v) else np.nan)


def _accuracy_keys(record: TrainingRecord) -> list[str]:
    return [k for k in record.history if k.endswith("accuracy") or k.endswith("acc")]


def _gained(values: np.ndarray, before: slice, after: slice, *, higher_is_better: bool) -> bool | None:
    """Whether the best of `values[after]` beats the best of `values[before]`; None if unknown."""
    old, new = finite(values[before]), finite(values[after])
    if not len(old) or not len(new):
        return None
    if higher_is_better:
        return bool(new.max() - old.max() >= MIN_ACCURACY_IMPROVEMENT)
    reference = old.min()
    return bool(reference - new.min() >= MIN_RELATIVE_IMPROVEMENT * abs(reference))


_CROSS_ENTROPIES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy")


def is_cross_entropy(record: TrainingRecord) -> bool:
    """Whether the record's loss is a cross-entropy (`record.loss_name`, set by the monitors)."""
    name = getattr(record, "loss_name", None)
    return bool(name) and name.lower() in _CROSS_ENTROPIES


def chance_level(record: TrainingRecord) -> float | None:
    """`record.chance_loss` when it is a usable positive number, else None."""
    chance = getattr(record, "chance_loss", None)
    if chance is None or not np.isfinite(chance) or chance <= 0:
        return None
    return float(chance)


class Progress:
    """Whether a run still makes progress, epoch by epoch (read once from a record).

    Progress on any outcome counts: the training loss, val_loss (1 % relative) or
    any accuracy (0.5 points), best of the judged window against best before it.
    With a known chance level, a window whose losses all stay at or above it
    (within `AT_CHANCE_FRACTION`) is no progress whatever else moved: a loss
    falling toward the chance level, or an accuracy wobbling around it, is the
    output bias learning the label frequencies, not the network learning the task.
    """

    def __init__(self, record: TrainingRecord) -> None:
        self.loss = training_loss(record)
        self.val_loss = record.series("val_loss")
        chance = chance_level(record)
        self.chance = np.nan if chance is None else chance
        self.accuracies = {k: record.series(k) for k in _accuracy_keys(record)}
        segments = epoch_segments(record)
        self._first_epoch_losses = finite(record.step_loss[segments[0]] if segments else record.step_loss)

    def inputs(self) -> list[np.ndarray]:
        """Every series a verdict reads, for `memoized` (accuracies in a fixed order)."""
        accuracies = [self.accuracies[k] for k in sorted(self.accuracies)]
        return [self.loss, self.val_loss, self._first_epoch_losses, np.array([len(accuracies), self.chance]),
                *accuracies]

    def at_chance(self, window: slice) -> bool:
        """Whether every loss (training, and validation where logged) in `window` is at
        the chance level or above it (training losses up to `AT_CHANCE_CEILING` times it)."""
        if not np.isfinite(self.chance):
            return False
        floor, ceiling = AT_CHANCE_FRACTION * self.chance, AT_CHANCE_CEILING * self.chance
        train = finite(self.loss[window])
        val = finite(self.val_loss[window]) if len(self.val_loss) else np.zeros(0)
        if not len(train) or not ((train >= floor) & (train <= ceiling)).all() or not (val >= floor).all():
            return False
        # ...and flat there: a loss coming down fast from above the chance level is
        # learning (it will cross it), not sitting at it.
        return bool(train[0] - train.min() < AT_CHANCE_MAX_FALL * train[0])

    def improving(self, index: int, window: int) -> bool:
        """Whether training made progress in the `window` epochs up to epoch `index`.

        Before `window` epochs exist the window is epochs 1..index against epoch 0;
        in epoch 0 the step losses decide. When nothing can be judged the answer is
        True: a detector gated on "not improving" then stays quiet rather than guess.
        """
        if index <= 0:
            losses = self._first_epoch_losses
            if len(losses) < MIN_STEPS_TO_JUDGE:
                return True
            quarter = len(losses) // 4
            first, last = np.median(losses[:quarter]), np.median(losses[-quarter:])
            return bool(first - last >= MIN_RELATIVE_IMPROVEMENT * abs(first))
        split = max(1, index - window + 1)
        before, after = slice(0, split), slice(split, index + 1)
        if self.at_chance(after):
            return False
        verdicts = [
            _gained(self.loss, before, after, higher_is_better=False),
            _gained(self.val_loss, before, after, higher_is_better=False),
        ]
        verdicts += [_gained(acc, before, after, higher_is_better=True) for acc in self.accuracies.values()]
        known = [v for v in verdicts if v is not None]
        return any(known) if known else True

    def best_accuracy(self, index: int) -> float | None:
        """The best training or validation accuracy logged up to epoch `index`, if any."""
        best = [finite(acc[: index + 1]) for acc in self.accuracies.values()]
        best = [b.max() for b in best if len(b)]
        return float(max(best)) if best else None


def start_loss(record: TrainingRecord) -> float:
    """The loss at the start of training: the median of the first step losses, else epoch 0's loss."""
    steps = finite(record.step_loss)
    if len(steps) >= MIN_STEPS_TO_JUDGE:
        return float(np.median(steps[: max(MIN_STEPS_TO_JUDGE // 2, 1)]))
    loss = finite(training_loss(record)[:1])
    return float(loss[0]) if len(loss) else float("nan")


def sentence(text: str) -> str:
    """`text` with its first letter upper-cased (str.capitalize would lower the rest)."""
    return text[:1].upper() + text[1:]


def rate_text(rate: float | None) -> str:
    return "unknown" if rate is None else f"{rate:.3g}"


# A rate in force 10 % away from the first epoch's is a schedule's doing (or a
# callback's): advice then names both, so "lower it from 0.01" is not read as the
# configured 0.1.
_SCHEDULED_CHANGE = 0.1


def rate_in_force_text(record: TrainingRecord, index: int) -> str:
    """The learning rate in force at epoch `index`, and the configured (first epoch's)
    rate when a schedule has moved it: "0.0125 (in force; configured 0.1)"."""
    rate = learning_rate_at(record, index)
    if rate is None:
        return "unknown"
    first = learning_rate_at(record, 0)
    if first is not None and first > 0 and abs(rate - first) > _SCHEDULED_CHANGE * first:
        return f"{rate_text(rate)} (in force; configured {rate_text(first)})"
    return rate_text(rate)
