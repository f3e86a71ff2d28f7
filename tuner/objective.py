"""The trial runner: sample, build, compile with an SGD variant, fit under diagnosis, report.

The objective metric is reported every epoch; a trial stopped by the pruner or
for a pathology ends PRUNED with `prune_reason` and its findings in user
attributes; a non-finite result is never returned (it is a pruned trial with
reason `divergence`); an exception inside a trial is recorded on the trial
(type and message) and the sweep goes on. `Checkpoint` lets a bracket continue
a trial from where its last rung stopped.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from descentkit.studies import Dataset
from descentkit.tuner import _record
from descentkit.tuner._interrupts import check_interrupted, deferred, interrupt_check
from descentkit.tuner._materialize import DEFAULT_BATCH_SIZE, build_model, compile_model, load_dataset, suggest
from descentkit.tuner._memory import custom_gradient_names, free_keras_memory, frozen_heap

# Findings kept on a trial: warnings and criticals (info findings stay in MLflow only).
RECORDED_SEVERITIES = ("warning", "critical")


def build_training_state(model: Any, data: Dataset) -> None:
    """Create the optimizer's slots and the compiled metrics' variables now, eagerly.

    Keras creates them inside the first trace of the train step, which makes
    TensorFlow trace the step twice: a second trace costs 0.2-0.3 s a trial on
    a small MLP, as much as training it for an epoch of digits. Best effort: a
    model whose metrics cannot be built this way is traced twice, as before.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return
    try:
        x, y = data.x_train[:2], data.y_train[:2]
        predicted = model(x, training=False)  # first: a model built without an input shape gets its weights
        if not getattr(optimizer, "built", False) and model.trainable_variables:
            optimizer.build(model.trainable_variables)
        model.compute_metrics(x, y, predicted, sample_weight=None)
    except Exception:  # a user's model or compile this does not fit: leave it to Keras
        pass
    finally:
        model.reset_metrics()


