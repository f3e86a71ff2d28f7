"""Running a process's trials until the budget is spent: one at a time, or bracket by bracket."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from descentkit.tuner._interrupts import check_interrupted, interrupts
from descentkit.tuner._recovery import WaitLimit, may_still_need_rerun, recover, requeue_interrupted
from descentkit.tuner.brackets import BracketRunner, brackets_for
from descentkit.tuner.objective import Objective


def run_study(study: Any, config: Any, budget: Any, timeout: float | None, lock: Any, *, data: Any = None,
              builder: Any = None, callbacks: list[Any] | None = None, relays: list[Any] | None = None,
              max_bracket: int | None = None) -> None:
    """Train the study's trials in this process (`optimize`): on `data` and `builder` when
    given, else the study file's own dataset and model. `callbacks` join every trial's
    `fit`; `relays` get `(study, frozen_trial)` for every finished trial."""
    objective = Objective(config, data, builder, callbacks) if data is not None else Objective.for_study(config)
    optimize(study, objective, budget, timeout, list(relays or []), lock, max_bracket)


def optimize(study: Any, objective: Objective, budget: Any, timeout: float | None, callbacks: list[Any],
             lock: Any, max_bracket: int | None = None) -> None:
    """Run trials until `budget` is spent, then drain: re-run the trials of workers
    that died, waiting (at most `_recovery.wait_limit_s()`) while any running trial
    might still turn out orphaned.

    Each trial starts under the study's `lock`, released as soon as the trial exists
    in the storage, so workers finishing at the same moment cannot both take the
    last trial of the budget. The heap alive before the first trial is frozen out of
    the garbage collector meanwhile (`Objective.heap_frozen`). `max_bracket` caps
    the configurations one bracket takes (`pruner: brackets`): a worker's share of
    the budget, so one worker cannot take it all.

    Interrupted (SIGINT or SIGTERM: `interrupts()`), the trials this worker holds are
    failed with `error_type: interrupted` and re-queued for the next run, which
    trains them first; then the interrupt goes on as KeyboardInterrupt.
    """
    with interrupts(), objective.heap_frozen():
        try:
            _run_trials(study, objective, budget, timeout, callbacks, lock, max_bracket)
        except KeyboardInterrupt:
            requeued = requeue_interrupted(study)
            if requeued:
                print(f"\ndescentkit: interrupted: trial(s) {', '.join(map(str, requeued))} failed "
                      "(error_type interrupted) and re-queued; the next run trains them first", file=sys.stderr,
                      flush=True)
            raise


def _run_trials(study: Any, objective: Objective, budget: Any, timeout: float | None, callbacks: list[Any],
                lock: Any, max_bracket: int | None) -> None:
    # A failed trial is logged by Optuna at WARNING with its traceback; keep it to one line.
    logging.getLogger("optuna").setLevel(logging.ERROR)
    deadline = None if timeout is None else time.monotonic() + timeout
    brackets = brackets_for(objective.config)
    if budget.target is None and not brackets:  # a timeout alone
        study.optimize(objective, timeout=timeout, catch=(Exception,), callbacks=callbacks)
        return
    runner = None
    if brackets:
        runner = BracketRunner(study, objective, brackets, budget, deadline, callbacks, lock, max_bracket)
        if budget.target is None:
            runner.run()
            return

    def counted_then_run(trial: Any) -> float:
        lock.release()  # the trial is stored and counted: the next worker may check
        return objective(trial)

    wait = WaitLimit()
    while deadline is None or time.monotonic() < deadline:
        check_interrupted()
        with lock:
            recovered = recover(study)
            if recovered:
                print(f"descentkit: re-queued trial(s) {', '.join(map(str, recovered))} left running by a worker "
                      "that died", file=sys.stderr, flush=True)
            room = budget.take(1) > 0
            if room and runner is None:
                study.optimize(counted_then_run, n_trials=1, catch=(Exception,), callbacks=callbacks)
                wait.reset()
                continue
        if room and runner.run():  # brackets (re-queued trials too): it takes its trials under the lock itself
            wait.reset()
            continue
        # Nothing left to start: wait while a running trial may yet be re-queued, within a bound.
        if not may_still_need_rerun(study) or wait.expired(study):
            return
        time.sleep(1.0)
