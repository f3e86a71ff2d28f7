"""Reading a learning-rate range test on synthetic curves (numpy only, no training)."""

from __future__ import annotations

import numpy as np
import pytest

from descentkit.diagnostics import analyze_lr_range, exponential_rates


def _curve(rates: np.ndarray, centre: float, blowup: float | None, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    """A loss that falls fastest around `centre` (a logistic in log rate) and blows up past `blowup`."""
    fall = 1.8 / (1 + np.exp(-(np.log10(rates) - np.log10(centre)) * 3))
    loss = 2.3 - fall + np.random.default_rng(seed).normal(0, noise, len(rates))
    if blowup is not None:
        loss = loss + np.where(rates > blowup, (rates / blowup) ** 4 - 1, 0.0)
    return loss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_band_sits_on_the_steepest_descent_and_below_the_blowup(seed):
    rates = exponential_rates(1e-6, 10.0, 200)
    result = analyze_lr_range(rates, _curve(rates, centre=1e-2, blowup=0.5, seed=seed))

    assert result.band[0] <= result.steepest <= result.band[1]
    assert 3e-3 < result.steepest < 3e-2, "the logistic falls fastest at its centre, 1e-2"
    assert result.diverged_at is not None and 0.5 < result.diverged_at < 2.0
    low, high = result.search
    assert low < 1e-2 < high <= result.diverged_at / 3, "the search range holds the centre and keeps off the blow-up"
    assert high / low >= 10 - 1e-9


def test_a_nan_loss_ends_the_curve_and_is_the_divergence_rate():
    rates = exponential_rates(1e-5, 10.0, 150)
    loss = _curve(rates, centre=1e-3, blowup=None)
    loss[120:] = np.nan
    result = analyze_lr_range(rates, loss)

    assert result.diverged_at == pytest.approx(rates[120])
    assert result.search[1] <= rates[120] / 3


def test_a_curve_that_never_diverges_says_to_raise_max_lr():
    rates = exponential_rates(1e-6, 1e-2, 120)
    result = analyze_lr_range(rates, _curve(rates, centre=1e-4, blowup=None))

    assert result.diverged_at is None
    assert "raise max_lr" in result.to_text()


def test_a_loss_nonfinite_from_the_start_names_the_fix():
    rates = exponential_rates(1e-3, 10.0, 50)
    loss = np.full(50, np.nan)
    with pytest.raises(ValueError, match="lower min_lr"):
        analyze_lr_range(rates, loss)


@pytest.mark.parametrize("rates, losses, words", [
    ([0.1, 0.01], [1.0, 1.0], "increasing"),
    ([0.1, 0.2], [1.0], "equally long"),
])
def test_bad_curves_are_refused(rates, losses, words):
    with pytest.raises(ValueError, match=words):
        analyze_lr_range(rates, losses)


def test_exponential_rates_validates_the_range():
    with pytest.raises(ValueError, match="min_lr=1.0, max_lr=0.1"):
        exponential_rates(1.0, 0.1, 10)
