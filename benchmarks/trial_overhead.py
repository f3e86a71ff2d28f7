"""Fixed cost of a short trial: a descentkit sweep's trials against the same trials in a plain Keras loop.

Usage:
    python benchmarks/trial_overhead.py [--rounds 5] [--trials 6] [--epochs 1] [--threads 1]

A bracket's first rung trains many configurations for one epoch each, so the
fixed cost of a trial (build, trace, diagnosis, cleanup) decides its wall time.
This runs one-epoch digits trials in rounds that alternate two set-ups in one
process:

    keras      a plain loop: the study's model compiled with the same SGD,
               `model.fit`, `clear_session` and a `gc.collect()` after each trial
    descentkit `run_sweep` on the same study (random sampler, no pruner, no
               tracking): the trial runner with its monitors, its pre-built
               optimizer state and its frozen heap; the sweep's own start
               (the preflight checks, opening the study) is timed apart

and prints the median seconds per trial of each and their ratio.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import statistics
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per set-up, interleaved (default 5)")
    parser.add_argument("--trials", type=int, default=6, help="trials per round (default 6)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per trial (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads (default 1)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from descentkit.tuner import limit_threads

    limit_threads(args.threads)
    import keras
    import optuna

    from descentkit.studies import DATASETS, MODELS
    from descentkit.tuner import StudyConfig, build_optimizer, run_sweep

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    config = StudyConfig.model_validate({
        "name": "overhead", "dataset": "digits", "model": {"name": "mlp", "options": {"units": [128, 64]}},
        "max_epochs": args.epochs, "seed": 0, "sampler": "random", "pruner": "none", "first_trial": "sampler",
        "search_space": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
                         "optimizer": "momentum", "momentum": 0.9, "batch_size": 32}})
    data = DATASETS["digits"]()
    rng = random.Random(0)

    def keras_round() -> float:
        start = time.perf_counter()
        for _ in range(args.trials):
            params = {"learning_rate": 10 ** rng.uniform(-2, -1), "optimizer": "momentum", "momentum": 0.9,
                      "batch_size": 32}
            model = MODELS["mlp"](params, data, units=[128, 64])
            model.compile(optimizer=build_optimizer(params, math.ceil(len(data.x_train) / 32), args.epochs),
                          loss=data.loss, metrics=data.metrics)
            model.fit(data.x_train, data.y_train, batch_size=32, epochs=args.epochs, verbose=0,
                      validation_data=(data.x_val, data.y_val))
            del model
            keras.backend.clear_session(free_memory=True)
            gc.collect()
        return (time.perf_counter() - start) / args.trials

    class FirstFit(keras.callbacks.Callback):
        """Notes when the first trial's fit begins: what comes before is the sweep's own start."""

        def __init__(self) -> None:
            super().__init__()
            self.at: float | None = None

        def on_train_begin(self, logs=None):
            if self.at is None:
                self.at = time.perf_counter()

    def descentkit_round() -> float:
        first = FirstFit()
        with tempfile.TemporaryDirectory(prefix="descentkit-overhead-") as folder:
            start = time.perf_counter()
            run_sweep(config, trials=args.trials, data=data, storage=f"{folder}/overhead.journal",
                      callbacks=[first], progress=False, tracking=False)
            end = time.perf_counter()
        return (end - (first.at or start)) / args.trials

    rounds = {"keras": keras_round, "descentkit": descentkit_round}
    descentkit_round()  # warm-up: imports, first traces of TensorFlow's own functions
    seconds: dict[str, list[float]] = {"keras": [], "descentkit": []}
    for i in range(args.rounds):
        for setup in (("keras", "descentkit") if i % 2 == 0 else ("descentkit", "keras")):
            seconds[setup].append(rounds[setup]())
            print(f"round {i + 1} {setup:<10} {seconds[setup][-1]:.3f} s/trial", flush=True)
    base, ours = statistics.median(seconds["keras"]), statistics.median(seconds["descentkit"])
    print(f"\n{args.epochs}-epoch digits trials, median of {args.rounds} rounds of {args.trials}:")
    print(f"  plain keras {base:.3f} s/trial")
    print(f"  descentkit  {ours:.3f} s/trial")
    print(f"  ratio       {ours / base:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
