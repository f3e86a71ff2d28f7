"""The learning-rate band a sweep has found stable, and `narrow_learning_rate: true`.

From the finished trials alone: above some learning rate almost every trial
diverged (or its gradients exploded); below some rate almost every trial
stalled (or its gradients vanished). `stable_band` finds both edges (at least
`MIN_EVIDENCE` trials beyond the edge, `MIN_SHARE` of them failing that way),
so a sweep can say "learning_rate >= 0.41: 9 of 10 trials diverged".

With `narrow_learning_rate: true` in a study file the sweep's sampler is
wrapped in `StableBandSampler`: a learning rate it proposes outside the band
found so far is replaced by a log-uniform draw inside it. Proposals inside the
band are kept as the sampler made them, so TPE's model of the good region is
untouched; the study's distribution never changes, so every stored trial stays
comparable. The band in force is stored on the study (`learning_rate_band`).

The band is in the raw learning rate. With momentum searched too, the step a
rate takes differs by up to 1 / (1 - momentum): divergences of high-momentum
trials can set an edge below rates that plain SGD trains well at. An edge needs
at least 80 % of the trials beyond it to have failed, so such SGD trials keep it
from forming unless the failures outnumber them four to one.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from descentkit.tuner.report import pathology

LEARNING_RATE = "learning_rate"
BAND_ATTR = "learning_rate_band"
UNSTABLE = ("divergence", "exploding_gradients")
STALLED = ("stalled_training", "vanishing_gradients")
MIN_EVIDENCE = 2
MIN_SHARE = 0.8


@dataclass(frozen=True)
class Edge:
    """One edge of the band: at `rate` and beyond, `failed` of `trials` trials failed that way."""

    rate: float
    failed: int
    trials: int


@dataclass(frozen=True)
class Band:
    low: float
    high: float
    upper: Edge | None  # the divergence edge, if found
    lower: Edge | None  # the stall edge, if found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> list[str]:
        lines = []
        if self.upper is not None:
            lines.append(f"learning_rate >= {self.upper.rate:.3g}: {self.upper.failed} of {self.upper.trials} "
                         f"trials diverged or their gradients exploded")
        if self.lower is not None:
            lines.append(f"learning_rate <= {self.lower.rate:.3g}: {self.lower.failed} of {self.lower.trials} "
                         f"trials stalled or their gradients vanished")
        return lines


def _edge(points: list[tuple[float, bool]]) -> Edge | None:
    """`points`: (rate, failed) ordered from the far end inwards. The innermost failing
    rate such that, from the far end to it, at least MIN_SHARE of the trials failed."""
    best, failed = None, 0
    for seen, (rate, bad) in enumerate(points, start=1):
        failed += bad
        if bad and failed >= MIN_EVIDENCE and failed >= MIN_SHARE * seen:
            best = Edge(rate, failed, seen)
    return best


def stable_band(trials: list[Any], low: float, high: float, name: str = LEARNING_RATE) -> Band:
    """The band inside [low, high] that the finished trials found stable.

    A trial counts against the band only when it was pruned for the symptom
    (a confident finding), not when it merely showed a warning.
    """
    points = [(float(t.params[name]), pathology(t)) for t in trials
              if t.state.is_finished() and isinstance(t.params.get(name), (int, float))]
    upper = _edge([(r, reason in UNSTABLE) for r, reason in sorted(points, key=lambda p: -p[0])])
    lower = _edge([(r, reason in STALLED) for r, reason in sorted(points, key=lambda p: p[0])])
    band_low = max(low, lower.rate) if lower is not None else low
    band_high = min(high, upper.rate) if upper is not None else high
    if band_low >= band_high:  # the edges cross: the evidence contradicts itself; search it all
        return Band(low, high, upper, lower)
    return Band(band_low, band_high, upper, lower)


class StableBandSampler(optuna.samplers.BaseSampler):
    """Wraps a sampler: learning rates it proposes outside the stable band are redrawn inside it.

    The band is read from every finished trial of the study (not only those a
    pruner shows the sampler) and kept within the distribution being sampled,
    whose `log` and `step` the redraws follow.

    Args:
        inner: the study's sampler (TPE, random, ...).
        seed: for the redraws.
        name: the parameter to keep in its band.
    """

    def __init__(self, inner: Any, seed: int | None = None, name: str = LEARNING_RATE) -> None:
        self.inner, self.name = inner, name
        self._rng = random.Random(seed)
        self._stored: dict[str, Any] | None = None

    # -- delegation
    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        params = self.inner.sample_relative(study, trial, search_space)
        if self.name in params and self.name in search_space:
            params = {**params, self.name: self._inside(study, params[self.name], search_space[self.name])}
        return params

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        value = self.inner.sample_independent(study, trial, param_name, param_distribution)
        return self._inside(study, value, param_distribution) if param_name == self.name else value

    def before_trial(self, study: Any, trial: Any) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
        self._rng.seed()

    # -- the band
    def _inside(self, study: Any, value: Any, distribution: Any) -> Any:
        if not isinstance(distribution, optuna.distributions.FloatDistribution):
            return value
        # A pruner may hand the sampler a view of the study (Hyperband: one bracket's
        # trials, and no user attributes): read and write through the storage.
        storage, study_id = study._storage, study._study_id
        band = stable_band(storage.get_all_trials(study_id, deepcopy=False),
                           distribution.low, distribution.high, self.name)
        record = {**band.to_dict(), "narrowed": (band.low, band.high) != (distribution.low, distribution.high)}
        if record != self._stored:
            self._stored = record
            storage.set_study_user_attr(study_id, BAND_ATTR, record)
        if band.low <= value <= band.high or not record["narrowed"]:
            return value
        if distribution.log:
            drawn = math.exp(self._rng.uniform(math.log(band.low), math.log(band.high)))
        else:
            drawn = self._rng.uniform(band.low, band.high)
        if distribution.step is not None:  # back on the distribution's grid, inside its range
            steps = round((drawn - distribution.low) / distribution.step)
            drawn = min(distribution.high, max(distribution.low, distribution.low + steps * distribution.step))
        return drawn
