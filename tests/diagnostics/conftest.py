"""Synthetic training traces for the detector tests: numbers only, no TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from descentkit.diagnostics import TrainingRecord


@dataclass
class Trace:
    """Per-step signals of a whole run plus per-epoch logs; `record(upto_step)` gives
    the `TrainingRecord` a callback would hold after that many steps (the epochs
    completed by then, and the steps of the epoch in progress)."""

    steps_per_epoch: int
    step_loss: np.ndarray
    grad_norm: np.ndarray | None = None
    layer_grad_norms: np.ndarray | None = None
    update_ratio: np.ndarray | None = None
    nonfinite: np.ndarray | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    learning_rate: float | list[float] = 0.01
    layer_names: tuple[str, ...] = ("dense", "dense_1", "dense_2")
    dead_fraction: dict[str, list[float]] = field(default_factory=dict)
    saturated_fraction: dict[str, list[float]] = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return len(self.step_loss)

    @property
    def n_epochs(self) -> int:
        return self.n_steps // self.steps_per_epoch

    def record(self, upto_step: int | None = None) -> TrainingRecord:
        upto = self.n_steps if upto_step is None else upto_step
        rec = TrainingRecord(self.layer_names)
        n_layers = len(self.layer_names)
        rates = self.learning_rate if isinstance(self.learning_rate, list) else [self.learning_rate] * self.n_epochs
        history = dict(self.history)
        history.setdefault("loss", [float(np.mean(self.step_loss[e * self.steps_per_epoch : (e + 1) * self.steps_per_epoch])) for e in range(self.n_epochs)])
        for start in range(0, upto, self.steps_per_epoch):
            stop = min(start + self.steps_per_epoch, upto)
            span = slice(start, stop)
            rec.add_steps(
                np.arange(start + 1, stop + 1),
                grad_norm=None if self.grad_norm is None else self.grad_norm[span],
                layer_grad_norms=None if self.layer_grad_norms is None else self.layer_grad_norms[span],
                nonfinite=np.zeros(stop - start) if self.nonfinite is None else self.nonfinite[span],
                update_ratio=None if self.update_ratio is None else self.update_ratio[span],
                loss=self.step_loss[span],
            )
            if stop - start < self.steps_per_epoch:
                break
            epoch = start // self.steps_per_epoch
            rec.add_epoch(
                epoch,
                {k: v[epoch] for k, v in history.items()},
                learning_rate=rates[epoch],
                step=stop,
                dead_fraction={k: v[epoch] for k, v in self.dead_fraction.items()},
                saturated_fraction={k: v[epoch] for k, v in self.saturated_fraction.items()},
            )
        assert n_layers == rec.layer_grad_norms.shape[1]
        return rec

    def epoch_records(self):
        """The record at the end of every epoch, as a callback sees it growing."""
        return [self.record((e + 1) * self.steps_per_epoch) for e in range(self.n_epochs)]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def decaying(n_steps: int, rng: np.random.Generator, *, start: float = 2.3, end: float = 0.1, noise: float = 0.0) -> np.ndarray:
    """A loss decaying exponentially from `start` to `end`, with multiplicative minibatch noise."""
    t = np.arange(n_steps) / max(n_steps - 1, 1)
    loss = end + (start - end) * np.exp(-5 * t)
    return loss * np.exp(noise * rng.standard_normal(n_steps))


def healthy_layers(n_steps: int, rng: np.random.Generator, ratio: float = 1 / 250, n_layers: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global norm, per-layer norms (first layer `ratio` of the last) and update ratios ~1e-3."""
    scale = np.geomspace(ratio, 1.0, n_layers)
    layers = 0.5 * scale[None, :] * np.exp(0.2 * rng.standard_normal((n_steps, n_layers)))
    grad = np.sqrt((layers**2).sum(axis=1))
    updates = 1e-3 * np.exp(0.2 * rng.standard_normal((n_steps, n_layers)))
    return grad, layers, updates


@pytest.fixture
def synth():
    """The trace builders, for test modules (pytest's importlib mode cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(Trace=Trace, decaying=decaying, healthy_layers=healthy_layers)
