"""Memory across a sweep: does the process RSS stay flat over many short trials?

Runs the built-in `digits` study, cut to one epoch a trial and no pruner, as a
real descentkit sweep (the tuner's `Objective`, with its callbacks and its
per-trial cleanup) in one process, and records the resident set size (psutil)
after every trial, once the objective has cleaned up. Reports the RSS after
warm-up and at the end, the growth, and the least-squares slope in MB per
trial over trials 10..N (the first trials pay one-off costs: imports, kernel
registration, tracing caches).

Cleanup modes (`--modes`, each run in its own subprocess so that none inherits
another's heap):
    tuner          the tuner's own `free_keras_memory`: clear_session, GC, and
                   dropping the custom-gradient registrations TensorFlow keeps
                   for every traced train step (the leak), with the pre-sweep
                   heap frozen out of the collector as a sweep runs it;
    clear_session  clear_session(free_memory=True) and GC only;
    none           no cleanup (the baseline).

Target (the issue): under 50 MB of growth over 100 trials, i.e. a slope under
0.5 MB/trial.

Usage:
    python benchmarks/memory_benchmark.py                       # 40 trials, the tuner's cleanup
    python benchmarks/memory_benchmark.py --trials 100 --modes tuner,clear_session,none
    python benchmarks/memory_benchmark.py --json out.json       # machine-readable result

Needs psutil (`pip install descentkit[bench]`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

WARMUP = 10  # trials left out of the slope
TARGET_MB_PER_TRIAL = 0.5  # 50 MB over 100 trials


def _slope(values: list[float], start: int) -> float:
    """Least-squares slope of values[start:] against the trial index (MB/trial)."""
    ys = values[start:]
    n = len(ys)
    if n < 2:
        return float("nan")
    xs = list(range(start, start + n))
    mx, my = sum(xs) / n, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


MODES = ("tuner", "clear_session", "none")
LABELS = {"tuner": "tuner cleanup", "clear_session": "clear_session+gc", "none": "no cleanup"}


def clear_session_only(keep_gradients=None) -> None:
    """What most sweeps do: Keras' clear_session and a GC, nothing more."""
    import gc

    import keras

    keras.backend.clear_session(free_memory=True)
    gc.collect()


