"""What a finished trial and its study look like in MLflow: params, metrics, tags and a figure.

Built from what the objective stored on the trial (the trial record), so a live
sweep and a re-log from the Optuna storage write the same runs.
"""

from __future__ import annotations

import json
import math
from typing import Any

from descentkit.callbacks import _mlflow
from descentkit.diagnostics import SYMPTOMS
from descentkit.diagnostics._health import health_metrics, health_record
from descentkit.tuner import _record

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
FINISHED_STATES = _record.FINISHED_STATES
# A pruned trial was stopped on purpose: KILLED, not FAILED, in MLflow's vocabulary.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
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


def trial_payload(study: Any, trial: Any) -> tuple[dict[str, Any], list[Any], dict[str, str]]:
    """A finished trial's child-run params, metrics and tags."""
    params = {**_record.fixed_params(study), **trial.params}
    stamp = _ms(trial.datetime_complete) or _mlflow.now_ms()

    metrics = []
    history = _record.history(trial)
    for key, series in history.items():
        for epoch, value in enumerate(series or []):
            metrics.append(_mlflow.metric(key, value, _mlflow.epoch_step(epoch), stamp))
    for epoch, row in enumerate(health_metrics(_record.health(trial))):
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
    if _number(_record.epochs_trained(trial)) is not None:
        metrics.append(_mlflow.metric(TRIAL_METRIC_PREFIX + _record.EPOCHS_TRAINED, _record.epochs_trained(trial), 0, stamp))
    if _number(_record.best_epoch(trial)) is not None:  # stored 0-based, shown as Keras counts epochs
        metrics.append(_mlflow.metric(TRIAL_METRIC_PREFIX + _record.BEST_EPOCH, _mlflow.epoch_step(_record.best_epoch(trial)),
                                      0, stamp))
    if trial.datetime_start and trial.datetime_complete:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        metrics.append(_mlflow.metric(TRIAL_METRIC_PREFIX + "duration_s", seconds, 0, stamp))

    reason = _record.prune_reason(trial)
    tags = {
        STUDY_TAG: study.study_name,
        ROLE_TAG: TRIAL_ROLE,
        TRIAL_TAG: str(trial.number),
        STATE_TAG: trial.state.name,
        "descentkit.objective_metric": objective_metric,
    }
    if trial.state.name == "PRUNED":
        tags[PRUNE_REASON_TAG] = _record.pruned_for(trial)
    if _record.error_type(trial):
        tags["descentkit." + _record.ERROR_TYPE] = str(_record.error_type(trial))
        tags["descentkit." + _record.ERROR_MESSAGE] = str(trial.user_attrs.get(_record.ERROR_MESSAGE, ""))[:MAX_ERROR_TAG]
    for name, value in ((_record.WORKER, _record.worker(trial)), (_record.FIRST_TRIAL, _record.first_trial(trial))):
        if value:
            tags["descentkit." + name] = str(value)
    findings = _record.findings(trial)
    extra = {s: "warning" for s in _record.recorded_symptoms(trial)}
    if trial.state.name == "PRUNED" and reason:
        extra[reason] = "critical"  # a trial stopped for a pathology: the pathology was critical
    tags.update(_mlflow.symptom_tags(findings, extra))
    return params, [m for m in metrics if m is not None], tags


def wants_figure(trial: Any) -> bool:
    """Whether a trial's child run gets a `diagnostics.png`: pruned for a pathology, or
    flagged with one (a warning or critical finding). Healthy trials and trials the
    pruner stopped have nothing a figure would explain, and a figure costs a second."""
    if trial.state.name == "FAIL" or not _record.history(trial):
        return False
    return _record.prune_reason(trial) in SYMPTOMS or bool(_record.recorded_symptoms(trial))


def trial_figure(trial: Any) -> Any:
    """The diagnostic figure of a finished trial, from what the objective stored on it
    (per-epoch logs and gradient health, findings): the same from a live sweep and a re-log."""
    from descentkit.diagnostics import Finding
    from descentkit.diagnostics.plots import plot_training

    findings = []
    for data in trial.user_attrs.get(_record.FINDINGS) or []:
        try:
            findings.append(Finding.from_dict(data))
        except (KeyError, TypeError, ValueError):
            continue  # a finding of another version: the figure goes without it
    record = health_record(_record.history(trial), _record.health(trial))
    reason = _record.prune_reason(trial)
    state = trial.state.name + (f": {reason}" if reason else "")
    return plot_training(record, findings, title=f"trial {trial.number} ({state}); gradient panels: epoch medians")


def findings_artifact(trial: Any) -> str | None:
    """The trial's findings as the JSON text of its `findings.json`, None when it has none."""
    found = trial.user_attrs.get(_record.FINDINGS) or []
    return json.dumps(found, indent=2) if found else None
