"""The chance-level rules (divergence far above chance, stalled at chance), the
one-step spike, all-dead layers, root-cause linking and 1-based epochs, on synthetic traces."""

from __future__ import annotations

import math

import numpy as np
import pytest

from descentkit.diagnostics import (
    DEAD_UNITS,
    DIVERGENCE,
    STALLED_TRAINING,
    VANISHING_GRADIENTS,
    DeadUnitsDetector,
    DivergenceDetector,
    Finding,
    StalledTrainingDetector,
    TrainingRecord,
    chance_loss,
    diagnose,
    episode_key,
    link_causes,
    top_finding,
)

STEPS = 20


def _record(epoch_losses, *, chance=None, loss_name="sparse_categorical_crossentropy", step_loss=None, **series):
    """A record of whole epochs: `STEPS` steps each, step losses flat at the epoch's loss
    unless given."""
    record = TrainingRecord(["dense", "dense_1"])
    record.chance_loss = chance
    record.loss_name = loss_name
    losses = np.repeat(np.asarray(epoch_losses, dtype=float), STEPS) if step_loss is None else np.asarray(step_loss, float)
    for e, value in enumerate(epoch_losses):
        span = slice(e * STEPS, (e + 1) * STEPS)
        record.add_steps(np.arange(e * STEPS + 1, (e + 1) * STEPS + 1), loss=losses[span], grad_norm=np.ones(STEPS))
        record.add_epoch(e, {"loss": value, **{k: v[e] for k, v in series.items()}}, learning_rate=0.05,
                         step=(e + 1) * STEPS)
    return record


# ---------------------------------------------------------------- chance level
def test_chance_loss_is_the_entropy_of_the_label_frequencies():
    assert chance_loss("sparse_categorical_crossentropy", y=[0, 0, 1, 1]) == pytest.approx(math.log(2))
    assert chance_loss("sparse_categorical_crossentropy", y=[0, 0, 0, 1]) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    one_hot = np.eye(3)[[0, 1, 2, 2]]
    assert chance_loss("categorical_crossentropy", y=one_hot) == pytest.approx(
        -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5)))


def test_chance_loss_without_labels_assumes_uniform_classes():
    assert chance_loss("sparse_categorical_crossentropy", output_units=10) == pytest.approx(math.log(10))
    assert chance_loss("binary_crossentropy") == pytest.approx(math.log(2))
    assert chance_loss("mse") is None  # a regression's chance level needs its targets


def test_chance_loss_of_regressions_is_the_targets_spread():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert chance_loss("mse", y=y) == pytest.approx(y.var())
    assert chance_loss("mean_absolute_error", y=y) == pytest.approx(1.0)
    assert chance_loss("huber", y=y) is None  # unknown losses have no chance level here


# ---------------------------------------------------------------- divergence
def test_a_cross_entropy_stuck_far_above_chance_is_critical_divergence():
    # Confidently wrong from the first step (never rising, so no blow-up): 40x chance.
    record = _record([45.0, 52.0, 41.0, 50.0], chance=1.1)
    (f,) = DivergenceDetector()(record)
    assert (f.symptom, f.severity) == (DIVERGENCE, "critical")
    assert f.evidence["ratio_to_chance"] > 10
    assert f.epoch <= 2


def test_a_regression_far_above_its_target_variance_is_not_divergence():
    # Targets far from zero: an untrained net starts orders of magnitude above var(y)
    # and trains down; nothing here says the optimizer made anything worse.
    record = _record([900.0, 850.0, 845.0, 840.0], chance=1.0, loss_name="mse")
    assert DivergenceDetector()(record) == []


def test_a_loss_that_blows_up_within_its_first_steps_is_divergence():
    # The start window holds the blow-up already; the chance level caps the start.
    step_loss = np.concatenate(([2.3, 900.0], np.full(STEPS - 2, 1e4)))
    record = TrainingRecord(["dense"])
    record.chance_loss, record.loss_name = 2.3, "sparse_categorical_crossentropy"
    record.add_steps(np.arange(1, STEPS + 1), loss=step_loss)
    (f,) = DivergenceDetector()(record)
    assert (f.severity, f.epoch) == ("critical", 1)
    assert f.step <= 8


