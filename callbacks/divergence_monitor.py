"""`DivergenceMonitor`: stops training within a few steps of a non-finite loss or gradient."""

from __future__ import annotations

from descentkit.callbacks._diagnosis_callback import MAX_CHECK_EVERY, DiagnosisCallback
from descentkit.diagnostics import DIVERGENCE


class DivergenceMonitor(DiagnosisCallback):
    """Detects divergence (non-finite or exploding loss) and, by default, stops training.

    Records the gradient norms and non-finite gradient counts of every optimizer
    step inside the compiled step and looks at them every `check_every` steps, so
    training stops within `check_every` (8) steps of the first non-finite loss or
    gradient (within 2N - 1 with `steps_per_execution` N > 1).

    Args:
        stop: stop training on divergence (default True); False only reports it.
        verbose: 0 silent, 1 (default) prints a line per warning or critical
            finding, 2 prints info findings too.
        check_every: how often, in optimizer steps, to look (1 to 8, default 8).

    Example:

    ```python
    from descentkit.callbacks import DivergenceMonitor

    monitor = DivergenceMonitor()
    model.fit(x, y, epochs=5, callbacks=[monitor])
    if monitor.stopped_by is not None:
        print(monitor.stopped_by)
    ```
    """

    def __init__(self, stop: bool = True, verbose: int = 1, check_every: int = MAX_CHECK_EVERY) -> None:
        super().__init__(
            watched=(DIVERGENCE,),
            stop_on=(DIVERGENCE,) if stop else (),
            verbose=verbose,
            check_every=check_every,
            step_signals=True,
            update_ratio_every=0,
        )
