"""The learning-rate range test of a study, and `learning_rate: auto` in study files.

`lr_range_test` trains the study's model (its representative parameters: the
first choice of each categorical, the middle of each range; momentum SGD when
the study searches it) at the study's batch size for about one epoch (at least `min_steps` steps),
the learning rate growing exponentially each step from `min_lr` to `max_lr`.
`TrainingMonitor` records every step's loss inside the compiled step and stops
the run within a few steps of divergence; `descentkit.diagnostics.analyze_lr_range`
reads the curve.

A study file that says `learning_rate: auto` gets its searched range from this
test before the first trial. The range is stored on the study, so a resumed sweep
(and every worker that joins later) searches the same range.

The test also proposes a new study's first trial (`first_trial: range_test`, the
default): the learning rate in the geometric middle of the range the test would
search, the other parameters as the test trained them (the middle of each float
range, the first choice of each categorical, momentum SGD and a constant schedule
when searched). The sampler's first proposals are random; this one is informed,
so a sweep that trains it first has a good model after a few epochs instead of
after a bracket of random configurations. The searched range is not changed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from descentkit.studies import Dataset
from descentkit.tuner.budget import FIRST_TRIAL_ATTR  # on the study: what the first trial came from; on it: that it did
from descentkit.tuner.config import CategoricalParam, FloatParam, IntParam, StudyConfig
from descentkit.tuner.objective import (
    DEFAULT_BATCH_SIZE,
    build_model,
    custom_gradient_names,
    free_keras_memory,
    load_dataset,
    representative_params,
)
from descentkit.tuner.sgd import build_optimizer

AUTO = "auto"
LR_RANGE_ATTR = "learning_rate_range"
DEFAULT_MIN_LR = 1e-6
DEFAULT_MAX_LR = 10.0
# One epoch of a small data set is a few dozen steps: too few points to read a
# slope from, so the test runs at least this many steps (more epochs if needed).
DEFAULT_MIN_STEPS = 100


def _tested_variant(space: Mapping[str, Any]) -> str | None:
    """"momentum" when the study searches it: the SGD variant the range test runs then.

    With momentum m the step is about lr / (1 - m): a range found with plain SGD
    would be too high for the momentum trials, so the test runs with momentum (at
    its representative, middle value), and so does the first trial it proposes.
    """
    variants = space.get("optimizer")
    return "momentum" if isinstance(variants, CategoricalParam) and "momentum" in variants.choices else None


def wants_auto_learning_rate(config: StudyConfig) -> bool:
    return config.search_space.get("learning_rate") == AUTO


def lr_range_test(
    config: StudyConfig,
    data: Dataset | None = None,
    builder: Callable[..., Any] | None = None,
    *,
    min_lr: float = DEFAULT_MIN_LR,
    max_lr: float = DEFAULT_MAX_LR,
    min_steps: int = DEFAULT_MIN_STEPS,
    batch_size: int | None = None,
) -> Any:
    """Smith's learning-rate range test on the study's model, SGD variant and batch size.

    Returns a `descentkit.diagnostics.LRRange`: the band where the loss falls
    fastest, the rate where it diverges, and the range to search.
    """
    import keras

    from descentkit.callbacks import TrainingMonitor
    from descentkit.diagnostics import analyze_lr_range, exponential_rates

    exponential_rates(min_lr, max_lr, 2)  # validates the range before any work
    data = data if data is not None else load_dataset(config)
    space = {k: v for k, v in config.search_space.items() if not (k == "learning_rate" and v == AUTO)}
    params: dict[str, Any] = representative_params(space)
    params.update(learning_rate=min_lr, schedule="constant")
    if _tested_variant(space):
        params["optimizer"] = "momentum"
    params.pop("clipnorm", None)  # the test must see where the raw rate diverges
    batch = int(batch_size or params.get("batch_size", DEFAULT_BATCH_SIZE))
    params["batch_size"] = batch
    steps_per_epoch = math.ceil(len(data.x_train) / batch)
    epochs = max(1, math.ceil(min_steps / steps_per_epoch))
    total = epochs * steps_per_epoch
    growth = (max_lr / min_lr) ** (1.0 / max(1, total - 1))
    kept = custom_gradient_names()
    try:
        if config.seed is not None:
            keras.utils.set_random_seed(config.seed)
        model = build_model(config, params, data, builder)
        schedule = keras.optimizers.schedules.ExponentialDecay(min_lr, decay_steps=1, decay_rate=growth)
        model.compile(optimizer=build_optimizer(params, steps_per_epoch, epochs, learning_rate=schedule),
                      loss=data.loss, metrics=data.metrics)
        monitor = TrainingMonitor(stop_on=("divergence",), verbose=0, preflight=False, update_ratio_every=0)
        model.fit(data.x_train, data.y_train, batch_size=batch, epochs=epochs, callbacks=[monitor], verbose=0,
                  shuffle=True)
        steps = np.asarray(monitor.record.steps, dtype=np.float64)
        losses = np.asarray(monitor.record.step_loss, dtype=np.float64)
        if monitor.stopped_by is not None and len(steps):
            # stopped for divergence, maybe on a loss still finite (a blow-up): the
            # step after the last recorded one is where the curve diverged
            steps, losses = np.append(steps, steps[-1] + 1), np.append(losses, np.nan)
    finally:
        free_keras_memory(keep_gradients=kept)
    rates = min_lr * growth ** (steps - steps[0]) if len(steps) else steps
    return analyze_lr_range(rates, losses)


def with_learning_rate_range(config: StudyConfig, low: float, high: float) -> StudyConfig:
    """The study with `learning_rate` searched log-uniformly in [low, high]."""
    space = dict(config.search_space)
    space["learning_rate"] = FloatParam(type="float", low=float(low), high=float(high), log=True)
    return config.model_copy(update={"search_space": space})


def resolve_auto_learning_rate(
    config: StudyConfig,
    data: Dataset,
    builder: Callable[..., Any] | None,
    stored: Mapping[str, Any] | None,
) -> tuple[StudyConfig, dict[str, Any] | None]:
    """Replace `learning_rate: auto` by a range: the one stored on the study, else a fresh test.

    Returns the study and the range to store (None when nothing was `auto`).
    """
    if not wants_auto_learning_rate(config):
        return config, None
    if stored is None:
        print("descentkit: learning_rate: auto: running the learning-rate range test ...", file=sys.stderr, flush=True)
        result = lr_range_test(config, data, builder)
        stored = {"low": result.search[0], "high": result.search[1], "steepest": result.steepest,
                  "diverged_at": result.diverged_at}
        print(f"descentkit: {result.to_text()}".replace("\n", "\ndescentkit: "), file=sys.stderr, flush=True)
    return with_learning_rate_range(config, stored["low"], stored["high"]), dict(stored)


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
    if _tested_variant(searched):
        params["optimizer"] = "momentum"
    if params.get("optimizer", space.get("optimizer")) == "sgd":
        params.pop("momentum", None)  # not sampled for plain SGD (objective.suggest)
    schedules = searched.get("schedule")
    if isinstance(schedules, CategoricalParam) and "constant" in schedules.choices:
        params["schedule"] = "constant"  # the test's rate was read at a constant rate
    params["learning_rate"] = math.sqrt(low * high)
    for name, spec in searched.items():
        if isinstance(spec, (FloatParam, IntParam)) and name in params:
            params[name] = _on_grid(params[name], spec)
    return params


def _on_grid(value: float, spec: FloatParam | IntParam) -> float | int:
    """`value` inside the parameter's range and on its step grid."""
    value = min(max(value, spec.low), spec.high)
    if spec.step:
        steps = min(round((value - spec.low) / spec.step), math.floor((spec.high - spec.low) / spec.step + 1e-9))
        value = spec.low + steps * spec.step
    return int(round(value)) if isinstance(spec, IntParam) else float(value)