def _steps_record(step_loss, epoch_end=None):
    record = TrainingRecord(["dense"])
    record.add_steps(np.arange(1, len(step_loss) + 1), loss=np.asarray(step_loss, dtype=float))
    if epoch_end is not None:
        record.add_epoch(0, {"loss": float(np.mean(step_loss))}, step=epoch_end)
    return record


def test_a_blow_up_the_loss_stays_at_is_divergence():
    (f,) = DivergenceDetector()(_steps_record([78.0, 2.8e14, 3.7e8, 3.4e7, 3.0e9, 1e9, 2e9, 5e8, 1e9, 3e9]))
    assert (f.severity, f.step) == ("critical", 2)
    assert f.evidence["ratio_to_start"] > 1e10


def test_a_transient_spike_the_loss_comes_back_from_is_not_divergence():
    # Adam at lr 1 on a CNN (the suite's tuning half): 1e4x for a step, 100x for three,
    # then back near the start; what is left is a dead network, not a diverging one.
    loss = [2.36, 3.19e4, 535.0, 254.0, 294.0, 9.35, 5.64, 4.08, 3.73, 3.5, 3.2, 3.1]
    assert DivergenceDetector()(_steps_record(loss)) == []


def test_a_blow_up_is_pending_mid_epoch_and_decided_at_the_epoch_end():
    loss = [78.0, 2.8e14, 3.7e8, 3.4e7, 3.0e9, 1e9]  # 6 steps: too few to confirm mid-epoch
    assert DivergenceDetector()(_steps_record(loss)) == []
    (f,) = DivergenceDetector()(_steps_record(loss, epoch_end=6))
    assert (f.severity, f.step, f.epoch) == ("critical", 2, 1)


def test_a_bad_batch_a_few_times_the_start_is_not_divergence():
    step_loss = np.full(3 * STEPS, 1.0)
    step_loss[7] = 40.0  # one hard batch
    record = TrainingRecord(["dense"])
    record.add_steps(np.arange(1, 3 * STEPS + 1), loss=step_loss)
    assert DivergenceDetector()(record) == []


# ---------------------------------------------------------------- stalled
def test_a_loss_at_chance_for_three_epochs_is_critical_stalled_training():
    record = _record([2.31, 2.305, 2.303, 2.302, 2.302], chance=2.302, accuracy=[0.1] * 5)
    (f,) = StalledTrainingDetector()(record)
    assert (f.symptom, f.severity) == (STALLED_TRAINING, "critical")
    assert f.evidence["chance_loss"] == pytest.approx(2.302)
    assert "chance level" in f.message


def test_a_slow_run_below_chance_is_not_stalled_at_chance():
    losses = [2.3 * 0.97 ** i for i in range(6)]  # 3 % better each epoch
    record = _record(losses, chance=2.302, accuracy=[0.1 + 0.02 * i for i in range(6)])
    assert StalledTrainingDetector()(record) == []


# ---------------------------------------------------------------- dead units
def test_a_layer_with_every_unit_dead_is_critical_even_while_the_loss_falls():
    record = _record([2.0, 1.5, 1.2])
    record.dead_fraction = {"dense": [1.0, 1.0, 1.0], "dense_1": [0.0, 0.0, 0.0]}
    (f,) = DeadUnitsDetector()(record)
    assert (f.severity, f.epoch) == ("critical", 1)
    assert "no longer depends on the inputs" in f.message


# ---------------------------------------------------------------- causes
def _finding(symptom, severity="warning", epoch=3, step=60, advice="advice"):
    return Finding(symptom, severity, epoch, step, f"{symptom} seen.", advice, {})


def test_consequences_point_to_their_root_and_keep_their_episode():
    dead = _finding(DEAD_UNITS, "critical", advice="Use LeakyReLU and lower the learning rate.")
    vanishing = _finding(VANISHING_GRADIENTS, advice="Raise the learning rate.")
    stalled = _finding(STALLED_TRAINING, "critical", epoch=1, step=20, advice="Raise the learning rate.")
    linked = link_causes([stalled, vanishing, dead])
    by = {f.symptom: f for f in linked}
    assert by[VANISHING_GRADIENTS].evidence["caused_by"] == DEAD_UNITS
    # a chain resolves to its deepest root: stalled <- vanishing <- dead
    assert by[STALLED_TRAINING].evidence["caused_by"] == DEAD_UNITS
    assert "Raise the learning rate" not in by[VANISHING_GRADIENTS].advice
    assert by[VANISHING_GRADIENTS].advice.endswith(dead.advice)
    assert by[DEAD_UNITS].evidence["consequences"] == [STALLED_TRAINING, VANISHING_GRADIENTS]
    assert [episode_key(f) for f in linked] == [episode_key(f) for f in (stalled, vanishing, dead)]
    assert top_finding(linked) == by[DEAD_UNITS]
    assert link_causes(linked) == linked  # linking twice changes nothing


