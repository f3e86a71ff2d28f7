"""What range tests settle before a sweep's trials: `learning_rate: auto` and the first trial.

A study file that says `learning_rate: auto` gets its searched range from a
range test (`lr_find.lr_range_test`) before the first trial. The range is stored
on the study (`LR_RANGE_ATTR`), so a resumed sweep, and every worker that joins
later, searches the same range.

With `first_trial: range_test` a new study's first trial is the test's choice:
the learning rate in the geometric middle of the range the test would search,
the other parameters as the test trained them (the middle of each float range,
the first choice of each categorical, momentum SGD and a constant schedule when
searched). The searched range is not changed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

from descentkit.studies import Dataset
from descentkit.tuner import _record
from descentkit.tuner._space import CategoricalParam, FloatParam, IntParam, on_grid, representative_params
from descentkit.tuner.config import ConfigError, StudyConfig
from descentkit.tuner.lr_find import lr_range_test, tested_variant

LR_RANGE_ATTR = "learning_rate_range"  # on the study: the range `learning_rate: auto` found


def _tested(result: Any) -> dict[str, Any]:
    return {"low": result.search[0], "high": result.search[1], "steepest": result.steepest,
            "diverged_at": result.diverged_at}


def resolve_auto_learning_rate(
    config: StudyConfig,
    data: Dataset,
    builder: Callable[..., Any] | None,
    stored: Mapping[str, Any] | None,
    callbacks: list[Any] | None = None,
) -> tuple[StudyConfig, dict[str, Any] | None]:
    """Replace `learning_rate: auto` by a range: the one stored on the study, else a fresh test.

    Returns the study and the range to store (None when nothing was `auto`). A range
    test that cannot read a range raises ConfigError.
    """
    if not config.auto_learning_rate:
        return config, None
    if stored is None:
        print("descentkit: learning_rate: auto: running the learning-rate range test ...", file=sys.stderr, flush=True)
        try:
            result = lr_range_test(config, data, builder, callbacks=callbacks)
        except ValueError as exc:
            raise ConfigError(f"search_space.learning_rate: auto: {exc}") from None
        stored = _tested(result)
        print(f"descentkit: {result.to_text()}".replace("\n", "\ndescentkit: "), file=sys.stderr, flush=True)
    return config.with_learning_rate(stored["low"], stored["high"]), dict(stored)


def first_trial_params(space: Mapping[str, Any], low: float, high: float) -> dict[str, Any]:
    """The first trial's parameters from a range test that would search [low, high].

    The learning rate in the geometric middle of [low, high], kept inside the
    searched range (and on its grid); every other searched parameter as the range
    test trained (`representative_params`: the middle of a float range, the low
    end of an int range, the first choice of a categorical), with momentum SGD and
    a constant schedule where the study searches them, as the test ran. Gradient
    clipping stays as the study searches it (the test runs without, to see where
    the raw rate diverges).
    """
    searched = {name: spec for name, spec in space.items() if isinstance(spec, (FloatParam, IntParam, CategoricalParam))}
    params = representative_params(searched)
    if tested_variant(searched):
        params["optimizer"] = "momentum"
    if params.get("optimizer", space.get("optimizer")) == "sgd":
        params.pop("momentum", None)  # not sampled for plain SGD (_materialize.suggest)
    schedules = searched.get("schedule")
    if isinstance(schedules, CategoricalParam) and "constant" in schedules.choices:
        params["schedule"] = "constant"  # the test's rate was read at a constant rate
    params["learning_rate"] = math.sqrt(low * high)
    for name, spec in searched.items():
        if isinstance(spec, (FloatParam, IntParam)) and name in params:
            params[name] = on_grid(params[name], spec)
    return params


def propose_first_trial(study: Any, config: StudyConfig, data: Dataset, builder: Callable[..., Any] | None,
                        tested: Mapping[str, Any] | None, lock: Any,
                        callbacks: list[Any] | None = None) -> dict[str, Any] | None:
    """Enqueue a new study's first trial from a range test (`first_trial: range_test`).

    `tested` is the range `learning_rate: auto` has already found (no second test).
    Nothing is enqueued for a study that already has trials (a resumed sweep, or
    another worker began first), when the learning rate is not searched as a
    range, nor with `model.compile: user`. A range test that cannot read a band leaves the first trial to the
    sampler, with one line saying why. Returns the parameters enqueued.
    """
    rate = config.search_space.get("learning_rate")
    if config.first_trial != _record.RANGE_TEST or not isinstance(rate, FloatParam) or config.model.compile == "user":
        return None  # (compile: user: the test's SGD is not the optimizer the trials train with)

    def begun() -> bool:
        return _record.FIRST_TRIAL in study.user_attrs or bool(study.get_trials(deepcopy=False))

    if begun():
        return None
    if tested is None:
        print("descentkit: first trial: running a learning-rate range test ...", file=sys.stderr, flush=True)
        try:
            result = lr_range_test(config, data, builder, callbacks=callbacks)
        except Exception as exc:  # an optimization only: the trials will show a model that cannot train
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"descentkit: first trial: left to the sampler; the range test failed: {why}",
                  file=sys.stderr, flush=True)
            return None
        tested = _tested(result)
    params = first_trial_params(config.search_space, float(tested["low"]), float(tested["high"]))
    with lock:
        if begun():
            return None
        study.enqueue_trial(params, user_attrs={_record.FIRST_TRIAL: _record.RANGE_TEST})
        study.set_user_attr(_record.FIRST_TRIAL, {"params": params, _record.RANGE_TEST: dict(tested)})
    shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())
    print(f"descentkit: first trial (from the range test: loss falls in [{tested['low']:.3g}, {tested['high']:.3g}]): "
          f"{shown}", file=sys.stderr, flush=True)
    return params
