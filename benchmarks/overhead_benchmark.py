"""What `TrainingMonitor` costs: plain `fit` against monitored `fit`, epochs interleaved.

For each configuration (a digits MLP and a 784-256-128-10 Fashion-MNIST MLP, each
with `steps_per_execution` 1 and 8) one process builds identical models once (same
initial weights), one per variant, warms each up with one epoch, then runs
`--rounds` rounds; each round trains every variant for one epoch in turn, so load
drift on the machine hits all variants alike. A timing callback (last in the list,
so it also times the other callbacks' epoch-end work) measures each epoch from the
end of its first execution (which may include a retrace: `TrainingMonitor`
rebuilds the train function at each `fit`) to its end, per optimizer step. The
table prints, per variant, the median over rounds of (variant epoch time / plain
epoch time of the same round).

Variants:
- plain: `fit` with no callback;
- monitor: `TrainingMonitor()` at its defaults (stop_on=("divergence",), no probe);
- probe_batch: a reference callback computing per-layer gradient norms of a fixed
  batch of 128 with `GradientTape` once per epoch end;
- tensorboard: `keras.callbacks.TensorBoard(histogram_freq=1)` (if installed);
- with `--profile`: monitor(stop_on=()) (no per-8-step host read),
  monitor(stop_on=(), update_ratio_every=0) (in-graph norms only), and a callback
  that only overrides `on_train_batch_end` and does nothing (the cost of Keras
  turning off async callback dispatch and reading the logs every batch).

Usage:
    python benchmarks/overhead_benchmark.py [--rounds 7] [--configs digits,fashion]
                                            [--fashion-train 30000] [--profile]

Run on an otherwise idle machine: the figures are wall-clock ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def load_config(name: str, fashion_train: int) -> tuple[np.ndarray, np.ndarray, list[int], int, str]:
    """(x, y, hidden sizes, batch size, note) of a configuration."""
    if name == "digits":
        from descentkit.studies import DATASETS

        data = DATASETS["digits"](seed=0)
        # 1,347 samples are 42 steps of 32: tiled 8x so an epoch lasts long enough to time.
        x, y = np.tile(data.x_train, (8, 1)), np.tile(data.y_train, 8)
        return x, y, [128, 64], 32, "digits 64-128-64-10, batch 32, training set tiled 8x (337 steps/epoch)"
    if name == "fashion":
        try:
            from descentkit.studies import DATASETS

            data = DATASETS["fashion-mnist"](seed=0, train_size=fashion_train, val_size=1000, download=False)
            x, y = data.x_train.reshape(len(data.x_train), -1), data.y_train
            note = f"Fashion-MNIST ({len(x)} images) 784-256-128-10, batch 128"
        except Exception as exc:  # noqa: BLE001 - any loader failure falls back to random data
            rng = np.random.default_rng(0)
            x = rng.random((fashion_train, 784), dtype=np.float32)
            y = rng.integers(0, 10, fashion_train)
            note = f"RANDOM 784-dim data ({fashion_train} rows; Fashion-MNIST unavailable: {exc}), batch 128"
        return x.astype("float32"), y.astype("int64"), [256, 128], 128, note
    raise SystemExit(f"--configs: unknown configuration {name!r}; expected digits or fashion.")


def build(x: np.ndarray, hidden: list[int], spe: int, weights: list[np.ndarray] | None) -> Any:
    import keras

    model = keras.Sequential([keras.Input(x.shape[1:])] + [keras.layers.Dense(h, activation="relu") for h in hidden]
                             + [keras.layers.Dense(10, activation="softmax")])
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=spe)
    return model


class EpochTimer:
    """Times each epoch from the start of its second execution to its end, per optimizer step.

    It hooks `on_train_batch_begin`, never `on_train_batch_end`: a callback with an
    `on_train_batch_end` makes Keras drop async callback dispatch and read the logs
    every batch, which would slow the plain baseline down too.
    """

    def __new__(cls, steps_per_epoch: int) -> Any:  # a keras Callback built lazily (keras imports late)
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.per_step: list[float] = []
                self._start: float | None = None
                self._from_step = 0
                self._calls = 0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._start, self._calls = None, 0

            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                self._calls += 1
                if self._calls == 2:
                    self._start, self._from_step = time.perf_counter(), batch

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                steps = steps_per_epoch - self._from_step
                self.per_step.append((time.perf_counter() - self._start) / max(1, steps))

        return _Timer()


def probe_batch_callback(x: np.ndarray, y: np.ndarray) -> Any:
    """Reference: per-layer gradient norms of one fixed batch, computed at each epoch end."""
    import keras
    import tensorflow as tf

    class ProbeBatchGradients(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.x, self.y = tf.constant(x[:128]), tf.constant(y[:128])
            self.norms: list[np.ndarray] = []
            self._fn = None

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if self._fn is None:
                model = self.model

                @tf.function
                def norms() -> tf.Tensor:
                    with tf.GradientTape() as tape:
                        loss = model.compute_loss(x=self.x, y=self.y, y_pred=model(self.x, training=True))
                    grads = tape.gradient(loss, model.trainable_variables)
                    return tf.stack([tf.norm(g) for g in grads])

                self._fn = norms
            self.norms.append(self._fn().numpy())

    return ProbeBatchGradients()


def noop_batch_callback() -> Any:
    import keras

    class NoopBatchEnd(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            pass

    return NoopBatchEnd()


def variants(x: np.ndarray, y: np.ndarray, profile: bool, tmp: str) -> dict[str, Any]:
    """name -> a factory of the callbacks list (None: plain)."""
    import keras

    from descentkit.callbacks import TrainingMonitor

    out: dict[str, Any] = {
        "plain": lambda: [],
        "monitor": (lambda m=TrainingMonitor(verbose=0): [m]),
        "probe_batch": (lambda c=probe_batch_callback(x, y): [c]),
    }
    try:
        import tensorboard  # noqa: F401

        out["tensorboard"] = (lambda c=keras.callbacks.TensorBoard(log_dir=tmp, histogram_freq=1): [c])
    except ImportError:
        print("tensorboard is not installed: its variant is skipped (pip install tensorboard to measure it)")
    if profile:
        out["monitor stop_on=()"] = (lambda m=TrainingMonitor(stop_on=(), verbose=0): [m])
        out["monitor stop_on=() no update ratio"] = (
            lambda m=TrainingMonitor(stop_on=(), verbose=0, update_ratio_every=0): [m])
        out["no-op on_train_batch_end"] = (lambda c=noop_batch_callback(): [c])
    return out


def measure(name: str, spe: int, rounds: int, profile: bool, fashion_train: int) -> list[str]:
    import keras

    x, y, hidden, batch, note = load_config(name, fashion_train)
    keras.utils.set_random_seed(0)
    reference = build(x, hidden, spe, None)
    weights = reference.get_weights()
    lines = [f"{note}, steps_per_execution={spe}"]
    with tempfile.TemporaryDirectory() as tmp:
        factories = variants(x, y, profile, tmp)
        models = {v: build(x, hidden, spe, weights) for v in factories}
        timers = {v: EpochTimer(-(-len(x) // batch)) for v in factories}
        callbacks = {v: factories[v]() for v in factories}
        for v in factories:  # warm-up epoch: traces, first-call costs
            models[v].fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks[v] + [timers[v]])
            timers[v].per_step.clear()
        fit_wall: dict[str, list[float]] = {v: [] for v in factories}
        for _ in range(rounds):
            for v in factories:
                start = time.perf_counter()
                models[v].fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks[v] + [timers[v]])
                fit_wall[v].append(time.perf_counter() - start)
    plain = np.array(timers["plain"].per_step)
    plain_wall = np.array(fit_wall["plain"])
    lines.append(f"  {'variant':38} {'ms/step':>8} {'ratio (median)':>15} {'min..max':>14} {'fit() wall ratio':>17}")
    for v in factories:
        per = np.array(timers[v].per_step)
        ratio = per / plain
        wall = np.array(fit_wall[v]) / plain_wall
        lines.append(f"  {v:38} {1e3 * np.median(per):8.3f} {np.median(ratio):15.3f} "
                     f"{ratio.min():6.2f}..{ratio.max():<6.2f} {np.median(wall):17.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--configs", default="digits,fashion", help="digits, fashion or both (default both)")
    parser.add_argument("--spe", default="1,8", help="steps_per_execution values (default 1,8)")
    parser.add_argument("--fashion-train", type=int, default=30000, help="Fashion-MNIST training images (default 30000)")
    parser.add_argument("--profile", action="store_true", help="add the variants that split the monitor's cost")
    args = parser.parse_args(argv)
    for name in args.configs.split(","):
        for spe in (int(s) for s in args.spe.split(",")):
            print("\n".join(measure(name.strip(), spe, args.rounds, args.profile, args.fashion_train)), flush=True)
            print()
    print("ratio: epoch time per optimizer step of the variant / of plain fit in the same round (1.00 = free);\n"
          "fit() wall ratio also counts each fit()'s start (the monitor re-installs its hook and retraces).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
