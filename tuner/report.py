"""A study's pathology map, plots and a self-contained HTML report.

The plots are drawn with matplotlib figures that never touch pyplot (no display,
no global state), so they work on headless machines and in worker processes.
Everything reads the Optuna study alone: trials' params, states, intermediate
values and the user attributes the objective sets (`prune_reason`, `symptoms`,
`findings`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from descentkit.diagnostics import SYMPTOMS

FINISHED = ("COMPLETE", "PRUNED", "FAIL")
OUTCOME_COLORS = {"complete": "tab:green", "pruned": "0.6", "fail": "black"}
SYMPTOM_COLORS = {
    "divergence": "tab:red",
    "exploding_gradients": "tab:orange",
    "vanishing_gradients": "tab:blue",
    "dead_units": "tab:purple",
    "stalled_training": "tab:brown",
    "overfitting": "tab:pink",
    "oscillating_loss": "tab:olive",
    "saturated_activations": "tab:cyan",
}
LEARNING_RATE = "learning_rate"
BATCH_SIZE = "batch_size"
TOP_ADVICE = 5
TOP_TRIALS = 10


# ---------------------------------------------------------------- reading trials
def finished_trials(study: Any) -> list[Any]:
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED]


def trial_symptoms(trial: Any) -> list[str]:
    """The trial's symptoms: the recorded ones plus its prune reason when that is a symptom."""
    found = set(trial.user_attrs.get("symptoms") or [])
    found.update(f["symptom"] for f in trial.user_attrs.get("findings") or [] if isinstance(f, dict) and "symptom" in f)
    reason = trial.user_attrs.get("prune_reason")
    if reason in SYMPTOMS:
        found.add(reason)
    return sorted(found)


