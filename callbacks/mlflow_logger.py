"""`MLflowLogger`: a training run's configuration, per-epoch health and diagnosis in MLflow."""

from __future__ import annotations

import copy
import json
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from descentkit.callbacks import _mlflow
from descentkit.callbacks._fit_data import fit_frame_locals
from descentkit.callbacks._step_signals import learning_rate_in_force, target_optimizer

# Hooks the logger needs itself; every other Keras hook of an internal monitor is
# bound straight to the monitor's method, so Keras still sees a default (no-op)
# batch hook when the monitor has none and keeps its asynchronous batch dispatch.
_OWN_HOOKS = ("set_model", "set_params", "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end")
_FORWARDED_HOOKS = (
    "on_batch_begin", "on_batch_end",
    "on_train_batch_begin", "on_train_batch_end",
    "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
    "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end",
)
# Keras's own default when `fit(x=arrays)` is given no batch_size.
KERAS_DEFAULT_BATCH_SIZE = 32


class MLflowLogger(keras.callbacks.Callback):
    """Logs a Keras training run to MLflow: its SGD configuration, per-epoch losses,
    learning rate and gradient health, and at the end the diagnosis.

    Params: the optimizer variant (`sgd`, `momentum`, `nesterov`, or the optimizer's
    class name), learning rate and schedule (class and config), momentum, clipping,
    batch size, epochs, steps per epoch, L1/L2 kernel regularization and dropout
    found in the model, parameter count (floats rounded to 7 significant digits: a
    float32 0.05 is logged as 0.05). Metrics, one `log_batch` call per epoch (step =
    the epoch as Keras counts it, from 1): the Keras logs, `learning_rate`, the epoch's
    median and max of the global and per-layer gradient norms (`grad_norm/median`,
    `grad_norm/<layer>/max`, ...), update-to-weight ratios (`update_ratio/<layer>/median`),
    dead and saturated fractions (`dead_fraction/<layer>`, measured on probe data).
    The first epoch with a non-finite loss tags the run `descentkit.diverged=true`
    (and `descentkit.diverged_epoch`); later epochs log only their finite values, so
    the charts are not NaN from there on. At the end: the tag `descentkit.symptoms`
    (comma-separated), one tag `descentkit.symptom.<name>` = worst severity per
    symptom, `descentkit.stopped_by` when a symptom stopped training, a
    `findings.json` artifact and a `diagnostics.png` figure.

    The run is created (or found) when training begins; every later MLflow call runs
    on one background thread, in order, so epochs never wait for the tracking
    server. When `fit` returns, the metrics, tags and findings are written, while
    the figure (a second to render) and the end of a run the logger started follow:
    `logger.wait()` blocks until they are there (Python waits for them at exit too).

    The active MLflow run is used if there is one; otherwise a run is started and
    ended by the logger (it never ends a run it did not start). A tracking failure
    never stops training: it is reported once on stderr and logging stops.

    Args:
        monitor: the `TrainingMonitor` in the same `fit` whose signals and findings are
            logged; put the logger after it in `callbacks`. Default None: the logger
            runs its own monitor (`verbose=0`, stopping on `stop_on`).
        stop_on: for the logger's own monitor, the symptom name(s) that stop training,
            as `TrainingMonitor`'s `stop_on` (default None: `TrainingMonitor`'s default,
            `DEFAULT_STOP_ON`: divergence, and a layer all dead or a loss stuck at
            chance); `()` only watches. With `monitor=` given, that
            monitor's own `stop_on` decides.
        probe_data: for the logger's own monitor, inputs `x` (or `(x, y)`) to measure
            dead and saturated units on each epoch. Default None: up to 256 samples of
            the running `fit`'s validation data, else of its training data (never
            taken from a Python generator).
        log_every_epoch: write each epoch's metrics when the epoch ends (default True);
            False writes them all at the end of training.
        batch_size: the batch size to log; default None reads it from the running
            `fit()` call (Keras does not give it to callbacks).
        tracking_uri: default None: MLFLOW_TRACKING_URI, else MLflow's default
            (`sqlite:///mlflow.db` in the working directory). Ignored when a run is active.
        experiment_name: the experiment of a run the logger starts (default: MLflow's
            active or default experiment).
        run_name: the name of a run the logger starts.
        log_figure: log the diagnostic figure `diagnostics.png` at the end (default True).

    Example:
        >>> from descentkit.callbacks import MLflowLogger
        >>> model.fit(x, y, epochs=10, validation_split=0.2, callbacks=[MLflowLogger()])
    """

    def __init__(
        self,
        monitor: Any | None = None,
        log_every_epoch: bool = True,
        *,
        stop_on: str | Iterable[str] | None = None,
        probe_data: Any = None,
        batch_size: int | None = None,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        log_figure: bool = True,
    ) -> None:
        super().__init__()
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        self.log_every_epoch = log_every_epoch
        self.batch_size = batch_size
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.log_figure = log_figure
        if monitor is not None and (stop_on is not None or probe_data is not None):
            raise ValueError("MLflowLogger received monitor= and stop_on= or probe_data=; "
                             "pass stop_on and probe_data to the TrainingMonitor you give instead.")
        self._internal = monitor is None
        if monitor is None:
            from descentkit.callbacks import TrainingMonitor

            # TrainingMonitor's own defaults unless given: the logger stops where a monitor would.
            options = {k: v for k, v in (("stop_on", stop_on), ("probe_data", probe_data)) if v is not None}
            monitor = TrainingMonitor(verbose=0, **options)
            for hook in _FORWARDED_HOOKS:
                setattr(self, hook, getattr(monitor, hook))
            self.async_safe = getattr(monitor, "async_safe", False)
        self.monitor = monitor
        self._fit: _FitRun | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._logs: dict[int, dict[str, float]] = {}  # epoch -> Keras logs, until written
        self._first_row = 0
        self._first_epoch = 0
        self._epoch_rows: list[int] = []  # step rows recorded at the end of each epoch written

    @property
    def run_id(self) -> str | None:
        """The MLflow run of the last (or running) `fit`, None before the first or if it could not start."""
        return self._fit.run_id if self._fit is not None else None

    def wait(self, timeout: float | None = None) -> None:
        """Block until everything logged so far is written.

        The end of a `fit` (the `diagnostics.png` figure, the run marked FINISHED) is
        written in a background thread, so that `fit` returns at once: call this before
        reading those back. Python waits for it at exit too.
        """
        for future in list(self._pending):
            future.result(timeout)
        self._pending = [f for f in self._pending if not f.done()]

    # ------------------------------------------------------------ Keras hooks
    def set_model(self, model: Any) -> None:
        super().set_model(model)
        if self._internal:
            self.monitor.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        if self._internal:
            self.monitor.set_params(params)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Without probe_data the monitor probes a sample of this fit's own data.
        fit_locals = fit_frame_locals(self.model) or {}
        if self._internal:
            self.monitor.on_train_begin(logs)
        self._fit = _FitRun()  # each fit gets its own run (or the run active now)
        self._logs.clear()
        self._epoch_rows.clear()
        # A monitor's record outlives one fit: this fit's rows and epochs start after the last.
        record = self._record()
        self._first_row = len(record.steps) if record is not None else 0
        self._first_epoch = record.n_epochs if record is not None else 0
        batch_size = self.batch_size or _batch_size_of(fit_locals)
        self._safely(self._fit, self._start, batch_size)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._internal:
            self.monitor.on_epoch_begin(epoch, logs)
        if self.log_every_epoch:
            self._write_epochs()  # an epoch left over by a monitor placed after us

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._internal:
            self.monitor.on_epoch_end(epoch, logs)
        self._logs[int(epoch)] = dict(logs or {})
        if self.log_every_epoch:
            self._write_epochs()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._internal:
            self.monitor.on_train_end(logs)
        fit = self._fit
        if fit is None:
            return
        if fit.failed:
            if fit.started_run:  # even after a failure: a run left RUNNING forever misleads
                self._submit(self._end_run, fit)
            return
        self._write_epochs(final=True)
        findings = [f.to_dict() for f in list(getattr(self.monitor, "findings", []) or [])]
        stopped_by = getattr(self.monitor, "stopped_by", None)
        self._in_background(fit, self._write_findings, findings, getattr(stopped_by, "symptom", None))
        self.wait()  # the metrics, tags and findings are there when fit returns
        if fit.failed:
            if fit.started_run:  # a write failed at the end: still end the run
                self._submit(self._end_run, fit)
            return
        record = self._record()
        figure_record = copy.deepcopy(record) if self.log_figure and record is not None else None
        # The figure takes a second to render: it and the run's end are written after fit returns.
        self._in_background(fit, self._finish, figure_record, list(getattr(self.monitor, "findings", []) or []))

    # ------------------------------------------------------------ the work
    def _record(self) -> Any:
        return getattr(self.monitor, "record", None)

    def _in_background(self, fit: _FitRun, fn: Any, *args: Any) -> None:
        """Run one MLflow step on the logger's writer thread (in order), never in the training loop."""
        if fit.run_id is not None and not fit.failed:
            self._submit(self._safely, fit, fn, *args)

    def _submit(self, fn: Any, *args: Any) -> None:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="descentkit-mlflow")
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._writer.submit(fn, *args))

    def _safely(self, fit: _FitRun, fn: Any, *args: Any) -> Any:
        """Run one MLflow step; on the first failure warn once and stop logging this fit (training goes on)."""
        if fit.failed or (fit.run_id is None and fn != self._start):
            return None
        try:
            with _mlflow.tracking_calls():
                return fn(fit, *args)
        except Exception as exc:  # tracking never costs a training run
            fit.failed = True
            run = f" (run {fit.run_id})" if fit.run_id else ""
            print(f"descentkit: warning: MLflow logging to {_mlflow.resolved_uri(self.tracking_uri)} failed{run}: "
                  f"{_mlflow.first_line(exc)}; "
                  "training goes on without it", file=sys.stderr)
            if fn == self._finish:
                self._end_run(fit)  # even after a failure: a run left RUNNING forever misleads
            return None

    def _start(self, fit: _FitRun, batch_size: int | None) -> None:
        import mlflow

        active = mlflow.active_run()
        params = training_params(self.model, self.params, batch_size)
        if active is not None:
            fit.client = _mlflow.client()
            fit.run_id = active.info.run_id
            # MLflow refuses to change a param: keep the values the user's run already has.
            have = fit.client.get_run(fit.run_id).data.params
            params = {k: v for k, v in params.items() if _mlflow.metric_name(k) not in have}
        else:
            fit.client = _mlflow.client(self.tracking_uri)
            experiment_id = self._experiment_id(fit.client)
            _mlflow.mark_training_experiment(fit.client, fit.client.get_experiment(experiment_id))
            run = fit.client.create_run(experiment_id, run_name=self.run_name, tags={"descentkit.role": "fit"})
            fit.run_id = run.info.run_id
            fit.started_run = True
        self._in_background(fit, _log_batch, (), params)

    def _experiment_id(self, client: Any) -> str:
        if self.experiment_name is None:
            from mlflow.tracking.fluent import _get_experiment_id

            if self.tracking_uri is None:
                return _get_experiment_id()
            return "0"
        found = client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(self.experiment_name)

    def _write_epochs(self, final: bool = False) -> None:
        """Queue every finished epoch whose signals the monitor has recorded, one batch each
        (or all at once when `log_every_epoch=False`)."""
        fit = self._fit
        if fit is None or fit.run_id is None or fit.failed:
            self._logs.clear()
            return
        record = self._record()
        metrics: list[Any] = []
        for epoch in sorted(self._logs):
            index = self._first_epoch + len(self._epoch_rows)
            recorded = record is not None and index < record.n_epochs and record.epochs[index] == epoch
            if not recorded and not final:
                break  # the monitor runs after us: write once it has this epoch
            rows = len(record.steps) if record is not None else 0
            start = self._epoch_rows[-1] if self._epoch_rows else self._first_row
            self._epoch_rows.append(rows)
            found = epoch_metrics(record, index if recorded else None, self._logs.pop(epoch), (start, rows), self.model)
            found = self._after_divergence(fit, epoch, found)
            batch = [m for m in (_mlflow.metric(k, v, _mlflow.epoch_step(epoch)) for k, v in found.items())
                     if m is not None]
            if self.log_every_epoch:
                self._in_background(fit, _log_batch, batch)
            else:
                metrics.extend(batch)
        if metrics:
            self._in_background(fit, _log_batch, metrics)

    def _after_divergence(self, fit: _FitRun, epoch: int, found: dict[str, float]) -> dict[str, float]:
        """The first epoch with a non-finite loss is logged as it is and tags the run;
        after it, only finite values: a run that goes on (`stop_on=()`) charts no NaN
        for every later epoch."""
        if fit.diverged_epoch is not None:
            return {k: v for k, v in found.items() if np.isfinite(v)}
        if any(not np.isfinite(v) for k, v in found.items() if "loss" in k):
            fit.diverged_epoch = _mlflow.epoch_step(epoch)
            self._in_background(fit, _log_tags, {_mlflow.DIVERGED_TAG: "true",
                                                 f"{_mlflow.DIVERGED_TAG}_epoch": str(fit.diverged_epoch)})
        return found

    def _write_findings(self, fit: _FitRun, findings: list[dict[str, Any]], stopped_by: str | None) -> None:
        tags = _mlflow.symptom_tags(findings)
        if stopped_by is not None:
            tags["descentkit.stopped_by"] = stopped_by
        _mlflow.log_batch(fit.client, fit.run_id, tags=tags)
        fit.client.log_text(fit.run_id, json.dumps(findings, indent=2), _mlflow.FINDINGS_ARTIFACT)

    def _finish(self, fit: _FitRun, record: Any, findings: list[Any]) -> None:
        if record is not None:
            from descentkit.diagnostics.plots import plot_training

            name = getattr(self.model, "name", None) or "model"
            figure = plot_training(record, findings, title=f"{name}: run {fit.run_id[:8]}")
            fit.client.log_figure(fit.run_id, figure, _mlflow.FIGURE_ARTIFACT)
        self._end_run(fit)

    @staticmethod
    def _end_run(fit: _FitRun) -> None:
        if fit.started_run and fit.run_id is not None:
            try:
                with _mlflow.tracking_calls():
                    fit.client.set_terminated(fit.run_id, "FINISHED")
            except Exception:
                pass  # already reported, or the server is gone
        fit.started_run = False


