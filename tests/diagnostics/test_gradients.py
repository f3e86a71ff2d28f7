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


def _full_batch(loss, norms):
    from descentkit.diagnostics import TrainingRecord

    record = TrainingRecord(["dense", "dense_1"])
    record.chance_loss, record.loss_name = 1.04, "mse"
    for e, (value, norm) in enumerate(zip(loss, norms)):
        record.add_steps([e + 1], loss=[value], grad_norm=[norm])
        record.add_epoch(e, {"loss": value}, learning_rate=1.0, step=e + 1)
    return record


def test_a_gradient_burst_climbing_over_two_steps_is_exploding_gradients():
    # full-batch Adagrad at lr 1 on a regression MLP (a tuning-half recipe of
    # benchmarks/pathology_suite.py): the norm climbs 23x, then 1150x, the loss with
    # it, and both come back. Measured from the step before the climb; a start that
    # took in the climb's first step (3.1 and 72) would put the burst at 95x.
    loss = [1.51, 38.2, 7855.0, 7321.0, 166.0, 6.12, 5.09, 4.56]
    norms = [3.12, 72.4, 3585.0, 3252.0, 297.0, 17.1, 9.93, 6.99]
    (f,) = ExplodingGradientsDetector()(_full_batch(loss, norms))
    assert (f.symptom, f.severity, f.step) == (EXPLODING_GRADIENTS, "warning", 3)
    assert f.evidence["rise_steps"] == 2 and f.evidence["loss_before"] == pytest.approx(1.51)
    assert f.evidence["growth"] == pytest.approx(3585.0 / 3.12)
    assert "over steps 2-3" in f.message


def test_a_slow_climb_of_loss_and_gradient_is_not_a_burst():
    # the same 1150x, spread over 12 rising steps whose loss rose only 8x: no burst
    # (the sustained-growth rules judge slow growth)
    loss = list(np.geomspace(1.0, 8.0, 13)) + [8.0] * 3
    norms = list(np.geomspace(3.0, 3450.0, 13)) + [3450.0] * 3
    assert not [f for f in ExplodingGradientsDetector()(_full_batch(loss, norms)) if "rise_steps" in f.evidence]


def test_a_near_zero_loss_wobble_late_in_training_is_not_a_burst():
    # a nearly fitted net: gradients 1e-4 of their start, the loss climbs 1e-4 -> 3e-3
    # over three steps: 30x, but the gradient is still far below its start
    loss = [2.0, 1.0, 0.5, 0.2, 0.1] + list(np.geomspace(0.05, 1e-4, 20)) + [3e-4, 1e-3, 3e-3, 1e-4]
    norms = [5.0, 4.0, 3.0, 2.0, 1.0] + list(np.geomspace(0.5, 5e-4, 20)) + [2e-3, 5e-3, 1e-2, 5e-4]
    assert ExplodingGradientsDetector()(_full_batch(loss, norms)) == []
