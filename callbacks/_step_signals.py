"""In-graph gradient signals of every optimizer step, collected from an unmodified model.

`StepSignalRecorder` wraps the optimizer's `apply` (the inner optimizer of a
`LossScaleOptimizer`, whose gradients are already unscaled) for the length of one
`fit()`. Inside the compiled train step the wrapper computes the global and
per-layer gradient L2 norms, the count of non-finite gradient values, the
per-layer update-to-weight ratio `||w_after - w_before|| / ||w_before||` and the
batch loss, and writes them as one row of a ring-buffer `tf.Variable` indexed by
the optimizer's step counter. The host reads the buffer only when asked (every
few steps and at epoch end): a host read costs 30-80 us, 10-20 % of a 1 ms step.

The buffer is a plain `tf.Variable` held here, never by the model or the
optimizer, so saving the model and the optimizer's variable list are unaffected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from descentkit.diagnostics import TrainingRecord

# Row layout of the ring buffer; per-layer columns follow the fixed ones.
_STEP, _GRAD_NORM, _NONFINITE, _LOSS_TOTAL, _LOSS_COUNT = range(5)
_FIXED_COLUMNS = 5
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
    """The optimizer whose `apply` sees unscaled gradients."""
    optimizer = model.optimizer
    return getattr(optimizer, "inner_optimizer", None) or optimizer


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
            this many optimizer steps (NaN on the others); 0 never. Each sampled
            step copies the weights into persistent shadow variables (one more
            copy of the trainable weights in memory).
        min_rows: the least number of ring-buffer rows; the buffer holds
            `max(min_rows, 2 * steps_per_execution)` rows and must be read at
            least that often (in steps).
    """

    def __init__(self, *, update_ratio_every: int = 1, min_rows: int = 64) -> None:
        self.update_ratio_every = int(update_ratio_every)
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

    # ------------------------------------------------------------ install
    @property
    def rows(self) -> int:
        """Ring-buffer rows: read the buffer at least this often, in steps."""
        return self._rows

    @property
    def installed(self) -> bool:
        return self._hook is not None

    def install(self, model: Any) -> None:
        """Wrap the optimizer's `apply` and give the model a train function traced with it
        (the one an earlier fit traced, when nothing it depends on changed)."""
        if self._hook is not None:
            return
        self._model = model
        spe = int(getattr(model, "steps_per_execution", 1) or 1)
        self._rows = max(self._rows, self.min_rows, 2 * spe)
        optimizer = target_optimizer(model)
        iterations = int(optimizer.iterations.numpy())
        if iterations < self._last_step:  # a new optimizer (recompiled): its steps restart
            self._last_step = iterations
            if self._buffer is not None:
                self._buffer.assign(tf.zeros_like(self._buffer))
        hook = _ApplyHook.of(optimizer)
        hook.recorders.append(self)
        self._hook = hook
        self._create_variables(list(model.trainable_variables))
        own = getattr(model, "train_function", None)
        key = _TrainFunctions.key_of(model, optimizer, self._buffer)
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
        layers = {layer_key(getattr(v, "path", v.name), model_name) for v in variables}
        if self.layer_names is not None:
            layers.update(self.layer_names)
        self._ensure_buffer(_FIXED_COLUMNS + 2 * len(layers))
        if self.update_ratio_every:
            self._shadows_of(variables)

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
        self._ensure_buffer(_FIXED_COLUMNS + 2 * len(self.layer_names))

    def _ensure_buffer(self, width: int) -> None:
        """A ring buffer of `self._rows` rows and at least `width` columns. A wider one
        (made before the trace, for every trainable layer) is kept: rows are padded to it."""
        if self._buffer is None or self._buffer.shape[0] != self._rows or self._buffer.shape[1] < width:
            with tf.init_scope():
                self._buffer = tf.Variable(
                    tf.zeros((self._rows, width), tf.float64), trainable=False, name="descentkit_step_signals"
                )

    def _segment_ids(self, pairs: list[tuple[Any, Any]]) -> list[int]:
        model_name = getattr(self._model, "name", "")
        n_layers = len(self.layer_names or [])
        # Variables unknown at setup (a layer unfrozen between fits) count in the
        # global norm only: they go to an extra, dropped segment.
        return [
            self._segments.get(layer_key(getattr(v, "path", v.name), model_name), n_layers) for _, v in pairs
        ]

    def prepare(self, variables: list[Any]) -> list[tf.Variable]:
        """Create the buffer, the layer grouping and the weight shadows if not yet made."""
        if self.layer_names is None or self._buffer is None or self._buffer.shape[0] != self._rows:
            self._setup(variables)
        return self._shadows_of(variables) if self.update_ratio_every else []

    def before_apply(self, pairs: list[tuple[Any, Any]], step: tf.Tensor) -> Any:
        shadows = self.prepare([v for _, v in pairs])
        if not self.update_ratio_every:
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
        segment_ids = tf.constant(self._segment_ids(pairs), tf.int32)
        grads = [g.values if isinstance(g, tf.IndexedSlices) else g for g, _ in pairs]
        grads = [tf.cast(g, tf.float32) for g in grads]
        grad_sq = 2.0 * tf.stack([tf.nn.l2_loss(g) for g in grads])  # l2_loss: one fused pass, sum(g**2) / 2
        layer_grad_sq = tf.math.unsorted_segment_sum(grad_sq, segment_ids, n_layers + 1)[:n_layers]
        total_sq = tf.reduce_sum(grad_sq)
        # A finite sum of squares means every value is finite: count only otherwise,
        # which spares a pass over every gradient on healthy steps.
        nonfinite = tf.cond(
            tf.math.is_finite(total_sq),
            lambda: tf.constant(0.0),
            lambda: tf.add_n([tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(g)), tf.float32)) for g in grads]),
        )
        values = [
            tf.cast(step, tf.float64),
            tf.cast(tf.sqrt(total_sq), tf.float64),
            tf.cast(nonfinite, tf.float64),
        ]
        tracker = getattr(self._model, "_loss_tracker", None)
        total, count = getattr(tracker, "total", None), getattr(tracker, "count", None)
        if total is not None and count is not None:
            values += [tf.cast(total.value, tf.float64), tf.cast(count.value, tf.float64)]
        else:
            values += [tf.constant(0.0, tf.float64), tf.constant(0.0, tf.float64)]
        columns = [tf.stack(values), tf.cast(tf.sqrt(layer_grad_sq), tf.float64)]
        if weights_before is not None:
            sampled, shadows = weights_before

            def ratio() -> tf.Tensor:
                delta_sq = tf.stack(
                    [tf.nn.l2_loss(tf.cast(v.value - w, tf.float32)) for (_, v), w in zip(pairs, shadows)]
                )
                weight_sq = tf.stack([tf.nn.l2_loss(tf.cast(w, tf.float32)) for w in shadows])
                # the factors 1/2 of l2_loss cancel in the ratio
                layer_delta = tf.math.unsorted_segment_sum(delta_sq, segment_ids, n_layers + 1)[:n_layers]
                layer_weight = tf.math.unsorted_segment_sum(weight_sq, segment_ids, n_layers + 1)[:n_layers]
                return tf.cast(tf.sqrt(layer_delta) / (tf.sqrt(layer_weight) + _EPSILON), tf.float64)

            columns.append(tf.cond(sampled, ratio, lambda: tf.fill([n_layers], tf.constant(math.nan, tf.float64))))
        else:
            columns.append(tf.fill([n_layers], tf.constant(math.nan, tf.float64)))
        row = tf.concat(columns, axis=0)
        padding = int(self._buffer.shape[1]) - (_FIXED_COLUMNS + 2 * n_layers)
        if padding:
            row = tf.concat([row, tf.zeros([padding], tf.float64)], axis=0)
        index = tf.math.floormod(step, self._rows)
        self._buffer.scatter_update(tf.IndexedSlices(row[None, :], tf.reshape(index, [1])))

    # ------------------------------------------------------------ on the host
    def flush(self, record: TrainingRecord) -> int:
        """Append the steps written since the last flush to `record` (one host read).

        Returns the number of steps appended.
        """
        if self._buffer is None:
            return 0
        rows = self._buffer.numpy()
        steps = rows[:, _STEP]
        new = rows[steps > self._last_step]
        if not len(new):
            return 0
        new = new[np.argsort(new[:, _STEP])]
        first = int(new[0, _STEP])
        if self._last_step and first > self._last_step + 1:
            self.steps_lost += first - self._last_step - 1  # read too rarely: the ring wrapped
        self._last_step = int(new[-1, _STEP])

        losses = np.full(len(new), np.nan)
        # Once the loss overflows, the running total is inf and inf - inf is NaN: the
        # step loss is non-finite, as it should be, and not worth a RuntimeWarning in
        # the user's console.
        with np.errstate(invalid="ignore", over="ignore"):
            for i, (total, count) in enumerate(new[:, [_LOSS_TOTAL, _LOSS_COUNT]]):
                if count > self._loss_count:
                    losses[i] = (total - self._loss_total) / (count - self._loss_count)
                elif count > 0:  # the tracker was reset since the last row we saw
                    losses[i] = total / count
                self._loss_total, self._loss_count = total, count
        n_layers = len(self.layer_names or [])
        layer_norms = new[:, _FIXED_COLUMNS : _FIXED_COLUMNS + n_layers]
        ratios = new[:, _FIXED_COLUMNS + n_layers : _FIXED_COLUMNS + 2 * n_layers]
        record.add_steps(
            new[:, _STEP].astype(np.int64),
            grad_norm=new[:, _GRAD_NORM],
            layer_grad_norms=layer_norms,
            nonfinite=new[:, _NONFINITE],
            update_ratio=ratios if self.update_ratio_every else None,
            loss=losses,
        )
        return len(new)
