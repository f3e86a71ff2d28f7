"""The diagnostic figure of one training run: losses with findings marked, learning
rate, per-layer gradient norms, update-to-weight ratios, dead and saturated units, the findings.

It reads only a `TrainingRecord` and `Finding`s, so a run read back from MLflow
draws the same figure. matplotlib is imported when a figure is drawn, and figures
are made without pyplot: no global state, no display needed (headless servers, CI).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

from descentkit.diagnostics._finding import Finding
from descentkit.diagnostics._record import TrainingRecord

# Karpathy's rule of thumb (CS231n, "Babysitting the learning process"): updates of
# about 1e-3 of the weights' scale per step are healthy; far below, learning stalls;
# far above, it is unstable. Drawn as a reference line, not used as a threshold.
HEALTHY_UPDATE_RATIO = 1e-3
SEVERITY_COLORS = {"info": "tab:gray", "warning": "tab:orange", "critical": "tab:red"}
MAX_LAYERS_DRAWN = 12  # beyond this a legend is unreadable: the first and last layers are kept
# A series with this few points set (or set on fewer than half its steps) is drawn with markers:
# joined points alone would hide that each is one sample.
SPARSE_POINTS = 50
MAX_FINDINGS_LISTED = 8
FINDING_TEXT_WIDTH = 220  # characters of a finding kept in the list (the rest is in findings.json)
FINDING_WRAP = 95


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def _positive(values: np.ndarray) -> np.ndarray:
    values = _finite(values)
    return np.where(values > 0, values, np.nan)


def _layers_to_draw(names: Sequence[str]) -> list[int]:
    n = len(names)
    if n <= MAX_LAYERS_DRAWN:
        return list(range(n))
    half = MAX_LAYERS_DRAWN // 2
    return list(range(half)) + list(range(n - half, n))


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw(ax: Any, x: np.ndarray, y: np.ndarray, **style: Any) -> bool:
    """Plot the points of `y` that are set (not NaN), joined; markers when they are sparse.

    A series sampled every few steps (the update ratio, once an epoch) is mostly NaN:
    a plain `plot` draws no segment between two NaN-separated points, so only its
    finite points are drawn. Returns whether anything was drawn."""
    x, y = np.asarray(x), np.asarray(y, dtype=np.float64)
    seen = ~np.isnan(y)
    if not seen.any():
        return False
    sparse = seen.sum() <= SPARSE_POINTS or seen.sum() < len(y) / 2
    if sparse:
        style = {"marker": "o", "markersize": 3, **style}
    ax.plot(x[seen], y[seen], **style)
    return True


def _finding_epoch(finding: Finding) -> int:
    """The epoch a finding is drawn at: `Finding.epoch`, 1-based like the x axis."""
    return finding.epoch


def _mark_findings(ax: Any, findings: Sequence[Finding]) -> list[tuple[str, Finding]]:
    """A dashed line at each finding's epoch, numbered; returns (number, finding) for the list.

    Several findings at one epoch share one line and one label ("1,2"): labels of
    their own, rotated along the line, overlapped on a run that went wrong in one place."""
    numbered: list[tuple[str, Finding]] = []
    at: dict[int, list[str]] = {}
    worst: dict[int, str] = {}
    rank = {s: i for i, s in enumerate(SEVERITY_COLORS)}
    seen: set[tuple[str, int]] = set()
    for finding in findings:
        if finding.epoch is None or (finding.symptom, finding.epoch) in seen:
            continue
        seen.add((finding.symptom, finding.epoch))
        label = str(len(numbered) + 1)
        numbered.append((label, finding))
        x = _finding_epoch(finding)
        at.setdefault(x, []).append(label)
        if rank.get(finding.severity, 2) >= rank.get(worst.get(x, "info"), 0):
            worst[x] = finding.severity
    for x, labels in at.items():
        color = SEVERITY_COLORS.get(worst[x], "tab:red")
        ax.axvline(x, color=color, linestyle="--", linewidth=1, alpha=0.8)
        ax.annotate(",".join(labels), xy=(x, 1.0), xycoords=("data", "axes fraction"), xytext=(0, -2),
                    textcoords="offset points", ha="center", va="top", fontsize=8, color=color, fontweight="bold",
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": color, "linewidth": 0.6})
    return numbered


def _list_findings(ax: Any, numbered: Sequence[tuple[str, Finding]]) -> None:
    ax.set_axis_off()
    ax.set_title("Findings (numbered on the loss panel)")
    if not numbered:
        ax.text(0.5, 0.5, "no findings", ha="center", va="center", transform=ax.transAxes, color="0.4")
        return
    blocks = []
    for label, finding in numbered[:MAX_FINDINGS_LISTED]:
        text = f"{label}. epoch {_finding_epoch(finding)}: {finding.symptom} ({finding.severity}). {finding.message}"
        wrapped = textwrap.wrap(textwrap.shorten(text, FINDING_TEXT_WIDTH, placeholder="..."), FINDING_WRAP)
        blocks.append(("\n".join(wrapped), len(wrapped), SEVERITY_COLORS.get(finding.severity, "black")))
    if len(numbered) > MAX_FINDINGS_LISTED:
        blocks.append((f"... and {len(numbered) - MAX_FINDINGS_LISTED} more (findings.json)", 1, "0.3"))
    line = min(0.08, 1.0 / (sum(n for _, n, _ in blocks) + len(blocks)))
    y = 1.0
    for text, n, color in blocks:
        ax.text(0.0, y, text, transform=ax.transAxes, va="top", ha="left", fontsize=7.5, color=color)
        y -= line * (n + 1)


def plot_training(record: TrainingRecord, findings: Sequence[Finding] = (), title: str | None = None) -> Any:
    """One figure of a run's health, six panels: losses with the findings marked, the
    learning rate, per-layer gradient norms, update-to-weight ratios, dead and
    saturated fractions, and the findings listed.

    Args:
        record: the run's signals (per step, or one row per epoch: `health_record`).
        findings: drawn as numbered dashed lines at their epochs on the loss panel,
            coloured by severity, and listed in the last panel.
        title: the figure's title.

    Returns:
        A `matplotlib.figure.Figure` (not attached to pyplot; `fig.savefig(path)` works).

    Example:
        >>> fig = plot_training(monitor.record, monitor.findings, title="my run")
        >>> fig.savefig("diagnostics.png")
    """
    from matplotlib.figure import Figure

    # Fixed margins: a constrained layout draws the figure once more to measure it (a
    # third of the time to render this one).
    fig = Figure(figsize=(12, 10.5))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.05, top=0.93, hspace=0.38, wspace=0.16)
    (ax_loss, ax_lr), (ax_grad, ax_ratio), (ax_units, ax_text) = fig.subplots(3, 2)
    epochs = np.arange(1, record.n_epochs + 1)

    loss_keys = [k for k in record.history if "loss" in k]
    drawn = [key for key in loss_keys if _draw(ax_loss, epochs, _finite(record.series(key)), label=key)]
    if drawn:
        values = np.concatenate([_finite(record.series(k)) for k in drawn])
        if np.nanmin(values, initial=np.inf) > 0 and np.nanmax(values, initial=0) / np.nanmin(values, initial=np.inf) > 50:
            ax_loss.set_yscale("log")
        ax_loss.legend(fontsize=8, loc="best")
    if loss_keys:
        main = record.series(loss_keys[0])
        for e in range(record.n_epochs):
            if not np.isfinite(main[e]):
                ax_loss.axvspan(e + 0.5, e + 1.5, color="tab:red", alpha=0.15)
        if not drawn:
            ax_loss.text(0.5, 0.5, "no finite loss", ha="center", va="center", transform=ax_loss.transAxes, color="tab:red")
    else:
        _empty(ax_loss, "no losses recorded")
    numbered = _mark_findings(ax_loss, findings)
    ax_loss.set(title="Losses (red band: non-finite; dashed: findings)", xlabel="epoch")

    lr = _positive(np.asarray(record.learning_rate, dtype=np.float64))
    if _draw(ax_lr, epochs, lr, color="tab:purple"):
        ax_lr.set_yscale("log")
    else:
        _empty(ax_lr, "no learning rate recorded")
    ax_lr.set(title="Learning rate in force", xlabel="epoch")

    steps = record.steps
    drawn_grad = False
    for i in _layers_to_draw(record.layer_names):
        drawn_grad |= _draw(ax_grad, steps, _positive(record.layer_grad_norms[:, i]), linewidth=0.8,
                            label=record.layer_names[i])
    drawn_grad |= _draw(ax_grad, steps, _positive(record.grad_norm), color="black", linewidth=1.2, label="global")
    # A non-finite gradient has no place on a log axis: its steps are shaded instead.
    overflow = np.isinf(record.grad_norm) | (np.nan_to_num(record.nonfinite) > 0)
    if drawn_grad:
        ax_grad.set_yscale("log")
    elif not overflow.any():
        _empty(ax_grad, "no gradient norms recorded")
    if overflow.any():
        ax_grad.vlines(steps[overflow], 0, 1, transform=ax_grad.get_xaxis_transform(), color="tab:red", alpha=0.35,
                       linewidth=2, label="non-finite gradient")
        if not drawn_grad:
            ax_grad.text(0.5, 0.5, "no finite gradient norm", ha="center", va="center", transform=ax_grad.transAxes,
                         color="tab:red")
            ax_grad.set_yticks([])
    if drawn_grad or overflow.any():
        ax_grad.legend(fontsize=7, ncol=2, loc="upper right")
    ax_grad.set(title="Gradient L2 norm per layer", xlabel="optimizer step")

    drawn_ratio = False
    for i in _layers_to_draw(record.layer_names):
        drawn_ratio |= _draw(ax_ratio, steps, _positive(record.update_ratio[:, i]), linewidth=0.8,
                             label=record.layer_names[i])
    if drawn_ratio:
        ax_ratio.axhline(HEALTHY_UPDATE_RATIO, color="0.3", linestyle=":", linewidth=1, label="1e-3 (rule of thumb)")
        ax_ratio.set_yscale("log")
        ax_ratio.legend(fontsize=7, ncol=2, loc="upper right")
    else:
        _empty(ax_ratio, "no update-to-weight ratios recorded")
    ax_ratio.set(title="Update-to-weight ratio ||dw|| / ||w||", xlabel="optimizer step")

    drawn_units = False
    for table, style, what in ((record.dead_fraction, "-", "dead"), (record.saturated_fraction, "--", "saturated")):
        for layer, series in list(table.items())[:MAX_LAYERS_DRAWN]:
            drawn_units |= _draw(ax_units, epochs[: len(series)], _finite(series), linestyle=style,
                                 label=f"{layer} {what}")
    if drawn_units:
        ax_units.set_ylim(-0.03, 1.03)
        ax_units.legend(fontsize=7, ncol=2, loc="upper right")
    else:
        _empty(ax_units, "no activations probed (give probe_data)")
    ax_units.set(title="Dead (solid) and saturated (dashed) units per layer", xlabel="epoch")

    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_lr, ax_units):  # epochs are whole numbers, from 1
        ax.set_xlim(0.5, max(record.n_epochs, 1) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    _list_findings(ax_text, numbered)
    if title:
        fig.suptitle(title)
    return fig
