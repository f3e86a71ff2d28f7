"""Detectors on a record that grows epoch by epoch, as a monitor's does: the per-epoch
verdicts are memoised on the record, and the findings must be those of a fresh record."""

from __future__ import annotations

import numpy as np
import pytest

from descentkit.diagnostics import SYMPTOMS, TrainingRecord, diagnose
from descentkit.diagnostics._signals import memoized

DIAGNOSED = [s for s in SYMPTOMS if s not in ("nonfinite_inputs", "unnormalized_inputs", "output_loss_mismatch")]


def _grow(full: TrainingRecord, steps_per_epoch: int):
    """Yield one record, extended epoch by epoch with the steps and logs of `full`."""
    rec = TrainingRecord(full.layer_names)
    for e in range(full.n_epochs):
        span = slice(e * steps_per_epoch, (e + 1) * steps_per_epoch)
        rec.add_steps(full.steps[span], grad_norm=full.grad_norm[span], layer_grad_norms=full.layer_grad_norms[span],
                      nonfinite=full.nonfinite[span], update_ratio=full.update_ratio[span], loss=full.step_loss[span])
        rec.add_epoch(e, {k: v[e] for k, v in full.history.items()}, learning_rate=full.learning_rate[e],
                      step=full.epoch_end_step[e],
                      dead_fraction={k: v[e] for k, v in full.dead_fraction.items()},
                      saturated_fraction={k: v[e] for k, v in full.saturated_fraction.items()})
        yield e, rec


def _traces(synth, rng):
    spe, epochs = 20, 14
    n = spe * epochs
    grad, layers, updates = synth.healthy_layers(n, rng)
    healthy = synth.Trace(spe, synth.decaying(n, rng, noise=0.05), grad, layers, updates,
                          history={"val_loss": list(np.linspace(2.0, 0.5, epochs)), "accuracy": list(np.linspace(0.3, 0.9, epochs))})
    growth = np.geomspace(1, 1e5, n)
    exploding = synth.Trace(spe, np.full(n, 2.3) * np.exp(0.01 * rng.standard_normal(n)), grad * growth,
                            layers * growth[:, None], updates)
    vanish = layers.copy()
    vanish[:, 0] *= 1e-6
    vanishing = synth.Trace(spe, np.full(n, 2.3), grad, vanish, updates * 1e-4,
                            dead_fraction={"dense": [0.2] * 3 + [1.0] * (epochs - 3)},
                            saturated_fraction={"dense_1": [0.99] * epochs})
    swings = np.repeat(2.0 + 0.8 * (-1) ** np.arange(epochs), spe)
    oscillating = synth.Trace(spe, swings, grad, layers, updates)
    return [healthy, exploding, vanishing, oscillating]


def test_findings_on_a_growing_record_equal_those_of_a_fresh_one(synth, rng):
    seen = set()
    for trace in _traces(synth, rng):
        full = trace.record()
        for e, growing in _grow(full, trace.steps_per_epoch):
            found = [f.to_dict() for f in diagnose(growing, symptoms=DIAGNOSED)]
            fresh = [f.to_dict() for f in diagnose(trace.record((e + 1) * trace.steps_per_epoch), symptoms=DIAGNOSED)]
            assert found == fresh, (e, found, fresh)
            seen.update(f["symptom"] for f in found)
    # the traces reach every detector's findings, so every memoised path was compared
    assert {"exploding_gradients", "vanishing_gradients", "dead_units", "saturated_activations",
            "oscillating_loss", "stalled_training"} <= seen


def test_a_rewritten_series_is_judged_afresh(synth, rng):
    trace = _traces(synth, rng)[0]
    record = trace.record()
    before = [f.to_dict() for f in diagnose(record, symptoms=DIAGNOSED)]
    assert not any(f["symptom"] == "stalled_training" for f in before)
    # the same record with its past rewritten to a flat, never-learning loss
    record.history["loss"] = [2.3] * record.n_epochs
    record.history["val_loss"] = [2.3] * record.n_epochs
    record.history["accuracy"] = [0.1] * record.n_epochs
    flat = TrainingRecord(record.layer_names)
    flat.add_steps(record.steps, grad_norm=record.grad_norm, layer_grad_norms=record.layer_grad_norms,
                   nonfinite=record.nonfinite, update_ratio=record.update_ratio, loss=record.step_loss)
    for e in range(record.n_epochs):
        flat.add_epoch(e, {k: v[e] for k, v in record.history.items()}, learning_rate=0.01,
                       step=record.epoch_end_step[e])
    after = [f.to_dict() for f in diagnose(record, symptoms=DIAGNOSED)]
    assert after == [f.to_dict() for f in diagnose(flat, symptoms=DIAGNOSED)]
    assert any(f["symptom"] == "stalled_training" for f in after)


@pytest.mark.parametrize("grown", [True, False])
def test_memoized_computes_only_the_new_items(grown):
    record = TrainingRecord()
    calls: list[int] = []

    def item(i: int) -> int:
        calls.append(i)
        return i * i

    series = np.arange(5.0)
    assert memoized(record, ("k",), [series], 5, item) == [0, 1, 4, 9, 16]
    longer = np.arange(8.0) if grown else np.array([0.0, 1.0, 7.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    calls.clear()
    assert memoized(record, ("k",), [longer], 8, item) == [i * i for i in range(8)]
    assert calls == ([5, 6, 7] if grown else list(range(8)))