class Objective:
    """The per-trial function handed to `study.optimize`.

    Args:
        config: the study.
        data: its train and validation arrays (loaded once per sweep).
        builder: a Python `build_model(params[, data])` overriding the study's model.
        callbacks: extra Keras callbacks added to every trial's `fit`.
    """

    def __init__(
        self,
        config: Any,
        data: Dataset,
        builder: Callable[..., Any] | None = None,
        callbacks: list[Any] | None = None,
    ) -> None:
        self.config = config
        self.data = data
        self.builder = builder
        self.callbacks = list(callbacks or [])
        self._probe = data.x_val[:256]

    @classmethod
    def for_study(cls, config: Any) -> Objective:
        """The objective of a study file's own dataset and model (a worker process's)."""
        return cls(config, load_dataset(config))

    @contextlib.contextmanager
    def heap_frozen(self) -> Iterator[None]:
        """Run many trials with the heap alive now frozen out of the garbage collector
        (`_memory.frozen_heap`: the collect that ends each trial costs milliseconds)."""
        with frozen_heap():
            yield

    def __call__(self, trial: Any) -> float:
        return self.train(trial, until_epoch=self.config.max_epochs)[0]

    def train(self, trial: Any, until_epoch: int, resume: Checkpoint | None = None,
              keep: str | None = None) -> tuple[float, Checkpoint | None]:
        """Train `trial` up to epoch `until_epoch` (from `resume`'s epoch when given).

        Returns the best objective value so far and, when `keep` names a file, a
        checkpoint of the model and optimizer saved there to continue from later
        (successive halving's promoted trials). Raises `optuna.TrialPruned` for a
        pruned trial; an exception is recorded on the trial and re-raised.
        """
        import optuna

        trial.set_user_attr(_record.WORKER, _record.worker_id())
        kept = custom_gradient_names()
        try:
            check_interrupted()
            return self._run(trial, until_epoch, resume, keep)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:  # SIGINT or SIGTERM: the sweep re-queues the trial (_recovery.requeue_interrupted)
            _record.record_error(trial, _record.INTERRUPTED, _record.INTERRUPTED_MESSAGE)
            raise
        except Exception as exc:
            _record.record_error(trial, type(exc).__name__, str(exc))
            raise
        finally:
            free_keras_memory(keep_gradients=kept)

    def _run(self, trial: Any, until_epoch: int, resume: Checkpoint | None, keep: str | None
             ) -> tuple[float, Checkpoint | None]:
        import keras
        import optuna

        from descentkit.callbacks import OptunaPruning, TrainingMonitor
        from descentkit.diagnostics._health import epoch_health, extend_health

        config, data = self.config, self.data
        metric = config.objective.metric
        params = suggest(trial, config.search_space)  # a resumed trial gets its own values back
        start = 0 if resume is None else resume.epochs
        if config.seed is not None:
            keras.utils.set_random_seed(config.seed + trial.number + 7919 * start)
        model = build_model(config, params, data, self.builder)
        if config.model.compile == "auto" or getattr(model, "optimizer", None) is None:
            compile_model(model, params, data, config.max_epochs)
        if resume is not None:
            resume.restore(model)
        build_training_state(model, data)

        # The preflight data checks ran once, before the sweep (_materialize.check_before_trials).
        monitor = TrainingMonitor(stop_on=tuple(config.prune_on), stop_severity=config.prune_severity,
                                  probe_data=self._probe, verbose=0, preflight=False)
        pruning = OptunaPruning(trial, monitor=metric, training_monitor=monitor)
        with deferred():  # a signal is raised between steps (interrupt_check), not inside TensorFlow
            segment = model.fit(
                data.x_train,
                data.y_train,
                batch_size=int(params.get("batch_size", DEFAULT_BATCH_SIZE)),
                initial_epoch=start,
                epochs=until_epoch,
                validation_data=(data.x_val, data.y_val),
                callbacks=[monitor, pruning, interrupt_check(), *self.callbacks],
                verbose=0,
            ).history

        history = {k: list(v) for k, v in (resume.history if resume is not None else {}).items()}
        for key, values in segment.items():
            history.setdefault(key, []).extend(float(x) for x in values)
        series = [float(v) for v in history.get(metric, [])]
        findings = (list(resume.findings) if resume is not None else []) + [
            f.to_dict() for f in monitor.findings if f.severity in RECORDED_SEVERITIES]
        # Per-epoch gradient health, a few numbers an epoch: the child run's curves and,
        # for a pathological trial, its figure, drawn by whichever process logs the trial.
        health = extend_health(resume.health if resume is not None else None, epoch_health(monitor.record))
        _record.write_result(trial, series, history, health, findings)
        if not series and metric not in history:
            raise KeyError(
                f"objective metric {metric!r} is not among the logged metrics {sorted(history)}; "
                "set objective.metric in the study file to one of them"
            )

        finite = [v for v in series if math.isfinite(v)]
        reason = pruning.prune_reason
        if reason is None and (not finite or not math.isfinite(series[-1])):
            reason = "divergence"  # never hand NaN to Optuna: TPE learns nothing from FAIL
        if reason is not None:
            trial.set_user_attr(_record.PRUNE_REASON, reason)
            raise optuna.TrialPruned(f"{reason} at epoch {len(series)}")

        best = max(finite) if config.objective.direction == "maximize" else min(finite)
        trial.set_user_attr(_record.BEST_EPOCH, series.index(best))
        checkpoint = Checkpoint.save(model, keep, len(series), history, findings, health) if keep else None
        return best, checkpoint


class Checkpoint:
    """A trial's model weights and optimizer state after some epochs, in an .npz file.

    Restoring rebuilds the model from the trial's parameters (the study's own
    builder and compile, so custom layers need no registration) and loads the
    weights and every optimizer variable: momentum buffers, and the iteration
    count that keeps a learning-rate schedule where it was.
    """

    def __init__(self, path: str, epochs: int, history: dict[str, list[float]], findings: list[dict],
                 health: dict[str, Any] | None = None) -> None:
        self.path, self.epochs, self.history, self.findings = path, epochs, history, findings
        self.health = health or {}

    @classmethod
    def save(cls, model: Any, path: str, epochs: int, history: dict[str, list[float]],
             findings: list[dict], health: dict[str, Any] | None = None) -> Checkpoint:
        arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
        arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)})
        with open(path, "wb") as f:  # a file object: savez would append .npz to a bare name
            np.savez(f, **arrays)
        return cls(path, epochs, history, findings, health)

    def restore(self, model: Any) -> None:
        with np.load(self.path) as stored:
            weights = [stored[f"w{i}"] for i in range(sum(k.startswith("w") for k in stored.files))]
            state = [stored[f"o{i}"] for i in range(sum(k.startswith("o") for k in stored.files))]
        model.set_weights(weights)
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        variables = list(optimizer.variables)
        if len(variables) != len(state):
            raise RuntimeError(f"the checkpoint holds {len(state)} optimizer variables but the rebuilt "
                               f"optimizer has {len(variables)}: the model builder is not deterministic")
        for variable, value in zip(variables, state):
            variable.assign(value)
