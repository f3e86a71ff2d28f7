"""The diagnostic figure of one training run: losses with findings marked, learning
rate, per-layer gradient norms and update-to-weight ratios.

It reads only a `TrainingRecord` and `Finding`s, so a run read back from MLflow
draws the same figure. matplotlib is imported when a figure is drawn, and figures
are made without pyplot: no global state, no display needed (headless servers, CI).
"""

from __future__ import annotations

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


def _mark_findings(ax: Any, findings: Sequence[Finding]) -> None:
    """A vertical line at each finding's epoch (1-based, like the x axis), labelled by symptom."""
    seen: set[tuple[str, int]] = set()
    for finding in findings:
        if finding.epoch is None or (finding.symptom, finding.epoch) in seen:
            continue
        seen.add((finding.symptom, finding.epoch))
        x = finding.epoch + 1
        color = SEVERITY_COLORS.get(finding.severity, "tab:red")
        ax.axvline(x, color=color, linestyle="--", linewidth=1, alpha=0.8)
        ax.annotate(finding.symptom, xy=(x, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=7, color=color)


def plot_training(record: TrainingRecord, findings: Sequence[Finding] = (), title: str | None = None) -> Any:
    """One figure of a run's health, four panels.

    Args:
        record: the run's signals.
        findings: drawn as dashed lines at their epochs on the loss panel,
            coloured by severity.
        title: the figure's title.

    Returns:
        A `matplotlib.figure.Figure` (not attached to pyplot; `fig.savefig(path)` works).

    Example:
        >>> fig = plot_training(monitor.record, monitor.findings, title="my run")
        >>> fig.savefig("diagnostics.png")
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8), layout="constrained")
    (ax_loss, ax_lr), (ax_grad, ax_ratio) = fig.subplots(2, 2)
    epochs = np.arange(1, record.n_epochs + 1)

    loss_keys = [k for k in record.history if "loss" in k]
    if loss_keys:
        for key in loss_keys:
            ax_loss.plot(epochs, _finite(record.series(key)), marker="o", markersize=3, label=key)
        values = np.concatenate([_finite(record.series(k)) for k in loss_keys])
        if np.nanmin(values, initial=np.inf) > 0 and np.nanmax(values, initial=0) / np.nanmin(values, initial=np.inf) > 50:
            ax_loss.set_yscale("log")
        nonfinite = [e for e in range(record.n_epochs) if not np.isfinite(record.series(loss_keys[0])[e])]
        for e in nonfinite:
            ax_loss.axvspan(e + 0.5, e + 1.5, color="tab:red", alpha=0.15)
        ax_loss.legend(fontsize=8, loc="upper right")
    else:
        _empty(ax_loss, "no losses recorded")
    _mark_findings(ax_loss, findings)
    ax_loss.set(title="Losses (dashed: findings)", xlabel="epoch")

    lr = _positive(np.asarray(record.learning_rate, dtype=np.float64))
    if len(lr) and np.isfinite(lr).any():
        ax_lr.plot(epochs, lr, marker="o", markersize=3, color="tab:purple")
        ax_lr.set_yscale("log")
    else:
        _empty(ax_lr, "no learning rate recorded")
    ax_lr.set(title="Learning rate in force", xlabel="epoch")

    steps = record.steps
    layer_norms = record.layer_grad_norms
    if len(steps) and (np.isfinite(record.grad_norm).any() or np.isfinite(layer_norms).any()):
        for i in _layers_to_draw(record.layer_names):
            ax_grad.plot(steps, _positive(layer_norms[:, i]), linewidth=0.8, label=record.layer_names[i])
        ax_grad.plot(steps, _positive(record.grad_norm), color="black", linewidth=1.2, label="global")
        ax_grad.set_yscale("log")
        ax_grad.legend(fontsize=7, ncol=2, loc="upper right")
    else:
        _empty(ax_grad, "no gradient norms recorded")
    ax_grad.set(title="Gradient L2 norm per layer", xlabel="optimizer step")

    ratios = record.update_ratio
    if len(steps) and np.isfinite(ratios).any():
        for i in _layers_to_draw(record.layer_names):
            ax_ratio.plot(steps, _positive(ratios[:, i]), linewidth=0.8, label=record.layer_names[i])
        ax_ratio.axhline(HEALTHY_UPDATE_RATIO, color="0.3", linestyle=":", linewidth=1, label="1e-3 (rule of thumb)")
        ax_ratio.set_yscale("log")
        ax_ratio.legend(fontsize=7, ncol=2, loc="upper right")
    else:
        _empty(ax_ratio, "no update-to-weight ratios recorded")
    ax_ratio.set(title="Update-to-weight ratio ||dw|| / ||w||", xlabel="optimizer step")

    if title:
        fig.suptitle(title)
    return fig
