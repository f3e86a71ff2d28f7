"""The MLflow side of a sweep: its experiment, the parent run and one child run per trial."""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from descentkit.callbacks import _mlflow
from descentkit.tuner import report
from descentkit.tuner._tracking_payload import (
    PARENT_OBJECTIVE_METRIC,
    PARENT_ROLE,
    PARENT_TAG,
    ROLE_TAG,
    RUN_STATUS,
    STUDY_TAG,
    TRIAL_ROLE,
    TRIAL_TAG,
    _ms,
    _number,
    findings_artifact,
    study_params,
    trial_figure,
    trial_payload,
    wants_figure,
)
from descentkit.tuner.results import summarize_study

FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")


class SweepRuns:
    """Writes a sweep's runs to MLflow; `SweepTracker` adds what to do when MLflow fails.

    Expects `tracking_uri`, `experiment_name`, `storage`, `strict`, `_name(study)` and
    the client and run attributes `SweepTracker.__init__` sets.
    """

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
            tags["descentkit.storage"] = _mlflow.redact_password(self.storage)
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
            findings = findings_artifact(trial)
            if findings:
                self._client.log_text(run_id, findings, _mlflow.FINDINGS_ARTIFACT)
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
        client.log_text(run_id, summarize_study(study, _mlflow.redact_password(self.storage or "")).to_text(), "summary.txt")
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
