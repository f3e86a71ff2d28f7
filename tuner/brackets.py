"""Bracketed successive halving on Optuna's ask-and-tell interface (`pruner: brackets`).

Hyperband's schedule (Li et al., 2018), as KerasTuner runs it, with what
Optuna's asynchronous pruners cannot do: a bracket asks its configurations from
the study's sampler (TPE by default), trains them all for a few epochs, keeps
the best 1/eta and continues those from their checkpoints (model weights and
optimizer state) instead of retraining, until the survivors reach
`max_epochs`. Optuna's `SuccessiveHalvingPruner` and `HyperbandPruner` judge
each trial against the trials that happen to have finished before it; here
every configuration of a rung is compared with its peers.

After the first rung the leader, its best configuration, trains straight on to
`max_epochs` before the others continue, so the sweep has a fully trained good
model after one rung instead of after the whole bracket. Its value at each later
rung's epoch still ranks with the others there. A trial proposed by a range test
(`first_trial: range_test`) trains to `max_epochs` before its bracket's first
rung and takes no part in the halving.

Diagnostics still cut a trial inside any rung (divergence within a few steps).
A configuration dropped by the halving ends PRUNED with `prune_reason`
"pruner" and its intermediate values, so TPE learns from it at once; the
bracket's survivors stay RUNNING until they finish or are dropped. Every trial a
bracket holds sends Optuna heartbeats from its ask to its tell
(`_recovery.Heartbeats`), so a worker that dies mid-bracket leaves trials that
go stale and are re-queued for the other workers.
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from descentkit.tuner import _record
from descentkit.tuner._budget import Budget
from descentkit.tuner._interrupts import check_interrupted
from descentkit.tuner._recovery import Heartbeats, recover

State = optuna.trial.TrialState

DEFAULT_REDUCTION_FACTOR = 3
DEFAULT_MIN_EPOCHS = 1


@dataclass(frozen=True)
class Bracket:
    """One bracket: its rungs as (configurations, epochs each has trained at the rung's end)."""

    rungs: tuple[tuple[int, int], ...]

    @property
    def size(self) -> int:
        return self.rungs[0][0]

    def epochs(self) -> int:
        """The epochs the whole bracket trains (each rung continues from the last)."""
        total, done = 0, 0
        for n, until in self.rungs:
            total += n * (until - done)
            done = until
        return total


def hyperband_brackets(max_epochs: int, min_epochs: int = DEFAULT_MIN_EPOCHS,
                       reduction_factor: int = DEFAULT_REDUCTION_FACTOR) -> list[Bracket]:
    """Hyperband's brackets, the most exploratory first.

    Bracket s starts ceil((s_max + 1) / (s + 1) * eta**s) configurations at
    max_epochs * eta**-s epochs and keeps 1/eta of them per rung. With
    max_epochs 27, min_epochs 1, eta 3: 27 at 1 epoch, 9 at 3, 3 at 9, 1 at 27;
    then 12 at 3; 6 at 9; 4 at 27.
    """
    if min_epochs < 1 or min_epochs > max_epochs:
        raise ValueError(f"min_epochs must be between 1 and max_epochs ({max_epochs}), got {min_epochs}")
    if reduction_factor < 2:
        raise ValueError(f"reduction_factor must be at least 2, got {reduction_factor}")
    eta = reduction_factor
    s_max = int(math.floor(math.log(max_epochs / min_epochs, eta) + 1e-9))
    brackets = []
    for s in range(s_max, -1, -1):
        n = int(math.ceil((s_max + 1) / (s + 1) * eta**s))
        rungs, last = [], 0
        for i in range(s + 1):
            until = max(min_epochs, int(round(max_epochs * eta ** (i - s))))
            until = max(until, last + 1) if i else until  # every rung trains at least one epoch more
            count = max(1, int(n * eta**-i))
            rungs.append((count, min(until, max_epochs)))
            last = rungs[-1][1]
        brackets.append(Bracket(tuple(rungs)))
    return brackets


def brackets_for(config: Any) -> list[Bracket]:
    """The bracket schedule of a study with `pruner: brackets` ([] for any other pruner)."""
    if config.pruner.name != "brackets":
        return []
    return hyperband_brackets(config.max_epochs, **config.pruner.options)


class BracketRunner:
    """Runs brackets on a study until its trial budget (or the deadline) is spent.

    Args:
        study: the Optuna study (its pruner should be a NopPruner: the halving is here).
        objective: a `descentkit.tuner.objective.Objective`.
        brackets: the schedule, cycled in order.
        budget: the study's trial budget (`Budget`), which every bracket takes its trials from.
        deadline: `time.monotonic()` after which no new rung starts.
        callbacks: `callback(study, frozen_trial)` called for every finished trial.
        lock: the study's budget lock (`StorageSpec.lock`), held while a bracket takes its trials.
        max_bracket: the most configurations one bracket takes (a worker's share of
            the budget); a smaller bracket keeps the schedule's ratios.
    """

    def __init__(self, study: Any, objective: Any, brackets: list[Bracket], budget: Budget,
                 deadline: float | None, callbacks: list[Any], lock: Any, max_bracket: int | None = None) -> None:
        self.study, self.objective, self.brackets = study, objective, brackets
        self.budget, self.deadline, self.callbacks, self.lock = budget, deadline, callbacks, lock
        self.max_bracket = max_bracket
        self.maximize = objective.config.objective.direction == "maximize"
        self.heartbeats = Heartbeats(study)

    def _time_left(self) -> bool:
        return self.deadline is None or time.monotonic() < self.deadline

    def run(self) -> int:
        """Run brackets until the budget or the deadline is spent (the heartbeats of the
        trials held stop on the way out, an interrupt included). Returns the trials taken."""
        taken = 0
        with self.heartbeats:
            while self._time_left():
                bracket = self.brackets[self._index % len(self.brackets)]
                self._index += 1
                trials = self._take(bracket.size if self.max_bracket is None else min(bracket.size, self.max_bracket))
                if not trials:
                    return taken
                taken += len(trials)
                self._run_bracket(bracket, trials)
        return taken

    _index = 0  # the next bracket of the schedule (kept across calls of `run`)

    def _take(self, wanted: int) -> list[Any]:
        """Ask up to `wanted` trials within the budget (re-queued ones first, as Optuna's ask does)."""
        with self.lock:
            recover(self.study)
            with warnings.catch_warnings():  # "Heartbeat ... supposed to be used with Study.optimize": sent here
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trials = [self.study.ask() for _ in range(self.budget.take(wanted))]
            for trial in trials:  # owned from now: a worker that dies while a leader trains leaves none stranded
                trial.set_user_attr(_record.WORKER, _record.worker_id())
                self.heartbeats.start(trial)
            return trials

    def _run_bracket(self, bracket: Bracket, trials: list[Any]) -> None:
        scale = len(trials) / bracket.size  # a bracket cut short by the budget keeps the same ratios
        alive = {t.number: t for t in trials}
        checkpoints: dict[int, Any] = {}
        values: dict[int, float] = {}  # each configuration's value at the end of its latest rung
        # The first rung's leader, trained on to max_epochs: its
        # value at each rung's epoch, ranked with the others at that rung.
        leader: dict[int, dict[int, float]] = {}
        with tempfile.TemporaryDirectory(prefix="descentkit-bracket-") as folder:
            # The sweep's informed first guess (_range_plan.propose_first_trial) trains
            # to the end before the others' first rung, outside the halving.
            for number, trial in list(alive.items()):
                if _record.first_trial(trial) and self._time_left():
                    del alive[number]
                    if self._train(trial, bracket.rungs[-1][1], checkpoints, values, None):
                        self._tell(trial, State.COMPLETE, values[number])
            for level, (_, until) in enumerate(bracket.rungs):
                last = level == len(bracket.rungs) - 1
                for number, trial in list(alive.items()):
                    if not self._time_left():
                        break
                    keep = None if last else str(Path(folder) / f"trial-{number}.npz")
                    if not self._train(trial, until, checkpoints, values, keep):
                        del alive[number]
                if not self._time_left():  # the deadline: what has a value completes, the rest is pruned
                    self._end_at_deadline(alive, values)
                    return
                if last:
                    for number, trial in alive.items():
                        self._tell(trial, State.COMPLETE, values[number])
                    return
                keep_n = max(1, int(round(bracket.rungs[level + 1][0] * scale)))
                ranked = sorted([*alive, *leader], key=lambda n: values[n] if n in alive else leader[n][level],
                                reverse=self.maximize)
                for number in ranked[keep_n:]:
                    if number in alive:
                        alive[number].set_user_attr(_record.PRUNE_REASON, _record.HALVED)
                        self._tell(alive.pop(number), State.PRUNED)
                # The next rung trains the best first: a good configuration reaches
                # its longer budget as early as possible (anytime performance), and a
                # timeout that cuts the rung short has spent it on the best.
                alive = {number: alive[number] for number in ranked[:keep_n] if number in alive}
                if level == 0 and alive:  # the deadline was checked above
                    number = next(iter(alive))
                    trial = alive.pop(number)
                    if not self._train(trial, bracket.rungs[-1][1], checkpoints, values, None):
                        continue  # pruned or failed on its way: the halving goes on without it
                    leader[number] = self._values_at_rungs(trial, bracket)
                    self._tell(trial, State.COMPLETE, values[number])

    def _train(self, trial: Any, until: int, checkpoints: dict[int, Any], values: dict[int, float],
               keep: str | None) -> bool:
        """Train `trial` to epoch `until`; False (and the trial told) when it ended PRUNED or FAIL."""
        number = trial.number
        check_interrupted()
        try:
            values[number], checkpoints[number] = self.objective.train(
                trial, until, resume=checkpoints.get(number), keep=keep)
            return True
        except optuna.TrialPruned:
            self._tell(trial, State.PRUNED)
        except Exception:  # recorded on the trial by the objective; the sweep goes on
            self._tell(trial, State.FAIL)
        return False

    def _values_at_rungs(self, trial: Any, bracket: Bracket) -> dict[int, float]:
        """A trial's best value so far at the end of each rung's epochs (from its stored history)."""
        metric = self.objective.config.objective.metric
        series = [float(v) for v in _record.history(trial).get(metric, [])]
        best = max if self.maximize else min
        at = {}
        for level, (_, until) in enumerate(bracket.rungs):
            finite = [v for v in series[:until] if math.isfinite(v)]
            at[level] = best(finite) if finite else (-math.inf if self.maximize else math.inf)
        return at

    def _end_at_deadline(self, alive: dict[int, Any], values: dict[int, float]) -> None:
        for number, trial in alive.items():
            if number not in values:
                trial.set_user_attr(_record.PRUNE_REASON, _record.TIMEOUT)
            self._tell(trial, State.COMPLETE if number in values else State.PRUNED, values.get(number))

    def _tell(self, trial: Any, state: Any, value: float | None = None) -> None:
        frozen = self.study.tell(trial, value if state == State.COMPLETE else None, state=state)
        self.heartbeats.stop(trial)
        for callback in self.callbacks:
            callback(self.study, frozen)
