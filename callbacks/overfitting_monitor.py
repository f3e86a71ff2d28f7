"""`OverfittingMonitor`: validation loss rising while training loss falls."""

from __future__ import annotations

from descentkit.callbacks._diagnosis_callback import DiagnosisCallback
from descentkit.diagnostics import OVERFITTING


class OverfittingMonitor(DiagnosisCallback):
    """Detects overfitting from the per-epoch training and validation logs.

    Needs `validation_data` (or `validation_split`) in `fit`; it adds no work to
    the train step.

    Args:
        stop: stop training when overfitting is found (default False).
        verbose: 0 silent, 1 (default) prints a line per warning or critical
            finding, 2 prints info findings too.

    Example:

    ```python
    from descentkit.callbacks import OverfittingMonitor

    monitor = OverfittingMonitor(stop=True)
    model.fit(x, y, epochs=50, validation_split=0.2, callbacks=[monitor])
    print(monitor.summary())
    ```
    """

    def __init__(self, stop: bool = False, verbose: int = 1) -> None:
        super().__init__(
            watched=(OVERFITTING,),
            stop_on=(OVERFITTING,) if stop else (),
            verbose=verbose,
            step_signals=False,
        )
