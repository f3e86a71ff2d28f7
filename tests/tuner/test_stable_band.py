"""The learning-rate band a sweep found stable, and `narrow_learning_rate: true`, on synthetic trials."""

from __future__ import annotations

import optuna
import pytest

from descentkit.tuner import ConfigError, StudyConfig
from descentkit.tuner.stable_band import BAND_ATTR, StableBandSampler, stable_band

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


def test_sampler_keeps_proposals_inside_the_band_and_stores_it():
    study = optuna.create_study(direction="maximize",
                                sampler=StableBandSampler(optuna.samplers.RandomSampler(seed=0), seed=0))
    for rate, why in SWEEP:
        study.add_trial(_trial(rate, why))
    rates = [study.ask({"learning_rate": RATE}).params["learning_rate"] for _ in range(200)]
    assert all(2e-4 <= r <= 0.5 for r in rates), "nothing beyond the edges the sweep found"
    assert min(rates) < 1e-3 and max(rates) > 0.2, "the whole band is still searched"
    stored = study.user_attrs[BAND_ATTR]
    assert (stored["low"], stored["high"], stored["narrowed"]) == (2e-4, 0.5, True)


def test_tpe_proposals_stay_in_the_band_under_a_hyperband_pruner():
    # The default TPE is multivariate (sample_relative); Hyperband shows the sampler one
    # bracket's view of the study, which has no user attributes of its own.
    from descentkit.tuner.sweep import make_sampler

    config = StudyConfig(name="t", narrow_learning_rate=True, search_space={
        "learning_rate": {"type": "float", "low": 1e-4, "high": 3.0, "log": True}})
    study = optuna.create_study(direction="maximize", sampler=make_sampler(config, 0),
                                pruner=optuna.pruners.HyperbandPruner(max_resource=9))
    for rate, why in SWEEP + [(r, None) for r in (0.002, 0.005, 0.02, 0.05, 0.2)]:
        study.add_trial(_trial(rate, why))
    rates = []
    for _ in range(30):
        trial = study.ask({"learning_rate": RATE})
        rates.append(trial.params["learning_rate"])
        study.tell(trial, 0.5)
    assert all(2e-4 <= r <= 0.5 for r in rates)
    assert study.user_attrs[BAND_ATTR]["high"] == 0.5


def test_redraws_follow_the_distributions_step():
    sampler = StableBandSampler(optuna.samplers.RandomSampler(seed=2), seed=2)
    study = optuna.create_study(sampler=sampler)
    stepped = optuna.distributions.FloatDistribution(0.0, 1.0, step=0.05)
    for rate in (0.6, 0.7, 0.8, 0.9, 1.0):
        study.add_trial(optuna.trial.create_trial(params={"learning_rate": rate}, distributions={"learning_rate": stepped},
                                                  state=State.PRUNED, user_attrs={"prune_reason": "divergence"}))
    rates = [study.ask({"learning_rate": stepped}).params["learning_rate"] for _ in range(100)]
    assert all(r <= 0.6 + 1e-9 for r in rates)
    assert all(abs(r / 0.05 - round(r / 0.05)) < 1e-6 for r in rates), "on the 0.05 grid"


def test_sampler_changes_nothing_before_there_is_evidence():
    inner = optuna.samplers.RandomSampler(seed=1)
    wrapped = optuna.create_study(sampler=StableBandSampler(optuna.samplers.RandomSampler(seed=1)))
    plain = optuna.create_study(sampler=inner)
    for _ in range(20):
        a = wrapped.ask({"learning_rate": RATE}).params["learning_rate"]
        b = plain.ask({"learning_rate": RATE}).params["learning_rate"]
        assert a == b
    assert not wrapped.user_attrs[BAND_ATTR]["narrowed"]


def test_study_file_switch_wraps_the_sampler_and_needs_a_range():
    from descentkit.tuner.sweep import make_sampler

    space = {"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}}
    config = StudyConfig(name="n", search_space=space, narrow_learning_rate=True)
    assert isinstance(make_sampler(config, 0), StableBandSampler)
    assert not isinstance(make_sampler(config.model_copy(update={"narrow_learning_rate": False}), 0), StableBandSampler)
    from descentkit.tuner.config import parse_study

    with pytest.raises(ConfigError) as error:
        parse_study({"name": "n", "search_space": {"learning_rate": 0.1}, "narrow_learning_rate": True}, "s.yaml")
    assert "narrow_learning_rate: true needs learning_rate searched as a range" in str(error.value)
    assert "\n" not in str(error.value)
