"""A sweep in MLflow: one experiment per study, one parent run, one nested child run per trial.

`SweepTracker` is an Optuna callback `(study, frozen_trial) -> None`: it logs each
trial after it has finished, from what the objective stored on the trial (params,
state, `history`, `findings`, `symptoms`, `prune_reason`, ...). MLflow therefore
never runs inside a training step, and the same code re-logs a whole study from
its Optuna storage later (`relog_study`, `descentkit mlflow-relog STUDY`).

Tracking never costs a result: a failed MLflow call is caught, the trial is
remembered as not logged, one warning line says how to re-log it, and the sweep
goes on. Calls fail fast (short HTTP timeouts, one retry) and, after a failure,
MLflow is left alone for `RETRY_AFTER_S` before the next try.

Layout in MLflow (the filters in README.md rely on these names):
- the experiment: tag `mlflow.experimentKind=custom_model_development`, so MLflow's
  UI opens it on its runs (with no kind it guesses a GenAI experiment: traces).
- parent run: tags `descentkit.study=<name>`, `descentkit.role=parent`; params: the
  study's configuration; metrics against step = trial number, an optimization
  history for the chart view: `trial_objective` (each completed trial's value),
  `best_value` (the best so far), `trials_<state>` (counts so far); tags
  `descentkit.best_trial`, `descentkit.best.<param>`, `descentkit.sweep_symptoms`;
  artifacts `pathology.json`, `pathology.txt`, `summary.txt`, `plots/*.png`.
- child run `trial-<number>`: tags `mlflow.parentRunId`, `descentkit.role=trial`,
  `descentkit.trial=<number>`, `descentkit.state` (COMPLETE, PRUNED, FAIL),
  `descentkit.prune_reason`, `descentkit.symptoms`, `descentkit.symptom.<name>` =
  worst severity; params: the trial's params; per-epoch curves (step = the 1-based
  epoch): the Keras logs and the gradient health (`grad_norm/median`, `grad_norm/max`,
  `grad_norm/first_last_ratio`, `update_ratio/max`, `update_ratio/min`,
  `dead_fraction/max`, `saturated_fraction/max`); one-value metrics in sections of
  their own, apart from the curves: `trial/objective`, `trial/epochs_trained`,
  `trial/best_epoch`, `trial/duration_s`, and each numeric param as `param/<name>`
  so range filters work (MLflow compares params as text); artifacts `findings.json`
  and, for a trial pruned or flagged for a pathology, `diagnostics.png`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from descentkit.callbacks import _mlflow
from descentkit.diagnostics import SYMPTOMS
from descentkit.diagnostics._health import health_metrics, health_record
from descentkit.tuner.storage import redact

STUDY_TAG = "descentkit.study"
ROLE_TAG = "descentkit.role"
TRIAL_TAG = "descentkit.trial"
STATE_TAG = "descentkit.state"
PRUNE_REASON_TAG = "descentkit.prune_reason"
PARENT_ROLE, TRIAL_ROLE = "parent", "trial"
PARENT_TAG = "mlflow.parentRunId"
# MLflow's UI puts metrics named `<section>/<name>` in one section per prefix: the
# one-value metrics of a trial stay apart from its per-epoch curves.
TRIAL_METRIC_PREFIX = "trial/"
OBJECTIVE_METRIC = TRIAL_METRIC_PREFIX + "objective"
PARAM_METRIC_PREFIX = "param/"
PARENT_OBJECTIVE_METRIC = "trial_objective"
FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")
# A pruned trial was stopped on purpose: KILLED, not FAILED, in MLflow's vocabulary.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
# After a failed call, trials finishing within this many seconds are not tried
# (a dead server would otherwise cost each trial a timeout); `finish` tries again.
RETRY_AFTER_S = 30.0
MAX_ERROR_TAG = 500


def _ms(moment: Any) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _flatten(prefix: str, value: Any, into: dict[str, Any]) -> None:
    """Nested config as dotted params; a search-space entry stays one JSON param."""
    if isinstance(value, dict) and value and not prefix.startswith("search_space."):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, into)
    elif isinstance(value, (dict, list)):
        into[prefix] = json.dumps(value, sort_keys=True)
    else:
        into[prefix] = value


def study_params(study: Any) -> dict[str, Any]:
    """The sweep's configuration as params: the stored study config, direction, metric, versions."""
    params: dict[str, Any] = {}
    _flatten("", study.user_attrs.get("config") or {}, params)
    for package, version in (study.user_attrs.get("versions") or {}).items():
        params[f"version.{package}"] = version
    params["direction"] = study.direction.name.lower()
    params["objective_metric"] = study.user_attrs.get("objective_metric", "value")
    return {k: v for k, v in params.items() if k}


