"""The base of every detector, the dedupe key of findings, and episode bookkeeping.

A detector is a pure function of the whole `TrainingRecord`: it scans the record
causally (what it decides about epoch or step k uses only data up to k) and
returns one `Finding` per episode, dated by the episode's start. Run again on a
longer record, an ongoing episode therefore comes back as the same finding (same
symptom, epoch and step), and a caller that keeps `episode_key(finding)` of what
it has seen reports each episode once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from descentkit.diagnostics._finding import Finding
from descentkit.diagnostics._record import TrainingRecord


def episode_key(finding: Finding) -> tuple[Any, ...]:
    """The key under which a caller dedupes findings of repeated diagnoses.

    `(symptom, step)` when the finding has a step, else `(symptom, epoch)`:
    detectors date every episode by its start, so an ongoing episode keeps its key
    while the record grows, and a new episode gets a new one.
    """
    if finding.step is not None:
        return (finding.symptom, "step", finding.step)
    return (finding.symptom, "epoch", finding.epoch)


class Detector:
    """One symptom, diagnosed from a `TrainingRecord`: `detector(record) -> list[Finding]`.

    Subclasses set `symptom` and implement `__call__`; thresholds are constructor
    arguments, validated there.
    """

    symptom: str = ""

    def __call__(self, record: TrainingRecord) -> list[Finding]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------ validation
    def _positive(self, name: str, value: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{type(self).__name__}: {name} must be a positive number but got {value!r}.")
        return float(value)

    def _above_one(self, name: str, value: float) -> float:
        value = self._positive(name, value)
        if value <= 1:
            raise ValueError(f"{type(self).__name__}: {name} must be a factor greater than 1 but got {value!r}.")
        return value

    def _fraction(self, name: str, value: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"{type(self).__name__}: {name} must be a fraction strictly between 0 and 1 but got {value!r}.")
        return float(value)

    def _count(self, name: str, value: int, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{type(self).__name__}: {name} must be an integer >= {minimum} but got {value!r}.")
        return int(value)


def runs(mask: Sequence[bool] | np.ndarray, *, min_length: int = 1, merge_gap: int = 0) -> list[tuple[int, int]]:
    """`(start, end)` index pairs (end inclusive) of the runs of True in `mask`.

    Runs shorter than `min_length` are dropped; runs separated by at most
    `merge_gap` False entries count as one (so a signal flapping around its
    threshold is one episode). Both are causal: a run's start never moves when
    the mask grows.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    pairs = [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2])]
    merged: list[tuple[int, int]] = []
    for start, end in pairs:
        if merged and start - merged[-1][1] - 1 <= merge_gap:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return [(s, e) for s, e in merged if e - s + 1 >= min_length]
