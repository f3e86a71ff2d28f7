"""Best metric and run time of each built-in study: the figures quoted in the study files.

Usage:
    python benchmarks/studies_benchmark.py [--studies fashion-mlp,diabetes] [--trials 10]
                                           [--mode auto|sweep|fit] [--json results.json]

`--mode sweep` runs a short sweep per study with `descentkit.tuner.run_sweep`
(`--trials` trials, a fresh journal file in a temporary folder), so pruning and
the sampler count. `--mode fit` trains a few hand-picked SGD settings per study
with a plain Keras loop (the study's own loader, builder, optimizer and epochs,
no callbacks): a floor for what a sweep finds and a clean per-trial time.
`--mode auto` (the default) sweeps and falls back to `fit` when sweeping fails.

Run on an otherwise idle machine: the timings are wall-clock seconds. Sweeps
track to MLflow in the temporary folder unless MLFLOW_TRACKING_URI says otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# A few settings per study that a sweep should match or beat. Each is a full
# point of the study's search space; the bad ones are there on purpose (a
# diverging rate, no clipping) so the table shows what the sweep must avoid.
HAND_PICKED: dict[str, list[dict]] = {
    "digits": [
        {"learning_rate": 0.05, "optimizer": "momentum", "momentum": 0.9, "batch_size": 32, "schedule": "cosine", "l2": 1e-4, "dropout": 0.1},
        {"learning_rate": 0.2, "optimizer": "sgd", "batch_size": 32, "schedule": "constant", "l2": 1e-5, "dropout": 0.0},
    ],
    "fashion-mlp": [
        {"learning_rate": 0.05, "optimizer": "momentum", "momentum": 0.9, "batch_size": 64, "schedule": "cosine", "l2": 1e-5, "dropout": 0.1},
        {"learning_rate": 0.1, "optimizer": "sgd", "batch_size": 32, "schedule": "constant", "l2": 1e-5, "dropout": 0.0},
        {"learning_rate": 0.02, "optimizer": "nesterov", "momentum": 0.95, "batch_size": 128, "schedule": "step", "l2": 1e-4, "dropout": 0.2},
    ],
    "fashion-cnn": [
        {"learning_rate": 0.05, "optimizer": "momentum", "momentum": 0.9, "batch_size": 64, "schedule": "cosine", "l2": 1e-5, "dropout": 0.2},
        {"learning_rate": 0.1, "optimizer": "sgd", "batch_size": 32, "schedule": "constant", "l2": 1e-5, "dropout": 0.0},
        {"learning_rate": 0.02, "optimizer": "nesterov", "momentum": 0.95, "batch_size": 128, "schedule": "step", "l2": 1e-4, "dropout": 0.3},
    ],
    "breast-cancer": [
        {"learning_rate": 0.01, "optimizer": "momentum", "momentum": 0.9, "batch_size": 16, "schedule": "cosine", "l1": 1e-5, "l2": 1e-3, "dropout": 0.2},
        {"learning_rate": 0.1, "optimizer": "sgd", "batch_size": 32, "schedule": "constant", "l1": 1e-6, "l2": 1e-4, "dropout": 0.0},
        {"learning_rate": 0.003, "optimizer": "nesterov", "momentum": 0.95, "batch_size": 8, "schedule": "step", "l1": 1e-4, "l2": 1e-2, "dropout": 0.3},
    ],
    "diabetes": [
        {"learning_rate": 0.01, "optimizer": "momentum", "momentum": 0.9, "batch_size": 32, "schedule": "cosine", "l2": 1e-5, "dropout": 0.0},
        {"learning_rate": 0.003, "optimizer": "nesterov", "momentum": 0.9, "batch_size": 16, "schedule": "cosine", "l2": 1e-5, "dropout": 0.2},
        {"learning_rate": 0.03, "optimizer": "sgd", "batch_size": 32, "schedule": "exponential", "l2": 1e-4, "dropout": 0.1},
    ],
    "adding-rnn": [
        {"learning_rate": 0.01, "optimizer": "momentum", "momentum": 0.9, "batch_size": 32, "schedule": "constant", "clipnorm": 1.0},
        {"learning_rate": 0.01, "optimizer": "momentum", "momentum": 0.9, "batch_size": 32, "schedule": "constant", "clipnorm": None},
        {"learning_rate": 0.1, "optimizer": "momentum", "momentum": 0.9, "batch_size": 32, "schedule": "constant", "clipnorm": None},
    ],
}


@dataclass
class StudyFigures:
    study: str
    mode: str
    metric: str
    direction: str
    best: float | None
    trials: int
    not_finished: int  # pruned or failed (sweep), diverged to NaN (fit)
    load_s: float
    total_s: float

    @property
    def per_trial_s(self) -> float:
        return (self.total_s - self.load_s) / max(1, self.trials)

    def line(self) -> str:
        best = "-" if self.best is None else f"{self.best:.4f}"
        return (f"{self.study:<14} {self.mode:<5} {self.direction[:3]} {self.metric:<13} {best:>8} "
                f"{self.trials:>6} {self.not_finished:>8} {self.load_s:>7.1f} {self.per_trial_s:>9.1f} {self.total_s:>8.1f}")


HEADER = f"{'study':<14} {'mode':<5} dir {'metric':<13} {'best':>8} {'trials':>6} {'pruned':>8} {'load s':>7} {'s/trial':>9} {'total s':>8}"


def _better(direction: str, values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if direction == "maximize" else min(finite)


def run_with_sweep(name: str, trials: int, folder: Path) -> StudyFigures:
    from descentkit.tuner import load_study, run_sweep

    config = load_study(name)
    # MLflow's default store is ./mlflow.db and ./mlruns: keep the benchmark's runs in the scratch folder.
    previous = Path.cwd()
    os.chdir(folder)
    try:
        start = time.perf_counter()
        result = run_sweep(name, trials=trials, storage=str(folder / f"{name}.journal"), progress=False)
        total = time.perf_counter() - start
    finally:
        os.chdir(previous)
    summary = result.summary
    print(summary.to_text(), flush=True)
    counts = summary.counts
    return StudyFigures(
        name, "sweep", config.objective.metric, config.objective.direction,
        summary.best[0].value if summary.best else None, sum(counts.values()),
        counts.get("PRUNED", 0) + counts.get("FAIL", 0), 0.0, total,
    )


def run_with_fit(name: str, trials: int) -> StudyFigures:
    """Train up to `trials` hand-picked settings with plain `model.fit` (no callbacks, no pruning)."""
    import keras

    from descentkit.studies import DATASETS, MODELS
    from descentkit.tuner import build_optimizer, load_study

    config = load_study(name)
    metric, direction = config.objective.metric, config.objective.direction
    start = time.perf_counter()
    data = DATASETS[config.dataset.name](**{"seed": config.seed or 0, **config.dataset.options})
    load_s = time.perf_counter() - start
    settings = HAND_PICKED.get(name) or [{}]
    bests: list[float] = []
    diverged = 0
    for params in settings[:trials]:
        keras.utils.set_random_seed(config.seed or 0)
        trial_start = time.perf_counter()
        model = MODELS[config.model.name](params, data, **config.model.options)
        steps = math.ceil(len(data.x_train) / int(params.get("batch_size", 32)))
        model.compile(optimizer=build_optimizer(params, steps, config.max_epochs), loss=data.loss, metrics=data.metrics)
        history = model.fit(
            data.x_train, data.y_train, batch_size=int(params.get("batch_size", 32)), epochs=config.max_epochs,
            validation_data=(data.x_val, data.y_val), verbose=0,
        ).history
        series = [float(v) for v in history[metric]]
        best = _better(direction, series)
        diverged += best is None or not math.isfinite(series[-1])
        if best is not None:
            bests.append(best)
        print(f"  {name}: {params} -> best {metric} {best if best is None else round(best, 4)} "
              f"({time.perf_counter() - trial_start:.1f} s)", flush=True)
        keras.backend.clear_session(free_memory=True)
    total = time.perf_counter() - start
    return StudyFigures(name, "fit", metric, direction, _better(direction, bests), len(settings[:trials]), diverged, load_s, total)


def main(argv: list[str] | None = None) -> int:
    from descentkit.studies import builtin_study_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", default=",".join(n for n in builtin_study_names() if n != "digits"),
                        help="comma-separated built-in study names (default: all but digits)")
    parser.add_argument("--trials", type=int, default=10, help="trials per study (fit mode: at most the hand-picked settings)")
    parser.add_argument("--mode", choices=("auto", "sweep", "fit"), default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    figures: list[StudyFigures] = []
    mode = args.mode
    with tempfile.TemporaryDirectory(prefix="studies-bench-") as tmp:
        for name in [n.strip() for n in args.studies.split(",") if n.strip()]:
            print(f"== {name} ({mode})", flush=True)
            if mode in ("auto", "sweep"):
                try:
                    figures.append(run_with_sweep(name, args.trials, Path(tmp)))
                    continue
                except Exception as exc:
                    if mode == "sweep":
                        raise
                    print(f"  run_sweep failed ({type(exc).__name__}: {exc}); "
                          "measuring with plain Keras fits of the hand-picked settings instead", file=sys.stderr)
                    traceback.print_exc(limit=2)
                    mode = "fit"
            figures.append(run_with_fit(name, args.trials))

    print()
    print(HEADER)
    for row in figures:
        print(row.line())
    if args.json:
        args.json.write_text(json.dumps([{**asdict(f), "per_trial_s": f.per_trial_s} for f in figures], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
