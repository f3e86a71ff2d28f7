"""Per-step gradient signals recorded inside the compiled step, and the model left as found."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from descentkit.callbacks import DivergenceMonitor, GradientMonitor, TrainingMonitor
from descentkit.callbacks._step_signals import auto_update_ratio_every

BATCH = 32


def _compile(model: keras.Model, lr: float = 0.05, metrics=("accuracy",), **kwargs) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.SGD(lr, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=list(metrics) or None,
        **kwargs,
    )
    return model


def _tape_norms(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[float, list[float]]:
    """Global and per-layer (kernel + bias) gradient norms of one batch, by GradientTape."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    per_var = [float(tf.norm(tf.cast(g, tf.float32))) for g in grads]
    per_layer = [float(np.hypot(per_var[i], per_var[i + 1])) for i in range(0, len(per_var), 2)]
    return float(np.sqrt(np.sum(np.square(per_var)))), per_layer


@pytest.mark.parametrize("compile_kwargs", [{}, {"jit_compile": True}], ids=["graph", "xla"])
def test_recorded_signals_equal_gradient_tape_and_weight_change(data, make_mlp, compile_kwargs):
    x, y = data
    model = _compile(make_mlp(), **compile_kwargs)
    expected_global, expected_layers = _tape_norms(model, x[:BATCH], y[:BATCH])
    before = [layer.get_weights() for layer in model.layers]

    monitor = GradientMonitor(update_ratio_every=1, verbose=0)
    model.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, epochs=1, verbose=0, callbacks=[monitor])

    record = monitor.record
    assert record.layer_names == [layer.name for layer in model.layers]
    assert record.steps.tolist() == [1]
    np.testing.assert_allclose(record.grad_norm[0], expected_global, rtol=1e-4)
    np.testing.assert_allclose(record.layer_grad_norms[0], expected_layers, rtol=1e-4)
    assert record.nonfinite[0] == 0
    # the batch loss, from Keras's loss tracker
    np.testing.assert_allclose(record.step_loss[0], record.history["loss"][0], rtol=1e-5)
    # update-to-weight ratio: ||w_after - w_before|| / ||w_before|| per layer (kernel + bias)
    expected_ratio = []
    for layer, old in zip(model.layers, before):
        new = layer.get_weights()
        delta = np.sqrt(sum(np.sum((n - o) ** 2) for n, o in zip(new, old)))
        expected_ratio.append(delta / np.sqrt(sum(np.sum(o**2) for o in old)))
    np.testing.assert_allclose(record.update_ratio[0], expected_ratio, rtol=1e-4)


def test_every_step_is_recorded_with_steps_per_execution(data, make_mlp):
    x, y = data
    model = _compile(make_mlp(), steps_per_execution=4)
    monitor = TrainingMonitor(verbose=0, update_ratio_every=8)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor])

    record = monitor.record
    assert record.steps.tolist() == list(range(1, 33))
    assert record.epoch_end_step == [16, 32]
    assert np.all(np.isfinite(record.grad_norm)) and np.all(np.isfinite(record.step_loss))
    # the update ratio, asked for every 8th step, is measured inside the step; NaN ("not measured") between
    sampled = record.steps % 8 == 0
    assert np.all(record.update_ratio[sampled] > 0) and np.all(np.isnan(record.update_ratio[~sampled]))


def test_more_steps_than_the_ring_buffer_holds_are_all_recorded(data, make_mlp):
    x, y = data
    model = _compile(make_mlp())
    monitor = GradientMonitor(verbose=0)  # reads the buffer only every 32 steps
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[monitor])

    assert monitor.record.steps.tolist() == list(range(1, 129))


def test_the_divergence_watch_reads_the_ring_without_flushing_a_healthy_epoch(data, make_mlp):
    # TrainingMonitor looks at the ring every 8 steps to stop a divergence in time; on
    # a healthy run those looks append nothing, the ring is flushed when half full
    x, y = data
    model = _compile(make_mlp(), lr=0.01)
    monitor = TrainingMonitor(verbose=0)
    flushes = []
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[monitor])  # installs the recorder
    recorder = monitor._recorder
    original = recorder.flush
    recorder.flush = lambda record: flushes.append(original(record)) or flushes[-1]
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[monitor])

    steps = len(x) // 2
    assert monitor.record.steps.tolist() == list(range(1, 2 * steps + 1))
    assert recorder.steps_lost == 0 and np.all(np.isfinite(monitor.record.step_loss[1:]))
    # the first epoch's start is known: flushes only at half a ring (32 steps) and the epoch end
    assert sum(flushes) == steps and len([n for n in flushes if n]) <= steps // (recorder.rows // 2) + 1


