"""The learning-rate range test of a study (Smith 2017).

`lr_range_test` trains the study's model (its representative parameters: the
first choice of each categorical, the middle of each range; momentum SGD when
the study searches it) at the study's batch size for about one epoch (at least
`min_steps` steps), the learning rate growing exponentially each step from
`min_lr` to `max_lr`. `TrainingMonitor` records every step's loss inside the
compiled step and stops the run within a few steps of divergence;
`descentkit.diagnostics.analyze_lr_range` reads the curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from descentkit.studies import Dataset
from descentkit.tuner._materialize import DEFAULT_BATCH_SIZE, build_model, compile_model, sweep_dataset
from descentkit.tuner._memory import custom_gradient_names, free_keras_memory
from descentkit.tuner._space import CategoricalParam, representative_params
from descentkit.tuner.config import StudyConfig

AUTO = "auto"
DEFAULT_MIN_LR = 1e-6
DEFAULT_MAX_LR = 10.0
# One epoch of a small data set is a few dozen steps: too few points to read a
# slope from, so the test runs at least this many steps (more epochs if needed).
DEFAULT_MIN_STEPS = 100


def tested_variant(space: Mapping[str, Any]) -> str | None:
    """"momentum" when the study searches it: the SGD variant the range test runs then.

    With momentum m the step is about lr / (1 - m): a range found with plain SGD
    would be too high for the momentum trials, so the test runs with momentum (at
    its representative, middle value), and so does the first trial it proposes.
    """
    variants = space.get("optimizer")
    return "momentum" if isinstance(variants, CategoricalParam) and "momentum" in variants.choices else None


def lr_range_test(
    config: StudyConfig,
    data: Dataset | None = None,
    builder: Callable[..., Any] | None = None,
    *,
    min_lr: float = DEFAULT_MIN_LR,
    max_lr: float = DEFAULT_MAX_LR,
    min_steps: int = DEFAULT_MIN_STEPS,
    batch_size: int | None = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """Smith's learning-rate range test on the study's model, SGD variant and batch size.

    Returns a `descentkit.diagnostics.LRRange`: the band where the loss falls
    fastest, the rate where it diverges, and the range to search. `callbacks` (the
    sweep's extra Keras callbacks) join the test's `fit`.
    """
    import keras

    from descentkit.callbacks import TrainingMonitor
    from descentkit.diagnostics import analyze_lr_range, exponential_rates

    exponential_rates(min_lr, max_lr, 2)  # validates the range before any work
    data = data if data is not None else sweep_dataset(config)
    space = {k: v for k, v in config.search_space.items() if not (k == "learning_rate" and v == AUTO)}
    params: dict[str, Any] = representative_params(space)
    params.update(learning_rate=min_lr, schedule="constant")
    if tested_variant(space):
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
        compile_model(model, params, data, epochs, learning_rate=schedule)
        monitor = TrainingMonitor(stop_on=("divergence",), verbose=0, preflight=False, update_ratio_every=0)
        model.fit(data.x_train, data.y_train, batch_size=batch, epochs=epochs, callbacks=[monitor, *(callbacks or [])], verbose=0,
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
