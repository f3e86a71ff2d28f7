"""Reading a learning-rate range test: where the loss falls fastest, and where it diverges.

Smith's range test (Smith 2017, "Cyclical Learning Rates for Training Neural
Networks", section 3.3) trains for about one epoch while the learning rate grows
exponentially, step by step, from far too small to far too large, and records
the loss of every step. `analyze_lr_range` reads that curve: numbers in, numbers
out, no Keras, so a curve read back from anywhere can be analysed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# The loss is smoothed by a bias-corrected exponential moving average whose memory
# is about 5 % of the steps (at least 5): step losses of small batches are too noisy
# to differentiate, and a longer memory would drag the divergence point to the right.
SMOOTHING_FRACTION = 0.05
MIN_SMOOTHING_STEPS = 5
# Diverged: the smoothed loss climbs past 4x its best (fastai's `lr_find` stop rule),
# or, once it had fallen 10 % below its start, back above its start (worse than the
# untrained model: a ReLU net whose units die at rates above 1 settles at
# chance-level cross-entropy, 1.5x its best, and never reaches 4x), or any loss is
# non-finite.
DIVERGENCE_FACTOR = 4.0
MIN_LEARNED_FRACTION = 0.1
# The slope is read over a centred window of 10 % of the steps (a decade of rates
# when the test spans seven).
SLOPE_WINDOW_FRACTION = 0.1
# The band: around the steepest descent, the rates at which the loss falls at least
# half as fast (per unit of log learning rate) as at the steepest point.
BAND_SLOPE_FRACTION = 0.5
# The rates searched from the test: from the band's low end up to the lowest-loss
# rate, capped 3x below the divergence rate (a schedule's peak or a momentum
# overshoot must not reach it), and at least one decade wide.
SEARCH_DIVERGENCE_MARGIN = 3.0
SEARCH_MIN_WIDTH = 10.0
# The first 5 % of the steps are ignored for the steepest point: the average
# starts from the first few, noisiest, losses.
WARMUP_FRACTION = 0.05


@dataclass(frozen=True)
class LRRange:
    """The reading of a learning-rate range test.

    Attributes:
        steepest: the learning rate at which the smoothed loss fell fastest.
        band: (low, high) learning rates around `steepest` where the loss falls at
            least half as fast.
        diverged_at: the learning rate at which the loss diverged, None if it never did.
        search: (low, high): the range to search: from the band's low end to the
            lowest-loss rate, 3x below `diverged_at`, at least a decade wide.
        min_loss_at: the learning rate of the lowest smoothed loss.
        learning_rates, losses, smoothed: the curve itself, up to where it was cut.
    """

    steepest: float
    band: tuple[float, float]
    diverged_at: float | None
    search: tuple[float, float]
    min_loss_at: float
    learning_rates: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]

    def to_text(self) -> str:
        lines = [
            f"Loss falls fastest at learning rate {self.steepest:.3g} "
            f"(band {self.band[0]:.3g} - {self.band[1]:.3g}); lowest loss at {self.min_loss_at:.3g}.",
            f"Diverges at {self.diverged_at:.3g}." if self.diverged_at is not None
            else f"Did not diverge up to {self.learning_rates[-1]:.3g}: raise max_lr to find the limit.",
            f"Search learning_rate in [{self.search[0]:.3g}, {self.search[1]:.3g}] (log scale).",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the losses after divergence (NaN, inf) become None (null)."""

        def plain(value: Any) -> Any:
            if isinstance(value, (tuple, list)):
                return [plain(v) for v in value]
            if isinstance(value, float) and not np.isfinite(value):
                return None
            return value

        return {k: plain(v) for k, v in asdict(self).items()}


def exponential_rates(min_lr: float, max_lr: float, steps: int) -> np.ndarray:
    """`steps` learning rates growing exponentially from `min_lr` to `max_lr`."""
    if not 0 < min_lr < max_lr:
        raise ValueError(f"the range test needs 0 < min_lr < max_lr, got min_lr={min_lr!r}, max_lr={max_lr!r}")
    if steps < 2:
        raise ValueError(f"the range test needs at least 2 steps, got {steps!r}")
    return np.geomspace(min_lr, max_lr, steps)


def _smooth(losses: np.ndarray) -> np.ndarray:
    memory = max(MIN_SMOOTHING_STEPS, SMOOTHING_FRACTION * len(losses))
    beta = 1.0 - 1.0 / memory
    out = np.empty(len(losses))
    average = 0.0
    for i, value in enumerate(losses):
        average = beta * average + (1 - beta) * value
        out[i] = average / (1 - beta ** (i + 1))
    return out