def test_repeated_fit_records_continuous_steps(data, make_mlp):
    x, y = data
    model = _compile(make_mlp())
    monitor = TrainingMonitor(verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[monitor])
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[monitor])

    assert monitor.record.steps.tolist() == list(range(1, 25))
    assert monitor.record.epoch_end_step == [8, 16, 24]


def test_mixed_precision_norms_are_not_multiplied_by_the_loss_scale(data, make_mlp, float32_policy_after):
    x, y = data
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = _compile(make_mlp())
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    expected_global, _ = _tape_norms(model, x[:BATCH], y[:BATCH])

    monitor = TrainingMonitor(verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])

    # float16 compute: a loose tolerance; the loss scale (32768) would be far off
    np.testing.assert_allclose(monitor.record.grad_norm[0], expected_global, rtol=0.05)
    assert "apply" not in model.optimizer.inner_optimizer.__dict__


def test_the_model_and_optimizer_are_restored_exactly(data, make_mlp, tmp_path):
    x, y = data
    model = _compile(make_mlp())
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    optimizer = model.optimizer
    names_before = [v.path for v in optimizer.variables]

    monitor = TrainingMonitor(probe_data=x, verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[monitor])

    assert "apply" not in optimizer.__dict__
    assert optimizer.apply.__func__ is type(optimizer).apply
    assert [v.path for v in optimizer.variables] == names_before
    assert not any("descentkit" in v.path for v in model.variables)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0), rtol=1e-5)
    assert len(loaded.optimizer.variables) == len(names_before)
    for restored, original in zip(loaded.optimizer.variables, optimizer.variables):
        np.testing.assert_allclose(np.asarray(restored), np.asarray(original))

    # a later fit without the monitor runs no wrapper: nothing is written any more
    steps_seen = len(monitor.record.steps)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert monitor._recorder.flush(monitor.record) == 0
    assert len(monitor.record.steps) == steps_seen


def test_two_monitors_on_one_fit_both_record_and_restore(data, make_mlp):
    x, y = data
    model = _compile(make_mlp())
    first, second = DivergenceMonitor(verbose=0), GradientMonitor(verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[first, second])

    assert first.record.steps.tolist() == second.record.steps.tolist() == list(range(1, 9))
    np.testing.assert_allclose(first.record.grad_norm, second.record.grad_norm)
    assert "apply" not in model.optimizer.__dict__


class Subclassed(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(16, activation="relu", name="hidden")
        self.out = keras.layers.Dense(2, activation="softmax", name="out")

    def call(self, x):
        return self.out(self.hidden(x))


class CustomStep(Subclassed):
    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(y, self(x, training=True))
            loss = tf.reduce_mean(loss)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return {"loss": loss}


@pytest.mark.parametrize("model_class", [Subclassed, CustomStep], ids=["subclassed", "custom_train_step"])
def test_subclassed_models_and_custom_train_steps_are_recorded(data, model_class):
    x, y = data
    model = _compile(model_class(), metrics=())  # the custom step updates no compiled metric
    monitor = TrainingMonitor(probe_data=x, verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[monitor])

    record = monitor.record
    assert record.steps.tolist() == list(range(1, 17))
    assert record.layer_names == ["hidden", "out"]
    assert np.all(np.isfinite(record.layer_grad_norms))
    assert "apply" not in model.optimizer.__dict__
    assert monitor._probe.skipped_reason is not None  # no graph to probe: skipped, not failed


def test_learning_rate_of_a_schedule_is_recorded_per_epoch(data, make_mlp):
    x, y = data
    schedule = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=16)
    model = make_mlp()
    model.compile(keras.optimizers.SGD(schedule), "sparse_categorical_crossentropy")
    monitor = TrainingMonitor(verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[monitor])

    # the rate in force during each epoch: the schedule at the epoch's first step
    expected = [float(schedule(0)), float(schedule(8))]
    np.testing.assert_allclose(monitor.record.learning_rate, expected, rtol=1e-5)