def run_one(trials: int, mode: str, seed: int) -> dict:
    """The sweep in this process; RSS (MB) after each trial's cleanup."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import optuna
    import psutil

    import descentkit.tuner.objective as objective_module
    from descentkit.tuner.config import PrunerSpec, load_study
    from descentkit.tuner.objective import Objective, load_dataset
    from descentkit.tuner.sweep import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if mode == "none":
        objective_module.free_keras_memory = lambda keep_gradients=None: None
    elif mode == "clear_session":
        objective_module.free_keras_memory = clear_session_only

    config = load_study("digits")
    config = config.model_copy(update={"max_epochs": 1, "trials": trials, "pruner": PrunerSpec(name="none")})
    data = load_dataset(config)
    objective = Objective(config, data)

    process = psutil.Process()
    rss: list[float] = []
    states: dict[str, int] = {}

    def record(study, trial) -> None:  # an Optuna callback: runs after the objective's `finally` cleanup
        rss.append(process.memory_info().rss / 2**20)
        states[trial.state.name] = states.get(trial.state.name, 0) + 1

    study = optuna.create_study(direction=config.objective.direction, sampler=make_sampler(config, seed))
    start = time.perf_counter()
    # A sweep runs its trials with the pre-sweep heap frozen out of the collector
    # (tuner.sweep._optimize); so does the tuner's mode here.
    heap = objective_module.frozen_heap() if mode == "tuner" else contextlib.nullcontext()
    with heap:
        study.optimize(objective, n_trials=trials, callbacks=[record], catch=(Exception,), gc_after_trial=False)
    seconds = time.perf_counter() - start

    def at(i: int) -> float:
        return rss[min(i, len(rss) - 1)]

    from tensorflow.python.framework import ops as tf_ops

    return {
        "mode": mode,
        "trials": len(rss),
        "states": states,
        "rss_trial5_mb": round(at(5), 1),
        "rss_trial10_mb": round(at(WARMUP), 1),
        "rss_end_mb": round(rss[-1], 1),
        "growth_from_trial5_mb": round(rss[-1] - at(5), 1),
        "growth_from_trial10_mb": round(rss[-1] - at(WARMUP), 1),
        "slope_mb_per_trial": round(_slope(rss, WARMUP), 3),
        "custom_gradients_left": sum(k.startswith("CustomGradient-") for k in getattr(tf_ops._gradient_registry, "_registry", {})),
        "seconds_per_trial": round(seconds / max(1, len(rss)), 2),
        "rss_mb": [round(v, 1) for v in rss],
    }


def _in_subprocess(trials: int, mode: str, seed: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--trials", str(trials), "--seed", str(seed), "--child", mode]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark subprocess ({mode}) failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _report(results: list[dict]) -> str:
    rows = [
        ("trials", "trials", "{}"),
        ("RSS at trial 5 (MB)", "rss_trial5_mb", "{:.1f}"),
        ("RSS at trial 10 (MB)", "rss_trial10_mb", "{:.1f}"),
        ("RSS at end (MB)", "rss_end_mb", "{:.1f}"),
        ("growth, trial 5 -> end (MB)", "growth_from_trial5_mb", "{:.1f}"),
        ("growth, trial 10 -> end (MB)", "growth_from_trial10_mb", "{:.1f}"),
        (f"slope, trials {WARMUP}..N (MB/trial)", "slope_mb_per_trial", "{:.3f}"),
        ("projected growth / 100 trials (MB)", None, "{:.0f}"),
        ("CustomGradient registrations left", "custom_gradients_left", "{}"),
        ("seconds per trial", "seconds_per_trial", "{:.2f}"),
    ]
    lines = [f"{'':38s}" + "".join(f"{LABELS[r['mode']]:>16s}" for r in results)]
    for label, key, fmt in rows:
        cells = [fmt.format(100 * r["slope_mb_per_trial"] if key is None else r[key]) for r in results]
        lines.append(f"{label:38s}" + "".join(f"{c:>16s}" for c in cells))
    by_mode = {r["mode"]: r for r in results}
    if "none" in by_mode and by_mode["none"]["slope_mb_per_trial"] > 0:
        base = by_mode["none"]["slope_mb_per_trial"]
        cells = [f"{r['slope_mb_per_trial'] / base:.3f}" for r in results]
        lines.append(f"{'slope / no-cleanup slope':38s}" + "".join(f"{c:>16s}" for c in cells))
    for r in results:
        if r["mode"] == "none":
            continue
        verdict = "PASS" if r["slope_mb_per_trial"] < TARGET_MB_PER_TRIAL else "FAIL"
        lines.append(
            f"target < {TARGET_MB_PER_TRIAL} MB/trial (50 MB / 100 trials), {LABELS[r['mode']]}: "
            f"{verdict} ({r['slope_mb_per_trial']:.3f} MB/trial, {100 * r['slope_mb_per_trial']:.0f} MB / 100 trials)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="trials per sweep (>= 30 for a meaningful slope)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default="tuner", help=f"comma-separated cleanup modes among {', '.join(MODES)} (default: tuner)")
    parser.add_argument("--json", help="write the results (with the RSS series) to this file")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trials <= WARMUP + 1:
        parser.error(f"--trials must be more than {WARMUP + 1}")

    if args.child:
        print(json.dumps(run_one(args.trials, args.child, args.seed)))
        return 0

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        parser.error(f"unknown mode(s) {unknown}; choose among {', '.join(MODES)}")
    results = []
    for mode in modes:
        print(f"running {args.trials} one-epoch digits trials ({LABELS[mode]}) ...", flush=True)
        results.append(_in_subprocess(args.trials, mode, args.seed))
    print(_report(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    checked = [r for r in results if r["mode"] != "none"]
    return 0 if all(r["slope_mb_per_trial"] < TARGET_MB_PER_TRIAL for r in checked) else 1


if __name__ == "__main__":
    sys.exit(main())
