"""`TrainingMonitor`: every descentkit detector on one `fit`, stopping on the symptoms you name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from types import MappingProxyType

from descentkit.callbacks._diagnosis_callback import MAX_CHECK_EVERY, DiagnosisCallback
from descentkit.diagnostics import DEAD_UNITS, DIVERGENCE, STALLED_TRAINING, SYMPTOMS

# What stops a `fit` by default: divergence (a warning is enough), and the two
# hopeless states, at critical severity only: a layer whose units all died, and a
# loss stuck at the task's chance level.
DEFAULT_STOP_ON = MappingProxyType({DIVERGENCE: "warning", DEAD_UNITS: "critical", STALLED_TRAINING: "critical"})


class TrainingMonitor(DiagnosisCallback):
    """Diagnoses every training pathology of a `fit` and stops training on the ones named.

    Records, inside the compiled train step, the global and per-layer gradient
    norms, the layers with non-finite gradients and the per-layer
    update-to-weight ratio of every optimizer step; per epoch, the logs, the
    learning rate in force and the fraction of dead ReLU and saturated
    tanh/sigmoid units on a fixed probe batch. All detectors of
    `descentkit.diagnostics` run on that record at each epoch end, and findings
    that follow from another are linked to their root (`link_causes`);
    divergence is checked every `check_every` steps (at the start of a batch,
    from the ring buffer), so training stops within `check_every` (8) optimizer
    steps of the first non-finite loss or gradient, or of a loss that blows up
    far above its start; with `steps_per_execution` N > 1 the buffer is read
    after every execution and training stops after the next one (within
    2N - 1 steps). Divergence and stalled training are judged against the
    task's chance-level loss when the loss is a cross-entropy or MSE and labels
    are at hand. The model is left exactly as it was found.

    Args:
        stop_on: symptom name(s) that stop training (`model.stop_training`) at
            `stop_severity` or above, or a `{symptom: least severity}` mapping.
            Defaults to `DEFAULT_STOP_ON`: divergence (warning or critical), and
            the hopeless states at critical severity: `dead_units` (a layer whose
            units all died) and `stalled_training` (a loss stuck at the task's
            chance level). Pass `()` to only watch.
        probe_data: inputs `x`, or `(x, y)`, of a fixed batch (up to 256 samples
            are used) to probe hidden activations on each epoch, to run the
            preflight data checks on and (with `y`) to compute the chance-level
            loss from. Defaults to None: up to 256 samples of the validation data
            `fit` receives (else of its training data) are taken at train begin;
            a Python generator is never sampled (no probe then).
        validation_data: `(x, y)` used instead when `probe_data` is None.
        verbose: 0 silent, 1 (default) prints a line per warning or critical
            finding, 2 prints info findings too.
        check_every: how often, in optimizer steps, to look for divergence (1 to 8,
            default 8).
        activation_freq: probe activations every this many epochs (default 1;
            0: no activation probe, so no dead or saturated units are seen).
        preflight: run the preflight data checks (non-finite or unnormalized
            inputs, output activation vs loss) at train begin (default True);
            needs `preflight_data` or probe data.
        preflight_data: `x` or `(x, y)` for the preflight checks (default: the
            probe data).
        update_ratio_every: record the per-layer update-to-weight ratio
            `||w_after - w_before|| / ||w_before||` every this many optimizer
            steps (NaN on the other steps; 0 never). Default None: once an epoch,
            at most every 8th and at least every 64th step, and never with
            `steps_per_execution` > 1 (there the step itself would measure it, at
            a cost on every step: pass a number to have it). Each sample copies
            the weights and costs about two small compiled calls (0.6 ms here):
            every 8th step of a small model's 1 ms steps, that was 15 % of training.
        stop_severity: the least severity of a `stop_on` finding that stops
            training: "warning" (default) or "critical" (only confident ones).

    Attributes:
        findings: the `Finding`s seen so far, in the order found.
        record: the `TrainingRecord` of signals (None before the first `fit`).
        stopped_by: the `Finding` that stopped training, or None.

    Example:

    ```python
    from descentkit.callbacks import TrainingMonitor

    monitor = TrainingMonitor(stop_on=("divergence", "exploding_gradients"), probe_data=x_val[:256])
    model.fit(x_train, y_train, epochs=10, validation_data=(x_val, y_val), callbacks=[monitor])
    print(monitor.summary())
    if monitor.stopped_by is not None:
        print("stopped:", monitor.stopped_by.symptom)
    ```
    """

    def __init__(
        self,
        stop_on: str | Iterable[str] | Mapping[str, str] | None = DEFAULT_STOP_ON,
        probe_data: Any = None,
        validation_data: Any = None,
        verbose: int = 1,
        check_every: int = MAX_CHECK_EVERY,
        activation_freq: int = 1,
        preflight: bool = True,
        preflight_data: Any = None,
        update_ratio_every: int | None = None,
        stop_severity: str = "warning",
    ) -> None:
        super().__init__(
            watched=SYMPTOMS,
            stop_on=stop_on,
            verbose=verbose,
            check_every=check_every,
            step_signals=True,
            update_ratio_every=update_ratio_every,
            probe_data=probe_data,
            validation_data=validation_data,
            activation_freq=activation_freq,
            preflight=preflight,
            preflight_data=preflight_data,
            stop_severity=stop_severity,
        )
