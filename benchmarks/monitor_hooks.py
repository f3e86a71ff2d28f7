"""Where `TrainingMonitor()`'s host time goes: each hook and helper timed directly.

Wall-clock ratios against plain `fit` (`overhead_benchmark.py`) drift by several
percent between runs on a small shared machine; the monitor's own host work, timed
inside the same fit, does not. This trains the digits MLP of `overhead_benchmark.py`
(64-64-32-10, batch 32, 43 steps an epoch) for `--epochs` epochs and prints, per
hook and helper, the median over epochs (the first two dropped) of its time in
that epoch. Nested helpers are included in their callers' figures. The ops the
monitor adds to the compiled step are not host work and are not counted here.

Usage:
    python benchmarks/monitor_hooks.py [--epochs 12] [--spe 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

KERAS_HOOKS = ("on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_epoch_end", "on_train_end")
HOOKS = KERAS_HOOKS + ("_flush", "_diagnose", "_loss_blew_up", "_nonfinite_tail", "_optimizer_step", "_nothing_to_see")
RECORDER = ("before_batch", "after_last_batch", "flush", "needs_flush", "install", "uninstall")


def _timed(cls: type, name: str, epoch: list[int], spent: dict[str, list[tuple[int, float]]]) -> Callable[[], None]:
    original = getattr(cls, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent.setdefault(name, []).append((epoch[0], time.perf_counter() - start))

    setattr(cls, name, wrapper)
    return lambda: setattr(cls, name, original)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12, help="epochs of the timed fit (default 12)")
    parser.add_argument("--spe", type=int, default=1, help="steps_per_execution (default 1)")
    args = parser.parse_args(argv)
    if args.epochs < 4:
        raise SystemExit("--epochs must be at least 4 (the first two epochs are dropped from the median)")

    import keras

    from descentkit.callbacks import TrainingMonitor, _activation_probe, _diagnosis_callback, _step_signals
    from overhead_benchmark import build, load_config

    (x, y, x_val, y_val), hidden, batch, note = load_config("digits", 0)
    epoch = [0]
    spent: dict[str, list[tuple[int, float]]] = {}

    class EpochNumber(keras.callbacks.Callback):
        def on_epoch_begin(self, e: int, logs: Any = None) -> None:
            epoch[0] = e

    model = build(x.shape[1], hidden, args.spe, None)
    model.fit(x, y, batch_size=batch, epochs=2, validation_data=(x_val, y_val), verbose=0,
              callbacks=[TrainingMonitor(verbose=0)])  # traces the hooked step: not what is timed
    restore = [_timed(_diagnosis_callback.DiagnosisCallback, n, epoch, spent) for n in HOOKS]
    restore += [_timed(_step_signals.StepSignalRecorder, n, epoch, spent) for n in RECORDER]
    restore.append(_timed(_activation_probe.ActivationProbe, "measure", epoch, spent))
    timer_ends: list[float] = []

    class EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, e: int, logs: Any = None) -> None:
            timer_ends.append(time.perf_counter())

    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=args.epochs, validation_data=(x_val, y_val), verbose=0,
              callbacks=[EpochNumber(), TrainingMonitor(verbose=0), EpochEnd()])
    for undo in restore:
        undo()
    epoch_s = float(np.median(np.diff([start] + timer_ends)[2:]))
    print(f"{note}, steps_per_execution={args.spe}: median epoch {epoch_s * 1000:.1f} ms (monitored)")
    rows = {}
    for name, calls in spent.items():
        rows[name] = float(np.median([sum(t for e, t in calls if e == ep) for ep in range(2, args.epochs)]))
    total = sum(rows.get(n, 0.0) for n in KERAS_HOOKS)
    print(f"  {'hook or helper':24s} {'ms/epoch':>9s}")
    for name, value in sorted(rows.items(), key=lambda kv: -kv[1]):
        print(f"  {name:24s} {value * 1000:9.2f}")
    print(f"  Keras hooks in all: {total * 1000:.2f} ms an epoch = {total / epoch_s:.1%} of the monitored epoch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
