"""Running a planned sweep's trials, here or in worker processes, with a progress bar and MLflow tracking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from descentkit.tuner._pool import run_workers
from descentkit.tuner._schedule import run_study
from descentkit.tuner.results import Progress, StudySummary, summarize_study


@dataclass
class SweepResult:
    """What a sweep leaves: the Optuna study, where it is stored, its summary and, when
    MLflow logged it, where (`tracking`: `SweepTracker.location`; `tracking_text`: that
    as the line the CLI ends with, the command to open the UI included)."""

    study: Any
    storage: str
    summary: StudySummary
    tracking: dict[str, Any] | None = None
    tracking_text: str | None = None


def run_trials(plan: Any, study: Any, budget: Any, timeout: float | None, workers: int, *, progress: bool,
               tracking: bool, tracking_uri: str | None, experiment_name: str | None) -> SweepResult:
    """Train the budget's trials and summarise the study (each finished trial logged to MLflow when `tracking`)."""
    bar = Progress(budget.to_run(), progress)
    tracker = None
    if tracking:
        from descentkit.tuner.tracking import SweepTracker  # MLflow and Keras: only when used

        tracker = SweepTracker(plan.spec.study_name, tracking_uri=tracking_uri, experiment_name=experiment_name,
                               storage=plan.spec.url)
    relays = [bar, *([tracker] if tracker else [])]
    try:
        if workers > 1:
            run_workers(plan.config, plan.spec, budget, timeout, workers, study, relays)
        else:
            run_study(study, plan.config, budget, timeout, plan.spec.lock(), data=plan.dataset,
                      builder=plan.builder, callbacks=plan.callbacks, relays=relays)
    finally:
        bar.close()
    result = SweepResult(study, plan.spec.shown, summarize_study(study, plan.spec.shown))
    if tracker is not None:
        tracker.finish(study)
        result.tracking, result.tracking_text = tracker.location(study), tracker.location_text(study)
    return result
