"""SGD variants and learning-rate schedules built from sampled parameters.

The parameter names are the tuner's contract with study files:
`optimizer` (sgd | momentum | nesterov), `learning_rate`, `momentum`,
`schedule` (constant | cosine | exponential | step), `decay_rate`
(exponential: factor per epoch; step: factor per drop), `step_epochs`
(epochs between drops), `clipnorm`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_LEARNING_RATE = 0.01
DEFAULT_MOMENTUM = 0.9  # the usual starting point for heavy-ball and Nesterov SGD
DEFAULT_EXPONENTIAL_DECAY = 0.9  # per epoch: 0.12x after 20 epochs
DEFAULT_STEP_DECAY = 0.5  # halve the rate at each drop


def learning_rate_schedule(params: Mapping[str, Any], steps_per_epoch: int, epochs: int) -> Any:
    """The learning rate (a float or a Keras schedule) for `params["schedule"]`."""
    import keras

    lr = float(params.get("learning_rate", DEFAULT_LEARNING_RATE))
    schedule = params.get("schedule", "constant")
    steps_per_epoch = max(1, int(steps_per_epoch))
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps_per_epoch * max(1, epochs))
    if schedule == "exponential":
        rate = float(params.get("decay_rate", DEFAULT_EXPONENTIAL_DECAY))
        return keras.optimizers.schedules.ExponentialDecay(lr, decay_steps=steps_per_epoch, decay_rate=rate)
    if schedule == "step":
        rate = float(params.get("decay_rate", DEFAULT_STEP_DECAY))
        every = int(params.get("step_epochs", max(1, epochs // 3)))
        return keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=steps_per_epoch * every, decay_rate=rate, staircase=True
        )
    raise ValueError(f"unknown schedule {schedule!r}; choose constant, cosine, exponential or step")


def build_optimizer(params: Mapping[str, Any], steps_per_epoch: int, epochs: int, learning_rate: Any = None) -> Any:
    """A `keras.optimizers.SGD` for the sampled variant, rate, momentum and schedule.

    `learning_rate` (a float or a Keras schedule) replaces the sampled rate and schedule.
    """
    import keras

    variant = params.get("optimizer", "momentum" if "momentum" in params else "sgd")
    if variant not in ("sgd", "momentum", "nesterov"):
        raise ValueError(f"unknown optimizer {variant!r}; choose sgd, momentum or nesterov")
    momentum = 0.0 if variant == "sgd" else float(params.get("momentum", DEFAULT_MOMENTUM))
    clipnorm = params.get("clipnorm")
    return keras.optimizers.SGD(
        learning_rate=learning_rate if learning_rate is not None else learning_rate_schedule(params, steps_per_epoch, epochs),
        momentum=momentum,
        nesterov=variant == "nesterov",
        clipnorm=None if clipnorm is None else float(clipnorm),
    )