def test_unrelated_or_distant_findings_are_not_linked():
    dead = _finding(DEAD_UNITS, epoch=20, step=400)
    stalled = _finding(STALLED_TRAINING, epoch=2, step=40)  # long before the units died
    linked = link_causes([stalled, dead])
    assert all("caused_by" not in f.evidence for f in linked)


def test_top_finding_prefers_severity_then_the_deepest_root():
    overfit = _finding("overfitting", epoch=1, step=20)
    stalled = _finding(STALLED_TRAINING, "critical", epoch=4, step=80)
    assert top_finding([overfit, stalled]).symptom == STALLED_TRAINING
    assert top_finding([_finding(DIVERGENCE, "info")]) is None


def test_diagnose_links_what_it_finds():
    record = _record([2.31, 2.305, 2.303, 2.302, 2.302, 2.302], chance=2.302, accuracy=[0.1] * 6)
    record.dead_fraction = {"dense": [1.0] * 6, "dense_1": [0.0] * 6}
    findings = diagnose(record)
    stalled = next(f for f in findings if f.symptom == STALLED_TRAINING)
    assert stalled.evidence["caused_by"] == DEAD_UNITS
    assert top_finding(findings).symptom == DEAD_UNITS


# ---------------------------------------------------------------- numbering
def test_epochs_are_numbered_from_one_as_keras_prints_them():
    record = _record([45.0, 52.0, 41.0], chance=1.1)
    (f,) = DivergenceDetector()(record)
    assert f.epoch == 1 and f.step == STEPS  # Keras's "Epoch 1/3"
    assert "epoch 1," in str(f)


def test_advice_quotes_the_rate_in_force_and_the_configured_one_after_a_schedule():
    record = _record([2.0, 1.9, 1.9, 1.9, 1.9, 1.9, 1.9], chance=1.0)  # stalled, above half the start
    record.learning_rate = [0.1, 0.05, 0.025, 0.0125, 0.01, 0.01, 0.01]
    (f,) = StalledTrainingDetector()(record)
    assert "(in force; configured 0.1)" in f.advice
    record.learning_rate = [0.1] * 7
    (f,) = StalledTrainingDetector()(record)
    assert "from 0.1 (" in f.advice and "configured" not in f.advice


def test_a_validation_loss_far_above_chance_after_a_blow_up_is_divergence():
    # The training loss of the epoch fell (a spike, then nothing: dead units), but the
    # weights it ended with are 30x worse than chance on the validation data.
    step_loss = [82.0, 7.6e14, 4.9e13, 0.0, 0.0]
    record = _steps_record(step_loss)
    record.chance_loss, record.loss_name = 1.0, "sparse_categorical_crossentropy"
    record.add_epoch(0, {"loss": float(np.mean(step_loss)), "val_loss": 33.8}, step=5)
    (f,) = DivergenceDetector()(record)
    assert f.severity == "critical" and f.evidence["ratio_to_chance"] > 10


def test_top_finding_prefers_a_training_symptom_to_a_data_check():
    data_check = Finding("unnormalized_inputs", "warning", None, None, "Inputs are not normalized.", "Standardize.", {})
    stalled = _finding(STALLED_TRAINING, "warning")
    assert top_finding([data_check, stalled]).symptom == STALLED_TRAINING
    assert top_finding([data_check]).symptom == "unnormalized_inputs"


