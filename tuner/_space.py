"""Search-space entries of a study file: float, int and categorical distributions, or a fixed value."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_step(step: float, low: float, high: float) -> None:
    """A step must be positive and fit inside the range (else every trial fails in Optuna)."""
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be a positive number, got {step:g}")
    if high > low and step > high - low:
        raise ValueError(f"step ({step:g}) is larger than the range {low:g}..{high:g} ({high - low:g}); "
                         f"use a step of at most {high - low:g} or widen the range")


class FloatParam(_Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _check_range(self) -> FloatParam:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g}); swap them")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0, got low={self.low:g}; use e.g. low: 1.0e-4")
        if self.log and self.step is not None:
            raise ValueError("step cannot be combined with log: true; drop one of them")
        if self.step is not None:
            _check_step(self.step, self.low, self.high)
        return self


class IntParam(_Strict):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1

    @model_validator(mode="after")
    def _check_range(self) -> IntParam:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high}); swap them")
        if self.log and self.low < 1:
            raise ValueError(f"log: true needs low >= 1, got low={self.low}")
        if self.log and self.step != 1:
            raise ValueError("step cannot be combined with log: true; drop one of them")
        _check_step(self.step, self.low, self.high)
        return self


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: list[Union[bool, int, float, str, None]] = Field(min_length=1)


Distribution = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]
Fixed = Union[bool, int, float, str, list[Union[int, float, str]]]
Param = Union[Distribution, Fixed]


def on_grid(value: float, spec: FloatParam | IntParam) -> float | int:
    """`value` inside the parameter's range and on its step grid."""
    value = min(max(value, spec.low), spec.high)
    if spec.step:
        steps = min(round((value - spec.low) / spec.step), math.floor((spec.high - spec.low) / spec.step + 1e-9))
        value = spec.low + steps * spec.step
    return int(round(value)) if isinstance(spec, IntParam) else float(value)


def representative_params(space: dict[str, Any]) -> dict[str, Any]:
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
