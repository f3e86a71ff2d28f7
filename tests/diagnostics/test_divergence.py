import numpy as np
import pytest

from descentkit.diagnostics import DIVERGENCE, DivergenceDetector, TrainingRecord, episode_key


def _nan_run(synth, rng, nan_at=137):
    """200 steps of 50 per epoch; gradients and loss become NaN at step `nan_at` (1-based)."""
    n = 200
    loss = synth.decaying(n, rng, noise=0.05)
    grad, layers, updates = synth.healthy_layers(n, rng)
    nonfinite = np.zeros(n)
    loss[nan_at - 1 :] = np.nan
    grad[nan_at - 1 :] = np.nan
    nonfinite[nan_at - 1 :] = 1234
    return synth.Trace(50, loss, grad, layers, updates, nonfinite, learning_rate=0.5)


def test_divergence_reports_first_nonfinite_step(synth, rng):
    findings = DivergenceDetector()(_nan_run(synth, rng).record())
    assert len(findings) == 1
    (f,) = findings
    assert (f.symptom, f.severity, f.step, f.epoch) == (DIVERGENCE, "critical", 137, 3)
    assert f.evidence["nonfinite_gradients"] == 1234
    assert "0.5" in f.advice and "0.05-0.167" in f.advice  # quotes the rate in force, 3-10x smaller


def test_divergence_works_mid_epoch_on_step_signals_alone(synth, rng):
    # 5 steps after the first NaN, with epoch 2 still in progress (no logs for it yet).
    record = _nan_run(synth, rng).record(upto_step=141)
    assert record.n_epochs == 2
    (f,) = DivergenceDetector()(record)
    assert (f.step, f.epoch, f.severity) == (137, 3, "critical")


def test_divergence_on_a_bare_record_with_only_gradient_norms():
    record = TrainingRecord()
    record.add_steps([1, 2, 3], grad_norm=[0.5, 0.6, np.inf])
    (f,) = DivergenceDetector()(record)
    assert (f.step, f.epoch) == (3, 1)
    assert "Lower the learning rate 3-10x" in f.advice


def test_divergence_is_one_finding_per_episode_on_a_growing_record(synth, rng):
    trace = _nan_run(synth, rng)
    keys = set()
    for upto in range(130, 200, 8):  # a callback checking every 8 steps
        keys |= {episode_key(f) for f in DivergenceDetector()(trace.record(upto))}
    assert keys == {(DIVERGENCE, "step", 137)}


def test_divergence_from_epoch_logs_alone():
    record = TrainingRecord.from_history({"loss": [1.0, 0.8, float("nan")], "val_loss": [1.1, 0.9, float("nan")]}, learning_rate=[0.1] * 3)
    (f,) = DivergenceDetector()(record)
    assert (f.epoch, f.step, f.severity) == (3, None, "critical")


def test_nan_val_loss_alone_is_not_divergence():
    # validation_freq > 1 leaves val_loss NaN on epochs without validation.
    record = TrainingRecord.from_history({"loss": [1.0, 0.8, 0.7], "val_loss": [1.1, float("nan"), 0.8]})
    assert DivergenceDetector()(record) == []


def test_unrecorded_step_loss_is_not_mistaken_for_nan(synth, rng):
    record = TrainingRecord(["dense"])
    record.add_steps(np.arange(1, 51), grad_norm=np.full(50, 0.3))  # no loss recorded: NaN throughout
    assert DivergenceDetector()(record) == []


def test_finite_loss_blowup_is_divergence(synth, rng):
    n = 300
    loss = synth.decaying(n, rng, start=2.3, end=0.2, noise=0.05)
    loss[200:] = np.geomspace(0.3, 50.0, 100)  # climbs far above its start
    (f,) = DivergenceDetector()(synth.Trace(50, loss, learning_rate=[0.01, 0.01, 0.01, 0.01, 0.2, 0.2]).record())
    assert f.symptom == DIVERGENCE
    assert f.step > 200 and f.epoch == 5
    assert f.evidence["ratio_to_best"] > 10
    assert "below 0.2" in f.advice and "at most 0.01" in f.advice  # the largest rate seen stable


def test_divergence_quiet_on_noisy_healthy_loss(synth, rng):
    loss = synth.decaying(2000, rng, start=2.3, end=0.02, noise=0.5)  # noisy minibatch loss near zero
    grad, layers, updates = synth.healthy_layers(2000, rng)
    assert DivergenceDetector()(synth.Trace(100, loss, grad, layers, updates).record()) == []


@pytest.mark.parametrize(
    "kwargs, quoted",
    [({"blowup_factor": 0.5}, "0.5"), ({"sustain_steps": 0}, "0"), ({"start_factor": float("nan")}, "nan")],
)
def test_divergence_thresholds_are_validated(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        DivergenceDetector(**kwargs)


def test_divergence_in_the_first_epoch_quotes_the_current_learning_rate():
    record = TrainingRecord(["dense"])
    record.current_learning_rate = 2.0  # set by the callback at epoch begin
    record.add_steps([1, 2, 3], grad_norm=[0.5, 40.0, np.nan], nonfinite=[0, 0, 17])
    (f,) = DivergenceDetector()(record)
    assert "from 2 to 0.2-0.667" in f.advice
    assert f.evidence["learning_rate"] == 2.0


def _full_batch_record(loss):
    """One full-batch step an epoch, as a regression MLP (chance level: var(y) ~ 1)."""
    record = TrainingRecord(["dense", "dense_1"])
    record.chance_loss, record.loss_name = 1.04, "mse"
    for e, value in enumerate(loss):
        record.add_steps([e + 1], loss=[value], grad_norm=[1.0])
        record.add_epoch(e, {"loss": value}, learning_rate=1.0, step=e + 1)
    return record


def test_a_full_batch_loss_on_its_way_back_from_a_blow_up_is_not_divergence():
    # full-batch Adagrad at lr 1 (a tuning-half recipe): 5,000x up, and 6 steps later
    # 1,700x below that peak and 3x its start, falling at each step: the run trains
    # well after it; the old rule confirmed it on 4.56 > 3 x 1.51 and stopped it
    loss = [1.51, 38.2, 7855.0, 7321.0, 166.0, 6.12, 5.09, 4.56]
    assert DivergenceDetector()(_full_batch_record(loss)) == []
    assert DivergenceDetector()(_full_batch_record(loss + [3.9, 2.1, 1.2, 0.9])) == []


def test_a_blow_up_that_stops_coming_back_counts_when_it_stops():
    # the same start, then the loss settles at 5x its start and climbs again past 10x
    loss = [1.51, 38.2, 7855.0, 7321.0, 166.0, 6.12, 5.09, 7.5, 11.0, 30.0, 90.0]
    (f,) = DivergenceDetector()(_full_batch_record(loss))
    assert (f.symptom, f.severity, f.step) == (DIVERGENCE, "critical", 2)
    assert DivergenceDetector()(_full_batch_record(loss[:9])) == []  # pending while it still falls or hovers


def test_a_blow_up_that_stays_far_above_its_start_is_divergence_though_below_its_peak():
    # 1e6x up, then 1,000x down from the peak: still 1,000x the start, not a return
    loss = [1.5, 1.5e6, 2e5, 1e4, 4e3, 2e3, 1.8e3, 1.6e3, 1.5e3]
    (f,) = DivergenceDetector()(_full_batch_record(loss))
    assert (f.severity, f.step) == ("critical", 2)
