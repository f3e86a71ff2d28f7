"""The Optuna objective: sample, build, compile with an SGD variant, fit under diagnosis, report.

Semantics (shared/DESIGN.md, Optuna semantics): the objective metric is
reported every epoch; a trial stopped by the pruner or for a pathology ends
PRUNED with `prune_reason` and its findings in user attributes; a non-finite
result is never returned (it is a pruned trial with reason `divergence`); an
exception inside a trial is recorded on the trial (type and message) and the
sweep goes on.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import math
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import numpy as np

from descentkit.studies import DATASETS, MODELS, Dataset
from descentkit.tuner.budget import INTERRUPTED, WORKER_ATTR, check_interrupted, worker_id
from descentkit.tuner.config import CategoricalParam, FloatParam, IntParam, StudyConfig
from descentkit.tuner.sgd import build_optimizer

DEFAULT_BATCH_SIZE = 32
# Findings kept on a trial: warnings and criticals (info findings stay in MLflow only).
RECORDED_SEVERITIES = ("warning", "critical")


def _resolve(name: str, registry: Mapping[str, Callable[..., Any]]) -> Callable[..., Any]:
    if name in registry:
        return registry[name]
    import importlib

    module_name, _, attr = name.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def as_dataset(value: Any, name: str = "dataset") -> Dataset:
    """A `Dataset` from a loader's result: a Dataset, `(x, y, x_val, y_val)` or `((x, y), (x_val, y_val))`."""
    if isinstance(value, Dataset):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (tuple, list)) for v in value):
        value = (*value[0], *value[1])
    if not (isinstance(value, (tuple, list)) and len(value) == 4):
        raise TypeError(
            f"{name} must return a descentkit.studies.Dataset, (x, y, x_val, y_val) or ((x, y), (x_val, y_val)); "
            f"got {type(value).__name__}"
        )
    x, y, xv, yv = (np.asarray(a) for a in value)
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0):
        task = "regression"
    elif y.ndim == 1 or y.shape[-1] == 1:
        task = "binary" if len(np.unique(np.concatenate([y.ravel(), yv.ravel()]))) == 2 else "multiclass"
    else:
        raise TypeError(f"{name}: targets of shape {y.shape} look one-hot; give integer class labels instead")
    if task != "regression":
        y, yv = y.astype("int64").reshape(len(y)), yv.astype("int64").reshape(len(yv))
    return Dataset(x, y, xv, yv, task=task, name=name)


class OptionError(ValueError):
    """A dataset or model option the loader or builder does not take."""


