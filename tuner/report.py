"""A study's self-contained HTML report (best trials, pathology map, plots, advice), and the
report functions the CLI and the MLflow parent run use."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from descentkit.tuner._pathology import _fmt, _range_text, common_advice, pathology_map, pathology_text, trial_numbers
from descentkit.tuner._plots import plot_pathology_map, png_bytes, study_figures
from descentkit.tuner.results import summarize_study

TOP_TRIALS = 10
__all__ = ["common_advice", "pathology_map", "pathology_text", "plot_pathology_map", "report_html", "study_figures",
           "write_report"]


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
