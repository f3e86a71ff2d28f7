"""The base of every descentkit monitor: collect signals, run detectors, act.

A monitor fills a `TrainingRecord` (per-step gradient signals from the compiled
step, per-epoch logs, learning rate and activation probe), hands it to the
detectors of `descentkit.diagnostics`, keeps each new finding once, prints it
Keras-style and stops training on the symptoms named in `stop_on`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import keras
import numpy as np

from descentkit.callbacks._activation_probe import ActivationProbe, activation_name, probe_batch
from descentkit.callbacks._fit_data import fit_sample
from descentkit.callbacks._step_signals import StepSignalRecorder, learning_rate_in_force, target_optimizer
from descentkit.diagnostics._divergence import (
    DIVERGENCE_CONFIRM_STEPS,
    DIVERGENCE_START_FACTOR,
    DIVERGENCE_SUSTAIN_STEPS,
    starting_loss,
)
from descentkit.diagnostics import (
    DETECTORS,
    DIVERGENCE,
    PREFLIGHT_SYMPTOMS,
    SYMPTOMS,
    Finding,
    TrainingRecord,
    chance_loss,
    diagnose,
    episode_key,
    link_causes,
    preflight_checks,
    summarize,
)

# Findings of these severities stop training when their symptom is in `stop_on`;
# "info" findings are notes, never a reason to stop.
STOPPING_SEVERITIES = ("warning", "critical")
# Divergence must stop training within 8 optimizer steps of the first non-finite
# loss or gradient, so the ring buffer is checked at least every 8 steps.
MAX_CHECK_EVERY = 8


def _as_symptoms(value: str | Iterable[str] | Mapping[str, str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


class DiagnosisCallback(keras.callbacks.Callback):
    """Shared logic of the monitors; use `TrainingMonitor` or one of its narrower siblings.

    Args:
        watched: the symptoms this monitor diagnoses.
        stop_on: the symptoms (a subset of `watched`) that stop training.
        verbose: 0 silent, 1 prints warning and critical findings, 2 every finding.
        check_every: check for divergence every this many optimizer steps (1 to 8).
        step_signals: record per-step gradient signals in the compiled step.
        update_ratio_every: record the per-layer update-to-weight ratio every this
            many optimizer steps (0: never; None: once an epoch, every 8th to 64th step).
        probe_data: inputs `x` or `(x, y)` to probe hidden activations on.
        validation_data: `(x, y)` used as the probe when `probe_data` is None.
        activation_freq: probe activations every this many epochs (0: never).
        preflight: run the preflight data checks at train begin.
        preflight_data: `(x, y)` or `x` for the preflight checks; defaults to the
            probe data.
    """

    def __init__(
        self,
        *,
        watched: Iterable[str],
        stop_on: str | Iterable[str] | None = (),
        verbose: int = 1,
        check_every: int = MAX_CHECK_EVERY,
        step_signals: bool = True,
        update_ratio_every: int | None = None,
        probe_data: Any = None,
        validation_data: Any = None,
        activation_freq: int = 1,
        preflight: bool = False,
        preflight_data: Any = None,
        stop_severity: str = "warning",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if stop_severity not in STOPPING_SEVERITIES:
            raise ValueError(
                f"{name} received stop_severity={stop_severity!r}; pass one of {', '.join(map(repr, STOPPING_SEVERITIES))}."
            )
        self.stop_severities = STOPPING_SEVERITIES[STOPPING_SEVERITIES.index(stop_severity):]
        self.watched = tuple(watched)
        self.stop_on = _as_symptoms(stop_on)
        # The least severity that stops, per symptom: `stop_severity` for names, or
        # what a {symptom: severity} mapping says.
        self._stop_at: dict[str, tuple[str, ...]] = {s: self.stop_severities for s in self.stop_on}
        if isinstance(stop_on, Mapping):
            for symptom, least in stop_on.items():
                if least not in STOPPING_SEVERITIES:
                    raise ValueError(
                        f"{name} received stop_on={dict(stop_on)!r}; the severity of {symptom!r} must be one of "
                        f"{', '.join(map(repr, STOPPING_SEVERITIES))} but got {least!r}."
                    )
                self._stop_at[symptom] = STOPPING_SEVERITIES[STOPPING_SEVERITIES.index(least):]
        for symptom in self.stop_on:
            if symptom not in SYMPTOMS:
                raise ValueError(
                    f"{name} received stop_on={self.stop_on!r}, but {symptom!r} is not a symptom. "
                    f"Expected names among: {', '.join(SYMPTOMS)}."
                )
            if symptom not in self.watched:
                raise ValueError(
                    f"{name} received stop_on={self.stop_on!r}, but it does not watch {symptom!r}; "
                    f"it watches {', '.join(self.watched)}. Use TrainingMonitor to stop on any symptom."
                )
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2 but got {verbose!r}.")
        if not isinstance(check_every, int) or not 1 <= check_every <= MAX_CHECK_EVERY:
            raise ValueError(
                f"check_every must be an integer from 1 to {MAX_CHECK_EVERY} (divergence must stop "
                f"training within 8 steps) but got {check_every!r}."
            )
        if update_ratio_every is not None and (not isinstance(update_ratio_every, int) or update_ratio_every < 0):
            raise ValueError(
                f"update_ratio_every must be None (once an epoch) or a non-negative integer but got {update_ratio_every!r}."
            )
        if isinstance(activation_freq, bool) or not isinstance(activation_freq, int) or activation_freq < 0:
            raise ValueError(
                f"activation_freq must be a non-negative integer (0: no activation probe) but got {activation_freq!r}."
            )
        self.verbose = verbose
        self.check_every = check_every
        self.activation_freq = activation_freq
        self.preflight = preflight
        self.probe_data = probe_data
        self.validation_data = validation_data
        self.preflight_data = preflight_data

        self.findings: list[Finding] = []
        self.record: TrainingRecord | None = None
        self.stopped_by: Finding | None = None
        self._recorder = StepSignalRecorder(update_ratio_every=update_ratio_every) if step_signals else None
        probe_source = probe_data if probe_data is not None else validation_data
        self._probe = ActivationProbe(probe_batch(probe_source)) if probe_source is not None else None
        # Without probe data, a sample of fit's own data is taken at train begin: the
        # probe's inputs, the labels of the chance-level loss and the preflight data.
        self._sample_fit_data = probe_source is None and preflight_data is None
        self._fit_sample: tuple[Any, Any] | None = None
        self.probe_source: str | None = "probe_data" if probe_data is not None else (
            "validation_data" if validation_data is not None else None
        )
        self._detectable: tuple[str, ...] = ()  # the watched symptoms that have a detector
        self._urgent: tuple[str, ...] = ()
        self._seen: set[tuple[Any, ...]] = set()
        self._preflight_done = False
        self._epoch: int | None = None
        self._epoch_lr: float | None = None
        self._flushed_batch = 0
        self._flush_every = check_every
        self._loss_name: str | None = None
        self._watch_batches = 0
        self._chance_loss: float | None = None
        self._loss_bound: float | None = None  # `_blow_up_bound`, once fixed

    # --------------------------------------------------------------- results
    def summary(self) -> str:
        """A readable multi-line text of the findings, most severe first."""
        return summarize(self.findings)

    def findings_as_dicts(self) -> list[dict[str, Any]]:
        """The findings as a JSON-ready list of dicts."""
        return [f.to_dict() for f in self.findings]

    def to_json(self, **kwargs: Any) -> str:
        """The findings as a JSON text (a list of objects); kwargs go to `json.dumps`."""
        return json.dumps(self.findings_as_dicts(), **kwargs)

    # --------------------------------------------------------------- Keras hooks
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.stopped_by = None
        self._detectable = tuple(s for s in self.watched if s in DETECTORS)
        # Stopping on divergence needs a look every few steps; otherwise the ring
        # buffer only needs reading before it wraps.
        self._urgent = tuple(s for s in self.stop_on if s == DIVERGENCE and s in self._detectable)
        if self._recorder is not None:
            self._recorder.install(self.model, steps_per_epoch=(self.params or {}).get("steps"))
            spe = int(getattr(self.model, "steps_per_execution", 1) or 1)
            # Batch hooks come once per execution: with several steps each, look at every one.
            urgent_every = self.check_every if spe == 1 else spe
            self._flush_every = urgent_every if self._urgent else max(1, self._recorder.rows // 2)
        else:
            self._flush_every = self.check_every
        self._take_fit_sample()
        self._set_chance_level()
        self._loss_bound = None  # the chance level may have changed
        if self.preflight and not self._preflight_done:
            self._preflight_done = True
            self._run_preflight()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._flushed_batch = 0
        # Read here, not at epoch end: a ReduceLROnPlateau placed before this
        # callback would already have changed it.
        self._epoch_lr = learning_rate_in_force(self.model)
        # ...and told to the record, so a diagnosis within this epoch quotes it.
        if self.record is not None:
            self.record.current_learning_rate = self._epoch_lr

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # The start of a batch, not its end: a callback with an `on_train_batch_end` turns
        # off Keras's asynchronous batch dispatch, which cost a small model 20 % a step.
        # `batch` steps of this epoch are done; the ring buffer holds their signals,
        # the step loss included, so one read every few steps is all the per-batch work.
        if self._recorder is not None:
            self._recorder.before_batch()
        if self._watch_batches > 0:
            self._watch_batches -= 1
        elif batch - self._flushed_batch < self._flush_every:
            return
        self._flushed_batch = batch
        if self._urgent and self.stopped_by is None and self._nothing_to_see():
            return  # the steps wait in the ring for the next flush
        new_steps = self._flush()
        if not self._urgent or self.stopped_by is not None:
            return
        nonfinite = self._nonfinite_tail(new_steps) or (self._recorder is not None and self._recorder.nonfinite_loss)
        blown = self._loss_blew_up(new_steps)
        if blown:
            # A blow-up counts once it lasts (DIVERGENCE_CONFIRM_STEPS): look after every
            # batch until it is decided, so a lasting one still stops within 10 steps.
            self._watch_batches = DIVERGENCE_CONFIRM_STEPS + 2
        if nonfinite or blown or self._watch_batches > 0:
            self._diagnose(self._urgent, self._epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._flush(settle=True)
        dead, saturated = {}, {}
        if self._probe is not None and self.activation_freq and (epoch + 1) % self.activation_freq == 0:
            dead, saturated = self._probe.measure(self.model)
        record = self._ensure_record()
        record.add_epoch(
            epoch,
            logs,
            learning_rate=self._epoch_lr,
            step=self._optimizer_step(),
            dead_fraction=dead,
            saturated_fraction=saturated,
        )
        if self._detectable:
            self._diagnose(self._detectable, epoch)
        if self._recorder is not None:
            self._recorder.epoch_boundary()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._flush(settle=True)
        if self._recorder is not None:
            self._recorder.uninstall()

    # --------------------------------------------------------------- internals
    def _ensure_record(self) -> TrainingRecord:
        if self.record is None:
            names = self._recorder.layer_names if self._recorder is not None else None
            self.record = TrainingRecord(names or ())
            self.record.loss_name, self.record.chance_loss = self._loss_name, self._chance_loss
            self.record.current_learning_rate = self._epoch_lr
        return self.record

    def _flush(self, settle: bool = False) -> int:
        """Append the steps recorded since the last flush. `settle` (no batch left to run:
        the epoch or training ended) first measures a pending update ratio, and after
        it the sampled steps are counted from the record again."""
        if self._recorder is None:
            return 0
        if settle:
            self._recorder.after_last_batch()
        added = self._recorder.flush(self._ensure_record()) if self._recorder.layer_names is not None else 0
        if settle:
            self._recorder.resync_steps()
        return added

    def _nothing_to_see(self) -> bool:
        """Whether the steps since the last flush can wait: the recorder's one-read look
        finds no non-finite value and no step loss above what `_loss_blew_up` calls a
        blow-up (known once the record holds its starting steps)."""
        if self._recorder is None or self._watch_batches > 0:
            return False
        bound = self._blow_up_bound()
        return bound is not None and not self._recorder.needs_flush(bound)

    def _blow_up_bound(self) -> float | None:
        """The detector's critical rise over the start (`DIVERGENCE_START_FACTOR` x the
        starting loss), on raw step losses; fixed once the first
        `DIVERGENCE_SUSTAIN_STEPS` steps are in the record."""
        if self._loss_bound is not None:
            return self._loss_bound
        record = self.record
        if record is None or len(record.step_loss) < 2:
            return None
        head = record.step_loss[:DIVERGENCE_SUSTAIN_STEPS]
        head = head[np.isfinite(head)]
        if not len(head):
            return None
        bound = DIVERGENCE_START_FACTOR * abs(starting_loss(head, chance=record.chance_loss))
        if len(record.step_loss) >= DIVERGENCE_SUSTAIN_STEPS:
            self._loss_bound = bound
        return bound

    def _loss_blew_up(self, n: int) -> bool:
        """Whether a new step loss is far above the start (or the chance level): a cheap
        look at the tail that lets the full divergence check run mid-epoch only then
        (the detector then judges the smoothed losses)."""
        bound = self._blow_up_bound() if n else None
        return bound is not None and bool(np.any(self.record.step_loss[-n:] > bound))

    def _nonfinite_tail(self, n: int) -> bool:
        if not n or self.record is None:
            return False
        tail = slice(-n, None)
        return bool(
            np.any(self.record.nonfinite[tail] > 0)
            or not np.all(np.isfinite(self.record.grad_norm[tail]))
            # the step loss is NaN where unknown; only +-inf is a sure sign here
            or np.any(np.isinf(self.record.step_loss[tail]))
        )

    def _diagnose(self, symptoms: tuple[str, ...], epoch: int | None) -> None:
        self._accept(diagnose(self._ensure_record(), symptoms=list(symptoms)), epoch)

    def _accept(self, findings: Iterable[Finding], epoch: int | None) -> None:
        """Keep, print and act on the findings not seen before; link every finding
        that follows from another to its root (`link_causes`), old ones included."""
        new = []
        for finding in findings:
            # Detectors return one finding per episode, dated by its start: the same
            # episode seen again on a longer record has the same key.
            key = episode_key(finding)
            if key in self._seen:
                continue
            self._seen.add(key)
            new.append(key)
            self.findings.append(finding)
        if not new:
            return
        self.findings = link_causes(self.findings)
        if self.stopped_by is not None:
            self.stopped_by = next((f for f in self.findings if episode_key(f) == episode_key(self.stopped_by)), self.stopped_by)
        for finding in self.findings:
            if episode_key(finding) not in new:
                continue
            if self.verbose == 2 or (self.verbose == 1 and finding.severity != "info"):
                print(self._describe(finding, epoch), flush=True)
            if self.stopped_by is None and finding.severity in self._stop_at.get(finding.symptom, ()):
                self.stopped_by = finding
                if self.model is not None:
                    self.model.stop_training = True
                if self.verbose:
                    print(f"{type(self).__name__}: stopping training on {finding.symptom}.", flush=True)

    def _describe(self, finding: Finding, epoch: int | None) -> str:
        # Dated when seen (Keras's 0-based `epoch`, printed 1-based as its progress
        # bar does); the finding's own epoch is where its episode started.
        where = f"Epoch {epoch + 1}" if epoch is not None else "Before training"
        since = f" since epoch {finding.epoch}" if finding.epoch is not None and epoch is not None and finding.epoch != epoch + 1 else ""
        at = f" at step {finding.step}" if finding.step is not None else ""
        return (
            f"{where}: {type(self).__name__} found {finding.symptom} ({finding.severity}){since}{at}: "
            f"{finding.message} Advice: {finding.advice}"
        )

    def _optimizer_step(self) -> int | None:
        optimizer = target_optimizer(self.model)
        if optimizer is None:
            return None
        return int(keras.ops.convert_to_numpy(optimizer.iterations))

    def _take_fit_sample(self) -> None:
        """Without probe data: a fixed sample of fit's validation (else training) data,
        taken once, for the activation probe, the chance level and the preflight checks."""
        if not self._sample_fit_data or self._fit_sample is not None:
            return
        got = fit_sample(self.model)
        if got is None:
            return
        x, y, self.probe_source = got
        self._fit_sample = (x, y)
        if self._probe is None:
            self._probe = ActivationProbe(x)

    def _labels(self) -> Any:
        for data in (self.probe_data, self.validation_data, self.preflight_data, self._fit_sample):
            if isinstance(data, tuple) and len(data) in (2, 3) and data[1] is not None:
                return data[1]
        return None

    def _set_chance_level(self) -> None:
        """The loss's name and chance level, for the record (made once the recorder
        knows the layers: a subclassed model's, after its first step)."""
        model = self.model
        self._loss_name = _loss_name(getattr(model, "loss", None))
        last = model.layers[-1] if getattr(model, "layers", None) else None
        try:
            self._chance_loss = chance_loss(self._loss_name, self._labels(), _output_units(model, last))
        except (TypeError, ValueError):  # labels of an unexpected shape: no chance level
            self._chance_loss = None
        if self.record is not None:
            self.record.loss_name, self.record.chance_loss = self._loss_name, self._chance_loss

    def _run_preflight(self) -> None:
        data = self.preflight_data
        if data is None:
            data = self.probe_data if self.probe_data is not None else self.validation_data
        if data is None:
            data = self._fit_sample
        if data is None:
            return
        if isinstance(data, tuple) and len(data) in (2, 3):
            x, y = data[0], data[1]
        else:
            x, y = data, None
        model = self.model
        last = model.layers[-1] if getattr(model, "layers", None) else None
        findings = preflight_checks(
            x,
            y,
            output_activation=activation_name(last) if last is not None else None,
            loss=_loss_name(getattr(model, "loss", None)),
            output_units=_output_units(model, last),
        )
        self._accept([f for f in findings if f.symptom in PREFLIGHT_SYMPTOMS], None)


def _loss_name(loss: Any) -> str | None:
    if loss is None:
        return None
    if isinstance(loss, str):
        return loss
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        return _loss_name(loss[0])
    if isinstance(loss, keras.losses.Loss):
        fn = getattr(loss, "fn", None)  # LossFunctionWrapper subclasses
        return getattr(fn, "__name__", None) or loss.name
    return getattr(loss, "__name__", None)


def _output_units(model: Any, last_layer: Any) -> int | None:
    try:
        outputs = model.outputs
        if outputs and len(outputs) == 1 and outputs[0].shape[-1] is not None:
            return int(outputs[0].shape[-1])
    except (AttributeError, ValueError):
        pass
    units = getattr(last_layer, "units", None)
    return int(units) if units is not None else None