def check_options(fn: Callable[..., Any], options: Mapping[str, Any], where: str, skip: int = 0) -> None:
    """ValueError naming an option `fn` does not take, with the closest one it does.

    `skip`: leading positional parameters filled by the tuner (params, data).
    """
    import difflib

    parameters = list(inspect.signature(fn).parameters.values())[skip:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    accepted = [p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in options:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"accepted: {', '.join(accepted) or 'none'}"
            raise OptionError(f"{where}.options.{key}: unknown option; {hint}")


def load_dataset(config: StudyConfig) -> Dataset:
    """The study's train and validation data (built-in loader or the user's function)."""
    if config.dataset is None:
        raise ValueError("the study names no dataset; add `dataset:` to the study file (a built-in name or module:function) or pass data=")
    loader = _resolve(config.dataset.name, DATASETS)
    options = dict(config.dataset.options)
    check_options(loader, options, "dataset")
    if config.dataset.name in DATASETS and config.seed is not None:
        options.setdefault("seed", config.seed)
    return as_dataset(loader(**options), name=config.dataset.name)


def suggest(trial: Any, space: Mapping[str, Any]) -> dict[str, Any]:
    """Sample the search space; fixed values pass through.

    `momentum` is only sampled when the sampled `optimizer` uses it (a
    conditional space: plain SGD trials carry no meaningless momentum).
    """
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if name == "momentum" and params.get("optimizer") == "sgd":
            continue
        if isinstance(spec, FloatParam):
            params[name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log, step=spec.step)
        elif isinstance(spec, IntParam):
            params[name] = trial.suggest_int(name, spec.low, spec.high, log=spec.log, step=spec.step)
        elif isinstance(spec, CategoricalParam):
            params[name] = trial.suggest_categorical(name, spec.choices)
        else:
            params[name] = spec
    return params


def build_model(config: StudyConfig, params: dict[str, Any], data: Dataset, builder: Callable[..., Any] | None = None) -> Any:
    """Call the study's model builder with the sampled parameters (and the data, when it takes them)."""
    fn = builder or _resolve(config.model.name, MODELS)
    options = dict(config.model.options)
    accepted = inspect.signature(fn).parameters
    takes_data = (builder is None and config.model.name in MODELS) or len(accepted) - len(options) >= 2 or "data" in accepted
    check_options(fn, options, "model", skip=2 if takes_data else 1)
    if takes_data:
        return fn(params, data, **options)
    return fn(params, **options)


def representative_params(space: Mapping[str, Any]) -> dict[str, Any]:
    """One valid point of the search space (midpoints, first choices), for checks before a sweep."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, FloatParam):
            params[name] = math.sqrt(spec.low * spec.high) if spec.log else (spec.low + spec.high) / 2
        elif isinstance(spec, IntParam):
            params[name] = spec.low
        elif isinstance(spec, CategoricalParam):
            params[name] = spec.choices[0]
        else:
            params[name] = spec
    return params


def logged_metrics(data: Dataset) -> list[str]:
    """The per-epoch metric names `fit` logs for a model the tuner compiles."""
    names = ["loss", *data.metrics]
    return names + [f"val_{n}" for n in names]


def check_model_output(model: Any, data: Dataset) -> None:
    """ValueError with one line when the model's output cannot fit the task's targets."""
    shape = tuple(model.output_shape) if hasattr(model, "output_shape") else None
    if shape is None:
        return
    units = shape[-1]
    if units != data.output_units:
        what = {"multiclass": f"{data.num_classes} classes", "binary": "a binary target", "regression": "a scalar target"}[data.task]
        raise ValueError(
            f"the model's output has {units} units but the data has {what}; "
            f"give the last layer {data.output_units} unit(s) with activation {data.output_activation!r}"
        )


def compile_model(model: Any, params: Mapping[str, Any], data: Dataset, epochs: int) -> None:
    """Compile with the sampled SGD variant, schedule, the task's loss and metric."""
    batch_size = int(params.get("batch_size", DEFAULT_BATCH_SIZE))
    steps_per_epoch = math.ceil(len(data.x_train) / batch_size)
    model.compile(
        optimizer=build_optimizer(params, steps_per_epoch, epochs),
        loss=data.loss,
        metrics=data.metrics,
    )


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


def _custom_gradient_registry() -> dict | None:
    try:
        from tensorflow.python.framework import ops as tf_ops

        return tf_ops._gradient_registry._registry  # private: guarded
    except (ImportError, AttributeError):
        return None


def custom_gradient_names() -> frozenset[str]:
    """The `tf.custom_gradient` functions registered so far in this process."""
    return frozenset(n for n in (_custom_gradient_registry() or ()) if n.startswith("CustomGradient-"))


def free_keras_memory(keep_gradients: Collection[str] | None = None) -> None:
    """Release the graph, functions and models of the finished trial.

    Also forgets the gradient functions `tf.custom_gradient` registered while
    tracing: Keras' TF optimizer adds one per train-step trace (through
    `ReplicaContext.all_reduce`), TensorFlow never removes them, and each keeps
    its whole traced graph alive: 8 MB a trial in a digits sweep, 0.012 MB with
    this (benchmarks/memory_benchmark.py). `keep_gradients` (the names present
    before the trial) are kept, so a user's own functions traced earlier in the
    process can still be differentiated.
    """
    import keras

    registry = _custom_gradient_registry()
    if registry is not None:
        for name in [n for n in registry if n.startswith("CustomGradient-")
                     and (keep_gradients is None or n not in keep_gradients)]:
            registry.pop(name, None)
    keras.backend.clear_session(free_memory=True)  # one gc.collect() inside


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Exclude what exists now from the cyclic garbage collector while the block runs.

    A trial ends with `gc.collect()`, which otherwise walks every object of
    TensorFlow, Keras, Optuna and the data: 0.25-0.35 s a trial on 2 cores,
    more than a 1-epoch rung of a small model trains. What is alive before the
    sweep outlives its trials anyway; the garbage the trials make is still
    collected (measured: 0.01-0.03 s a collect). Objects freed by reference
    counting are freed as usual. A heap the caller froze already is left alone.
    """
    if gc.get_freeze_count():  # the caller froze its own heap: leave the collector as it is
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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
        config: StudyConfig,
        data: Dataset,
        builder: Callable[..., Any] | None = None,
        callbacks: list[Any] | None = None,
    ) -> None:
        self.config = config
        self.data = data
        self.builder = builder
        self.callbacks = list(callbacks or [])
        self._probe = data.x_val[:256]

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

        trial.set_user_attr(WORKER_ATTR, worker_id())
        kept = custom_gradient_names()
        try:
            check_interrupted()
            return self._run(trial, until_epoch, resume, keep)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:  # SIGINT or SIGTERM: the sweep re-queues the trial (budget.requeue_interrupted)
            trial.set_user_attr("error_type", INTERRUPTED)
            trial.set_user_attr("error_message", "the sweep was interrupted (SIGINT or SIGTERM); re-queued")
            raise
        except Exception as exc:
            trial.set_user_attr("error_type", type(exc).__name__)
            trial.set_user_attr("error_message", str(exc)[:1000])
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

        # The preflight data checks ran once, before the sweep (check_before_trials).
        monitor = TrainingMonitor(stop_on=tuple(config.prune_on), stop_severity=config.prune_severity,
                                  probe_data=self._probe, verbose=0, preflight=False)
        pruning = OptunaPruning(trial, monitor=metric, training_monitor=monitor)
        segment = model.fit(
            data.x_train,
            data.y_train,
            batch_size=int(params.get("batch_size", DEFAULT_BATCH_SIZE)),
            initial_epoch=start,
            epochs=until_epoch,
            validation_data=(data.x_val, data.y_val),
            callbacks=[monitor, pruning, _interrupt_check(), *self.callbacks],
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
        trial.set_user_attr("epochs_trained", len(series))
        trial.set_user_attr("history", {k: [float(x) for x in v] for k, v in history.items()})
        trial.set_user_attr("health", health)
        trial.set_user_attr("findings", findings)
        trial.set_user_attr("symptoms", sorted({f["symptom"] for f in findings}))
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
            trial.set_user_attr("prune_reason", reason)
            raise optuna.TrialPruned(f"{reason} at epoch {len(series)}")

        best = max(finite) if config.objective.direction == "maximize" else min(finite)
        trial.set_user_attr("best_epoch", series.index(best))
        checkpoint = Checkpoint.save(model, keep, len(series), history, findings, health) if keep else None
        return best, checkpoint


_interrupt_check_class: type | None = None


def _interrupt_check() -> Any:
    """A Keras callback raising a swallowed interrupt again at each epoch's end (budget.check_interrupted)."""
    global _interrupt_check_class
    if _interrupt_check_class is None:
        import keras

        class InterruptCheck(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                check_interrupted()

        _interrupt_check_class = InterruptCheck
    return _interrupt_check_class()


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
