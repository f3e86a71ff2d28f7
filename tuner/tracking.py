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

import sys
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from descentkit.callbacks import _mlflow
from descentkit.tuner._mlflow_runs import SweepRuns, _delete_quietly, _numbers, mlflow_command
from descentkit.tuner._tracking_payload import FINISHED_STATES

# After a failed call, trials finishing within this many seconds are not tried
# (a dead server would otherwise cost each trial a timeout); `finish` tries again.
RETRY_AFTER_S = 30.0


class SweepTracker(SweepRuns):
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
    `seconds` the time spent in MLflow calls (`summary_seconds` of it in `finish`) and
    `trials_logged` how many were logged.

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
        self.summary_seconds = 0.0
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
        """Retry the trials MLflow missed, then write the parent's summary and plots
        (`summary_seconds`: the MLflow time this took)."""
        before = self.seconds
        try:
            self._finish(study)
        finally:
            self.summary_seconds = self.seconds - before

    def _finish(self, study: Any) -> None:
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
                "parent_run_id": self._parent_id, "trials_logged": len(self._logged), "ui": ui,
                "seconds": {"trials": self.seconds - self.summary_seconds, "summary": self.summary_seconds}}

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
            command += f" --storage {_mlflow.redact_password(self.storage)}"
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
