"""What descentkit's callbacks cost: plain `fit` against monitored `fit`, side by side in one process.

Two models: the digits MLP 64-64-32-10 at batch 32 (43 steps an epoch) and the
Fashion-MNIST MLP 784-256-128-10 at batch 128, both SGD with momentum 0.9 and
validation data, each with `steps_per_execution` 1 and 8. Variants: plain `fit`,
`TrainingMonitor(verbose=0)` at its defaults and `MLflowLogger()` (its own
monitor, logging to a throw-away SQLite store); `--profile` adds variants that
split the monitor's cost.

Two ways to call `fit`, each with every variant on a model with the same
initial weights, variants interleaved round by round (their order rotated) so
that load drift on the machine hits them alike:
- long: one `fit(epochs=E)` on a fresh model per variant and round. Per-epoch
  ratio: the median epoch (the first two dropped) of the variant over plain's
  in the same round. Fixed cost per `fit` call: the variant's extra wall time
  over plain's less E times its extra per-epoch median (what is not per-epoch:
  the first trace, the hook's install, the end of training).
- per-epoch: one `fit(epochs=1)` per epoch on the same model per variant (a
  loop that interleaves models, a custom schedule or a tuner's rung loop), the
  first call (a trace for every variant) left out. Ratio of wall time per call.

A fit's wall time includes what `MLflowLogger` writes in the background after the
fit returns (its figure, the end of its run): the fit waits for it here, so the
work is charged to the logger and not to the variant that trains next.

Every figure is the median over rounds of a ratio measured in one round.

Usage:
    python benchmarks/overhead_benchmark.py [--rounds 5] [--epochs 12] [--configs digits,fashion]
                                            [--spe 1,8] [--modes long,per-epoch] [--profile]

Run on an otherwise idle machine: the figures are wall-clock ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def load_config(name: str, fashion_train: int) -> tuple[tuple[np.ndarray, ...], list[int], int, str]:
    """((x, y, x_val, y_val), hidden sizes, batch size, note) of a configuration."""
    from descentkit.studies import DATASETS

    if name == "digits":
        d = DATASETS["digits"](seed=0)
        return (d.x_train, d.y_train, d.x_val, d.y_val), [64, 32], 32, "digits MLP 64-64-32-10, batch 32"
    if name == "fashion":
        try:
            d = DATASETS["fashion-mnist"](seed=0, train_size=fashion_train, val_size=1000, download=False)
            data = tuple(a.reshape(len(a), -1) if a.ndim > 2 else a for a in (d.x_train, d.y_train, d.x_val, d.y_val))
            note = f"Fashion-MNIST ({len(data[0])} images) MLP 784-256-128-10, batch 128"
        except Exception as exc:  # noqa: BLE001 - any loader failure falls back to random data
            rng = np.random.default_rng(0)
            data = (rng.random((fashion_train, 784), dtype=np.float32), rng.integers(0, 10, fashion_train),
                    rng.random((1000, 784), dtype=np.float32), rng.integers(0, 10, 1000))
            note = f"RANDOM 784-dim data ({fashion_train} rows; Fashion-MNIST unavailable: {exc}), batch 128"
        return data, [256, 128], 128, note
    raise SystemExit(f"--configs: unknown configuration {name!r}; expected digits or fashion.")


def build(n_inputs: int, hidden: list[int], spe: int, weights: list[np.ndarray] | None) -> Any:
    import keras

    model = keras.Sequential([keras.Input((n_inputs,))] + [keras.layers.Dense(h, activation="relu") for h in hidden]
                             + [keras.layers.Dense(10, activation="softmax")])
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=spe)
    return model


def epoch_timer() -> Any:
    """A callback (put it last) noting the time each epoch ends, after every other callback's work.

    It hooks no batch method: a callback with an `on_train_batch_end` makes Keras drop
    its asynchronous batch dispatch, which would change the plain baseline.
    """
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.ends: list[float] = []

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.ends.append(time.perf_counter())

    return EpochTimer()


def noop_batch_callback() -> Any:
    import keras

    class NoopBatchEnd(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            pass

    return NoopBatchEnd()


def variants(profile: bool, tracking_uri: str) -> dict[str, Callable[[], list[Any]]]:
    """name -> a factory of one fit's callbacks (a new callback per call: each fit gets its own)."""
    from descentkit.callbacks import MLflowLogger, TrainingMonitor

    out: dict[str, Callable[[], list[Any]]] = {
        "plain": lambda: [],
        "TrainingMonitor()": lambda: [TrainingMonitor(verbose=0)],
        # the same without its default activation probe (a sample of the validation data)
        "TrainingMonitor(activation_freq=0)": lambda: [TrainingMonitor(verbose=0, activation_freq=0)],
        "MLflowLogger()": lambda: [MLflowLogger(tracking_uri=tracking_uri, experiment_name="overhead")],
    }
    if profile:
        out["TrainingMonitor(stop_on=())"] = lambda: [TrainingMonitor(stop_on=(), verbose=0)]
        out["TrainingMonitor(update_ratio_every=0)"] = lambda: [TrainingMonitor(verbose=0, update_ratio_every=0)]
        out["no-op on_train_batch_end"] = lambda: [noop_batch_callback()]
    return out


def _fit(model: Any, data: tuple[np.ndarray, ...], batch: int, epochs: int, callbacks: list[Any]) -> tuple[float, list[float]]:
    """(wall seconds, per-epoch seconds) of one fit."""
    x, y, x_val, y_val = data
    timer = epoch_timer()
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, validation_data=(x_val, y_val), verbose=0,
              callbacks=callbacks + [timer])
    for callback in callbacks:  # MLflowLogger's background writes are its cost, not the next fit's
        if hasattr(callback, "wait"):
            callback.wait()
    wall = time.perf_counter() - start
    return wall, list(np.diff([start] + timer.ends))


