"""The learning-rate band a sweep found stable, on synthetic trials."""

from __future__ import annotations

import optuna

from descentkit.tuner.stable_band import stable_band

RATE = optuna.distributions.FloatDistribution(1e-4, 3.0, log=True)
State = optuna.trial.TrialState


def _trial(rate: float, reason: str | None = None, value: float = 0.9):
    if reason is None:
        return optuna.trial.create_trial(params={"learning_rate": rate}, distributions={"learning_rate": RATE},
                                         value=value, state=State.COMPLETE)
    return optuna.trial.create_trial(params={"learning_rate": rate}, distributions={"learning_rate": RATE},
                                     state=State.PRUNED, user_attrs={"prune_reason": reason})


# (rate, why it was pruned; None: completed). A plain-SGD trial at 0.8 survived among the divergers.
SWEEP = [(1e-4, "stalled_training"), (2e-4, "vanishing_gradients"), (1e-3, None), (0.01, None), (0.1, None),
         (0.5, "divergence"), (0.8, None), (1.0, "exploding_gradients"), (2.0, "divergence"), (3.0, "divergence")]


def test_band_edges_are_where_trials_diverged_and_stalled():
    band = stable_band([_trial(r, why) for r, why in SWEEP], 1e-4, 3.0)
    assert (band.upper.rate, band.upper.failed, band.upper.trials) == (0.5, 4, 5)
    assert (band.lower.rate, band.lower.failed, band.lower.trials) == (2e-4, 2, 2)
    assert (band.low, band.high) == (2e-4, 0.5)
    assert band.to_text() == [
        "learning_rate >= 0.5: 4 of 5 trials diverged or their gradients exploded",
        "learning_rate <= 0.0002: 2 of 2 trials stalled or their gradients vanished",
    ]


def test_one_diverged_trial_or_a_pruner_cut_is_not_evidence():
    trials = [_trial(0.01), _trial(0.1), _trial(3.0, "divergence"), _trial(2.0, "pruner"), _trial(1e-4, "pruner")]
    band = stable_band(trials, 1e-4, 3.0)
    assert band.upper is None and band.lower is None and (band.low, band.high) == (1e-4, 3.0)
