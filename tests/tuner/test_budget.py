"""The trial budget, on stand-in trials: counted once, in one place, with no TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from descentkit.tuner._budget import Budget, counted


def _trial(number: int, state: str, **user_attrs):
    return SimpleNamespace(number=number, state=SimpleNamespace(name=state), user_attrs=user_attrs, system_attrs={})


class _Study:
    def __init__(self, *trials):
        self.trials = list(trials)

    def get_trials(self, deepcopy: bool = False):
        return list(self.trials)


def test_budget_and_record_import_no_deep_learning_stack():
    code = ("import sys, descentkit.tuner._budget, descentkit.tuner._record\n"
            "print(','.join(m for m in ('tensorflow', 'keras', 'optuna', 'mlflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stderr


def test_room_is_the_target_less_the_trials_counted():
    study = _Study(_trial(0, "COMPLETE"), _trial(1, "PRUNED"), _trial(2, "RUNNING"))
    budget = Budget(study, 5)
    assert budget.used() == 3 and budget.finished() == 2 and budget.room() == 2
    assert budget.take(1) == 1 and budget.take(9) == 2 and budget.take(0) == 0


def test_a_full_budget_has_no_room():
    assert Budget(_Study(_trial(0, "COMPLETE"), _trial(1, "COMPLETE")), 2).take(3) == 0


def test_a_requeued_failure_does_not_count_and_its_rerun_does():
    orphan = _trial(0, "FAIL", orphaned="worker died")
    interrupted = _trial(1, "FAIL", error_type="interrupted")
    rerun = _trial(2, "WAITING", retry_of=1)
    study = _Study(orphan, interrupted, rerun, _trial(3, "COMPLETE"))
    assert [t.number for t in counted(study.trials)] == [2, 3]
    budget = Budget(study, 2)
    assert not budget.counts(orphan) and budget.counts(rerun)


def test_a_queued_trial_may_always_start():
    study = _Study(_trial(0, "COMPLETE"), _trial(1, "COMPLETE"), _trial(2, "WAITING"))
    assert Budget(study, 2).room() == 1, "starting a queued trial adds nothing to the count"


def test_no_target_is_no_limit():
    budget = Budget(_Study(_trial(0, "COMPLETE")), None)
    assert budget.room() is None and budget.take(7) == 7 and budget.share(3) is None and budget.to_run() is None


def test_adding_counts_from_the_trials_finished():
    study = _Study(_trial(0, "COMPLETE"), _trial(1, "FAIL"), _trial(2, "RUNNING"))
    budget = Budget.adding(study, 3)
    assert budget.target == 5 and budget.to_run() == 3 and budget.room() == 2


def test_each_worker_gets_its_share_of_the_room():
    budget = Budget(_Study(), 8)
    assert budget.share(2) == 4 and budget.share(3) == 3 and Budget(_Study(_trial(0, "COMPLETE")), 1).share(4) == 1


def test_bad_arguments_quote_the_value():
    with pytest.raises(ValueError, match="got -1"):
        Budget(_Study(), -1)
    with pytest.raises(ValueError, match="got -2"):
        Budget(_Study(), 3).take(-2)
