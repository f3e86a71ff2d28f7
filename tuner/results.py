"""A study's results: a progress bar while it runs; then best trials, counts by state, prune reasons, as text or JSON."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from descentkit.tuner import _record
from descentkit.tuner._budget import counted

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


@dataclass
class TrialRow:
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    epochs_trained: int | None = None
    prune_reason: str | None = None
    symptoms: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class StudySummary:
    study_name: str
    direction: str
    metric: str
    storage: str
    counts: dict[str, int]
    prune_reasons: dict[str, int]
    best: list[TrialRow]
    # Failed trials whose parameters were re-queued (interrupted, or their worker died):
    # their re-runs are counted instead, so they are not in `counts`.
    rerun: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self, top: int = 5) -> str:
        lines = [f"Study {self.study_name!r}: {self.direction} {self.metric}"]
        counts = ", ".join(f"{n} {s.lower()}" for s, n in self.counts.items() if n) or "no trials"
        if self.rerun:
            counts += f" ({self.rerun} more re-run: interrupted, or lost with a worker that died)"
        lines.append(f"Trials: {counts}")
        if self.prune_reasons:
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.prune_reasons.items(), key=lambda kv: -kv[1]))
            lines.append(f"Pruned for: {reasons}")
        if not self.best:
            lines.append("No completed trial yet.")
        else:
            lines.append(f"Best trials by {self.metric}:")
            keys = sorted({k for row in self.best[:top] for k in row.params})
            header = ["#", self.metric, "epochs", *keys]
            rows = [header] + [
                [str(r.number), _fmt(r.value), str(r.epochs_trained or ""), *(_fmt(r.params.get(k)) for k in keys)]
                for r in self.best[:top]
            ]
            widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
            for row in rows:
                lines.append("  " + "  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
        lines.append(f"Stored in: {self.storage}")
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _row(trial: Any) -> TrialRow:
    value = trial.value if trial.value is not None and math.isfinite(trial.value) else None
    return TrialRow(
        number=trial.number,
        state=trial.state.name,
        value=value,
        params=dict(trial.params),
        epochs_trained=_record.epochs_trained(trial),
        prune_reason=_record.prune_reason(trial),
        symptoms=_record.recorded_symptoms(trial),
        error=_record.error_text(trial),
    )


def summarize_study(study: Any, storage: str = "", top: int = 5) -> StudySummary:
    """Summarise an Optuna study: counts by state, prune reasons, the `top` best completed trials."""
    everything = study.get_trials(deepcopy=False)
    trials = counted(everything)
    counts = Counter(t.state.name for t in trials)
    reasons = Counter(_record.pruned_for(t) for t in trials if t.state.name == "PRUNED")
    maximize = study.direction.name == "MAXIMIZE"
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    complete.sort(key=lambda t: t.value, reverse=maximize)
    return StudySummary(
        study_name=study.study_name,
        direction="maximize" if maximize else "minimize",
        metric=study.user_attrs.get("objective_metric", "value"),
        storage=storage,
        counts={s: counts.get(s, 0) for s in STATES if counts.get(s, 0)},
        prune_reasons=dict(reasons),
        best=[_row(t) for t in complete[:top]],
        rerun=len(everything) - len(trials),
    )


def trial_rows(study: Any) -> list[TrialRow]:
    """Every trial of the study as a row (for JSON output)."""
    return [_row(t) for t in study.get_trials(deepcopy=False)]


class Progress:
    """A tqdm bar over trials showing the best value and the trials pruned or failed
    (an Optuna callback, `(study, frozen_trial)`)."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, disable=not enabled, unit="trial", dynamic_ncols=True, desc="sweep")
        self.counts: dict[str, int] = {}

    def __call__(self, study: Any, trial: Any) -> None:
        state = trial.state.name.lower()
        self.counts[state] = self.counts.get(state, 0) + 1
        postfix = {k: v for k, v in self.counts.items() if k != "complete"}
        try:
            postfix = {"best": f"{study.best_value:.4g}", **postfix}
        except ValueError:  # no completed trial yet
            pass
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
