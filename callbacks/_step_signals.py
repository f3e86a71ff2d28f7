"""In-graph gradient signals of every optimizer step, collected from an unmodified model.

`StepSignalRecorder` wraps the optimizer's `apply` (the inner optimizer of a
`LossScaleOptimizer`, whose gradients are already unscaled) for the length of one
`fit()`. Inside the compiled train step the wrapper computes the global and
per-layer sums of squared gradients and reads the batch loss, and writes them as
one row of a ring-buffer `tf.Variable` indexed by the optimizer's step counter:
a few small ops a step, because on a small model each op of the step is a
measurable share of it. The host reads the buffer only when asked (every few
steps and at epoch end; a host read costs 30-80 us, 10-20 % of a 1 ms step) and
turns the sums into norms there.

The per-layer update-to-weight ratio `||w_after - w_before|| / ||w_before||` is
sampled every few steps. With one step per execution the host asks for it: before
a sampled step a small compiled function copies the weights, after it another
writes the ratio into that step's row, so the train step itself carries nothing
for it. With several steps per execution the step does it, in a branch taken on
sampled steps only.

The buffer is a plain `tf.Variable` held here, never by the model or the
optimizer, so saving the model and the optimizer's variable list are unaffected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from descentkit.diagnostics import TrainingRecord

# Row layout of the ring buffer: the step, half the sum of squared gradients (what
# `tf.nn.l2_loss` gives), the loss tracker's running total and count; then per
# layer half its sum of squares (one more column for variables of no known layer),
# then per layer the update ratio (NaN on steps not sampled).
_STEP, _HALF_SQ, _LOSS_TOTAL, _LOSS_COUNT = range(4)
_FIXED_COLUMNS = 4
# Keeps the update ratio finite for layers whose weights are all zero.
_EPSILON = 1e-12
# Attribute on our `apply` wrapper that points back to its hook.
_HOOK_ATTR = "_descentkit_apply_hook"


def layer_key(path: str, model_name: str) -> str:
    """The layer a variable belongs to, from its path ("sequential/dense/kernel" -> "dense")."""
    parts = path.split("/")[:-1]
    if len(parts) > 1 and parts[0] == model_name:
        parts = parts[1:]
    return "/".join(parts) or path


def target_optimizer(model: Any) -> Any:
    """The optimizer whose `apply` sees unscaled gradients (a LossScaleOptimizer's
    inner one); None for a model not compiled yet."""
    optimizer = getattr(model, "optimizer", None)
    return getattr(optimizer, "inner_optimizer", None) or optimizer


def learning_rate_in_force(model: Any) -> float | None:
    """The rate the next step uses: a schedule evaluated at the optimizer's current
    iteration; None without an optimizer or with a rate that is not a number."""
    optimizer = target_optimizer(model)
    if optimizer is None:
        return None
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except (TypeError, ValueError, AttributeError):
        return None


class _ApplyHook:
    """One wrapper around one optimizer's `apply`, shared by every recorder on it.

    Several monitors on one `fit` each add a recorder; the first installs the
    wrapper and the last one out restores the optimizer exactly as it was.
    """

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer
        self.recorders: list[StepSignalRecorder] = []
        self.saved_instance_apply = optimizer.__dict__.get("apply")
        self.original_apply = optimizer.apply

        @tf.autograph.experimental.do_not_convert  # plain Python control flow, traced as written
        def apply(grads: Sequence[Any], trainable_variables: Sequence[Any] | None = None) -> Any:
            return self.apply(grads, trainable_variables)

        setattr(apply, _HOOK_ATTR, self)
        # object.__setattr__: the optimizer's own __setattr__ would try to track it.
        object.__setattr__(optimizer, "apply", apply)

    @staticmethod
    def of(optimizer: Any) -> _ApplyHook:
        current = optimizer.__dict__.get("apply")
        hook = getattr(current, _HOOK_ATTR, None) if current is not None else None
        return hook if hook is not None else _ApplyHook(optimizer)

    def remove(self, recorder: StepSignalRecorder) -> None:
        if recorder in self.recorders:
            self.recorders.remove(recorder)
        if not self.recorders:
            if self.saved_instance_apply is None:
                object.__delattr__(self.optimizer, "apply")
            else:
                object.__setattr__(self.optimizer, "apply", self.saved_instance_apply)

    def apply(self, grads: Sequence[Any], trainable_variables: Sequence[Any] | None) -> Any:
        grads = list(grads)
        if trainable_variables is None:
            variables = list(self.optimizer._trainable_variables)
        else:
            trainable_variables = list(trainable_variables)
            variables = trainable_variables
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        recorders = list(self.recorders)
        if not pairs or not recorders:
            return self.original_apply(grads, trainable_variables)
        if _builds_variables_now(self.optimizer, trainable_variables):
            for recorder in recorders:  # variables may be made in this trace only
                recorder.prepare([v for _, v in pairs])
            return self.original_apply(grads, trainable_variables)
        step = tf.cast(self.optimizer.iterations, tf.int64) + 1
        pending = [r.before_apply(pairs, step) for r in recorders]
        result = self.original_apply(grads, trainable_variables)
        for recorder, state in zip(recorders, pending):
            recorder.after_apply(pairs, step, state)
        return result


@tf.autograph.experimental.do_not_convert
def _builds_variables_now(optimizer: Any, variables: list[Any] | None) -> bool:
    """Build an unbuilt optimizer inside the trace now, as its `apply` would; True if that
    created variables.

    A `tf.function` whose first trace creates variables is traced a second time and
    only that second graph runs, so the signals need not be traced into the first
    one: a plain `fit` pays the two traces anyway, and the monitored step's heavier
    first trace was most of a monitored `fit`'s fixed cost.
    """
    if variables is None or getattr(optimizer, "built", True) or not tf.inside_function():
        return False
    import keras

    created: list[str] = []

    def count(next_creator: Any, **kwargs: Any) -> Any:
        created.append(kwargs.get("name") or "")
        return next_creator(**kwargs)

    with tf.variable_creator_scope(count), keras.name_scope(optimizer.name, caller=optimizer):
        optimizer.build(variables)
    optimizer.built = True
    return bool(created)


class _TrainFunctions:
    """The model's own train function and the one traced with the hook, kept across fits.

    A monitored `fit` puts back the function it found and the next one reuses its
    traced function instead of tracing again, as long as nothing it was traced for
    changed (the model's own function, its optimizer, variables, steps per execution).
    """

    def __init__(self, own: Any, hooked: Any, key: tuple[Any, ...]) -> None:
        self.own = own
        self.hooked = hooked
        self.key = key

    @staticmethod
    def key_of(model: Any, optimizer: Any, buffer: Any) -> tuple[Any, ...]:
        return (
            id(optimizer),
            id(buffer),
            getattr(model, "steps_per_execution", 1),
            getattr(model, "jit_compile", None),
            getattr(model, "run_eagerly", None),
            tuple(id(v) for v in model.trainable_variables),
        )


class StepSignalRecorder:
    """Records per-step gradient signals of a model's `fit` into a `TrainingRecord`.

    Args:
        update_ratio_every: record the per-layer update-to-weight ratio every
            this many optimizer steps (NaN on the others); 0 never; None once an
            epoch (`auto_update_ratio_every`). Each sampled step copies the
            weights into persistent shadow variables (one more copy of the
            trainable weights in memory).
        min_rows: the least number of ring-buffer rows; the buffer holds
            `max(min_rows, 2 * steps_per_execution)` rows and must be read at
            least that often (in steps).
    """

    def __init__(self, *, update_ratio_every: int | None = 1, min_rows: int = 64) -> None:
        self.requested_every = update_ratio_every
        # the sampling period of the fit in progress (None: chosen at install)
        self.update_ratio_every = 1 if update_ratio_every is None else int(update_ratio_every)
        self._shadows: dict[int, tf.Variable] = {}
        self.min_rows = int(min_rows)
        self.layer_names: list[str] | None = None
        self._buffer: tf.Variable | None = None
        self._rows = 0
        self._segments: dict[str, int] = {}
        self._hook: _ApplyHook | None = None
        self._model: Any = None
        self._functions: _TrainFunctions | None = None
        self._last_step = 0
        self._loss_total = 0.0
        self._loss_count = 0.0
        self.steps_lost = 0
        self.nonfinite_loss = False  # whether the last flush saw a non-finite loss total
        # The host-sampled update ratio (one step per execution): the step the next
        # batch runs, the functions that copy the weights and measure the ratio, and
        # whether a copy waits for its step to run.
        self._host_sampled = False
        self._next_step = 0
        self._ratio_functions: tuple[Any, Any] | None = None
        self._ratio_key: tuple[Any, ...] = ()
        self._copied = False
        # Host-measured ratios waiting for their step's row: {optimizer step: per-layer ratio}.
        self._host_ratios: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------ install
    @property
    def rows(self) -> int:
        """Ring-buffer rows: read the buffer at least this often, in steps."""
        return self._rows

    @property
    def installed(self) -> bool:
        return self._hook is not None

    def install(self, model: Any, steps_per_epoch: int | None = None) -> None:
        """Wrap the optimizer's `apply` and give the model a train function traced with it
        (the one an earlier fit traced, when nothing it depends on changed)."""
        if self._hook is not None:
            return
        self._model = model
        spe = int(getattr(model, "steps_per_execution", 1) or 1)
        if self.requested_every is None:
            # Several steps per execution: the ratio would be measured inside the step,
            # in a branch every step pays for (17 % of a Fashion MLP's epoch at 8 steps
            # per execution): not by default.
            self.update_ratio_every = auto_update_ratio_every(steps_per_epoch) if spe == 1 else 0
        self._rows = max(self._rows, self.min_rows, 2 * spe)
        self._host_sampled = bool(self.update_ratio_every) and spe == 1
        optimizer = target_optimizer(model)
        iterations = int(optimizer.iterations.numpy())
        self._next_step = iterations + 1
        self._copied = False
        self._host_ratios.clear()
        if iterations < self._last_step:  # a new optimizer (recompiled): its steps restart
            self._last_step = iterations
            if self._buffer is not None:
                self._buffer.assign(tf.zeros_like(self._buffer))
        hook = _ApplyHook.of(optimizer)
        hook.recorders.append(self)
        self._hook = hook
        self._create_variables(list(model.trainable_variables))
        if self._ratio_key != self._ratio_key_of(optimizer):
            self._ratio_functions = None  # traced for another optimizer, variables or buffer
        own = getattr(model, "train_function", None)
        graph_every = None if self._host_sampled else self.update_ratio_every  # traced into the step
        key = _TrainFunctions.key_of(model, optimizer, self._buffer) + (graph_every,)
        cached = self._functions
        if len(hook.recorders) == 1 and cached is not None and cached.own is own and cached.key == key:
            model.train_function = cached.hooked  # traced by an earlier fit: no new trace
            return
        model.make_train_function(force=True)
        # Several recorders on one optimizer share one traced function: none keeps it.
        self._functions = _TrainFunctions(own, model.train_function, key) if len(hook.recorders) == 1 else None

    def _create_variables(self, variables: list[Any]) -> None:
        """The buffer and the weight shadows, created now rather than inside the first
        trace: a `tf.function` that creates variables is traced twice (about 0.3 s
        a `fit` for a small MLP)."""
        model_name = getattr(self._model, "name", "")
        if self.layer_names is None and variables:
            self._setup(variables)  # a built model: its layers are known before the first step
        layers = {layer_key(getattr(v, "path", v.name), model_name) for v in variables}
        if self.layer_names is not None:
            layers.update(self.layer_names)
        self._ensure_buffer(_width(len(layers)))
        if self._in_graph_ratio:
            self._shadows_of(variables)

    @property
    def _in_graph_ratio(self) -> bool:
        """The update ratio is measured inside the compiled step (several steps per
        execution) rather than sampled on the host between steps."""
        return bool(self.update_ratio_every) and not self._host_sampled

    def uninstall(self) -> None:
        """Restore the optimizer's `apply` and the model's train function as they were."""
        if self._hook is None:
            return
        self._hook.remove(self)
        self._hook = None
        functions = self._functions
        if functions is not None and getattr(self._model, "train_function", None) is functions.hooked:
            self._model.train_function = functions.own  # exactly the function the fit started with
        else:
            self._functions = None
            self._model.make_train_function(force=True)

    def epoch_boundary(self) -> None:
        """Keras resets its loss tracker at each epoch start: per-step losses restart from zero."""
        self._loss_total = 0.0
        self._loss_count = 0.0

    # ------------------------------------------------------------ host-sampled update ratio
    def before_batch(self) -> None:
        """Call at the start of every batch (one step each): finish the update ratio of
        the step just run, and copy the weights before a sampled step."""
        if not self._host_sampled:
            return
        self.after_last_batch()
        step = self._next_step
        self._next_step += 1
        if step % self.update_ratio_every == 0:
            functions = self._ratio_functions or self._make_ratio_functions()
            if functions is not None:
                functions[0]()
                self._copied = True

    def after_last_batch(self) -> None:
        """Finish the update ratio of the last step run, if its weights were copied."""
        if self._copied:
            self._copied = False
            self._ratio_functions[1]()

    def resync_steps(self) -> None:
        """After a flush: count steps from the last one recorded again. A batch that ran
        no step (the end of a dataset of unknown length, a step the loss scale
        skipped) must not shift the sampled steps for good."""
        if self._last_step:
            self._next_step = self._last_step + 1

    def _make_ratio_functions(self) -> tuple[Any, Any] | None:
        """The copy and measure functions, once the model has its variables and the step
        has been traced (which names the layers).

        They work on host copies with NumPy: once an epoch that is a few hundred
        microseconds for a small MLP, where eager TensorFlow ops cost about 4 ms and two
        `tf.function`s about 0.15 s of tracing for every new recorder (every monitor,
        every sweep trial); and the weights need no second copy on the device.
        """
        variables = list(self._model.trainable_variables)
        if not variables or self.layer_names is None or self._buffer is None:
            return None
        segment_ids = np.asarray(self._segment_ids([(None, v) for v in variables]))
        optimizer = target_optimizer(self._model)
        n_layers = len(self.layer_names)
        pending = self._host_ratios
        copied: list[Any] = [-1, None]  # the optimizer step at the last copy, and the copy

        def copy() -> None:
            copied[1] = [np.array(v.numpy(), dtype=np.float64) for v in variables]
            copied[0] = int(optimizer.iterations.numpy())

        def measure() -> None:
            before, copied[1] = copied[1], None
            step = int(optimizer.iterations.numpy())
            # Exactly one step since the copy: a batch that ran no step measures nothing
            # (and a step the loss scale skipped writes no row for the ratio to join).
            if before is None or step != copied[0] + 1:
                return
            delta_sq = np.array([np.sum(np.square(np.asarray(v.numpy(), np.float64) - w)) for v, w in zip(variables, before)])
            weight_sq = np.array([np.sum(np.square(w)) for w in before])
            layer_delta = np.bincount(segment_ids, delta_sq, minlength=n_layers + 1)[:n_layers]
            layer_weight = np.bincount(segment_ids, weight_sq, minlength=n_layers + 1)[:n_layers]
            with np.errstate(invalid="ignore", over="ignore"):
                ratio = np.sqrt(layer_delta) / (np.sqrt(layer_weight) + _EPSILON)
            pending[step] = ratio  # joined to the step's row by the next flush, on the host

        self._ratio_functions = (copy, measure)
        self._ratio_key = self._ratio_key_of(optimizer)
        return self._ratio_functions

    def _ratio_key_of(self, optimizer: Any) -> tuple[Any, ...]:
        return (id(optimizer), id(self._buffer), tuple(id(v) for v in self._model.trainable_variables))

    # ------------------------------------------------------------ in graph
    def _setup(self, variables: list[Any]) -> None:
        """Create the buffer and the layer grouping, once, outside any traced function."""
        model_name = getattr(self._model, "name", "")
        if self.layer_names is None:
            names: list[str] = []
            for v in variables:
                key = layer_key(getattr(v, "path", v.name), model_name)
                if key not in names:
                    names.append(key)
            self.layer_names = names
            self._segments = {name: i for i, name in enumerate(names)}
        self._ensure_buffer(_width(len(self.layer_names)))

    def _ensure_buffer(self, width: int) -> None:
        """A ring buffer of `self._rows` rows and at least `width` columns. A wider one
        (made before the trace, for every trainable layer) is kept: rows are padded to it."""
        if self._buffer is None or self._buffer.shape[0] != self._rows or self._buffer.shape[1] < width:
            with tf.init_scope():
                self._buffer = tf.Variable(
                    tf.zeros((self._rows, width), tf.float64), trainable=False, name="descentkit_step_signals"
                )
            self._ratio_functions = None

    def _segment_ids(self, pairs: list[tuple[Any, Any]]) -> list[int]:
        model_name = getattr(self._model, "name", "")
        n_layers = len(self.layer_names or [])
        # Variables unknown at setup (a layer unfrozen between fits) count in the
        # global norm only: they go to an extra segment, never read as a layer.
        return [
            self._segments.get(layer_key(getattr(v, "path", v.name), model_name), n_layers) for _, v in pairs
        ]

    def prepare(self, variables: list[Any]) -> list[tf.Variable]:
        """Create the buffer, the layer grouping and the weight shadows if not yet made."""
        if self.layer_names is None or self._buffer is None or self._buffer.shape[0] != self._rows:
            self._setup(variables)
        # host-sampled ratios copy the weights on the host, not into shadows
        return self._shadows_of(variables) if self._in_graph_ratio else []

    def before_apply(self, pairs: list[tuple[Any, Any]], step: tf.Tensor) -> Any:
        shadows = self.prepare([v for _, v in pairs])
        if not self._in_graph_ratio:
            return None
        sampled = tf.equal(tf.math.floormod(step, self.update_ratio_every), 0)

        # Copy the weights into persistent shadows on sampled steps only: a plain
        # snapshot tensor would stay alive across the update and force a
        # copy-on-write of every weight on every step (10-15 % of a CPU MLP step).
        def snapshot() -> tf.Tensor:
            for (_, v), shadow in zip(pairs, shadows):
                shadow.assign(v.value)
            return tf.constant(True)

        tf.cond(sampled, snapshot, lambda: tf.constant(False))
        return sampled, shadows

    def _shadows_of(self, variables: list[Any]) -> list[tf.Variable]:
        shadows = []
        for v in variables:
            shadow = self._shadows.get(id(v))
            if shadow is None:
                with tf.init_scope():
                    shadow = tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="descentkit_shadow")
                self._shadows[id(v)] = shadow
            shadows.append(shadow)
        return shadows

    def after_apply(self, pairs: list[tuple[Any, Any]], step: tf.Tensor, weights_before: Any) -> None:
        n_layers = len(self.layer_names or [])
        segment_ids = self._segment_ids(pairs)
        grads = [g.values if isinstance(g, tf.IndexedSlices) else g for g, _ in pairs]
        half_sq = tf.stack([tf.nn.l2_loss(tf.cast(g, tf.float32)) for g in grads])  # one fused pass each
        per_layer = tf.math.unsorted_segment_sum(half_sq, tf.constant(segment_ids, tf.int32), n_layers + 1)
        tracker = getattr(self._model, "_loss_tracker", None)
        total, count = getattr(tracker, "total", None), getattr(tracker, "count", None)
        loss = [total.value, count.value] if total is not None and count is not None else [0.0, 0.0]
        head = tf.stack([tf.reduce_sum(half_sq), tf.cast(loss[0], tf.float32), tf.cast(loss[1], tf.float32)])
        columns = [tf.reshape(tf.cast(step, tf.float64), [1]), tf.cast(tf.concat([head, per_layer], 0), tf.float64)]
        if weights_before is not None:  # the update ratio in the step (several steps per execution)
            sampled, shadows = weights_before
            columns.append(tf.cond(
                sampled,
                lambda: _update_ratio([v for _, v in pairs], shadows, segment_ids, n_layers),
                lambda: tf.fill([n_layers], tf.constant(math.nan, tf.float64)),
            ))
        else:
            columns.append(tf.constant(np.full(n_layers, math.nan)))
        padding = int(self._buffer.shape[1]) - _width(n_layers)
        if padding:
            columns.append(tf.zeros([padding], tf.float64))
        index = tf.math.floormod(step, self._rows)
        self._buffer.scatter_update(tf.IndexedSlices(tf.concat(columns, 0)[None, :], tf.reshape(index, [1])))

    # ------------------------------------------------------------ on the host
    def needs_flush(self, loss_bound: float) -> bool:
        """Whether the steps written since the last flush need the record now (one host
        read, nothing appended): a non-finite loss or gradient value, a step loss above
        `loss_bound`, or a ring half full. Between flushes a monitor that must stop a
        divergence within a few steps looks here, and the flush (NumPy and the
        record's appends) waits for the epoch end. Most of a look's cost is the read
        itself, which waits for the step just dispatched to finish."""
        if self._buffer is None:
            return True
        new = self._unread_rows()
        if not len(new):
            return False
        if len(new) >= max(1, self._rows // 2):
            return True
        n_layers = len(self.layer_names or [])
        signals = new[:, [_HALF_SQ, _LOSS_TOTAL] + list(range(_FIXED_COLUMNS, _FIXED_COLUMNS + n_layers + 1))]
        if not np.isfinite(signals).all():
            return True
        with np.errstate(invalid="ignore"):
            return bool(np.any(self._step_losses(new) > loss_bound))

    def _unread_rows(self) -> np.ndarray:
        """The ring rows of the steps after the last flushed one, in step order."""
        rows = self._buffer.numpy()
        new = rows[rows[:, _STEP] > self._last_step]
        return new[np.argsort(new[:, _STEP])]

    def _step_losses(self, new: np.ndarray) -> np.ndarray:
        """Each new row's step loss, from the loss tracker's running total and count.

        A step's loss is the change of the total over the change of the count; a count
        that fell means the tracker was reset (a new epoch). Once the loss overflows,
        the total is inf and inf - inf is NaN: non-finite, as it should be, and not
        worth a RuntimeWarning in the user's console."""
        totals = np.concatenate([[self._loss_total], new[:, _LOSS_TOTAL]])
        counts = np.concatenate([[self._loss_count], new[:, _LOSS_COUNT]])
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            grew = counts[1:] > counts[:-1]
            reset = ~grew & (counts[1:] > 0)
            losses = np.full(len(new), np.nan)
            losses[grew] = ((totals[1:] - totals[:-1]) / (counts[1:] - counts[:-1]))[grew]
            losses[reset] = (totals[1:] / counts[1:])[reset]
        return losses

    def flush(self, record: TrainingRecord) -> int:
        """Append the steps written since the last flush to `record` (one host read).

        Returns the number of steps appended.
        """
        self.nonfinite_loss = False
        if self._buffer is None:
            return 0
        new = self._unread_rows()
        if not len(new):
            return 0
        first = int(new[0, _STEP])
        if self._last_step and first > self._last_step + 1:
            self.steps_lost += first - self._last_step - 1  # read too rarely: the ring wrapped
        self._last_step = int(new[-1, _STEP])

        losses = self._step_losses(new)
        self._loss_total, self._loss_count = float(new[-1, _LOSS_TOTAL]), float(new[-1, _LOSS_COUNT])
        # A loss whose running total is not finite is a real non-finite loss (a NaN
        # step loss otherwise only means "not known").
        self.nonfinite_loss = bool(np.any(~np.isfinite(new[:, _LOSS_TOTAL])))
        with np.errstate(invalid="ignore", over="ignore"):
            n_layers = len(self.layer_names or [])
            layer_sq = new[:, _FIXED_COLUMNS : _FIXED_COLUMNS + n_layers + 1]
            ratios = new[:, _FIXED_COLUMNS + n_layers + 1 : _FIXED_COLUMNS + 2 * n_layers + 1]
            if self._host_ratios:
                row_of = {int(step): i for i, step in enumerate(new[:, _STEP])}
                for step, ratio in self._host_ratios.items():
                    if step in row_of:
                        ratios[row_of[step]] = ratio
                self._host_ratios.clear()  # a ratio whose step wrote no row is dropped
            # A non-finite gradient value makes its layer's sum of squares non-finite
            # (an overflowing square too): the layers hit, or 1 when only the global sum shows it.
            bad_layers = np.sum(~np.isfinite(layer_sq), axis=1).astype(np.float64)
            bad_layers[(bad_layers == 0) & ~np.isfinite(new[:, _HALF_SQ])] = 1.0
            record.add_steps(
                new[:, _STEP].astype(np.int64),
                grad_norm=np.sqrt(2.0 * new[:, _HALF_SQ]),
                layer_grad_norms=np.sqrt(2.0 * layer_sq[:, :n_layers]),
                nonfinite=bad_layers,
                update_ratio=ratios if self.update_ratio_every else None,
                loss=losses,
            )
        return len(new)


# The update ratio's sampling when none is asked for: once an epoch, but never more
# often than every 8th step nor less often than every 64th. Each sample costs about
# 0.6 ms of host calls here (the weights copied, then the ratio measured): every 8th
# step of a 1 ms step that was 15 % of training; once an epoch of 43 steps, under 2 %.
AUTO_UPDATE_RATIO_MIN_EVERY = 8
AUTO_UPDATE_RATIO_MAX_EVERY = 64


def auto_update_ratio_every(steps_per_epoch: int | None) -> int:
    """The default sampling period of the update ratio for epochs of `steps_per_epoch` steps."""
    if not steps_per_epoch:  # an epoch of unknown length: the cheapest sampling
        return AUTO_UPDATE_RATIO_MAX_EVERY
    return int(min(AUTO_UPDATE_RATIO_MAX_EVERY, max(AUTO_UPDATE_RATIO_MIN_EVERY, steps_per_epoch)))


def _width(n_layers: int) -> int:
    """Columns of a buffer row for `n_layers` layers."""
    return _FIXED_COLUMNS + 2 * n_layers + 1


def _update_ratio(variables: list[Any], shadows: list[Any], segment_ids: list[int], n_layers: int) -> tf.Tensor:
    """Per layer `||w - shadow|| / ||shadow||` (float64), from the weights now and their copy."""
    ids = tf.constant(segment_ids, tf.int32)
    delta_sq = tf.stack([tf.nn.l2_loss(tf.cast(v.value - w, tf.float32)) for v, w in zip(variables, shadows)])
    weight_sq = tf.stack([tf.nn.l2_loss(tf.cast(w, tf.float32)) for w in shadows])
    # the factors 1/2 of l2_loss cancel in the ratio
    layer_delta = tf.math.unsorted_segment_sum(delta_sq, ids, n_layers + 1)[:n_layers]
    layer_weight = tf.math.unsorted_segment_sum(weight_sq, ids, n_layers + 1)[:n_layers]
    return tf.cast(tf.sqrt(layer_delta) / (tf.sqrt(layer_weight) + _EPSILON), tf.float64)
