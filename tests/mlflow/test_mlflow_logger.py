"""`MLflowLogger` on real fits: params, one batch of metrics per epoch, diagnosis tags and artifacts."""

from __future__ import annotations

import json
import math

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from descentkit.callbacks import TrainingMonitor
from descentkit.callbacks.mlflow_logger import MLflowLogger

EPOCHS = 3


def _data(n=128, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, :1] - x[:, 1:2] > 0).astype("float32")
    return x, y


def _model(learning_rate=0.05):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4), name="hidden"),
        keras.layers.Dropout(0.25),
        keras.layers.Dense(1, activation="sigmoid", name="out"),
    ])
    schedule = keras.optimizers.schedules.ExponentialDecay(learning_rate, decay_steps=8, decay_rate=0.9)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
                  loss="binary_crossentropy", metrics=["accuracy"])
    return model


def _only_run(client: MlflowClient, experiment: str):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return runs[0]


def _artifacts(client: MlflowClient, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


def test_logger_logs_params_epoch_metrics_and_artifacts(tracking_uri):
    x, y = _data()
    logger = MLflowLogger(tracking_uri=tracking_uri, experiment_name="fit")
    model = _model()
    model.fit(x, y, batch_size=16, epochs=EPOCHS, validation_split=0.25, callbacks=[logger], verbose=0)

    client = MlflowClient(tracking_uri)
    # metrics, tags and findings are written when fit returns; the figure and the run's end follow
    early = _only_run(client, "fit")
    assert early.data.tags["descentkit.symptoms"] == ",".join(sorted({f.symptom for f in logger.monitor.findings}))
    assert "findings.json" in _artifacts(client, early.info.run_id)
    assert len(client.get_metric_history(early.info.run_id, "loss")) == EPOCHS
    logger.wait()
    run = _only_run(client, "fit")
    assert run.info.run_id == logger.run_id and run.info.status == "FINISHED", "a run it started, it ends"
    assert client.get_experiment_by_name("fit").tags["mlflow.experimentKind"] == "custom_model_development"
    params = run.data.params
    assert params["optimizer"] == "nesterov" and params["momentum"] == "0.9", "float32 values as written"
    assert params["lr_schedule"] == "ExponentialDecay" and params["learning_rate"] == "0.05"
    assert params["lr_schedule.decay_rate"] == "0.9"
    assert params["batch_size"] == "16" and params["epochs"] == str(EPOCHS) and params["steps_per_epoch"] == "6"
    assert float(params["l2"]) == pytest.approx(1e-4) and float(params["dropout"]) == pytest.approx(0.25)
    assert params["param_count"] == str(model.count_params())

    epochs = list(range(1, EPOCHS + 1))  # step = the epoch as Keras's progress bar counts it
    for key in ("loss", "val_accuracy", "learning_rate", "grad_norm/median", "grad_norm/max", "grad_norm/hidden/median",
                "dead_fraction/hidden"):  # dead units probed on the fit's own validation data
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == epochs, key
    sampled = client.get_metric_history(run.info.run_id, "update_ratio/out/median")  # sampled every few steps
    assert sampled and {m.step for m in sampled} <= set(epochs)
    rates = [m.value for m in client.get_metric_history(run.info.run_id, "learning_rate")]
    assert rates[0] > rates[-1], "the learning rate in force follows the schedule"
    assert run.data.tags["descentkit.symptoms"] == ",".join(sorted({f.symptom for f in logger.monitor.findings}))
    assert {"findings.json", "diagnostics.png"} <= _artifacts(client, run.info.run_id)


def test_diverging_run_is_stopped_and_tagged_with_its_symptom(tracking_uri):
    x, y = _data()
    x = x * 1e3  # unnormalized inputs and a huge rate: the loss blows up within the first epoch
    logger = MLflowLogger(tracking_uri=tracking_uri, experiment_name="diverging")
    model = _model(learning_rate=50.0)
    history = model.fit(x, y, batch_size=16, epochs=EPOCHS, callbacks=[logger], verbose=0).history
    assert len(history["loss"]) == 1, "like TrainingMonitor, the logger's own monitor stops on divergence"
    assert not math.isfinite(history["loss"][-1])
    logger.wait()

    client = MlflowClient(tracking_uri)
    run = _only_run(client, "diverging")
    assert run.data.tags["descentkit.diverged"] == "true" and run.data.tags["descentkit.diverged_epoch"] == "1"
    assert run.data.tags["descentkit.stopped_by"] == "divergence"
    assert run.data.tags["descentkit.symptom.divergence"] == "critical"
    assert "divergence" in run.data.tags["descentkit.symptoms"].split(",")
    found = client.search_runs([run.info.experiment_id], 'tags."descentkit.symptom.divergence" = "critical"')
    assert [r.info.run_id for r in found] == [run.info.run_id]
    findings = json.loads(open(client.download_artifacts(run.info.run_id, "findings.json")).read())
    assert "divergence" in {f["symptom"] for f in findings}
    assert "diagnostics.png" in _artifacts(client, run.info.run_id)


def test_a_run_that_goes_on_after_diverging_logs_no_nan_for_every_later_epoch(tracking_uri):
    x, y = _data()
    logger = MLflowLogger(tracking_uri=tracking_uri, experiment_name="goes-on", stop_on=(), log_figure=False)
    history = _model(learning_rate=50.0).fit(x * 1e3, y, batch_size=16, epochs=EPOCHS, callbacks=[logger],
                                             verbose=0).history
    assert len(history["loss"]) == EPOCHS and not math.isfinite(history["loss"][-1])
    logger.wait()

    client = MlflowClient(tracking_uri)
    run = _only_run(client, "goes-on")
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in losses] == [1] and math.isnan(losses[0].value), "the first NaN shows where it broke"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "learning_rate")] == [1, 2, 3]
    assert run.data.tags["descentkit.diverged"] == "true" and "descentkit.stopped_by" not in run.data.tags
    with pytest.raises(ValueError, match="pass stop_on and probe_data to the TrainingMonitor"):
        MLflowLogger(monitor=TrainingMonitor(), stop_on=())


