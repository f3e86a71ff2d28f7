"""The trial budget of a study, shared by every worker: the one place trials are counted.

A worker stops starting trials once the study holds its target number of
finished, running or queued trials, so N workers (processes or machines) on one
study run exactly the requested total between them. A failed trial that was
re-queued (its worker died, or was interrupted) does not count; its re-run does.

Reads the stored trials only (`study.get_trials`); imports neither Optuna nor Keras.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from descentkit.tuner import _record


def counted(trials: Iterable[Any]) -> list[Any]:
    """The trials that count against a budget: all but the failed ones whose parameters were re-queued."""
    trials = list(trials)
    retried = {origin for t in trials if (origin := _record.retry_origin(t)) is not None}
    return [t for t in trials
            if t.state.name != "FAIL" or (t.number not in retried and not _record.is_orphaned(t))]


class Budget:
    """How many more trials a study may start.

    Args:
        study: the Optuna study (anything with `get_trials(deepcopy=False)`).
        target: the number of counted trials the study should end with; None: no
            limit (a sweep bounded by its timeout alone).

    Callers hold the study's lock from `take` until the trials they took exist in
    the storage, so two workers cannot both take the last trial.

    Example:
        >>> budget = Budget.adding(study, 20)   # 20 more than the study holds
        >>> for _ in range(budget.take(1)):
        ...     study.optimize(objective, n_trials=1)
    """

    def __init__(self, study: Any, target: int | None) -> None:
        if target is not None and target < 0:
            raise ValueError(f"target must be a number of trials (0 or more), got {target}")
        self.study, self.target = study, target

    @classmethod
    def adding(cls, study: Any, trials: int | None) -> Budget:
        """A budget of `trials` more finished trials than the study holds now (None: no limit)."""
        return cls(study, None if trials is None else cls(study, None).finished() + trials)

    def _trials(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False)

    def used(self) -> int:
        """The trials counted so far: finished, running and queued."""
        return len(counted(self._trials()))

    def finished(self) -> int:
        return sum(t.state.name in _record.FINISHED_STATES for t in counted(self._trials()))

    def counts(self, trial: Any) -> bool:
        """Whether a stored trial counts (False for a failed trial whose parameters were re-queued)."""
        return trial.number in {t.number for t in counted(self._trials())}

    def waiting(self) -> int:
        return sum(t.state.name == "WAITING" for t in self._trials())

    def room(self) -> int | None:
        """Trials that may be started now (None: no limit). A queued trial always may:
        starting it adds nothing to the count."""
        if self.target is None:
            return None
        trials = self._trials()
        waiting = sum(t.state.name == "WAITING" for t in trials)
        return max(0, self.target - len(counted(trials))) + waiting

    def take(self, wanted: int) -> int:
        """How many of `wanted` trials may be started now (all of them without a limit)."""
        if wanted < 0:
            raise ValueError(f"wanted must be 0 or more, got {wanted}")
        room = self.room()
        return wanted if room is None else min(wanted, room)

    def share(self, workers: int) -> int | None:
        """One worker's share of the room left (at least 1), or None without a limit."""
        room = self.room()
        return None if room is None else max(1, math.ceil(room / workers))

    def to_run(self) -> int | None:
        """Trials still to finish before the target (None: no limit), for a progress bar."""
        return None if self.target is None else max(0, self.target - self.finished())