class _FitRun:
    """One `fit`'s MLflow run: its id and client, whether the logger started it, and
    whether a call failed (then nothing more of this fit is logged)."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.client: Any = None
        self.started_run = False
        self.failed = False
        self.diverged_epoch: int | None = None  # 1-based


def _log_batch(fit: _FitRun, metrics: Any = (), params: dict[str, Any] | None = None) -> None:
    _mlflow.log_batch(fit.client, fit.run_id, metrics=metrics, params=params)


def _log_tags(fit: _FitRun, tags: dict[str, str]) -> None:
    _mlflow.log_batch(fit.client, fit.run_id, tags=tags)


# ---------------------------------------------------------------- what is logged
def _arrays(x: Any) -> bool:
    return hasattr(x, "shape") or isinstance(x, (list, tuple, dict))


def _batch_size_of(fit_locals: dict[str, Any]) -> int | None:
    """The running fit's batch size. With array inputs and no batch_size, fit uses 32;
    with a dataset the batch size is the dataset's own and unknown here (None: not logged)."""
    if fit_locals.get("batch_size") is not None:
        return int(fit_locals["batch_size"])
    return KERAS_DEFAULT_BATCH_SIZE if _arrays(fit_locals.get("x")) else None


def optimizer_params(optimizer: Any) -> dict[str, Any]:
    """`optimizer`, `learning_rate`, `lr_schedule` (+ `lr_schedule.<key>`), `momentum`,
    `nesterov` and the clipping/decay settings that are set, from the optimizer's config."""
    if optimizer is None:
        return {}
    config = optimizer.get_config()
    params: dict[str, Any] = {}
    momentum = float(config.get("momentum", 0.0) or 0.0)
    nesterov = bool(config.get("nesterov", False))
    if isinstance(optimizer, keras.optimizers.SGD):
        params["optimizer"] = "nesterov" if nesterov and momentum > 0 else "momentum" if momentum > 0 else "sgd"
        params["momentum"] = momentum
        params["nesterov"] = nesterov
    else:
        params["optimizer"] = type(optimizer).__name__.lower()
    lr = config.get("learning_rate")
    if isinstance(lr, dict):  # a serialized LearningRateSchedule
        schedule = lr.get("config", {})
        params["lr_schedule"] = lr.get("class_name", "schedule")
        for key, value in schedule.items():
            if isinstance(value, (int, float, str, bool)) and key != "name":
                params[f"lr_schedule.{key}"] = value
        initial = schedule.get("initial_learning_rate")
        if initial is not None:
            params["learning_rate"] = float(initial)
    else:
        params["lr_schedule"] = "constant"
        params["learning_rate"] = float(lr)
    for key in ("clipnorm", "global_clipnorm", "clipvalue", "weight_decay"):
        if config.get(key) is not None:
            params[key] = config[key]
    return params