# ---------------------------------------------------------------- gradients
def test_a_one_step_gradient_explosion_with_a_loss_jump_is_exploding_gradients():
    from descentkit.diagnostics import EXPLODING_GRADIENTS, ExplodingGradientsDetector

    # full-batch RMSprop too large for the curvature: one step 440x, the loss 2000x, then back
    norms = np.concatenate(([3.2, 1412.0], np.linspace(10.8, 0.5, 28)))
    loss = np.concatenate(([1.43, 3107.0], np.linspace(3.9, 0.6, 28)))
    record = TrainingRecord(["dense", "dense_1"])
    record.add_steps(np.arange(1, 31), grad_norm=norms, loss=loss)
    (f,) = ExplodingGradientsDetector()(record)
    assert (f.symptom, f.step) == (EXPLODING_GRADIENTS, 2)
    assert f.evidence["growth"] > 100


def test_a_large_gradient_on_a_hard_batch_is_not_exploding():
    from descentkit.diagnostics import ExplodingGradientsDetector

    norms = np.full(40, 1.0)
    norms[10] = 300.0  # 300x, but the loss barely moved: a hard batch, not an explosion
    loss = np.full(40, 1.0)
    loss[10] = 2.0
    record = TrainingRecord(["dense", "dense_1"])
    record.add_steps(np.arange(1, 41), grad_norm=norms, loss=loss)
    assert ExplodingGradientsDetector()(record) == []


def test_tiny_updates_everywhere_are_a_tiny_rate_not_vanishing_gradients():
    from descentkit.diagnostics import VanishingGradientsDetector

    record = _record([2.3] * 6)
    record = TrainingRecord(["dense", "dense_1"])
    for e in range(6):
        steps = np.arange(e * STEPS + 1, (e + 1) * STEPS + 1)
        record.add_steps(steps, loss=np.full(STEPS, 2.3), layer_grad_norms=np.tile([0.5, 1.0], (STEPS, 1)),
                         update_ratio=np.tile([1e-8, 2e-8], (STEPS, 1)))
        record.add_epoch(e, {"loss": 2.3}, learning_rate=1e-6, step=(e + 1) * STEPS)
    assert VanishingGradientsDetector()(record) == []
    # ...but a first layer frozen far below the last one is
    record._update_ratio._data[: 6 * STEPS, 1] = 1e-4
    record._memo.clear()
    assert [f.symptom for f in VanishingGradientsDetector()(record)] == ["vanishing_gradients"]


def test_a_loss_falling_toward_chance_is_not_progress():
    # 2.35 -> 2.31 is 1.5 % better, but all of it is at the chance level (2.29)
    record = _record([2.35, 2.33, 2.32, 2.31], chance=2.29, val_loss=[2.32, 2.32, 2.31, 2.31],
                     accuracy=[0.09, 0.10, 0.09, 0.095])
    (f,) = StalledTrainingDetector()(record)
    assert f.severity == "critical" and f.epoch == 1


def test_a_full_batch_loss_that_climbs_for_good_is_divergence_not_a_stall():
    # one step per epoch: no minibatch noise to smooth over; decided once the loss is
    # still up 6 steps after it blew up (DIVERGENCE_CONFIRM_STEPS), not at each epoch end
    record = TrainingRecord(["dense", "dense_1"])
    record.chance_loss, record.loss_name = 0.95, "mse"
    for e, value in enumerate([1.43, 139.8, 346.5, 520.0, 810.0, 1.1e3, 1.6e3, 2.5e3, 4e3]):
        record.add_steps([e + 1], loss=[value], grad_norm=[3.2 * (e * 50 + 1)])
        record.add_epoch(e, {"loss": value, "val_loss": value}, step=e + 1)
    findings = diagnose(record)
    assert top_finding(findings).symptom == DIVERGENCE
    assert STALLED_TRAINING not in {f.symptom for f in findings if "caused_by" not in f.evidence}


def test_a_loss_coming_down_fast_from_above_chance_is_not_stalled():
    # a small binary net at a low rate: 25 % above chance, 16 % lower in 3 epochs
    record = _record([0.87, 0.80, 0.73], chance=0.693, val_loss=[0.84, 0.78, 0.72], accuracy=[0.45, 0.52, 0.57])
    assert StalledTrainingDetector()(record) == []


def test_gradients_that_exploded_before_the_loss_blew_up_are_the_root():
    from descentkit.diagnostics import EXPLODING_GRADIENTS

    exploding = _finding(EXPLODING_GRADIENTS, "warning", epoch=2, step=30, advice="Clip gradients.")
    diverged = _finding(DIVERGENCE, "critical", epoch=3, step=45, advice="Lower the learning rate.")
    linked = link_causes([exploding, diverged])
    assert linked[1].evidence["caused_by"] == EXPLODING_GRADIENTS
    assert "caused_by" not in linked[0].evidence and linked[0].evidence["consequences"] == [DIVERGENCE]
    assert top_finding([exploding, diverged]).symptom == EXPLODING_GRADIENTS