def _count_traces(model: keras.Model) -> list[int]:
    """A counter of the Python calls of `train_step`: one per trace of the train function."""
    calls = [0]
    original = model.train_step

    def train_step(data):
        calls[0] += 1
        return original(data)

    model.train_step = train_step
    return calls


def test_a_monitor_reused_across_fits_traces_once_and_records_every_step(data, make_mlp):
    x, y = data
    model = _compile(make_mlp())
    traces = _count_traces(model)
    monitor = TrainingMonitor(verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[monitor])
    first_fit_traces = traces[0]
    own = model.train_function
    for _ in range(3):  # a loop of one-epoch fits, as a tuner's rung loop runs them
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[monitor])
        assert model.train_function is own  # the model's own function is put back after each fit

    assert traces[0] == first_fit_traces  # no fit after the first traced the step again
    steps = len(x) // BATCH
    assert monitor.record.steps.tolist() == list(range(1, 4 * steps + 1))
    assert np.all(np.isfinite(monitor.record.grad_norm))
    assert monitor._recorder.steps_lost == 0
    assert "apply" not in model.optimizer.__dict__
    # a plain fit afterwards runs the model's own step: nothing more is recorded
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert len(monitor.record.steps) == 4 * steps


def test_a_first_monitored_fit_traces_no_more_than_a_plain_one(data, make_mlp):
    x, y = data
    plain, monitored = _compile(make_mlp()), _compile(make_mlp())
    plain_traces, monitored_traces = _count_traces(plain), _count_traces(monitored)
    plain.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    monitor = TrainingMonitor(verbose=0)
    monitored.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[monitor])

    assert monitored_traces[0] == plain_traces[0]
    assert monitor.record.steps.tolist() == list(range(1, len(x) // BATCH + 1))


def test_a_recompiled_model_is_traced_again_with_its_new_optimizer(data, make_mlp):
    x, y = data
    model = _compile(make_mlp())
    monitor = TrainingMonitor(verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[monitor])
    _compile(model, lr=0.01)  # a new optimizer: its steps restart from 1
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[monitor])

    steps = len(x) // BATCH
    assert monitor.record.steps.tolist()[-steps:] == list(range(1, steps + 1))
    assert int(model.optimizer.iterations.numpy()) == steps


def test_the_monitors_keep_keras_asynchronous_batch_dispatch():
    # A callback overriding on_train_batch_end makes Keras read the logs on the host
    # after every batch; the monitors look at the ring buffer at batch begin instead.
    for monitor in (TrainingMonitor(), DivergenceMonitor(), GradientMonitor()):
        assert getattr(monitor.on_train_batch_end, "_is_default", False)
        assert getattr(monitor.on_batch_end, "_is_default", False)


@pytest.mark.parametrize(("steps_per_epoch", "every"), [(None, 64), (3, 8), (43, 43), (64, 64), (235, 64)])
def test_the_default_update_ratio_sampling_is_once_an_epoch_within_8_to_64_steps(steps_per_epoch, every):
    assert auto_update_ratio_every(steps_per_epoch) == every


def test_the_default_update_ratio_is_measured_at_each_epochs_last_step(data, make_mlp):
    x, y = data
    model = _compile(make_mlp())
    monitor = TrainingMonitor(verbose=0)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[monitor])  # 16 steps an epoch

    record = monitor.record
    sampled = np.isfinite(record.update_ratio).all(axis=1)
    assert record.steps[sampled].tolist() == [16, 32, 48]
    assert np.all(np.isnan(record.update_ratio[~sampled]))
    assert np.all((record.update_ratio[sampled] > 1e-5) & (record.update_ratio[sampled] < 1))


def test_the_update_ratio_follows_a_recompiled_model(data, make_mlp):
    x, y = data
    model = _compile(make_mlp())
    monitor = TrainingMonitor(verbose=0, update_ratio_every=4)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    _compile(model, lr=0.01)  # a new optimizer, whose steps restart from 1
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])

    second = monitor.record.update_ratio[-8:]
    assert np.isfinite(second[[3, 7]]).all() and np.isnan(second[[0, 1, 2, 4, 5, 6]]).all()


def test_no_update_ratio_by_default_with_several_steps_per_execution(data, make_mlp):
    x, y = data
    model = _compile(make_mlp(), steps_per_execution=4)
    monitor = TrainingMonitor(verbose=0)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    assert len(monitor.record.steps) == 16 and np.all(np.isnan(monitor.record.update_ratio))