def pathology(trial: Any) -> str | None:
    """The symptom a trial was pruned for, or None (completed, failed, or pruned by the pruner)."""
    reason = trial.user_attrs.get("prune_reason")
    return reason if trial.state.name == "PRUNED" and reason in SYMPTOMS else None


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
    from descentkit.tuner.stable_band import BAND_ATTR, stable_band

    if "min" in searched.get(LEARNING_RATE, {}):
        rates = searched[LEARNING_RATE]
        edges = stable_band(trials, rates["min"], rates["max"]).to_text()
    return {
        "study": study.study_name,
        "n_trials": len(trials),
        "searched": searched,
        "symptoms": symptoms,
        "learning_rate_edges": edges,
        "learning_rate_band": study.user_attrs.get(BAND_ATTR),
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
    band = view.get("learning_rate_band")
    if band and band.get("narrowed"):
        lines.append(f"narrow_learning_rate: now searching learning_rate {band['low']:.3g}..{band['high']:.3g}")
    if view["searched"]:
        lines.append("Searched: " + ", ".join(f"{n} {_range_text(r)}" for n, r in view["searched"].items()))
    return "\n".join(lines)


def _fixed_values(study: Any) -> dict[str, Any]:
    """Values the study file fixes in its search space (a trial's params omit them)."""
    space = (study.user_attrs.get("config") or {}).get("search_space") or {}
    return {k: v for k, v in space.items() if not isinstance(v, dict)}


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
        findings = [f for f in trial.user_attrs.get("findings") or [] if isinstance(f, dict) and f.get("symptom")]
        for symptom in trial_symptoms(trial):
            by_symptom.setdefault(symptom, []).append(trial)
            advice.setdefault(symptom, Counter()).update({f.get("advice", "") for f in findings
                                                          if f["symptom"] == symptom and f.get("advice")})
    fixed = _fixed_values(study)
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


# ---------------------------------------------------------------- plots
# Fixed margins rather than matplotlib's constrained layout: the layout engine draws
# each figure once more to measure it, and that was half the time of the six study
# plots a sweep's parent run gets (0.7 s of 1.3 s on 2 cores).
MARGINS = {"left": 0.11, "right": 0.97, "bottom": 0.12, "top": 0.9}


def _figure(title: str, size: tuple[float, float] = (7, 4.5), **margins: float) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    fig.subplots_adjust(**{**MARGINS, **margins})
    ax = fig.subplots()
    ax.set_title(title)
    return fig, ax


def _nothing(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _metric(study: Any) -> str:
    return study.user_attrs.get("objective_metric", "objective")


def _maximize(study: Any) -> bool:
    return study.direction.name == "MAXIMIZE"


def _marker_style(kind: str) -> dict[str, Any]:
    if kind == "complete":
        return {"color": OUTCOME_COLORS["complete"], "marker": "o"}
    if kind == "pruned":
        return {"color": OUTCOME_COLORS["pruned"], "marker": "s"}
    if kind == "fail":
        return {"color": OUTCOME_COLORS["fail"], "marker": "v"}
    return {"color": SYMPTOM_COLORS.get(kind, "tab:red"), "marker": "X"}


def _scatter_by_outcome(ax: Any, points: list[tuple[float, float, str]]) -> None:
    for kind in sorted({k for _, _, k in points}, key=lambda k: (k not in OUTCOME_COLORS, k)):
        xs = [x for x, _, k in points if k == kind]
        ys = [y for _, y, k in points if k == kind]
        label = kind if kind in OUTCOME_COLORS else f"pruned: {kind}"
        ax.scatter(xs, ys, s=36, alpha=0.85, label=label, **_marker_style(kind))
    if points:
        ax.legend(fontsize=8)


def plot_optimization_history(study: Any) -> Any:
    """Each trial's objective (pruned trials at their last reported value) and the best so far."""
    fig, ax = _figure(f"Optimization history: {_metric(study)}")
    trials = finished_trials(study)
    points = [(t.number, s, outcome(t)) for t in trials if (s := score(t)) is not None]
    if not points:
        _nothing(ax, "no trial reported a value yet")
        return fig
    _scatter_by_outcome(ax, points)
    best, xs, ys = None, [], []
    for t in sorted((t for t in trials if t.state.name == "COMPLETE" and score(t) is not None), key=lambda t: t.number):
        value = score(t)
        best = value if best is None else (max(best, value) if _maximize(study) else min(best, value))
        xs.append(t.number)
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:green", linewidth=1.5, label="best so far")
        ax.legend(fontsize=8)
    ax.set(xlabel="trial", ylabel=_metric(study))
    return fig


def plot_intermediate_values(study: Any) -> Any:
    """The per-epoch objective of every trial; pruned ones grey, pathological ones in their symptom's colour."""
    fig, ax = _figure(f"Per-epoch {_metric(study)}")
    drawn = False
    labelled: set[str] = set()
    for trial in finished_trials(study):
        if not trial.intermediate_values:
            continue
        steps = sorted(trial.intermediate_values)
        values = [trial.intermediate_values[s] for s in steps]
        values = [v if v is not None and math.isfinite(v) else float("nan") for v in values]
        kind = outcome(trial)
        color = _marker_style(kind)["color"]
        label = None if kind in labelled else (kind if kind in OUTCOME_COLORS else f"pruned: {kind}")
        labelled.add(kind)
        ax.plot([s + 1 for s in steps], values, color=color, alpha=0.7, linewidth=1, label=label)
        drawn = True
    if not drawn:
        _nothing(ax, "no intermediate values reported")
        return fig
    ax.legend(fontsize=8)
    ax.set(xlabel="epoch", ylabel=_metric(study))
    return fig


def param_importances(study: Any) -> dict[str, float]:
    """PED-ANOVA importances over the completed trials ({} when too few to tell).

    PED-ANOVA (Watanabe et al., IJCAI 2023) rather than Optuna's default fANOVA:
    it took 0.01 s here where fANOVA took 0.4 s plus 3-8 s to import scikit-learn.
    """
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 2 or not any(len(t.distributions) for t in complete):
        return {}
    try:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}
    except (RuntimeError, ValueError):  # e.g. every trial has the same value or one param only varies
        return {}


def plot_param_importances(study: Any) -> Any:
    fig, ax = _figure(f"Parameter importance for {_metric(study)} (PED-ANOVA)", left=0.22)
    importances = param_importances(study)
    if not importances:
        _nothing(ax, "not enough completed trials to estimate importances")
        return fig
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set(xlabel="importance (share of variance)")
    return fig


def _axis_position(trial: Any, name: str) -> float | None:
    """A param's position on a [0, 1] axis (log distributions on a log scale, choices by index)."""
    import optuna

    if name not in trial.params:
        return None
    value, dist = trial.params[name], trial.distributions.get(name)
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        choices = list(dist.choices)
        return choices.index(value) / max(1, len(choices) - 1)
    if isinstance(dist, (optuna.distributions.FloatDistribution, optuna.distributions.IntDistribution)):
        low, high = float(dist.low), float(dist.high)
        if high == low:
            return 0.5
        if dist.log:
            return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
        return (float(value) - low) / (high - low)
    return None


def plot_parallel_coordinates(study: Any) -> Any:
    """One line per trial across the params and the objective; completed trials coloured by value."""
    import matplotlib

    fig, ax = _figure(f"Parallel coordinates ({_metric(study)} last)", size=(9, 4.5), left=0.08, bottom=0.2)
    trials = [t for t in finished_trials(study) if score(t) is not None and t.params]
    names = sorted({k for t in trials for k in t.params})
    if len(trials) < 2 or not names:
        _nothing(ax, "not enough trials with values")
        return fig
    scores = [score(t) for t in trials]
    low, high = min(scores), max(scores)
    cmap = matplotlib.colormaps["viridis"]
    xs = list(range(len(names) + 1))
    for trial, value in zip(trials, scores):
        position = (value - low) / (high - low) if high > low else 0.5
        ys = [_axis_position(trial, n) for n in names] + [position]
        ys = [float("nan") if y is None else y for y in ys]
        if trial.state.name == "COMPLETE":
            ax.plot(xs, ys, color=cmap(position if _maximize(study) else 1 - position), alpha=0.8, linewidth=1.2)
        else:
            ax.plot(xs, ys, color=_marker_style(outcome(trial))["color"], alpha=0.5, linewidth=0.8, linestyle="--")
    for x, name in enumerate(names):
        region = _region(trials, name) or {}
        low_text, high_text = ("", "") if "values" in region else (_fmt(region.get("min", "")), _fmt(region.get("max", "")))
        ax.annotate(low_text, (x, -0.05), ha="center", va="top", fontsize=7, color="0.3")
        ax.annotate(high_text, (x, 1.05), ha="center", va="bottom", fontsize=7, color="0.3")
    for x in xs:
        ax.axvline(x, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xticks(xs, [*names, _metric(study)], rotation=20, fontsize=8)
    ax.set_yticks([0, 1], ["low", "high"])
    ax.set(ylim=(-0.12, 1.12))
    return fig


def plot_learning_rate_vs_objective(study: Any) -> Any:
    """The objective against the learning rate, pathological trials marked by symptom."""
    fig, ax = _figure(f"{_metric(study)} against learning rate")
    points = [(float(t.params[LEARNING_RATE]), s, outcome(t)) for t in finished_trials(study)
              if _numeric(t.params.get(LEARNING_RATE)) and (s := score(t)) is not None]
    unscored = [(float(t.params[LEARNING_RATE]), outcome(t)) for t in finished_trials(study)
                if _numeric(t.params.get(LEARNING_RATE)) and score(t) is None]
    if not points and not unscored:
        _nothing(ax, "no learning_rate in the search space")
        return fig
    _scatter_by_outcome(ax, points)
    if unscored:  # diverged before reporting anything: drawn along the bottom edge
        for x, kind in unscored:
            ax.scatter([x], [0.0], transform=ax.get_xaxis_transform(), clip_on=False, s=36, **_marker_style(kind))
    # Points on the axis transform do not count for autoscaling: with no scored trial
    # (every one failed) the x range would stay 0..1, which a log axis refuses.
    rates = [x for x, _, _ in points] + [x for x, _ in unscored]
    ax.set_xlim(min(rates) / 1.5, max(rates) * 1.5)
    ax.set_xscale("log")
    ax.set(xlabel="learning rate", ylabel=_metric(study))
    return fig


def plot_pathology_map(study: Any) -> Any:
    """Learning rate against batch size, each trial coloured by its outcome."""
    fig, ax = _figure("Outcomes by learning rate and batch size")
    trials = [t for t in finished_trials(study) if _numeric(t.params.get(LEARNING_RATE))]
    if not trials:
        _nothing(ax, "no learning_rate in the search space")
        return fig
    if not any(_numeric(t.params.get(BATCH_SIZE)) for t in trials):
        points = [(float(t.params[LEARNING_RATE]), float(t.number), outcome(t)) for t in trials]
        ylabel = "trial (no batch_size searched)"
    else:
        points = [(float(t.params[LEARNING_RATE]), float(t.params[BATCH_SIZE]), outcome(t))
                  for t in trials if _numeric(t.params.get(BATCH_SIZE))]
        from matplotlib.ticker import ScalarFormatter

        ylabel = "batch size"
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(ScalarFormatter())
    _scatter_by_outcome(ax, points)
    from descentkit.tuner.stable_band import stable_band

    rates = [p[0] for p in points]
    band = stable_band(trials, min(rates), max(rates)) if rates else None
    for edge, colour, label in ((band and band.upper, "tab:red", "diverges at or above"),
                                (band and band.lower, "tab:brown", "stalls at or below")):
        if edge is not None:
            ax.axvline(edge.rate, color=colour, ls="--", lw=1,
                       label=f"{label} {edge.rate:.3g} ({edge.failed} of {edge.trials})")
    if band is not None and (band.upper or band.lower):
        ax.legend(fontsize=8, loc="best")
    ax.set_xscale("log")
    ax.set(xlabel="learning rate", ylabel=ylabel)
    return fig


STUDY_PLOTS = {
    "optimization_history": plot_optimization_history,
    "intermediate_values": plot_intermediate_values,
    "param_importances": plot_param_importances,
    "parallel_coordinates": plot_parallel_coordinates,
    "learning_rate_vs_objective": plot_learning_rate_vs_objective,
    "pathology_map": plot_pathology_map,
}


def study_figures(study: Any) -> dict[str, Any]:
    """Every study plot, by name: {name: matplotlib Figure}."""
    return {name: draw(study) for name, draw in STUDY_PLOTS.items()}


def png_bytes(figure: Any, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


# ---------------------------------------------------------------- the HTML report
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.muted { color: #777; }
"""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(figure: Any, alt: str) -> str:
    data = base64.b64encode(png_bytes(figure)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def report_html(study: Any) -> str:
    """The report as one HTML string (images embedded as data: URIs)."""
    from descentkit.tuner.results import summarize_study

    summary = summarize_study(study, top=TOP_TRIALS)
    view = pathology_map(study)
    title = f"descentkit report: {study.study_name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(summary.direction)} <code>{html.escape(summary.metric)}</code>; "
        f"{view['n_trials']} finished trial(s).</p>",
        "<h2>Trials by state</h2>",
        _table(["state", "trials"], [[s, n] for s, n in summary.counts.items()]),
    ]
    if summary.prune_reasons:
        parts.append(_table(["pruned for", "trials"], sorted(summary.prune_reasons.items(), key=lambda kv: -kv[1])))
    parts.append("<h2>Best trials</h2>")
    if summary.best:
        keys = sorted({k for row in summary.best for k in row.params})
        parts.append(_table(["#", summary.metric, "epochs", *keys],
                            [[r.number, r.value, r.epochs_trained or "", *(r.params.get(k, "-") for k in keys)]
                             for r in summary.best]))
    else:
        parts.append('<p class="muted">No completed trial yet.</p>')

    parts.append("<h2>Pathology map</h2>")
    if view["symptoms"]:
        rows = [[s, e["count"], e["pruned"], "; ".join(f"{n} {_range_text(r)}" for n, r in e["region"].items())]
                for s, e in view["symptoms"].items()]
        parts.append(_table(["symptom", "trials", "pruned for it", "region"], rows))
    else:
        parts.append('<p class="muted">No training pathologies found.</p>')
    figures = study_figures(study)
    parts.append(_image(figures.pop("pathology_map"), "outcomes by learning rate and batch size"))

    parts.append("<h2>Advice</h2>")
    advice = common_advice(study)
    if advice:
        parts.append("<ul>" + "".join(
            f"<li><b>{html.escape(s)}</b> ({len(n)} trial(s): {html.escape(trial_numbers(n))}): {html.escape(a)}</li>"
            for s, a, n in advice) + "</ul>")
    else:
        parts.append('<p class="muted">No findings with advice.</p>')

    parts.append("<h2>Plots</h2>")
    for name, figure in figures.items():
        parts.append(f"<h3>{html.escape(name.replace('_', ' '))}</h3>")
        parts.append(_image(figure, name))
    parts.append(f'<h2>Pathology map (JSON)</h2><pre>{html.escape(json.dumps(view, indent=1))}</pre>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(study: Any, path: str | Path) -> Path:
    """Write a self-contained HTML report of `study` (opens from disk, no server) and return its path.

    Example:
        >>> write_report(optuna.load_study(study_name="digits", storage=storage), "digits.html")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report_html(study), encoding="utf-8")
    return target
