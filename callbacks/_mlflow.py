"""What `MLflowLogger` and the sweep tracking share: the client, short network
timeouts, batched writes within MLflow's limits, and the diagnosis tags.

MLflow is imported inside the functions: importing descentkit stays cheap.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from descentkit.diagnostics import SEVERITIES, SYMPTOMS

_CREDENTIALS = re.compile(r"(?P<head>[\w+.-]+://)(?P<user>[^:/@]*):[^@]*@")

SYMPTOMS_TAG = "descentkit.symptoms"
SYMPTOM_TAG = "descentkit.symptom."  # + symptom name; value: the worst severity seen
FINDINGS_ARTIFACT = "findings.json"
FIGURE_ARTIFACT = "diagnostics.png"
DIVERGED_TAG = "descentkit.diverged"
# MLflow 3's UI opens an experiment by its kind: with no kind it guesses GenAI and
# shows an empty traces dashboard. Training runs are "custom model development"
# (the value its UI's kind selector writes for classic ML).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_EXPERIMENT_KIND = "custom_model_development"

# MLflow's own limits per log_batch call (mlflow/utils/validation.py).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000

# MLflow retries a failed HTTP request 7 times with exponential backoff and waits
# 120 s per request by default: minutes per call against a dead server. Tracking
# must never stall training, so descentkit's calls fail fast unless the user set
# these variables. A sweep re-logs what it missed (`descentkit mlflow-relog`).
# MLflow also prints a "View run" URL per finished run on stdout: noise in a sweep.
CALL_ENV = {
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
}

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


_CALLS_LOCK = threading.Lock()
_calls_open = 0  # tracking_calls() blocks open now, in every thread
_calls_added: list[str] = []  # the variables they set, removed when the last one closes


@contextmanager
def tracking_calls() -> Iterator[None]:
    """For the MLflow calls inside: short HTTP timeouts and one retry, no run URLs
    printed (each unless the user set the variable). Safe when several threads (a
    sweep, an `MLflowLogger`'s writer) make calls at once: the variables stay set
    until the last block closes."""
    global _calls_open
    with _CALLS_LOCK:
        if _calls_open == 0:
            _calls_added[:] = [key for key in CALL_ENV if key not in os.environ]
            for key in _calls_added:
                os.environ[key] = CALL_ENV[key]
        _calls_open += 1
    try:
        yield
    finally:
        with _CALLS_LOCK:
            _calls_open -= 1
            if _calls_open == 0:
                for key in _calls_added:
                    os.environ.pop(key, None)
                _calls_added.clear()


def client(tracking_uri: str | None = None) -> Any:
    """An `MlflowClient` for `tracking_uri` (None: MLFLOW_TRACKING_URI, else MLflow's default)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def epoch_step(epoch: int) -> int:
    """The MLflow step of an epoch's metrics: the 1-based epoch number, as Keras's
    "Epoch N/M" counts (Keras hands callbacks the 0-based index)."""
    return int(epoch) + 1


def mark_training_experiment(mlflow_client: Any, experiment: Any) -> None:
    """Tag an experiment as classic model training, unless it already has a kind (the user's choice wins)."""
    if EXPERIMENT_KIND_TAG not in (getattr(experiment, "tags", None) or {}):
        mlflow_client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_EXPERIMENT_KIND)


def resolved_uri(tracking_uri: str | None) -> str:
    """The tracking URI MLflow will use, with any password hidden (for messages)."""
    import mlflow

    return redact_password(tracking_uri or mlflow.get_tracking_uri())


def redact_password(url: str) -> str:
    """`scheme://user:secret@host/...` as `scheme://user:***@host/...`, for logs, tags
    and messages; a string without a password (a path, a journal file) unchanged.

    The password is what SQLAlchemy reads as one: everything after the user's `:`
    up to the next `@` (a password with `/` in it is hidden too)."""
    text = str(url)
    match = _CREDENTIALS.match(text)
    if match is None:
        return text
    return f"{match['head']}{match['user']}:***@{text[match.end():]}"


def metric_name(name: str) -> str:
    """A name MLflow accepts for a metric or param (letters, digits, _ - . / and space)."""
    return _NAME_UNSAFE.sub("_", str(name))


def now_ms() -> int:
    import time

    return int(time.time() * 1000)


def as_metric_value(value: Any) -> float | None:
    """A float for MLflow (NaN and inf included: MLflow stores them), or None when not a number."""
    if isinstance(value, bool):
        return float(value)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value


def param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def log_batch(
    mlflow_client: Any,
    run_id: str,
    metrics: Iterable[Any] = (),
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> int:
    """Write metrics (`mlflow.entities.Metric`), params and tags in as few `log_batch`
    calls as MLflow's limits allow (one, for an epoch or a trial). Returns the call count."""
    from mlflow.entities import Param, RunTag

    metrics = list(metrics)
    param_list = [Param(metric_name(k), param_value(v)) for k, v in (params or {}).items()]
    tag_list = [RunTag(k, param_value(v)) for k, v in (tags or {}).items()]
    calls = 0
    metric_chunks = list(_chunks(metrics, MAX_METRICS_PER_BATCH)) or [[]]
    param_chunks = list(_chunks(param_list, MAX_PARAMS_PER_BATCH)) or [[]]
    tag_chunks = list(_chunks(tag_list, MAX_TAGS_PER_BATCH)) or [[]]
    for i in range(max(len(metric_chunks), len(param_chunks), len(tag_chunks))):
        m = metric_chunks[i] if i < len(metric_chunks) else []
        p = param_chunks[i] if i < len(param_chunks) else []
        t = tag_chunks[i] if i < len(tag_chunks) else []
        if m or p or t:
            mlflow_client.log_batch(run_id, metrics=m, params=p, tags=t, synchronous=True)
            calls += 1
    return calls


def metric(key: str, value: Any, step: int, timestamp: int | None = None) -> Any | None:
    """An `mlflow.entities.Metric`, or None when `value` is not a number."""
    from mlflow.entities import Metric

    number = as_metric_value(value)
    if number is None:
        return None
    return Metric(metric_name(key), number, timestamp if timestamp is not None else now_ms(), int(step))


def worst_severity(severities: Iterable[str]) -> str:
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return max(severities, key=lambda s: rank.get(s, -1))


def symptom_tags(findings: Iterable[Mapping[str, Any]], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The diagnosis tags of a run: `descentkit.symptoms` (comma-separated, sorted) and one
    `descentkit.symptom.<name>` = worst severity per symptom, so a filter needs no LIKE.

    Args:
        findings: `Finding.to_dict()` dicts.
        extra: symptoms known without a finding (e.g. a prune reason) and their severity.
    """
    seen: dict[str, list[str]] = {}
    for finding in findings:
        seen.setdefault(finding["symptom"], []).append(finding.get("severity", "warning"))
    for symptom, severity in (extra or {}).items():
        if symptom in SYMPTOMS:
            seen.setdefault(symptom, []).append(severity)
    tags = {SYMPTOMS_TAG: ",".join(sorted(seen))}
    tags.update({SYMPTOM_TAG + s: worst_severity(v) for s, v in sorted(seen.items())})
    return tags


def first_line(exc: BaseException, limit: int = 160) -> str:
    """`Type: message`, first line only, cut to `limit` characters: for one-line warnings."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
