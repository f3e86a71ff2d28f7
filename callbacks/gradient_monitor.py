"""`GradientMonitor`: exploding and vanishing gradients, from per-step, per-layer norms."""

from __future__ import annotations

from collections.abc import Iterable

from descentkit.callbacks._diagnosis_callback import DiagnosisCallback
from descentkit.diagnostics import EXPLODING_GRADIENTS, VANISHING_GRADIENTS


class GradientMonitor(DiagnosisCallback):
    """Detects exploding and vanishing gradients.

    Records, inside the compiled train step, the global and per-layer gradient
    norms and per-layer update-to-weight ratios of every optimizer step; the
    detectors run at each epoch end and weigh the norms against whether the loss
    still improves (healthy deep nets have large first/last-layer ratios).

    Args:
        stop_on: symptom name(s) among "exploding_gradients" and
            "vanishing_gradients" that stop training (default: none).
        verbose: 0 silent, 1 (default) prints a line per warning or critical
            finding, 2 prints info findings too.
        update_ratio_every: how often to record the per-layer update-to-weight
            ratio, as in `TrainingMonitor` (default None: once an epoch).

    Example:

    ```python
    from descentkit.callbacks import GradientMonitor

    monitor = GradientMonitor(stop_on="exploding_gradients")
    model.fit(x, y, epochs=5, callbacks=[monitor])
    print(monitor.record.layer_grad_norms[-1])  # per-layer norms of the last step
    print(monitor.summary())
    ```
    """

    def __init__(
        self,
        stop_on: str | Iterable[str] | None = (),
        verbose: int = 1,
        update_ratio_every: int | None = None,
    ) -> None:
        super().__init__(
            watched=(EXPLODING_GRADIENTS, VANISHING_GRADIENTS),
            stop_on=stop_on,
            verbose=verbose,
            step_signals=True,
            update_ratio_every=update_ratio_every,
        )
