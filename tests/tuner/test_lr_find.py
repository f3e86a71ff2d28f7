"""The learning-rate range test on a real small model, `descentkit lr-find`, and `learning_rate: auto`."""

from __future__ import annotations

import math

import keras
import optuna
import pytest
import yaml

from descentkit.studies import builtin_study_path
from descentkit.tuner import StudyConfig, run_sweep
from descentkit.tuner._materialize import build_model as build_study_model
from descentkit.tuner._materialize import compile_model, load_dataset
from descentkit.tuner._range_plan import LR_RANGE_ATTR, first_trial_params
from descentkit.tuner._record import FIRST_TRIAL as FIRST_TRIAL_ATTR
from descentkit.tuner.lr_find import lr_range_test

pytestmark = pytest.mark.slow


def _digits(**changes) -> StudyConfig:
    data = yaml.safe_load(builtin_study_path("digits").read_text())
    data["search_space"]["batch_size"] = 32
    data.update(changes)
    return StudyConfig.model_validate(data)


def _val_accuracy(config: StudyConfig, data, learning_rate: float, epochs: int = 4) -> float:
    params = {"learning_rate": learning_rate, "optimizer": "sgd", "schedule": "constant", "batch_size": 32,
              "l2": 1e-6, "dropout": 0.0}
    keras.utils.set_random_seed(1)
    model = build_study_model(config, params, data)
    compile_model(model, params, data, epochs)
    history = model.fit(data.x_train, data.y_train, batch_size=32, epochs=epochs, verbose=0,
                        validation_data=(data.x_val, data.y_val)).history
    return history["val_accuracy"][-1]


def test_lr_find_finds_a_band_that_trains_and_a_rate_that_diverges():
    config = _digits()
    data = load_dataset(config)
    result = lr_range_test(config, data, min_lr=1e-5, max_lr=20.0)

    assert result.diverged_at is not None, "plain SGD on digits diverges well below 20"
    low, high = result.search
    assert low < high <= result.diverged_at / 3
    # the searched range trains: its geometric middle beats chance (0.1) by far in 4 epochs ...
    assert _val_accuracy(config, data, math.sqrt(low * high)) > 0.85
    # ... while 1000x below the band the same 4 epochs hardly move
    assert _val_accuracy(config, data, result.band[0] / 1000) < 0.5


def test_learning_rate_auto_searches_the_range_found_and_keeps_it_on_resume(tmp_path, capsys):
    data = yaml.safe_load(builtin_study_path("digits").read_text())
    data.update(name="auto-lr", max_epochs=2, pruner="none")
    data["search_space"]["learning_rate"] = "auto"
    data["search_space"]["batch_size"] = 64
    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump(data))
    storage = str(tmp_path / "auto.journal")

    first = run_sweep(path, trials=2, storage=storage, progress=False, tracking=False)
    err = capsys.readouterr().err
    assert "running the learning-rate range test" in err
    assert "first trial: running" not in err, "the first trial is proposed from the same test"
    assert "first trial (from the range test" in err
    found = first.study.user_attrs[LR_RANGE_ATTR]
    assert 0 < found["low"] < found["high"]
    assert first.study.user_attrs[FIRST_TRIAL_ATTR]["range_test"] == found

    again = run_sweep(path, trials=1, storage=storage, progress=False, tracking=False)
    assert "range test" not in capsys.readouterr().err, "a resumed sweep reuses the stored range"
    trials = again.study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    assert len(trials) == 3
    for trial in trials:
        assert found["low"] <= trial.params["learning_rate"] <= found["high"]


def test_first_trial_params_sit_in_the_middle_of_the_tested_range_and_inside_the_searched_one():
    space = _digits().search_space
    params = first_trial_params(space, 0.01, 1.0)
    # momentum SGD, as the range test ran, at the middle of each range, the first schedule;
    # the fixed batch size is no parameter
    assert params == {"learning_rate": pytest.approx(0.1), "optimizer": "momentum", "momentum": pytest.approx(0.745),
                      "schedule": "constant", "l2": pytest.approx(1e-4), "dropout": pytest.approx(0.2)}
    # a tested range above the searched one (0.001 - 1.0) gives the top of the searched one
    assert first_trial_params(space, 3.0, 30.0)["learning_rate"] == 1.0
    # plain SGD only: no momentum (it is not sampled for plain SGD); the constant schedule the test
    # ran at; a step grid kept; an int at the low end of its range, as the range test built the model
    space = _digits(search_space={"learning_rate": {"type": "float", "low": 0.001, "high": 1.0, "log": True},
                                  "optimizer": "sgd", "momentum": {"type": "float", "low": 0.5, "high": 0.99},
                                  "schedule": {"type": "categorical", "choices": ["cosine", "constant"]},
                                  "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.2},
                                  "units": {"type": "int", "low": 16, "high": 256, "log": True}}).search_space
    assert first_trial_params(space, 0.01, 1.0) == {"learning_rate": pytest.approx(0.1), "schedule": "constant",
                                                    "dropout": pytest.approx(0.2), "units": 16}
    # a stepped learning rate whose range is no whole number of steps: the highest point on the grid
    space = {"learning_rate": _digits(search_space={"learning_rate": {
        "type": "float", "low": 0.1, "high": 1.0, "step": 0.35}}).search_space["learning_rate"]}
    assert first_trial_params(space, 3.0, 30.0) == {"learning_rate": pytest.approx(0.8)}