def test_a_loss_and_gradient_blowing_up_at_the_same_step_are_divergence():
    from descentkit.diagnostics import EXPLODING_GRADIENTS

    exploding = _finding(EXPLODING_GRADIENTS, "critical", epoch=1, step=4)
    diverged = _finding(DIVERGENCE, "critical", epoch=1, step=4)
    linked = link_causes([exploding, diverged])
    assert linked[0].evidence["caused_by"] == DIVERGENCE and "caused_by" not in linked[1].evidence
    # ...and a divergence seen first explains the gradients that exploded after it
    later = _finding(EXPLODING_GRADIENTS, "critical", epoch=1, step=9)
    assert link_causes([diverged, later])[1].evidence["caused_by"] == DIVERGENCE


def test_a_full_batch_blow_up_waits_for_its_confirming_steps_not_the_epoch_end():
    # full-batch Adagrad too large for the curvature: the loss 100-300x for three steps,
    # then back under 3x its start; each one-step epoch ends right after the jump
    record = TrainingRecord(["dense", "dense_1"])
    record.chance_loss, record.loss_name = 1.04, "mse"
    values = [1.43, 139.8, 346.5, 298.6, 3.39, 1.34, 1.18, 1.08, 1.0, 0.95]
    findings = []
    for e, value in enumerate(values):
        record.add_steps([e + 1], loss=[value], grad_norm=[3.6])
        record.add_epoch(e, {"loss": value}, step=e + 1)
        findings += DivergenceDetector()(record)
    assert findings == []


def test_a_gradient_spike_the_loss_jumped_with_is_explained_by_the_divergence_after_it():
    # inputs x1000 under SGD: loss and gradient jump 1e16x at step 2, inf at step 3
    record = TrainingRecord(["dense", "dense_1"])
    record.chance_loss, record.loss_name = 1.04, "mse"
    record.add_steps(np.arange(1, 5), loss=[4.4e5, 5.6e21, np.inf, np.nan], grad_norm=[2.0e6, 1.9e18, np.nan, np.nan])
    findings = diagnose(record)
    assert top_finding(findings).symptom == DIVERGENCE
    spike = next(f for f in findings if f.evidence.get("loss_jumped_with_it"))
    assert spike.evidence["caused_by"] == DIVERGENCE


def test_a_regression_that_learned_half_its_target_variance_is_not_stalled():
    # noisy targets (R^2 0.5): its first epoch already halved the loss, later epochs
    # crawl while a cosine schedule anneals the rate
    losses = [0.71, 0.60, 0.55, 0.52, 0.506, 0.494, 0.485, 0.4775, 0.4717, 0.4441, 0.4427, 0.4415, 0.4405,
              0.4397, 0.439, 0.4385, 0.4382]
    record = _record(losses, chance=1.205, loss_name="mse", val_loss=[0.57] * len(losses))
    record.add_steps(np.arange(1, 11), loss=np.full(10, 0.75))
    assert StalledTrainingDetector()(record) == []
    # ...while one still above half its target variance is
    stuck = _record([0.9] + [0.85] * 9, chance=1.205, loss_name="mse", val_loss=[0.9] * 10)
    assert StalledTrainingDetector()(stuck)


def test_a_full_batch_loss_swinging_back_to_its_best_is_not_divergence():
    # full-batch SGD, momentum 0.99, on a linear regression: every third step comes
    # back near its best (oscillating loss), the others near the start
    record = TrainingRecord(["dense"])
    record.chance_loss, record.loss_name = 1.04, "mse"
    values = [3.05, 0.02, 2.93, 2.95, 0.10, 2.78, 2.80, 0.25, 2.61, 2.62, 0.43, 2.46, 2.42, 0.60]
    for e, value in enumerate(values):
        record.add_steps([e + 1], loss=[value], grad_norm=[3.4])
        record.add_epoch(e, {"loss": value}, step=e + 1)
    assert DivergenceDetector()(record) == []
