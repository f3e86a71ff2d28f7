"""`ActivationMonitor`: dead ReLU units and saturated tanh/sigmoid units, probed each epoch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from descentkit.callbacks._diagnosis_callback import DiagnosisCallback
from descentkit.diagnostics import DEAD_UNITS, SATURATED_ACTIVATIONS


class ActivationMonitor(DiagnosisCallback):
    """Detects dead ReLU units and saturated tanh/sigmoid units on a fixed probe batch.

    Once per `activation_freq` epochs, runs the hidden layers with a ReLU-family,
    tanh or sigmoid activation on up to 256 probe samples and records per layer
    the fraction of units that output 0 for every sample (dead) and the fraction
    of outputs beyond 0.99 in magnitude (saturated). Works on Sequential and
    functional models; subclassed models are skipped with a logged note.

    Args:
        probe_data: inputs `x`, or `(x, y)`, of the probe batch. Required unless
            `validation_data` is given.
        validation_data: `(x, y)` used as the probe when `probe_data` is None.
        stop_on: symptom name(s) among "dead_units" and "saturated_activations"
            that stop training (default: none).
        activation_freq: probe every this many epochs (default 1).
        verbose: 0 silent, 1 (default) prints a line per warning or critical
            finding, 2 prints info findings too.

    Example:

    ```python
    from descentkit.callbacks import ActivationMonitor

    monitor = ActivationMonitor(probe_data=x_val[:256])
    model.fit(x, y, epochs=5, callbacks=[monitor])
    print(monitor.record.dead_fraction)  # {layer name: [fraction per epoch]}
    ```
    """

    def __init__(
        self,
        probe_data: Any = None,
        validation_data: Any = None,
        stop_on: str | Iterable[str] | None = (),
        activation_freq: int = 1,
        verbose: int = 1,
    ) -> None:
        if probe_data is None and validation_data is None:
            raise ValueError(
                "ActivationMonitor received probe_data=None and validation_data=None; pass a batch of "
                "inputs to probe, e.g. `ActivationMonitor(probe_data=x_val[:256])`."
            )
        super().__init__(
            watched=(DEAD_UNITS, SATURATED_ACTIVATIONS),
            stop_on=stop_on,
            verbose=verbose,
            step_signals=False,
            probe_data=probe_data,
            validation_data=validation_data,
            activation_freq=activation_freq,
        )
