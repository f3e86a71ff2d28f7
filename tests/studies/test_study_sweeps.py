"""Short sweeps of the built-in tabular studies, end to end: load, check, train, report."""

from __future__ import annotations

import math

import optuna
import pytest

from descentkit.tuner import load_study, run_sweep
from descentkit.tuner.config import PrunerSpec


@pytest.mark.parametrize(
    ("study", "metric", "direction"),
    [("breast-cancer", "val_accuracy", "maximize"), ("diabetes", "val_loss", "minimize")],
)
def test_builtin_study_sweeps_end_to_end(study, metric, direction, tmp_path):
    config = load_study(study).model_copy(update={"max_epochs": 3, "pruner": PrunerSpec(name="none")})
    assert config.objective.metric == metric and config.objective.direction == direction
    result = run_sweep(config, trials=2, storage=str(tmp_path / f"{study}.journal"), progress=False, tracking=False)
    trials = result.study.get_trials()
    assert len(trials) == 2
    assert all(t.state != optuna.trial.TrialState.FAIL for t in trials), [t.user_attrs for t in trials]
    for trial in trials:
        history = trial.user_attrs["history"]
        assert metric in history and len(history[metric]) == trial.user_attrs["epochs_trained"]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    for trial in complete:
        assert math.isfinite(trial.value)
        if study == "breast-cancer":
            assert 0.0 <= trial.value <= 1.0
        else:
            assert trial.value > 0.0  # an MSE on a standardized target
    assert result.summary.metric == metric