def _fixed_params(study: Any) -> dict[str, Any]:
    """Values the study file fixes in its search space (not sampled, so not in trial.params)."""
    space = (study.user_attrs.get("config") or {}).get("search_space") or {}
    return {k: v for k, v in space.items() if not isinstance(v, dict)}


def trial_payload(study: Any, trial: Any) -> tuple[dict[str, Any], list[Any], dict[str, str]]:
    """A finished trial's child-run params, metrics and tags."""
    attrs = trial.user_attrs
    params = {**_fixed_params(study), **trial.params}
    stamp = _ms(trial.datetime_complete) or _mlflow.now_ms()

    metrics = []
    history = attrs.get("history") or {}
    for key, series in history.items():
        for epoch, value in enumerate(series or []):
            metrics.append(_mlflow.metric(key, value, _mlflow.epoch_step(epoch), stamp))
    for epoch, row in enumerate(health_metrics(attrs.get("health"))):
        metrics.extend(_mlflow.metric(key, value, _mlflow.epoch_step(epoch), stamp) for key, value in row.items())
    objective_metric = study.user_attrs.get("objective_metric", "value")
    if objective_metric not in history:  # a custom objective: its reported values are the history
        for step, value in sorted(trial.intermediate_values.items()):
            metrics.append(_mlflow.metric(objective_metric, value, step, stamp))
    for name, value in params.items():
        if _number(value) is not None:
            metrics.append(_mlflow.metric(PARAM_METRIC_PREFIX + name, value, 0, stamp))
    if trial.state.name == "COMPLETE" and _number(trial.value) is not None:
        metrics.append(_mlflow.metric(OBJECTIVE_METRIC, trial.value, 0, stamp))
    if _number(attrs.get("epochs_trained")) is not None:
        metrics.append(_mlflow.metric(TRIAL_METRIC_PREFIX + "epochs_trained", attrs["epochs_trained"], 0, stamp))
    if _number(attrs.get("best_epoch")) is not None:  # stored 0-based, shown as Keras counts epochs
        metrics.append(_mlflow.metric(TRIAL_METRIC_PREFIX + "best_epoch", _mlflow.epoch_step(attrs["best_epoch"]), 0, stamp))
    if trial.datetime_start and trial.datetime_complete:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        metrics.append(_mlflow.metric(TRIAL_METRIC_PREFIX + "duration_s", seconds, 0, stamp))

    reason = attrs.get("prune_reason")
    tags = {
        STUDY_TAG: study.study_name,
        ROLE_TAG: TRIAL_ROLE,
        TRIAL_TAG: str(trial.number),
        STATE_TAG: trial.state.name,
        "descentkit.objective_metric": objective_metric,
    }
    if trial.state.name == "PRUNED":
        tags[PRUNE_REASON_TAG] = str(reason or "pruner")
    if attrs.get("error_type"):
        tags["descentkit.error_type"] = str(attrs["error_type"])
        tags["descentkit.error_message"] = str(attrs.get("error_message", ""))[:MAX_ERROR_TAG]
    if attrs.get("worker"):
        tags["descentkit.worker"] = str(attrs["worker"])
    if attrs.get("first_trial"):  # proposed by a range test, not the sampler (tuner/lr_find.py)
        tags["descentkit.first_trial"] = str(attrs["first_trial"])
    findings = [f for f in attrs.get("findings") or [] if isinstance(f, dict) and "symptom" in f]
    extra = {s: "warning" for s in attrs.get("symptoms") or []}
    if trial.state.name == "PRUNED" and reason:
        extra[reason] = "critical"  # a trial stopped for a pathology: the pathology was critical
    tags.update(_mlflow.symptom_tags(findings, extra))
    return params, [m for m in metrics if m is not None], tags


