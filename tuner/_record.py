"""The trial record: the user attributes a sweep writes on each Optuna trial, and their readers.

These names are a public contract: MLflow tags and the README's filters are
built from them, and a study stored by one version is read by the next. Every
other tuner module writes and reads them through this module only.

Nothing here imports Optuna, Keras or TensorFlow: a trial is anything with
`number`, `state.name`, `params` and `user_attrs` (a `FrozenTrial` or a test double).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import Any

from descentkit.diagnostics import SYMPTOMS

# -- attribute names (trial user attributes)
PRUNE_REASON = "prune_reason"  # why a PRUNED trial stopped: a symptom, PRUNER or TIMEOUT
WORKER = "worker"  # `host:pid:start` of the process that ran (or holds) the trial
FIRST_TRIAL = "first_trial"  # on a trial: what proposed it ("range_test"); on the study: its params and range
RETRY_OF = "retry_of"  # on a re-queued trial: the number of the trial it re-runs
ORPHANED = "orphaned"  # on a trial whose worker died: why it was failed
ERROR_TYPE = "error_type"
ERROR_MESSAGE = "error_message"
HISTORY = "history"  # {metric: [value per epoch]}, Keras' logs
HEALTH = "health"  # per-epoch gradient health (descentkit.diagnostics._health)
FINDINGS = "findings"  # [Finding.to_dict()], warnings and criticals
SYMPTOMS_ATTR = "symptoms"  # the findings' symptoms, sorted
EPOCHS_TRAINED = "epochs_trained"
BEST_EPOCH = "best_epoch"  # 0-based epoch of the best objective value
# Optuna's own system attribute on a trial its heartbeat callback re-queued.
OPTUNA_RETRY_OF = "failed_trial"

# -- values
# Dropped by the pruner or a bracket's halving, not for a pathology: the reason
# `descentkit.callbacks.OptunaPruning` writes (its `PRUNER`; kept here so reading a
# record needs no Keras, and a test checks that the two agree).
PRUNER = "pruner"
HALVED = PRUNER
TIMEOUT = "timeout"  # left untrained by the sweep's timeout
INTERRUPTED = "interrupted"  # error_type of a trial whose worker got SIGINT/SIGTERM
RANGE_TEST = "range_test"  # FIRST_TRIAL value: proposed by a learning-rate range test
INTERRUPTED_MESSAGE = "the sweep was interrupted (SIGINT or SIGTERM); re-queued"

FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")


def process_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name ([0] is the state), [] when unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _process_start_time(pid: int) -> str:
    """The kernel's start time of a process (clock ticks since boot), "" when unknown.

    With the pid it identifies a process uniquely, even after the pid is reused.
    """
    fields = process_fields(pid)
    return fields[19] if len(fields) > 19 else ""


def worker_id(pid: int | None = None) -> str:
    """`host:pid:start` naming this process (the owner of the trials it runs)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_process_start_time(pid)}"


def prune_reason(trial: Any) -> str | None:
    return trial.user_attrs.get(PRUNE_REASON)


def pruned_for(trial: Any) -> str:
    """A PRUNED trial's reason as summaries count it (an untagged one was pruned by the pruner)."""
    return str(prune_reason(trial) or PRUNER)


def worker(trial: Any) -> str | None:
    return trial.user_attrs.get(WORKER)


def first_trial(trial: Any) -> Any:
    """What proposed the trial (RANGE_TEST), or None for the sampler."""
    return trial.user_attrs.get(FIRST_TRIAL)


def carried_on_retry(trial: Any) -> dict[str, Any]:
    """The attributes a re-queued copy of `trial` keeps, with `retry_of` pointing back to it."""
    carried = {RETRY_OF: trial.number}
    if FIRST_TRIAL in trial.user_attrs:
        carried[FIRST_TRIAL] = trial.user_attrs[FIRST_TRIAL]
    return carried


def retry_origin(trial: Any) -> int | None:
    """The number of the trial this one re-runs (re-queued by descentkit or by Optuna's heartbeats)."""
    system = getattr(trial, "system_attrs", None) or {}
    origin = trial.user_attrs.get(RETRY_OF, system.get(OPTUNA_RETRY_OF))
    return None if origin is None else int(origin)


def is_orphaned(trial: Any) -> bool:
    return ORPHANED in trial.user_attrs


def error_type(trial: Any) -> str | None:
    return trial.user_attrs.get(ERROR_TYPE)


def error_text(trial: Any) -> str | None:
    """`Type: message` of a trial that raised, else None."""
    if ERROR_TYPE not in trial.user_attrs:
        return None
    return f"{trial.user_attrs[ERROR_TYPE]}: {trial.user_attrs.get(ERROR_MESSAGE, '')}"


def record_error(trial: Any, kind: str, message: str) -> None:
    trial.set_user_attr(ERROR_TYPE, kind)
    trial.set_user_attr(ERROR_MESSAGE, message[:1000])


def history(trial: Any) -> dict[str, list[float]]:
    return trial.user_attrs.get(HISTORY) or {}


def health(trial: Any) -> Any:
    return trial.user_attrs.get(HEALTH)


def findings(trial: Any) -> list[dict[str, Any]]:
    """The recorded findings that name a symptom (entries of another shape are skipped)."""
    return [f for f in trial.user_attrs.get(FINDINGS) or [] if isinstance(f, dict) and f.get("symptom")]


def recorded_symptoms(trial: Any) -> list[str]:
    return list(trial.user_attrs.get(SYMPTOMS_ATTR) or [])


def epochs_trained(trial: Any) -> Any:
    return trial.user_attrs.get(EPOCHS_TRAINED)


def best_epoch(trial: Any) -> Any:
    return trial.user_attrs.get(BEST_EPOCH)


def pathology(trial: Any) -> str | None:
    """The symptom a trial was pruned for, or None (completed, failed, or pruned by the pruner)."""
    reason = prune_reason(trial)
    return reason if trial.state.name == "PRUNED" and reason in SYMPTOMS else None


def trial_symptoms(trial: Any) -> list[str]:
    """The trial's symptoms: the recorded ones, its findings' and its prune reason when that is a symptom."""
    found = set(recorded_symptoms(trial))
    found.update(f["symptom"] for f in findings(trial))
    if prune_reason(trial) in SYMPTOMS:
        found.add(prune_reason(trial))
    return sorted(found)


def finished(trials: Iterable[Any]) -> list[Any]:
    """The trials that ended COMPLETE, PRUNED or FAIL."""
    return [t for t in trials if t.state.name in FINISHED_STATES]


def write_result(trial: Any, series: list[float], history_: dict[str, list[float]], health_: Any,
                 findings_: list[dict[str, Any]]) -> None:
    """What a trained trial records, whatever its end: epochs, curves, health and findings."""
    trial.set_user_attr(EPOCHS_TRAINED, len(series))
    trial.set_user_attr(HISTORY, {k: [float(x) for x in v] for k, v in history_.items()})
    trial.set_user_attr(HEALTH, health_)
    trial.set_user_attr(FINDINGS, findings_)
    trial.set_user_attr(SYMPTOMS_ATTR, sorted({f["symptom"] for f in findings_}))


# -- study attributes
STUDY_CONFIG = "config"  # the study file as stored when the study was created
OBJECTIVE_METRIC = "objective_metric"


def fixed_params(study: Any) -> dict[str, Any]:
    """Values the study file fixes in its search space (not sampled, so not in a trial's params)."""
    space = (study.user_attrs.get(STUDY_CONFIG) or {}).get("search_space") or {}
    return {k: v for k, v in space.items() if not isinstance(v, dict)}
