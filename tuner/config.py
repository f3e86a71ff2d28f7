"""Study files: YAML validated into typed objects, with one-line errors naming the field.

Importing this module is cheap (pydantic and PyYAML only): the CLI validates a
study file before TensorFlow is imported, so a mistake is reported in well
under a second.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from descentkit.diagnostics import TRAINING_SYMPTOMS
from descentkit.tuner._space import CategoricalParam, FloatParam, IntParam, Param, _Strict

OPTIMIZER_VARIANTS = ("sgd", "momentum", "nesterov")
SCHEDULES = ("constant", "cosine", "exponential", "step")
SAMPLERS = ("tpe", "random", "gp", "cmaes")
PRUNERS = ("brackets", "median", "successive_halving", "hyperband", "none")

# Symptoms that end a trial PRUNED by default: the ones that make a trial
# hopeless. Overfitting, oscillation and
# saturation are reported but do not stop a trial unless the study file says so.
DEFAULT_PRUNE_ON = ("divergence", "exploding_gradients", "vanishing_gradients", "dead_units", "stalled_training")


class ConfigError(ValueError):
    """A study file or option that cannot be used; `str()` is one line naming the field."""


def _check_entry_point(value: str, what: str) -> None:
    """Import `package.module:function` now so a typo fails before any trial."""
    module_name, _, attr = value.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{value!r} is not a built-in {what} nor 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the user's module failing at import
        raise ValueError(f"cannot import module {module_name!r} ({type(exc).__name__}: {exc})") from None
    if not callable(getattr(module, attr, None)):
        raise ValueError(f"module {module_name!r} has no function {attr!r}")


def _known_or_importable(value: str, what: str, registry: Any) -> str:
    """A built-in name, or a `package.module:function` that imports now (a typo fails before any trial)."""
    if value not in registry:
        if ":" not in value:
            raise ValueError(f"unknown {what} {value!r}; built-ins: {', '.join(sorted(registry))}, "
                             "or write 'package.module:function'")
        _check_entry_point(value, what)
    return value


class DatasetSpec(_Strict):
    """A built-in dataset name or `package.module:function`, with keyword options."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        from descentkit.studies import DATASETS

        return _known_or_importable(value, "dataset", DATASETS)


class ModelSpec(_Strict):
    """A built-in model builder name or `package.module:function`, with keyword options."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    compile: Literal["auto", "user"] = "auto"

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        from descentkit.studies import MODELS

        return _known_or_importable(value, "model", MODELS)


class ObjectiveSpec(_Strict):
    metric: str = "val_accuracy"
    direction: Literal["maximize", "minimize"] = "maximize"


class SamplerSpec(_Strict):
    name: Literal["tpe", "random", "gp", "cmaes"] = "tpe"
    options: dict[str, Any] = Field(default_factory=dict)


class PrunerSpec(_Strict):
    # brackets: bracketed successive halving with checkpoint resume (`brackets.BracketRunner`)
    name: Literal["brackets", "median", "successive_halving", "hyperband", "none"] = "brackets"
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bracket_options(self) -> PrunerSpec:
        if self.name != "brackets":
            return self
        allowed = {"min_epochs": 1, "reduction_factor": 2}
        for key, value in self.options.items():
            if key not in allowed:
                raise ValueError(f"options: unknown option {key!r} for brackets; "
                                 f"choose from {', '.join(allowed)}")
            if not isinstance(value, int) or isinstance(value, bool) or value < allowed[key]:
                raise ValueError(f"options.{key} must be an integer of at least {allowed[key]}, got {value!r}")
        return self


def _shorthand(value: Any) -> Any:
    """`dataset: digits` means `dataset: {name: digits}` (same for model, sampler, pruner)."""
    return {"name": value} if isinstance(value, str) else value


class StudyConfig(_Strict):
    """A study: what to train, what to search, how to search it.

    Example (YAML):
        name: digits
        dataset: digits
        model: {name: mlp, options: {units: [128, 64]}}
        objective: {metric: val_accuracy, direction: maximize}
        max_epochs: 20
        search_space:
          learning_rate: {type: float, low: 0.001, high: 1.0, log: true}
          batch_size: {type: categorical, choices: [32, 64]}
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    seed: int | None = 0
    dataset: DatasetSpec | None = None
    model: ModelSpec = ModelSpec(name="mlp")
    objective: ObjectiveSpec = ObjectiveSpec()
    max_epochs: int = Field(20, ge=1)
    trials: int = Field(20, ge=1)
    search_space: dict[str, Param] = Field(default_factory=dict)
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    prune_on: list[str] = Field(default_factory=lambda: list(DEFAULT_PRUNE_ON))
    # Only confident findings end a trial: a warning (say, half the ReLUs of a layer
    # dead after one epoch) often recovers; a critical finding is judged hopeless.
    prune_severity: Literal["warning", "critical"] = "critical"
    # A new study's first trial: `range_test` takes its learning rate from a
    # learning-rate range test and the rest from the middle of their ranges
    # (`_range_plan.first_trial_params`); `sampler` leaves it to the sampler like every other.
    first_trial: Literal["range_test", "sampler"] = "range_test"

    _shorthands = field_validator("dataset", "model", "sampler", "pruner", mode="before")(
        classmethod(lambda cls, v: _shorthand(v))
    )

    @model_validator(mode="after")
    def _brackets_fit(self) -> StudyConfig:
        low = self.pruner.options.get("min_epochs", 1) if self.pruner.name == "brackets" else 1
        if low > self.max_epochs:
            raise ValueError(f"pruner.options.min_epochs ({low}) is above max_epochs ({self.max_epochs}); "
                             "lower it or raise max_epochs")
        return self

    @property
    def auto_learning_rate(self) -> bool:
        """Whether the learning rate's range comes from a range test (`learning_rate: auto`)."""
        return self.search_space.get("learning_rate") == "auto"

    def with_learning_rate(self, low: float, high: float) -> StudyConfig:
        """The study with `learning_rate` searched log-uniformly in [low, high]."""
        space = {**self.search_space, "learning_rate": FloatParam(type="float", low=float(low), high=float(high), log=True)}
        return self.model_copy(update={"search_space": space})

    @field_validator("prune_on")
    @classmethod
    def _symptoms(cls, value: list[str]) -> list[str]:
        for symptom in value:
            if symptom not in TRAINING_SYMPTOMS:
                raise ValueError(f"unknown symptom {symptom!r}; choose from {', '.join(TRAINING_SYMPTOMS)}")
        return value

    @field_validator("search_space")
    @classmethod
    def _reserved(cls, space: dict[str, Any]) -> dict[str, Any]:
        checks = {"optimizer": OPTIMIZER_VARIANTS, "schedule": SCHEDULES}
        for key, allowed in checks.items():
            spec = space.get(key)
            values = spec.choices if isinstance(spec, CategoricalParam) else ([spec] if spec is not None else [])
            for v in values:
                if v not in allowed:
                    raise ValueError(f"{key}: unknown choice {v!r}; choose from {', '.join(allowed)}")
        rate = space.get("learning_rate")
        if isinstance(rate, str) and rate != "auto":
            raise ValueError(
                f"learning_rate: {rate!r} is not a rate; write a number, a distribution, "
                "or auto (set the range from a learning-rate range test)"
            )
        for key in ("learning_rate", "batch_size"):
            spec = space.get(key)
            low = spec.low if isinstance(spec, (FloatParam, IntParam)) else None
            values = spec.choices if isinstance(spec, CategoricalParam) else ([spec] if isinstance(spec, (int, float)) else [])
            if (low is not None and low <= 0) or any(not isinstance(v, (int, float)) or v <= 0 for v in values):
                raise ValueError(f"{key} must be positive")
        return space


