import numpy as np
import pytest

from descentkit.diagnostics import (
    EXPLODING_GRADIENTS,
    VANISHING_GRADIENTS,
    ExplodingGradientsDetector,
    VanishingGradientsDetector,
    episode_key,
)

STEPS = 40  # per epoch


def _exploding(synth, rng, from_epoch=4, epochs=8):
    n = STEPS * epochs
    grad, layers, updates = synth.healthy_layers(n, rng, ratio=0.5)
    loss = synth.decaying(n, rng, start=2.3, end=0.8, noise=0.05)
    grow = np.ones(n)
    grow[from_epoch * STEPS :] = np.geomspace(10, 1e5, n - from_epoch * STEPS)
    loss[from_epoch * STEPS :] = np.linspace(loss[from_epoch * STEPS], 3.0, n - from_epoch * STEPS)  # getting worse
    return synth.Trace(STEPS, loss, grad * grow, layers * grow[:, None], updates, learning_rate=0.1)


def test_exploding_gradients_reported_when_norms_grow_and_loss_worsens(synth, rng):
    findings = ExplodingGradientsDetector()(_exploding(synth, rng).record())
    assert len(findings) == 1
    (f,) = findings
    assert f.symptom == EXPLODING_GRADIENTS
    # dated at the step the smoothed norm crossed 100x, inside its epoch (no need to wait for the epoch end)
    assert f.epoch >= 5 and (f.epoch - 1) * STEPS < f.step <= f.epoch * STEPS
    assert f.evidence["growth"] > 100
    assert "clipnorm=1.0" in f.advice and "0.1" in f.advice


def test_exploding_gradients_one_finding_per_episode_as_epochs_arrive(synth, rng):
    trace = _exploding(synth, rng)
    per_epoch = [ExplodingGradientsDetector()(rec) for rec in trace.epoch_records()]
    assert len({episode_key(f) for findings in per_epoch for f in findings}) == 1
    first_seen = next(findings for findings in per_epoch if findings)
    assert per_epoch[-1] == first_seen  # the same finding, evidence included


def test_growing_gradients_with_improving_loss_are_not_exploding(synth, rng):
    trace = _exploding(synth, rng)
    trace.step_loss = synth.decaying(len(trace.step_loss), rng, start=2.3, end=0.05)
    assert ExplodingGradientsDetector()(trace.record()) == []


def _vanishing(synth, rng, epochs=8):
    n = STEPS * epochs
    grad, layers, updates = synth.healthy_layers(n, rng, ratio=1e-6)
    updates[:, 0] = 1e-8
    loss = 2.30 + 0.003 * rng.standard_normal(n)  # stuck at chance for 10 classes
    history = {"accuracy": [0.10] * epochs, "val_accuracy": [0.10] * epochs}
    return synth.Trace(STEPS, loss, grad, layers, updates, history=history, learning_rate=0.01)


def test_vanishing_gradients_reported_when_first_layer_starves_and_loss_is_flat(synth, rng):
    findings = VanishingGradientsDetector()(_vanishing(synth, rng).record())
    assert len(findings) == 1
    (f,) = findings
    assert f.symptom == VANISHING_GRADIENTS
    assert f.epoch == 1 and f.step == STEPS  # flat from the first epoch on
    assert f.evidence["first_last_ratio"] < 1e-4
    assert f.evidence["first_layer"] == "dense"
    assert "He" in f.advice and "raise the learning rate from 0.01" in f.advice


def test_healthy_deep_tanh_trace_with_large_gradient_ratio_is_quiet(synth, rng):
    # DESIGN.md: healthy deep tanh nets reach 0.87 val accuracy with a first/last
    # gradient ratio of 150-350. A ratio alone must never raise either symptom.
    epochs, n = 10, STEPS * 10
    grad, layers, updates = synth.healthy_layers(n, rng, ratio=1 / 350, n_layers=6)
    loss = synth.decaying(n, rng, start=2.3, end=0.35, noise=0.2)
    accuracy = list(np.linspace(0.4, 0.87, epochs))
    trace = synth.Trace(
        STEPS, loss, grad, layers, updates,
        history={"accuracy": accuracy, "val_accuracy": accuracy},
        layer_names=tuple(f"dense_{i}" for i in range(6)),
    )
    for record in trace.epoch_records():
        assert VanishingGradientsDetector()(record) == []
        assert ExplodingGradientsDetector()(record) == []


def test_tiny_gradients_while_loss_improves_are_not_vanishing(synth, rng):
    trace = _vanishing(synth, rng)
    trace.step_loss = synth.decaying(len(trace.step_loss), rng)
    trace.history = {}
    assert VanishingGradientsDetector()(trace.record()) == []


def test_gradient_detectors_validate_thresholds():
    with pytest.raises(ValueError, match="-3"):
        VanishingGradientsDetector(gradient_ratio=-3)
    with pytest.raises(ValueError, match="critical_growth.*50"):
        ExplodingGradientsDetector(growth=100, critical_growth=50)
    with pytest.raises(ValueError, match="window.*0"):
        ExplodingGradientsDetector(window=0)