def test_diagnostics_figure_draws_the_sampled_update_ratio(tracking_uri):
    from descentkit.diagnostics.plots import plot_training

    x, y = _data()
    monitor = TrainingMonitor(verbose=0)
    _model().fit(x, y, batch_size=16, epochs=EPOCHS, callbacks=[monitor], verbose=0)
    assert np.isnan(monitor.record.update_ratio[:, 0]).mean() > 0.5, "sampled once an epoch: mostly NaN"
    ratio_panel = plot_training(monitor.record, monitor.findings).axes[3]
    drawn = [line for line in ratio_panel.get_lines() if line.get_label() in ("hidden", "out")]
    assert len(drawn) == 2 and all(len(line.get_xdata()) >= EPOCHS - 1 for line in drawn), "one point per sample"


def test_active_run_is_used_and_left_open(tracking_uri):
    x, y = _data()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        experiment_id = MlflowClient(tracking_uri).create_experiment("active")
        with mlflow.start_run(experiment_id=experiment_id) as active:
            mlflow.log_param("learning_rate", "my own value")  # MLflow refuses to change a param
            monitor = TrainingMonitor(verbose=0, stop_on=())
            logger = MLflowLogger(monitor=monitor, log_figure=False)
            _model().fit(x, y, batch_size=32, epochs=2, callbacks=[monitor, logger], verbose=0)
            logger.wait()
            assert logger.run_id == active.info.run_id
            assert mlflow.active_run().info.run_id == active.info.run_id, "the user's run stays open"
            assert MlflowClient(tracking_uri).get_run(active.info.run_id).info.status == "RUNNING"
    finally:
        mlflow.set_tracking_uri(None)
    client = MlflowClient(tracking_uri)
    metrics = client.get_metric_history(active.info.run_id, "grad_norm/median")
    assert [m.step for m in metrics] == [1, 2], "the given monitor's signals are logged"
    params = client.get_run(active.info.run_id).data.params
    assert params["learning_rate"] == "my own value" and params["optimizer"] == "nesterov"


def test_unreachable_tracking_server_does_not_stop_training(dead_tracking_uri, capsys):
    x, y = _data()
    logger = MLflowLogger(tracking_uri=dead_tracking_uri)
    history = _model().fit(x, y, batch_size=32, epochs=2, callbacks=[logger], verbose=0).history
    assert len(history["loss"]) == 2
    warnings = [line for line in capsys.readouterr().err.splitlines() if "MLflow logging" in line]
    assert len(warnings) == 1 and dead_tracking_uri in warnings[0] and "training goes on" in warnings[0]


def test_a_loop_of_fits_gets_one_complete_run_each(tracking_uri):
    # The figure and the run's end of one fit are written while the next fit trains:
    # every fit's writes must land in its own run.
    x, y = _data()
    logger = MLflowLogger(tracking_uri=tracking_uri, experiment_name="loop")
    model = _model()
    ids = []
    for _ in range(3):
        model.fit(x, y, batch_size=32, epochs=1, callbacks=[logger], verbose=0)
        ids.append(logger.run_id)
    logger.wait()

    client = MlflowClient(tracking_uri)
    assert len(set(ids)) == 3
    for run_id in ids:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1]
        assert {"findings.json", "diagnostics.png"} <= _artifacts(client, run_id)


def test_a_write_that_fails_at_the_end_still_ends_the_run(tracking_uri, monkeypatch, capsys):
    x, y = _data()
    logger = MLflowLogger(tracking_uri=tracking_uri, experiment_name="failing")

    def refuse(*args, **kwargs):
        raise ConnectionError("the server went away")

    monkeypatch.setattr(MlflowClient, "log_text", refuse)  # findings.json, written as fit ends
    _model().fit(x, y, batch_size=32, epochs=1, callbacks=[logger], verbose=0)
    logger.wait()

    run = MlflowClient(tracking_uri).get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    warnings = [line for line in capsys.readouterr().err.splitlines() if "MLflow logging" in line]
    assert len(warnings) == 1 and "the server went away" in warnings[0]


def test_tracking_calls_keep_their_settings_until_the_last_thread_is_done():
    import os
    import threading

    from descentkit.callbacks import _mlflow

    key = "MLFLOW_HTTP_REQUEST_TIMEOUT"
    if key in os.environ:
        pytest.skip(f"{key} is set in this environment")
    entered, leave = threading.Event(), threading.Event()

    def other_thread():
        with _mlflow.tracking_calls():
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=other_thread)
    thread.start()
    entered.wait(10)
    with _mlflow.tracking_calls():
        pass  # this block closes first: the other thread's call must keep the short timeout
    assert os.environ.get(key) == _mlflow.CALL_ENV[key]
    leave.set()
    thread.join(10)
    assert key not in os.environ
