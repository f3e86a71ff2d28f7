"""Materialising a study: its data (the built-in loader, the user's function or arrays), a trial's
parameters sampled from its search space, and its model (the builder, compiled with the sampled
SGD variant); checked once before any trial (`check_before_trials`).
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from descentkit.studies import DATASETS, MODELS, Dataset, infer_task
from descentkit.tuner._memory import custom_gradient_names, free_keras_memory
from descentkit.tuner._space import CategoricalParam, FloatParam, IntParam, representative_params
from descentkit.tuner.config import ConfigError, StudyConfig
from descentkit.tuner.sgd import build_optimizer

DEFAULT_BATCH_SIZE = 32


def _resolve(name: str, registry: Mapping[str, Callable[..., Any]]) -> Callable[..., Any]:
    if name in registry:
        return registry[name]
    import importlib

    module_name, _, attr = name.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def as_dataset(value: Any, name: str = "dataset") -> Dataset:
    """A `Dataset` from a loader's result: a Dataset, `(x, y, x_val, y_val)` or `((x, y), (x_val, y_val))`.

    The task is inferred as from a data file (`descentkit.studies.infer_task`).
    """
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
    if y.ndim > 1 and y.shape[-1] != 1:
        raise TypeError(f"{name}: targets of shape {y.shape} look one-hot; give integer class labels instead")
    task = infer_task(np.concatenate([y.ravel(), yv.ravel()]))
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


def compile_model(model: Any, params: Mapping[str, Any], data: Dataset, epochs: int, learning_rate: Any = None) -> None:
    """Compile with the sampled SGD variant and schedule (or `learning_rate`), the task's loss and metric."""
    batch_size = int(params.get("batch_size", DEFAULT_BATCH_SIZE))
    steps_per_epoch = math.ceil(len(data.x_train) / batch_size)
    model.compile(
        optimizer=build_optimizer(params, steps_per_epoch, epochs, learning_rate=learning_rate),
        loss=data.loss,
        metrics=data.metrics,
    )


def sweep_dataset(config: StudyConfig, data: Dataset | tuple | None = None) -> Dataset:
    """The user's arrays, or the study's dataset; a mistake in either is a one-line ConfigError."""
    try:
        return as_dataset(data, name="data") if data is not None else load_dataset(config)
    except OptionError as exc:
        raise ConfigError(str(exc)) from None
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise ConfigError(f"dataset: {exc}") from None


def check_before_trials(config: StudyConfig, data: Dataset, builder: Callable[..., Any] | None = None) -> list[Any]:
    """Checks run once per sweep, before any trial: the objective metric is one
    `fit` will log, the model's output fits the data, and the data passes the
    preflight checks. A problem that would fail every trial raises ConfigError;
    warnings are printed and returned."""
    from descentkit.diagnostics import preflight_checks

    if config.model.compile == "auto" and config.objective.metric not in logged_metrics(data):
        raise ConfigError(
            f"objective.metric: {config.objective.metric!r} is not logged for a {data.task} task; "
            f"choose one of {', '.join(logged_metrics(data))}"
        )
    params = representative_params(config.search_space)
    kept = custom_gradient_names()
    try:
        model = build_model(config, params, data, builder)
    except OptionError as exc:
        raise ConfigError(str(exc)) from None
    except Exception as exc:  # maybe only these parameters: let the trials show it
        print(f"descentkit: warning: building the model with {params} raised {type(exc).__name__}: {exc}", file=sys.stderr)
        model = None
    try:
        if model is not None:
            check_model_output(model, data)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None
    finally:
        free_keras_memory(keep_gradients=kept)
    findings = preflight_checks(
        data.x_train, data.y_train,
        output_activation=data.output_activation, loss=data.loss, output_units=data.output_units,
    )
    for finding in findings:
        if finding.severity == "critical":
            raise ConfigError(f"dataset: {finding.message} {finding.advice}")
        print(f"descentkit: warning: {finding}", file=sys.stderr)
    return findings