def regularization_params(model: Any) -> dict[str, Any]:
    """The L1/L2 kernel regularization and Dropout rates found in the model's layers:
    `l1`, `l2`, `dropout` (largest value over layers; 0 when none), and per-layer
    values (`l2.<layer>`) where layers differ."""
    found: dict[str, dict[str, float]] = {"l1": {}, "l2": {}, "dropout": {}}
    for layer in _all_layers(model):
        regularizer = getattr(layer, "kernel_regularizer", None)
        if regularizer is not None:
            config = regularizer.get_config()
            for key in ("l1", "l2"):
                if float(config.get(key, 0.0) or 0.0) > 0:
                    found[key][layer.name] = float(config[key])
        if isinstance(layer, keras.layers.Dropout):
            found["dropout"][layer.name] = float(layer.rate)
    params: dict[str, Any] = {}
    for key, per_layer in found.items():
        params[key] = max(per_layer.values(), default=0.0)
        if len(set(per_layer.values())) > 1:
            params.update({f"{key}.{name}": value for name, value in per_layer.items()})
    return params


def _all_layers(model: Any) -> list[Any]:
    layers, stack = [], list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        layers.append(layer)
        stack[:0] = list(getattr(layer, "layers", []) or [])  # nested Sequential / Functional
    return layers