def _allowed_fields(loc: list[str]) -> list[str]:
    """The field names allowed at the location of an unknown field."""
    nested = {"dataset": DatasetSpec, "model": ModelSpec, "objective": ObjectiveSpec, "sampler": SamplerSpec, "pruner": PrunerSpec}
    if len(loc) == 1:
        model: type[BaseModel] = StudyConfig
    elif loc[0] in nested:
        model = nested[loc[0]]
    else:  # search_space.<param>.<field>: any distribution's fields
        return sorted(set(FloatParam.model_fields) | set(IntParam.model_fields) | set(CategoricalParam.model_fields))
    return list(model.model_fields)


def _format_error(exc: ValidationError, source: str) -> str:
    """The first validation error as one line: where, what, and what to write instead."""
    err = exc.errors()[0]
    # Drop union-branch labels pydantic inserts ("float", "FloatParam", ...) from the location.
    loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and (p[:1].isupper() or p in {"float", "int", "str", "bool", "list[union[int,float,str]]", "function-after[_check_range(), FloatParam]"}) or "[" in str(p))]
    where = ".".join(loc) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(loc)
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed here: {', '.join(allowed)}"
        msg = f"unknown field {loc[-1]!r}; {hint}"
    elif kind == "missing":
        msg = "required field is missing"
    elif kind == "union_tag_invalid":
        msg = "type must be one of float, int, categorical"
    elif kind == "literal_error":
        msg = f"{msg} (got {err.get('input')!r})"
    return f"{source}: {where}: {msg}"


def parse_study(data: Any, source: str = "study") -> StudyConfig:
    """Validate a mapping (the parsed YAML) into a `StudyConfig`; ConfigError on a mistake."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of fields (name:, dataset:, ...), got {type(data).__name__}")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None


def load_study(study: str | Path) -> StudyConfig:
    """A study from a built-in name or a YAML file path; ConfigError on any mistake."""
    from descentkit.studies import builtin_study_names, builtin_study_path

    text_path = str(study)
    path = Path(text_path)
    if not path.suffix and text_path in builtin_study_names():
        path = builtin_study_path(text_path)
    elif not path.is_file():
        hint = "" if path.suffix else f"; built-in studies: {', '.join(builtin_study_names())}"
        raise ConfigError(f"{text_path}: no such study file or built-in study{hint}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at line {line}); "
                          "save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}); check the path and its permissions") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    config = parse_study(data, source=str(path))
    return _relative_to(config, path.resolve().parent)


# Dataset options that name files: relative paths are read from the study file's folder.
_FILE_OPTIONS = ("path", "validation_path")


def _relative_to(config: StudyConfig, folder: Path) -> StudyConfig:
    if config.dataset is None:
        return config
    options = dict(config.dataset.options)
    for key in _FILE_OPTIONS:
        value = options.get(key)
        if isinstance(value, str) and not Path(value).expanduser().is_absolute() and (folder / value).exists():
            options[key] = str(folder / value)
    if options == config.dataset.options:
        return config
    return config.model_copy(update={"dataset": config.dataset.model_copy(update={"options": options})})