def propose_first_trial(study: Any, config: StudyConfig, data: Dataset, builder: Callable[..., Any] | None,
                        tested: Mapping[str, Any] | None, lock: Any) -> dict[str, Any] | None:
    """Enqueue a new study's first trial from a range test (`first_trial: range_test`).

    `tested` is the range `learning_rate: auto` has already found (no second test).
    Nothing is enqueued for a study that already has trials (a resumed sweep, or
    another worker began first), when the learning rate is not searched as a
    range, nor with `model.compile: user`. A range test that cannot read a band leaves the first trial to the
    sampler, with one line saying why. Returns the parameters enqueued.
    """
    rate = config.search_space.get("learning_rate")
    if config.first_trial != "range_test" or not isinstance(rate, FloatParam) or config.model.compile == "user":
        return None  # (compile: user: the test's SGD is not the optimizer the trials train with)

    def begun() -> bool:
        return FIRST_TRIAL_ATTR in study.user_attrs or bool(study.get_trials(deepcopy=False))

    if begun():
        return None
    if tested is None:
        print("descentkit: first trial: running a learning-rate range test ...", file=sys.stderr, flush=True)
        try:
            result = lr_range_test(config, data, builder)
        except Exception as exc:  # an optimization only: the trials will show a model that cannot train
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"descentkit: first trial: left to the sampler; the range test failed: {why}",
                  file=sys.stderr, flush=True)
            return None
        tested = {"low": result.search[0], "high": result.search[1], "steepest": result.steepest,
                  "diverged_at": result.diverged_at}
    params = first_trial_params(config.search_space, float(tested["low"]), float(tested["high"]))
    with lock:
        if begun():
            return None
        study.enqueue_trial(params, user_attrs={FIRST_TRIAL_ATTR: "range_test"})
        study.set_user_attr(FIRST_TRIAL_ATTR, {"params": params, "range_test": dict(tested)})
    shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())
    print(f"descentkit: first trial (from the range test: loss falls in [{tested['low']:.3g}, {tested['high']:.3g}]): "
          f"{shown}", file=sys.stderr, flush=True)
    return params