def test_no_first_trial_is_proposed_where_a_range_test_cannot_stand_for_the_trials():
    from descentkit.tuner._lock import BudgetLock
    from descentkit.tuner._range_plan import propose_first_trial

    study = optuna.create_study(direction="maximize")
    lock = BudgetLock("none")
    # the study compiles its own optimizer; the learning rate is fixed; first_trial: sampler
    for config in (_digits(model={"name": "mlp", "compile": "user"}),
                   _digits(search_space={"learning_rate": 0.1, "batch_size": 32}),
                   _digits(first_trial="sampler")):
        assert propose_first_trial(study, config, None, None, None, lock) is None  # (no data: no test ran)
    assert study.trials == [] and FIRST_TRIAL_ATTR not in study.user_attrs


def _first_trial_study(tmp_path, **changes):
    data = yaml.safe_load(builtin_study_path("digits").read_text())
    data.update(name="first", max_epochs=2, pruner="none", **changes)
    data["search_space"]["batch_size"] = {"type": "categorical", "choices": [64, 32]}
    path = tmp_path / "first.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_new_study_trains_the_range_tests_choice_first_and_a_resumed_one_does_not_again(tmp_path, capsys):
    path, storage = _first_trial_study(tmp_path), str(tmp_path / "first.journal")
    first = run_sweep(path, trials=2, storage=storage, progress=False, tracking=False)
    assert "range test" in capsys.readouterr().err
    proposed = first.study.user_attrs[FIRST_TRIAL_ATTR]
    tested = proposed["range_test"]
    trial = first.study.trials[0]
    assert trial.user_attrs[FIRST_TRIAL_ATTR] == "range_test"
    assert trial.params["learning_rate"] == pytest.approx(math.sqrt(tested["low"] * tested["high"]))
    assert trial.params["optimizer"] == "momentum" and trial.params["batch_size"] == 64
    # the range test's choice trains: far above chance (0.1) in 2 epochs
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value > 0.8
    assert FIRST_TRIAL_ATTR not in first.study.trials[1].user_attrs, "the sampler proposes the rest"

    again = run_sweep(path, trials=1, storage=storage, progress=False, tracking=False)
    assert "range test" not in capsys.readouterr().err
    assert len(again.study.trials) == 3
    assert [FIRST_TRIAL_ATTR in t.user_attrs for t in again.study.trials] == [True, False, False]


def test_first_trial_sampler_leaves_every_trial_to_the_sampler(tmp_path, capsys):
    path = _first_trial_study(tmp_path, first_trial="sampler")
    result = run_sweep(path, trials=1, storage=str(tmp_path / "s.journal"), progress=False, tracking=False)
    assert "range test" not in capsys.readouterr().err
    assert FIRST_TRIAL_ATTR not in result.study.user_attrs and FIRST_TRIAL_ATTR not in result.study.trials[0].user_attrs


def test_lr_find_cli_prints_the_band_and_writes_the_plot(cli, small_digits, tmp_path):
    done = cli("lr-find", str(small_digits), "--min-lr", "1e-4", "--max-lr", "10")
    assert done.returncode == 0, done.stderr
    assert "Loss falls fastest at learning rate" in done.stdout and "Search learning_rate in [" in done.stdout
    assert (tmp_path / "digits-small-lr-find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_find_cli_refuses_an_empty_range(cli, small_digits):
    done = cli("lr-find", str(small_digits), "--min-lr", "1", "--max-lr", "0.1")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["descentkit: error: --min-lr (1) must be below --max-lr (0.1)"]


def test_a_learning_rate_word_other_than_auto_is_refused(cli, small_digits, tmp_path):
    data = yaml.safe_load(small_digits.read_text())
    data["search_space"]["learning_rate"] = "fast"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    done = cli("sweep", str(path))
    assert done.returncode == 2
    assert "or auto" in done.stderr and "Traceback" not in done.stderr


def test_a_first_trial_whose_worker_died_is_retried_as_the_first_trial():
    import socket

    from descentkit.tuner._record import WORKER as WORKER_ATTR
    from descentkit.tuner._recovery import recover_orphaned_trials

    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"learning_rate": 0.1}, user_attrs={FIRST_TRIAL_ATTR: "range_test"})
    trial = study.ask()
    trial.suggest_float("learning_rate", 0.001, 1.0, log=True)
    trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:4194304:1")  # above pid_max: no such process
    assert recover_orphaned_trials(study) == [0]
    retry = study.get_trials(states=(optuna.trial.TrialState.WAITING,))[0]
    assert retry.user_attrs[FIRST_TRIAL_ATTR] == "range_test" and retry.user_attrs["retry_of"] == 0


def test_a_range_test_that_fails_leaves_the_first_trial_to_the_sampler(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")

    def build(params):  # a model that cannot be built with some parameters: the test's, here
        if params["dropout"] >= 0.1:
            raise ValueError("dropout of 0.1 or more is not supported")
        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, activation="sigmoid")])

    config = StudyConfig(name="no-test", max_epochs=1, pruner="none", seed=0,
                         objective={"metric": "val_accuracy", "direction": "maximize"},
                         search_space={"learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
                                       "dropout": {"type": "float", "low": 0.0, "high": 0.2}, "batch_size": 32})
    result = run_sweep(config, data=(x[:120], y[:120], x[120:], y[120:]), build_model=build, trials=2,
                       storage=str(tmp_path / "n.journal"), progress=False, tracking=False)
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "first trial" in line]
    assert said[-1] == ("descentkit: first trial: left to the sampler; the range test failed: "
                        "dropout of 0.1 or more is not supported")
    assert "Traceback" not in err
    assert len(result.study.trials) == 2 and FIRST_TRIAL_ATTR not in result.study.user_attrs
    assert all(FIRST_TRIAL_ATTR not in t.user_attrs for t in result.study.trials)
