"""End-to-end sweeps: the CLI on digits, resume, failures recorded, pathologies pruned."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest
import yaml

from descentkit.tuner import ConfigError, StudyConfig, run_sweep


def test_cli_sweep_runs_resumes_and_reports(cli, small_digits, tmp_path):
    # The default path, as the README's first command runs it: embedded storage, MLflow tracking on.
    first = cli("sweep", str(small_digits), "--trials", "3", "--quiet", env={"DESCENTKIT_TRACKING": "true"})
    assert first.returncode == 0, first.stderr
    assert "Best trials by val_accuracy" in first.stdout
    assert "descentkit_studies" in first.stdout and (tmp_path / "descentkit_studies" / "digits-small.journal").is_file()
    assert "Pathologies:" in first.stdout and "Searched: " in first.stdout, "the sweep-level view ends the sweep"
    where = first.stdout.strip().splitlines()[-1]  # the last line: where MLflow has it, how to open the UI
    assert where.startswith(f"MLflow: 3 trial(s) logged to sqlite:///{tmp_path / 'mlflow.db'}, experiment 'digits-small'")
    assert " ui --backend-store-uri sqlite:///" in where and "http://127.0.0.1:5000/#/experiments/" in where

    again = cli("sweep", str(small_digits), "--trials", "2", "--quiet")
    assert again.returncode == 0, again.stderr

    shown = cli("results", str(small_digits), "--json")
    assert shown.returncode == 0, shown.stderr
    payload = json.loads(shown.stdout)
    numbers = [t["number"] for t in payload["trials"]]
    assert numbers == [0, 1, 2, 3, 4], "the second run must add trials to the same study"
    assert sum(payload["counts"].values()) == 5
    assert payload["pathology"]["n_trials"] == 5 and "learning_rate" in payload["pathology"]["searched"]
    plotted = cli("results", str(small_digits), "--plot", "map.png")
    assert plotted.returncode == 0, plotted.stderr
    assert "Pathologies:" in plotted.stdout and (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"
    best = payload["best"][0]
    assert 0.5 < best["value"] <= 1.0, "two epochs of a sane MLP on digits beat chance by far"
    assert {"learning_rate", "batch_size"} <= set(best["params"])

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")  # MLflow's default, in the working directory
    runs = client.search_runs([client.get_experiment_by_name("digits-small").experiment_id])
    parents = [r for r in runs if r.data.tags.get("descentkit.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 3, "one parent run per study, one child run per trial"
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)


def test_results_for_unknown_study_exits_2(cli):
    result = cli("results", "digits")
    assert result.returncode == 2
    assert "run `descentkit sweep digits` first" in result.stderr


def _arrays(n=300, features=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    return x[:200], y[:200], x[200:], y[200:]


def _build(params):
    import keras

    return keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ])


def _config(**space):
    return StudyConfig(
        name="api",
        objective={"metric": "val_accuracy", "direction": "maximize"},
        max_epochs=3,
        search_space=space,
        sampler="random",
        pruner="none",
    )


def test_exception_inside_a_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    def build_sometimes_broken(params):
        if params["variant"] == "broken":
            raise RuntimeError("layer exploded on purpose")
        return _build(params)

    config = _config(
        learning_rate=0.05,
        variant={"type": "categorical", "choices": ["broken", "fine"]},
    )
    result = run_sweep(config, data=_arrays(), build_model=build_sometimes_broken, trials=6,
                       storage=str(tmp_path / "s.journal"), progress=False, tracking=False)
    trials = result.study.get_trials()
    assert len(trials) == 6
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert failed and complete
    for t in failed:
        assert t.params["variant"] == "broken"
        assert t.user_attrs["error_type"] == "RuntimeError"
        assert "exploded on purpose" in t.user_attrs["error_message"]
    assert result.summary.counts["FAIL"] == len(failed)


def test_divergence_is_pruned_not_failed(tmp_path):
    # A learning rate of 1e4 with plain SGD sends a sigmoid classifier's weights to inf within a few steps.
    config = _config(learning_rate=1.0e4, optimizer="sgd", batch_size=16)
    x, y, xv, yv = _arrays()
    result = run_sweep(config, data=(x * 100, y, xv * 100, yv), build_model=_build, trials=1,
                       storage=str(tmp_path / "d.journal"), progress=False, tracking=False)
    (trial,) = result.study.get_trials()
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["prune_reason"] == "divergence"
    assert trial.value is None
    assert trial.user_attrs["epochs_trained"] < config.max_epochs
    assert "divergence" in trial.user_attrs["symptoms"]
    assert result.summary.prune_reasons == {"divergence": 1}


def test_completed_trials_report_every_epoch_and_return_a_finite_best(tmp_path):
    config = _config(learning_rate={"type": "float", "low": 0.01, "high": 0.1, "log": True})
    result = run_sweep(config, data=_arrays(), build_model=_build, trials=2,
                       storage=str(tmp_path / "c.journal"), progress=False, tracking=False)
    for trial in result.study.get_trials():
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert sorted(trial.intermediate_values) == [0, 1, 2]
        assert math.isfinite(trial.value)
        assert trial.value == max(trial.intermediate_values.values())


def test_metric_the_model_does_not_log_is_a_config_error(tmp_path):
    config = StudyConfig.model_validate(
        {**_config(learning_rate=0.05).model_dump(), "objective": {"metric": "val_acc", "direction": "maximize"}}
    )
    with pytest.raises(ConfigError, match="objective.metric: 'val_acc' is not logged.*val_accuracy"):
        run_sweep(config, data=_arrays(), build_model=_build, trials=1, storage=str(tmp_path / "m.journal"), progress=False, tracking=False)


def test_model_output_that_cannot_fit_the_data_is_a_config_error(tmp_path):
    def ten_way(params):
        import keras

        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(10, activation="softmax")])

    with pytest.raises(ConfigError, match="model: the model's output has 10 units but the data has a binary target"):
        run_sweep(_config(learning_rate=0.05), data=_arrays(), build_model=ten_way, trials=1,
                  storage=str(tmp_path / "o.journal"), progress=False, tracking=False)


def test_wrong_metric_in_study_file_exits_2_before_training(cli, small_digits):
    data = yaml.safe_load(small_digits.read_text())
    data["objective"]["metric"] = "val_f1"
    small_digits.write_text(yaml.safe_dump(data))
    result = cli("sweep", str(small_digits), "--trials", "1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("descentkit: error:")
    assert "objective.metric: 'val_f1'" in result.stderr


def test_trials_run_with_the_heap_frozen_and_it_is_thawed_after(tmp_path):
    import gc

    import keras

    seen: list[int] = []

    class FreezeCount(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(gc.get_freeze_count())

    before = gc.get_freeze_count()
    run_sweep(_config(learning_rate=0.05, batch_size=32), data=_arrays(), build_model=_build, trials=2,
              storage=str(tmp_path / "s.journal"), callbacks=[FreezeCount()], progress=False, tracking=False)
    assert len(seen) == 2 and all(count > 0 for count in seen), "the trials' final collect skips the old heap"
    assert gc.get_freeze_count() == before, "the user's process gets its collector back as it was"


def test_a_model_built_without_an_input_shape_trains(tmp_path):
    import keras

    def unbuilt(params):  # no keras.Input: the weights exist only after the first call
        return keras.Sequential([keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])

    result = run_sweep(_config(learning_rate=0.05, batch_size=32), data=_arrays(), build_model=unbuilt, trials=1,
                       storage=str(tmp_path / "s.journal"), progress=False, tracking=False)
    (trial,) = result.study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("error_message")