def _rounded(value: Any) -> Any:
    """A float param as a person would write it: 7 significant digits, what float32 holds
    (Keras keeps a learning rate of 0.05 as float32: 0.05000000074505806 in float64)."""
    if isinstance(value, float) and np.isfinite(value):
        return float(f"{value:.7g}")
    return value


def training_params(model: Any, fit_params: dict[str, Any] | None, batch_size: int | None) -> dict[str, Any]:
    """Every param `MLflowLogger` logs for one `fit`."""
    params = optimizer_params(target_optimizer(model))
    fit_params = fit_params or {}
    if fit_params.get("epochs") is not None:
        params["epochs"] = fit_params["epochs"]
    if fit_params.get("steps") is not None:
        params["steps_per_epoch"] = fit_params["steps"]
    if batch_size is not None:
        params["batch_size"] = batch_size
    params.update(regularization_params(model))
    params["param_count"] = int(model.count_params())
    return {k: _rounded(v) for k, v in params.items()}


def _summary(prefix: str, values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    seen = values[~np.isnan(values)]  # inf stays: an exploding norm is news
    if seen.size == 0:
        return {}
    return {f"{prefix}/median": float(np.median(seen)), f"{prefix}/max": float(np.max(seen))}


def epoch_metrics(record: Any, index: int | None, logs: dict[str, Any], rows: tuple[int, int], model: Any = None) -> dict[str, float]:
    """One epoch's metrics: the Keras logs, the learning rate in force, and the epoch's
    median and max of each step signal recorded in `rows` [start, end) of `record`.

    `index` is the epoch's position in `record.epochs` (None: not recorded)."""
    found: dict[str, float] = {}
    for key, value in logs.items():
        number = _mlflow.as_metric_value(value)
        if number is not None:
            found[key] = number
    lr = record.learning_rate[index] if index is not None else None
    if lr is None or not np.isfinite(lr):
        lr = found.get("learning_rate")
    if lr is None and model is not None:
        lr = learning_rate_in_force(model)
    if lr is not None:
        found["learning_rate"] = float(lr)
    if record is None:
        return found
    start, end = rows
    if end > start:
        found.update(_summary("grad_norm", record.grad_norm[start:end]))
        nonfinite = record.nonfinite[start:end]
        if np.isfinite(nonfinite).any():
            found["grad_nonfinite"] = float(np.nansum(nonfinite))
        for i, layer in enumerate(record.layer_names):
            found.update(_summary(f"grad_norm/{layer}", record.layer_grad_norms[start:end, i]))
            found.update(_summary(f"update_ratio/{layer}", record.update_ratio[start:end, i]))
    if index is not None:
        for prefix, table in (("dead_fraction", record.dead_fraction), ("saturated_fraction", record.saturated_fraction)):
            for layer, series in table.items():
                if index < len(series) and np.isfinite(series[index]):
                    found[f"{prefix}/{layer}"] = float(series[index])
    return found