def _rotated(names: list[str], r: int) -> list[str]:
    return names[r % len(names):] + names[:r % len(names)]


def measure_long(data: tuple[np.ndarray, ...], hidden: list[int], batch: int, spe: int, rounds: int, epochs: int,
                 factories: dict[str, Callable[[], list[Any]]], weights: list[np.ndarray]) -> dict[str, dict[str, float]]:
    names = list(factories)
    epoch_ratio: dict[str, list[float]] = {v: [] for v in names}
    fixed: dict[str, list[float]] = {v: [] for v in names}
    per_epoch: dict[str, list[float]] = {v: [] for v in names}
    for r in range(rounds):
        models = {v: build(data[0].shape[1], hidden, spe, weights) for v in names}
        walls, medians = {}, {}
        for v in _rotated(names, r):
            walls[v], epochs_s = _fit(models[v], data, batch, epochs, factories[v]())
            medians[v] = float(np.median(epochs_s[2:]))
        for v in names:
            epoch_ratio[v].append(medians[v] / medians["plain"])
            fixed[v].append(walls[v] - walls["plain"] - epochs * (medians[v] - medians["plain"]))
            per_epoch[v].append(medians[v])
    return {v: {"epoch_s": float(np.median(per_epoch[v])), "epoch_ratio": float(np.median(epoch_ratio[v])),
                "fixed_s": float(np.median(fixed[v]))} for v in names}


def measure_per_epoch(data: tuple[np.ndarray, ...], hidden: list[int], batch: int, spe: int, rounds: int,
                      factories: dict[str, Callable[[], list[Any]]], weights: list[np.ndarray]) -> dict[str, dict[str, float]]:
    names = list(factories)
    models = {v: build(data[0].shape[1], hidden, spe, weights) for v in names}
    callbacks = {v: factories[v]() for v in names}  # one callback per model, reused by every fit as a user would
    for v in names:  # the first fit traces for every variant: left out
        _fit(models[v], data, batch, 1, callbacks[v])
    walls: dict[str, list[float]] = {v: [] for v in names}
    for r in range(rounds):
        for v in _rotated(names, r):
            walls[v].append(_fit(models[v], data, batch, 1, callbacks[v])[0])
    plain = np.array(walls["plain"])
    return {v: {"call_s": float(np.median(walls[v])), "call_ratio": float(np.median(np.array(walls[v]) / plain))}
            for v in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--epochs", type=int, default=12, help="epochs of a long fit (default 12)")
    parser.add_argument("--configs", default="digits,fashion", help="digits, fashion or both (default both)")
    parser.add_argument("--spe", default="1,8", help="steps_per_execution values (default 1,8)")
    parser.add_argument("--modes", default="long,per-epoch", help="long, per-epoch or both (default both)")
    parser.add_argument("--fashion-train", type=int, default=30000, help="Fashion-MNIST training images (default 30000)")
    parser.add_argument("--profile", action="store_true", help="add the variants that split the monitor's cost")
    args = parser.parse_args(argv)
    if args.epochs < 4:
        raise SystemExit("--epochs must be at least 4 (the first two epochs are dropped from the median)")
    modes = [m.strip() for m in args.modes.split(",")]
    for mode in modes:
        if mode not in ("long", "per-epoch"):
            raise SystemExit(f"--modes: unknown mode {mode!r}; expected long or per-epoch.")

    import keras

    with tempfile.TemporaryDirectory() as tmp:
        factories = variants(args.profile, f"sqlite:///{tmp}/mlflow.db")
        for name in (c.strip() for c in args.configs.split(",")):
            data, hidden, batch, note = load_config(name, args.fashion_train)
            for spe in (int(s) for s in args.spe.split(",")):
                keras.utils.set_random_seed(0)
                weights = build(data[0].shape[1], hidden, spe, None).get_weights()
                steps = -(-len(data[0]) // batch)
                print(f"{note}, {steps} steps/epoch, steps_per_execution={spe}", flush=True)
                long = measure_long(data, hidden, batch, spe, args.rounds, args.epochs, factories, weights) \
                    if "long" in modes else {}
                short = measure_per_epoch(data, hidden, batch, spe, args.rounds, factories, weights) \
                    if "per-epoch" in modes else {}
                print(f"  {'variant':38} {'epoch s':>8} {'epoch ratio':>12} {'fixed s/fit':>12} "
                      f"{'1-epoch fit s':>14} {'1-epoch fit ratio':>18}")
                for v in factories:
                    a, b = long.get(v, {}), short.get(v, {})
                    cells = [f"{a['epoch_s']:8.3f} {a['epoch_ratio']:12.3f} {a['fixed_s']:+12.3f}" if a else f"{'-':>34}",
                             f"{b['call_s']:14.3f} {b['call_ratio']:18.3f}" if b else f"{'-':>33}"]
                    print(f"  {v:38} {' '.join(cells)}", flush=True)
                print()
    print(f"epoch ratio: median epoch of a {args.epochs}-epoch fit (first two dropped) over plain's, same round;\n"
          "fixed s/fit: extra wall time per fit call over plain, less the per-epoch extra;\n"
          "1-epoch fit: wall time of one fit(epochs=1) on a model already trained (its first call left out).\n"
          f"Medians over {args.rounds} rounds.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
