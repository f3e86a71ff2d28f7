"""Where a study's pathologies were: which symptoms appeared in which region of the
search space, and advice worked out against the parameters of the trials that had them.

Reads the Optuna study alone: trials' params, states, intermediate values and the
trial record (`prune_reason`, `symptoms`, `findings`).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from descentkit.tuner._record import finished, fixed_params, pathology, trial_symptoms
from descentkit.tuner._record import findings as _findings
from descentkit.tuner.stable_band import stable_band

LEARNING_RATE = "learning_rate"
BATCH_SIZE = "batch_size"
TOP_ADVICE = 5


# ---------------------------------------------------------------- reading trials
def finished_trials(study: Any) -> list[Any]:
    """The study's trials that ended COMPLETE, PRUNED or FAIL."""
    return finished(study.get_trials(deepcopy=False))


def outcome(trial: Any) -> str:
    """"complete", "fail", "pruned" (by the pruner) or the symptom it was pruned for."""
    return pathology(trial) or trial.state.name.lower()


def score(trial: Any) -> float | None:
    """The trial's objective value; for a pruned trial the last finite value it reported."""
    if trial.value is not None and math.isfinite(trial.value):
        return float(trial.value)
    for step in sorted(trial.intermediate_values, reverse=True):
        value = trial.intermediate_values[step]
        if value is not None and math.isfinite(value):
            return float(value)
    return None


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _region(trials: list[Any], name: str) -> dict[str, Any] | None:
    values = [t.params[name] for t in trials if name in t.params]
    if not values:
        return None
    numbers = [_numeric(v) for v in values]
    if all(n is not None for n in numbers):
        return {"min": min(numbers), "max": max(numbers)}
    return {"values": sorted({str(v) for v in values})}