def wants_figure(trial: Any) -> bool:
    """Whether a trial's child run gets a `diagnostics.png`: pruned for a pathology, or
    flagged with one (a warning or critical finding). Healthy trials and trials the
    pruner stopped have nothing a figure would explain, and a figure costs a second."""
    if trial.state.name == "FAIL" or not trial.user_attrs.get("history"):
        return False
    return trial.user_attrs.get("prune_reason") in SYMPTOMS or bool(trial.user_attrs.get("symptoms"))


def trial_figure(trial: Any) -> Any:
    """The diagnostic figure of a finished trial, from what the objective stored on it
    (per-epoch logs and gradient health, findings): the same from a live sweep and a re-log."""
    from descentkit.diagnostics import Finding
    from descentkit.diagnostics.plots import plot_training

    attrs = trial.user_attrs
    findings = []
    for data in attrs.get("findings") or []:
        try:
            findings.append(Finding.from_dict(data))
        except (KeyError, TypeError, ValueError):
            continue  # a finding of another version: the figure goes without it
    record = health_record(attrs.get("history") or {}, attrs.get("health"))
    state = trial.state.name + (f": {attrs['prune_reason']}" if attrs.get("prune_reason") else "")
    return plot_training(record, findings, title=f"trial {trial.number} ({state}); gradient panels: epoch medians")


