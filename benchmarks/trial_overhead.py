"""Fixed cost of a short trial: descentkit's objective with and without its per-trial savings.

Usage:
    python benchmarks/trial_overhead.py [--rounds 5] [--trials 6] [--epochs 1] [--threads 1]

A bracket's first rung trains many configurations for one epoch each, so the
fixed cost of a trial (build, trace, the final garbage collection) decides its
wall time. This runs one-epoch digits trials through the real
`Objective.train`, in rounds that alternate two set-ups in one process:

    baseline   what a trial cost before: Keras builds the optimizer slots and
               metric variables inside the first trace (TensorFlow then traces
               the train step twice) and two final `gc.collect()` walk the
               whole heap
    descentkit optimizer and metrics built before the trace (`build_training_state`,
               one trace) and the heap alive before the sweep frozen out of the
               collector (`frozen_heap`)

and prints the median seconds per trial of each and their ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per set-up, interleaved (default 5)")
    parser.add_argument("--trials", type=int, default=6, help="trials per round (default 6)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per trial (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads (default 1)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from descentkit.tuner.sweep import limit_threads

    limit_threads(args.threads)
    import optuna

    import descentkit.tuner.objective as objective_module
    from descentkit.studies import DATASETS
    from descentkit.tuner import StudyConfig

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    config = StudyConfig.model_validate({
        "name": "overhead", "dataset": "digits", "model": {"name": "mlp", "options": {"units": [128, 64]}},
        "max_epochs": 9, "seed": 0, "search_space": {
            "learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
            "optimizer": "momentum", "momentum": 0.9, "batch_size": 32}})
    data = DATASETS["digits"]()
    objective = objective_module.Objective(config, data)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
                                pruner=optuna.pruners.NopPruner())
    build_training_state = objective_module.build_training_state
    free_keras_memory = objective_module.free_keras_memory

    def free_and_collect_again(keep_gradients: object = None) -> None:
        free_keras_memory(keep_gradients)  # clear_session collects once ...
        gc.collect()  # ... and the objective used to collect once more

    def round_of(setup: str) -> float:
        ours = setup == "descentkit"
        objective_module.build_training_state = build_training_state if ours else (lambda m, d: None)
        objective_module.free_keras_memory = free_keras_memory if ours else free_and_collect_again
        heap = objective_module.frozen_heap() if setup == "descentkit" else contextlib.nullcontext()
        with heap:
            start = time.perf_counter()
            for _ in range(args.trials):
                trial = study.ask()
                try:
                    value, _ = objective.train(trial, args.epochs)
                    study.tell(trial, value)
                except optuna.TrialPruned:  # a diagnosis; the trial's cost counts all the same
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return (time.perf_counter() - start) / args.trials

    round_of("descentkit")  # warm-up: imports, first traces of TensorFlow's own functions
    seconds: dict[str, list[float]] = {"baseline": [], "descentkit": []}
    for i in range(args.rounds):
        for setup in (("baseline", "descentkit") if i % 2 == 0 else ("descentkit", "baseline")):
            seconds[setup].append(round_of(setup))
            print(f"round {i + 1} {setup:<10} {seconds[setup][-1]:.3f} s/trial", flush=True)
    objective_module.build_training_state = build_training_state
    objective_module.free_keras_memory = free_keras_memory
    base, ours = statistics.median(seconds["baseline"]), statistics.median(seconds["descentkit"])
    print(f"\n{args.epochs}-epoch digits trials, median of {args.rounds} rounds of {args.trials}:")
    print(f"  baseline   {base:.3f} s/trial")
    print(f"  descentkit {ours:.3f} s/trial")
    print(f"  ratio      {ours / base:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