def pathology_map(study: Any) -> dict[str, Any]:
    """Which symptoms appeared in which region of the search space.

    Returns a JSON-ready dict: `n_trials`, `searched` (each param's range over all
    finished trials) and `symptoms` ({symptom: {count, pruned, trials, region}})
    where `region` is each param's range over the trials with that symptom.
    """
    trials = finished_trials(study)
    names = sorted({k for t in trials for k in t.params})
    by_symptom: dict[str, list[Any]] = {}
    for trial in trials:
        for symptom in trial_symptoms(trial):
            by_symptom.setdefault(symptom, []).append(trial)
    symptoms = {}
    for symptom, members in sorted(by_symptom.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        symptoms[symptom] = {
            "count": len(members),
            "pruned": sum(1 for t in members if pathology(t) == symptom),
            "trials": [t.number for t in members],
            "region": {n: r for n in names if (r := _region(members, n)) is not None},
        }
    searched = {n: r for n in names if (r := _region(trials, n)) is not None}
    edges: list[str] = []
    if "min" in searched.get(LEARNING_RATE, {}):
        rates = searched[LEARNING_RATE]
        edges = stable_band(trials, rates["min"], rates["max"]).to_text()
    return {
        "study": study.study_name,
        "n_trials": len(trials),
        "searched": searched,
        "symptoms": symptoms,
        "learning_rate_edges": edges,
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _range_text(region: dict[str, Any]) -> str:
    if "values" in region:
        return "{" + ", ".join(region["values"]) + "}"
    low, high = _fmt(region["min"]), _fmt(region["max"])
    return low if low == high else f"{low}..{high}"


def pathology_text(view: dict[str, Any], title: bool = True) -> str:
    """The pathology map as lines of text: one per symptom with the region it appeared in."""
    lines = [f"Study {view['study']!r}: {view['n_trials']} finished trial(s)"] if title else []
    if not view["symptoms"]:
        lines.append("No training pathologies found.")
    for symptom, entry in view["symptoms"].items():
        region = ", ".join(f"{n} {_range_text(r)}" for n, r in entry["region"].items())
        trials = ", ".join(f"#{n}" for n in entry["trials"][:20]) + (" ..." if len(entry["trials"]) > 20 else "")
        lines.append(f"{symptom}: {entry['count']} trial(s), {entry['pruned']} pruned for it ({trials}); region: {region}")
    lines.extend(view.get("learning_rate_edges") or [])
    if view["searched"]:
        lines.append("Searched: " + ", ".join(f"{n} {_range_text(r)}" for n, r in view["searched"].items()))
    return "\n".join(lines)


def _values(trials: list[Any], name: str, fixed: dict[str, Any]) -> list[float]:
    found = [_numeric(t.params.get(name, fixed.get(name))) for t in trials]
    return sorted(v for v in found if v is not None)


def _span(values: list[float]) -> str:
    low, high = _fmt(values[0]), _fmt(values[-1])
    return low if low == high else f"{low}-{high}"


def _lower_rate(rates: list[float], what: str) -> str:
    return f"keep learning_rate below {_fmt(rates[0])} ({what} at {_span(rates)})"


def _advice_for(symptom: str, trials: list[Any], fixed: dict[str, Any]) -> str | None:
    """Advice for one symptom, worked out against the parameters of the trials that had it
    (never "add dropout 0.2" to trials that already had 0.2). None: nothing to say from
    the parameters (the findings' own advice is used)."""
    rates = _values(trials, LEARNING_RATE, fixed)
    if symptom == "overfitting":
        moves = []
        for name, kind in (("dropout", "dropout"), ("l2", "L2")):
            values = _values(trials, name, fixed)
            if values and values[-1] > 0:
                moves.append(f"raise {name} above {_fmt(values[-1])} (they had {_span(values)})")
            else:
                moves.append(f"add {kind} ({'0.2' if name == 'dropout' else '1e-4'})")
        return (f"regularize more: {' or '.join(moves)}; or stop earlier "
                "(EarlyStopping(restore_best_weights=True)), or get more data")
    if not rates:
        return None
    if symptom == "divergence":
        return _lower_rate(rates, "they diverged") + _momentum_note(trials, fixed)
    if symptom == "exploding_gradients":
        return _lower_rate(rates, "gradients exploded") + ", or clip gradients (clipnorm=1.0)"
    if symptom == "dead_units":
        return _lower_rate(rates, "units died") + ", or use LeakyReLU/ELU with He initialisation"
    if symptom == "oscillating_loss":
        sizes = _values(trials, BATCH_SIZE, fixed)
        larger = f", or raise batch_size above {_fmt(sizes[-1])}" if sizes else ""
        return _lower_rate(rates, "the loss oscillated") + larger
    if symptom == "stalled_training":
        return f"raise learning_rate above {_fmt(rates[-1])} (training stalled at {_span(rates)}) or train longer"
    if symptom == "vanishing_gradients":
        return (f"use ReLU/LeakyReLU with He initialisation, BatchNormalization or residual connections, "
                f"or raise learning_rate above {_fmt(rates[-1])} (they had {_span(rates)})")
    return None


def _momentum_note(trials: list[Any], fixed: dict[str, Any]) -> str:
    momenta = _values(trials, "momentum", fixed)
    return f", or lower momentum below {_fmt(momenta[0])}" if momenta and momenta[0] >= 0.9 else ""


def common_advice(study: Any, top: int = TOP_ADVICE) -> list[tuple[str, str, list[int]]]:
    """One line of advice per symptom, most common first: (symptom, advice, trial numbers).

    The advice is worked out against the parameters of the trials with that symptom
    (`_advice_for`); for a symptom the parameters say nothing about, the most common
    advice of its findings."""
    by_symptom: dict[str, list[Any]] = {}
    advice: dict[str, Counter[str]] = {}
    for trial in finished_trials(study):
        findings = _findings(trial)
        for symptom in trial_symptoms(trial):
            by_symptom.setdefault(symptom, []).append(trial)
            advice.setdefault(symptom, Counter()).update({f.get("advice", "") for f in findings
                                                          if f["symptom"] == symptom and f.get("advice")})
    fixed = fixed_params(study)
    lines = []
    for symptom, trials in sorted(by_symptom.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top]:
        text = _advice_for(symptom, trials, fixed)
        if text is None and advice.get(symptom):
            text = advice[symptom].most_common(1)[0][0]
        if text:
            lines.append((symptom, text[0].upper() + text[1:], [t.number for t in trials]))
    return lines


def trial_numbers(numbers: list[int], limit: int = 20) -> str:
    """`#3, #7, #12` (cut after `limit`, with how many more)."""
    shown = ", ".join(f"#{n}" for n in numbers[:limit])
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")