class SweepTracker:
    """Logs a sweep to MLflow: an Optuna callback for each finished trial, `finish` at the end.

    Args:
        study_name: default None: the Optuna study's name (the experiment and the
            parent run's `descentkit.study` tag).
        tracking_uri: default None: MLFLOW_TRACKING_URI, else MLflow's default
            (`sqlite:///mlflow.db` in the working directory).
        experiment_name: default None: the study's name.
        storage: the study's storage as given to the sweep (shown in the re-log
            hint and as a parent tag, password hidden).
        strict: raise on a tracking failure instead of warning (what `relog_study` wants).
            A strict tracker also draws each `diagnostics.png` before it returns;
            otherwise figures are drawn and written on a background thread while the
            next trial trains (`finish` waits for them).

    After a sweep, `not_logged` holds the numbers of the trials MLflow missed,
    `seconds` the time spent in MLflow calls and `trials_logged` how many were logged.

    Example:
        >>> tracker = SweepTracker()
        >>> study.optimize(objective, n_trials=20, callbacks=[tracker])
        >>> tracker.finish(study)
    """

    def __init__(
        self,
        study_name: str | None = None,
        *,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        storage: str | None = None,
        strict: bool = False,
    ) -> None:
        self.study_name = study_name
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.storage = storage
        self.strict = strict
        self.not_logged: list[int] = []
        self.trials_logged = 0
        self.seconds = 0.0
        self._client: Any = None
        self._experiment_id: str | None = None
        self._parent_id: str | None = None
        self._parent_status: str | None = None
        self._failed_at: float | None = None
        self._warned = False
        self._error = ""
        self._logged: set[int] = set()  # trial numbers this tracker has logged
        self._writer: ThreadPoolExecutor | None = None
        self._writer_client: Any = None
        self._pending: list[Future] = []

    # ------------------------------------------------------------ public
    def __call__(self, study: Any, trial: Any) -> None:
        """Log one finished trial (the Optuna callback). Never raises unless `strict`."""
        if trial.state.name not in FINISHED_STATES:
            return
        if self._resting():
            self._missed(study, [trial.number])
            return
        self._attempt(study, [trial.number], self._log_trial, study, trial)

    def finish(self, study: Any) -> None:
        """Retry the trials MLflow missed, then write the parent's summary and plots."""
        self.wait()
        backlog = sorted(set(self.not_logged))
        self._failed_at = None
        if backlog:
            self.not_logged = []
            logged = self._attempt(study, backlog, self._log_missing, study, backlog)
            self.wait()
            if not logged:
                self._report(study)
                return
        summarized = self._attempt(study, [], self._write_summary, study)
        if self.not_logged or not summarized:
            self._report(study)

    def wait(self) -> None:
        """Block until the figures (and their runs' ends) queued in the background are written."""
        while self._pending:
            self._pending.pop(0).result()

    @property
    def parent_run_id(self) -> str | None:
        return self._parent_id

    def location(self, study: Any) -> dict[str, Any] | None:
        """Where the sweep was logged: tracking URI (password hidden), experiment, parent
        run, and how to see it (`ui`: a URL, or the command that serves the UI first).
        None when nothing was logged."""
        if self._parent_id is None or self._experiment_id is None:
            return None
        uri = self._uri()
        name = self.experiment_name or self._name(study)
        path = f"#/experiments/{self._experiment_id}/runs/{self._parent_id}"
        if uri.startswith(("http://", "https://")):
            ui = f"open {uri.rstrip('/')}/{path}"
        else:
            ui = f"{mlflow_command()} ui --backend-store-uri {uri}, then open http://127.0.0.1:5000/{path}"
        return {"tracking_uri": uri, "experiment": name, "experiment_id": self._experiment_id,
                "parent_run_id": self._parent_id, "trials_logged": len(self._logged), "ui": ui}

    def location_text(self, study: Any) -> str | None:
        """The sweep's last line: where MLflow has it and how to open the UI."""
        where = self.location(study)
        if where is None:
            return None
        return (f"MLflow: {where['trials_logged']} trial(s) logged to {where['tracking_uri']}, experiment "
                f"{where['experiment']!r}, parent run {where['parent_run_id']}; to see them: {where['ui']}")

    def relog_hint(self, study: Any) -> str:
        """The command that re-logs this study once MLflow is reachable."""
        command = f"descentkit mlflow-relog {self._name(study)}"
        if self.storage:
            command += f" --storage {redact(self.storage)}"
        if self.tracking_uri:
            command += f" --tracking-uri {_mlflow.redact_password(self.tracking_uri)}"
        return command

    # ------------------------------------------------------------ failure handling
    def _resting(self) -> bool:
        return self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_AFTER_S

    def _attempt(self, study: Any, numbers: list[int], fn: Any, *args: Any) -> bool:
        started = time.perf_counter()
        try:
            with _mlflow.tracking_calls():
                fn(*args)
            return True
        except Exception as exc:
            if self.strict:
                raise
            self._failed_at = time.monotonic()
            self._error = _mlflow.first_line(exc)
            self._client = None  # reconnect next time: the server may come back elsewhere in the stack
            self._missed(study, numbers)
            if not self._warned:
                self._warned = True
                what = f"trial(s) {_numbers(numbers)} not logged" if numbers else "the sweep summary not logged"
                print(f"descentkit: warning: MLflow tracking at {self._uri()} failed ({self._error}); {what}; "
                      f"training goes on. Once the server is back: {self.relog_hint(study)}", file=sys.stderr)
            return False
        finally:
            self.seconds += time.perf_counter() - started

    def _missed(self, study: Any, numbers: Iterable[int]) -> None:
        self.not_logged.extend(n for n in numbers if n not in self.not_logged and n not in self._logged)

    def _report(self, study: Any) -> None:
        what = (f"trial(s) {_numbers(sorted(self.not_logged))} of study {self._name(study)!r}" if self.not_logged
                else f"the summary of study {self._name(study)!r}")
        print(f"descentkit: warning: MLflow: {what} not logged to {self._uri()} ({self._error}); "
              f"the study itself is stored. Once the server is back: {self.relog_hint(study)}", file=sys.stderr)

    def _uri(self) -> str:
        try:
            return _mlflow.resolved_uri(self.tracking_uri)
        except Exception:
            return str(self.tracking_uri)

    def _name(self, study: Any) -> str:
        return self.study_name or study.study_name

    # ------------------------------------------------------------ MLflow work
    def _connect(self, study: Any) -> None:
        """The client, the study's experiment and its parent run (found by tag, else created)."""
        if self._client is not None and self._parent_id is not None:
            return
        self._client = _mlflow.client(self.tracking_uri)
        self._experiment_id = self._experiment(self.experiment_name or self._name(study))
        self._parent_id = self._parent(study)

    def _experiment(self, name: str) -> str:
        client = self._client
        found = client.get_experiment_by_name(name)
        if found is None:
            try:
                return client.create_experiment(name, tags={STUDY_TAG: name,
                                                            _mlflow.EXPERIMENT_KIND_TAG: _mlflow.TRAINING_EXPERIMENT_KIND})
            except Exception:  # another worker created it first
                found = client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        _mlflow.mark_training_experiment(client, found)  # one made before descentkit tagged experiments
        return found.experiment_id

    def _parents(self, study: Any) -> list[Any]:
        runs = _search_all(self._client, self._experiment_id, f"tags.`{ROLE_TAG}` = '{PARENT_ROLE}'")
        name = self._name(study)
        mine = [r for r in runs if r.data.tags.get(STUDY_TAG) == name]
        return sorted(mine, key=lambda r: (r.info.start_time or 0, r.info.run_id))

    def _parent(self, study: Any) -> str:
        """Search, else create; two workers creating at once keep the older run and delete the other."""
        found = self._parents(study)
        if found:
            run = found[0]
            self._parent_status = run.info.status
            self._log_missing_params(run, study_params(study))
            return run.info.run_id
        name = self._name(study)
        tags = {STUDY_TAG: name, ROLE_TAG: PARENT_ROLE}
        if self.storage:
            tags["descentkit.storage"] = redact(self.storage)
        created = self._client.create_run(self._experiment_id, run_name=f"sweep-{name}", tags=tags)
        self._parent_status = "RUNNING"
        _mlflow.log_batch(self._client, created.info.run_id, params=study_params(study))
        oldest = self._parents(study)[0]
        if oldest.info.run_id != created.info.run_id:
            self._client.delete_run(created.info.run_id)
        return oldest.info.run_id

    def _log_missing_params(self, run: Any, params: dict[str, Any]) -> None:
        """MLflow refuses to change a param: log only the ones the run lacks."""
        have = run.data.params
        missing = {k: v for k, v in params.items() if _mlflow.metric_name(k) not in have}
        if missing:
            _mlflow.log_batch(self._client, run.info.run_id, params=missing)

    def _log_trial(self, study: Any, trial: Any) -> None:
        self._connect(study)
        params, metrics, tags = trial_payload(study, trial)
        tags[PARENT_TAG] = self._parent_id
        run = self._client.create_run(self._experiment_id, start_time=_ms(trial.datetime_start),
                                      tags=tags, run_name=f"trial-{trial.number}")
        run_id = run.info.run_id
        try:
            _mlflow.log_batch(self._client, run_id, metrics=metrics, params=params)
            findings = trial.user_attrs.get("findings") or []
            if findings:
                self._client.log_text(run_id, json.dumps(findings, indent=2), _mlflow.FINDINGS_ARTIFACT)
            if not wants_figure(trial):
                self._end_child(self._client, trial, run_id)
        except Exception:
            _delete_quietly(self._client, run_id)
            raise
        self._log_progress(study, trial)
        if wants_figure(trial):
            if self.strict:
                self._finish_child(self._client, trial, run_id)
            else:  # a second of matplotlib: drawn while the next trial trains
                self._in_background(study, trial, run_id)

    def _end_child(self, client: Any, trial: Any, run_id: str) -> None:
        """A child run is complete once it is ended: a re-log redoes one left RUNNING."""
        client.set_terminated(run_id, RUN_STATUS[trial.state.name], end_time=_ms(trial.datetime_complete))
        self.trials_logged += 1
        self._logged.add(trial.number)

    def _finish_child(self, client: Any, trial: Any, run_id: str) -> None:
        try:
            client.log_figure(run_id, trial_figure(trial), _mlflow.FIGURE_ARTIFACT)
            self._end_child(client, trial, run_id)
        except Exception:
            _delete_quietly(client, run_id)
            raise

    def _in_background(self, study: Any, trial: Any, run_id: str) -> None:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="descentkit-mlflow-figures")
        self._pending.append(self._writer.submit(self._background_figure, study, trial, run_id))

    def _background_figure(self, study: Any, trial: Any, run_id: str) -> None:
        if self._resting():  # the server failed meanwhile: the trial waits for `finish` or a re-log
            _delete_quietly(self._client or self._writer_client, run_id)
            self._missed(study, [trial.number])
            return

        def write() -> None:
            if self._writer_client is None:  # its own client: the sweep's thread keeps using the other
                self._writer_client = _mlflow.client(self.tracking_uri)
            self._finish_child(self._writer_client, trial, run_id)

        if not self._attempt(study, [trial.number], write):
            self._writer_client = None

    def _log_progress(self, study: Any, trial: Any) -> None:
        """The parent's optimization history, at step = trial number: the trial's value,
        the best value so far and the counts by state so far."""
        step = trial.number
        trials = study.get_trials(deepcopy=False)
        counts = {state: sum(1 for t in trials if t.state.name == state) for state in FINISHED_STATES}
        stamp = _mlflow.now_ms()
        metrics = [_mlflow.metric(f"trials_{state.lower()}", n, step, stamp) for state, n in counts.items()]
        metrics.append(_mlflow.metric("trials_finished", sum(counts.values()), step, stamp))
        if trial.state.name == "COMPLETE" and _number(trial.value) is not None:
            metrics.append(_mlflow.metric(PARENT_OBJECTIVE_METRIC, trial.value, step, stamp))
        best = _best_trial(study, up_to=step)
        if best is not None:
            metrics.append(_mlflow.metric("best_value", best.value, step, stamp))
        _mlflow.log_batch(self._client, self._parent_id, metrics=[m for m in metrics if m is not None])
        if self._parent_status != "RUNNING":  # a resumed sweep: the parent is live again until `finish`
            self._client.update_run(self._parent_id, status="RUNNING")
            self._parent_status = "RUNNING"

    def _log_missing(self, study: Any, numbers: Iterable[int] | None = None) -> list[int]:
        """Log the finished trials (all, or `numbers`) that have no complete child run yet."""
        self._connect(study)
        have = self._logged_children(study)
        wanted = None if numbers is None else set(numbers)
        logged = []
        for trial in study.get_trials(deepcopy=False):
            if trial.state.name not in FINISHED_STATES or trial.number in have:
                continue
            if wanted is not None and trial.number not in wanted:
                continue
            self._log_trial(study, trial)
            logged.append(trial.number)
        return logged

    def _logged_children(self, study: Any) -> set[int]:
        """Trial numbers with a finished child run; children left RUNNING (logging cut off) are deleted."""
        runs = _search_all(self._client, self._experiment_id,
                           f"tags.`{ROLE_TAG}` = '{TRIAL_ROLE}' and tags.`{PARENT_TAG}` = '{self._parent_id}'")
        numbers = set()
        for run in runs:
            number = run.data.tags.get(TRIAL_TAG)
            if number is None:
                continue
            if run.info.status == "RUNNING":
                self._client.delete_run(run.info.run_id)
                continue
            numbers.add(int(number))
        return numbers

    def _summary_is_current(self, study: Any) -> bool:
        """Whether the parent's summary already counts every finished trial (nothing to redo)."""
        parent = self._client.get_run(self._parent_id)
        finished = sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED_STATES)
        return parent.info.status == "FINISHED" and parent.data.metrics.get("trials_finished") == finished

    def _write_summary(self, study: Any) -> None:
        from descentkit.tuner import report
        from descentkit.tuner.results import summarize_study

        self._connect(study)
        client, run_id = self._client, self._parent_id
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state.name in FINISHED_STATES]
        step = max((t.number for t in finished), default=0)
        stamp = _mlflow.now_ms()
        metrics = [_mlflow.metric(f"trials_{s.lower()}", sum(1 for t in finished if t.state.name == s), step, stamp)
                   for s in FINISHED_STATES]
        metrics.append(_mlflow.metric("trials_finished", len(finished), step, stamp))
        tags: dict[str, str] = {}
        best = _best_trial(study)
        if best is not None:
            metrics.append(_mlflow.metric("best_value", best.value, step, stamp))
            tags["descentkit.best_trial"] = str(best.number)
            for name, value in best.params.items():  # tags, not metrics: a flat line against trial number says nothing
                tags[f"descentkit.best.{name}"] = str(value)
        view = report.pathology_map(study)
        # Not `descentkit.symptoms`: a filter on a trial's symptoms must not match the parent.
        tags["descentkit.sweep_symptoms"] = ",".join(view["symptoms"])
        _mlflow.log_batch(client, run_id, metrics=[m for m in metrics if m is not None], tags=tags)
        client.log_dict(run_id, view, "pathology.json")
        client.log_text(run_id, report.pathology_text(view), "pathology.txt")
        client.log_text(run_id, summarize_study(study, redact(self.storage or "")).to_text(), "summary.txt")
        for name, figure in report.study_figures(study).items():
            client.log_figure(run_id, figure, f"plots/{name}.png")
        client.set_terminated(run_id, "FINISHED")
        self._parent_status = "FINISHED"