def _slope(smooth: np.ndarray, log_rates: np.ndarray) -> np.ndarray:
    """d(loss)/d(log rate) over a centred window of `SLOPE_WINDOW_FRACTION` of the steps:
    a point-to-point derivative of even a smoothed step loss picks out single noisy steps."""
    n = len(smooth)
    half = max(MIN_SMOOTHING_STEPS // 2, int(SLOPE_WINDOW_FRACTION * n / 2))
    lo = np.clip(np.arange(n) - half, 0, n - 1)
    hi = np.clip(np.arange(n) + half, 0, n - 1)
    return (smooth[hi] - smooth[lo]) / np.maximum(log_rates[hi] - log_rates[lo], 1e-12)


def analyze_lr_range(learning_rates: Sequence[float], losses: Sequence[float]) -> LRRange:
    """Read a range test's curve: the band where the loss falls fastest, and the divergence rate.

    Args:
        learning_rates: the rate of each step, increasing.
        losses: the training loss of each step (NaN or inf once it diverged).

    Raises:
        ValueError: fewer than 10 finite steps before the loss diverged, or rates not increasing.
    """
    rates = np.asarray(learning_rates, dtype=np.float64)
    values = np.asarray(losses, dtype=np.float64)
    if rates.shape != values.shape or rates.ndim != 1:
        raise ValueError(f"learning_rates and losses must be 1-D and equally long, got {rates.shape} and {values.shape}")
    if np.any(np.diff(rates) <= 0) or np.any(rates <= 0):
        raise ValueError("learning_rates must be positive and increasing")
    bad = ~np.isfinite(values)
    end = int(np.argmax(bad)) if bad.any() else len(values)
    diverged = end if bad.any() else None
    if end < 10 and bad.any():
        raise ValueError(
            f"the loss was non-finite after {end} step(s) of the range test: lower min_lr "
            f"(the first rate was {rates[0]:.3g}) or check the data for NaN"
        )
    if end < 10:
        raise ValueError(f"the range test recorded {end} step(s); it needs at least 10 (more data or a smaller batch)")
    smooth = _smooth(values[:end])
    best = np.minimum.accumulate(smooth)
    start_loss = float(np.median(smooth[: max(1, int(WARMUP_FRACTION * end))]))
    climbed_back = (best < (1 - MIN_LEARNED_FRACTION) * start_loss) & (smooth > start_loss)
    above = np.nonzero((smooth > DIVERGENCE_FACTOR * best) | climbed_back)[0]
    if len(above):
        diverged = int(above[0])
        end = diverged
    smooth, log_rates = smooth[:end], np.log(rates[:end])
    if end < 10:
        raise ValueError(f"the loss blew up within {end} steps of the range test: lower min_lr (it was {rates[0]:.3g})")
    slope = _slope(smooth, log_rates)
    start = int(WARMUP_FRACTION * end)
    # the steepest descent on the way down to the lowest loss: past it, a loss that
    # falls again (dead ReLUs settling at chance level) is no sign of learning
    lowest = max(start, int(np.argmin(smooth)))
    steepest = start + int(np.argmin(slope[start : lowest + 1]))
    fast = slope <= BAND_SLOPE_FRACTION * slope[steepest] if slope[steepest] < 0 else np.zeros(end, dtype=bool)
    fast[steepest] = True
    low = high = steepest
    while low > 0 and fast[low - 1]:
        low -= 1
    while high < end - 1 and fast[high + 1]:
        high += 1
    band = (float(rates[low]), float(rates[high]))
    diverged_at = None if diverged is None else float(rates[diverged])
    min_loss_at = float(rates[int(np.argmin(smooth))])
    search_high = max(band[1], min_loss_at)
    if diverged_at is not None:
        search_high = min(search_high, diverged_at / SEARCH_DIVERGENCE_MARGIN)
    search_low = min(band[0], search_high / SEARCH_MIN_WIDTH)
    return LRRange(
        steepest=float(rates[steepest]),
        band=band,
        diverged_at=diverged_at,
        search=(float(search_low), float(search_high)),
        min_loss_at=min_loss_at,
        learning_rates=tuple(float(r) for r in rates[: len(values)]),
        losses=tuple(float(v) for v in values),
        smoothed=tuple(float(v) for v in smooth),
    )


def plot_lr_range(result: LRRange, title: str = "Learning-rate range test") -> Any:
    """Loss against learning rate (log scale), with the band, the steepest point and the divergence rate."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    ax = figure.subplots()
    rates = np.asarray(result.learning_rates)
    losses = np.asarray(result.losses)
    finite = np.isfinite(losses)
    ax.plot(rates[finite], losses[finite], color="tab:gray", alpha=0.4, lw=0.8, label="step loss")
    ax.plot(rates[: len(result.smoothed)], result.smoothed, color="tab:blue", lw=1.8, label="smoothed")
    ax.axvspan(*result.band, color="tab:green", alpha=0.15, label="fastest descent")
    ax.axvline(result.steepest, color="tab:green", ls="--", lw=1, label=f"steepest {result.steepest:.3g}")
    if result.diverged_at is not None:
        ax.axvline(result.diverged_at, color="tab:red", ls="--", lw=1, label=f"diverges {result.diverged_at:.3g}")
    ax.set_xscale("log")
    top = np.nanmax(result.smoothed) if len(result.smoothed) else 1.0
    low = np.nanmin(result.smoothed) if len(result.smoothed) else 0.0
    ax.set_ylim(low - 0.1 * abs(top - low), top + 0.6 * abs(top - low) + 1e-12)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return figure