def _numbers(numbers: Iterable[int]) -> str:
    return ", ".join(str(n) for n in numbers)


def _delete_quietly(client: Any, run_id: str) -> None:
    """Delete a half-logged child run (it would look logged to a re-log); the caller reports the failure."""
    try:
        client.delete_run(run_id)
    except Exception:
        pass


def mlflow_command() -> str:
    """How to run the `mlflow` command that came with this Python: `mlflow` when that is
    what PATH finds, else its path (`.venv/bin/mlflow` after the README's install)."""
    beside = Path(sys.executable).parent / "mlflow"
    on_path = shutil.which("mlflow")
    if on_path and (not beside.exists() or Path(on_path).resolve() == beside.resolve()):
        return "mlflow"
    if beside.exists():
        relative = os.path.relpath(beside)
        return relative if not relative.startswith("..") else str(beside)
    return f"{sys.executable} -m mlflow"


def _best_trial(study: Any, up_to: int | None = None) -> Any | None:
    """The best completed trial (among trials numbered up to `up_to`, when given)."""
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)
                and (up_to is None or t.number <= up_to)]
    if not complete:
        return None
    pick = max if study.direction.name == "MAXIMIZE" else min
    return pick(complete, key=lambda t: t.value)


def _search_all(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    """Every active run of the experiment matching the filter (all pages)."""
    from mlflow.entities import ViewType

    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, run_view_type=ViewType.ACTIVE_ONLY,
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def relog_study(
    study: Any,
    tracking_uri: str | None = None,
    *,
    experiment_name: str | None = None,
    storage: str | None = None,
) -> list[int]:
    """Log to MLflow every finished trial of `study` that has no child run yet, then the
    parent's summary and plots. Idempotent: run it twice and nothing is duplicated.

    Raises the MLflow error when the server cannot be reached.

    Returns:
        The numbers of the trials logged now.

    Example:
        >>> relog_study(optuna.load_study(study_name="digits", storage=url))
    """
    tracker = SweepTracker(tracking_uri=tracking_uri, experiment_name=experiment_name, storage=storage, strict=True)
    with _mlflow.tracking_calls():
        logged = tracker._log_missing(study)
        if logged or not tracker._summary_is_current(study):
            tracker._write_summary(study)
    return logged


def relog_command(study_name: str, storage: str | None = None, tracking_uri: str | None = None,
                  experiment_name: str | None = None) -> list[int]:
    """`descentkit mlflow-relog STUDY`: load the stored study and re-log it (see `relog_study`).

    Raises KeyError when the storage holds no study of that name.
    """
    import optuna

    from descentkit.tuner.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store, location = open_storage(storage, study_name)
    study = optuna.load_study(study_name=study_name, storage=store)
    return relog_study(study, tracking_uri, experiment_name=experiment_name, storage=storage and location)
