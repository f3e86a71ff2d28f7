"""Memory across a sweep: does the process RSS stay flat over many short trials?

Runs the built-in `digits` study, cut to one epoch a trial and no pruner, as a
real descentkit sweep (`run_sweep`, with its callbacks and its per-trial cleanup)
in one process, and records the resident set size (psutil) as each trial's `fit`
begins, after the previous trial's cleanup. Reports the RSS after
warm-up and at the end, the growth, and the least-squares slope in MB per
trial over trials 10..N (the first trials pay one-off costs: imports, kernel
registration, tracing caches).

Cleanup modes (`--modes`, each run in its own subprocess so that none inherits
another's heap):
    tuner          a descentkit sweep (its cleanup drops, besides the session, the
                   custom-gradient registrations TensorFlow keeps for every traced
                   train step);
    clear_session  a plain Keras loop on the same model and SGD, with
                   clear_session(free_memory=True) and GC after each trial;
    none           the same loop with no cleanup (the baseline).

Target: under 50 MB of growth over 100 trials, i.e. a slope under
0.5 MB/trial.

Usage:
    python benchmarks/memory_benchmark.py                       # 40 trials, the tuner's cleanup
    python benchmarks/memory_benchmark.py --trials 100 --modes tuner,clear_session,none
    python benchmarks/memory_benchmark.py --json out.json       # machine-readable result

Needs psutil (`pip install descentkit[bench]`).
"""

from __future__ import annotations

import argparse
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


def clear_session_only() -> None:
    """What most sweeps do: Keras' clear_session and a GC, nothing more."""
    import gc

    import keras

    keras.backend.clear_session(free_memory=True)
    gc.collect()


def _rss_recorder(rss: list[float]):
    """A Keras callback noting the RSS (MB) as each trial's fit begins: after the previous trial's cleanup."""
    import keras
    import psutil

    process = psutil.Process()

    class RecordRSS(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            rss.append(process.memory_info().rss / 2**20)

    return RecordRSS()


def _digits_config(trials: int, seed: int):
    from descentkit.tuner import load_study

    config = load_study("digits")
    return config.model_copy(update={"max_epochs": 1, "trials": trials, "seed": seed, "first_trial": "sampler",
                                     "pruner": config.pruner.model_copy(update={"name": "none", "options": {}})})


def _plain_keras(config, trials: int, seed: int, rss: list[float], cleanup) -> None:
    """`trials` one-epoch trials in a plain loop: random rates, the study's model and SGD, `cleanup` after each."""
    import math
    import random

    from descentkit.studies import DATASETS, MODELS
    from descentkit.tuner import build_optimizer

    data = DATASETS[config.dataset.name](seed=seed)
    rng = random.Random(seed)
    recorder = _rss_recorder(rss)
    for _ in range(trials):
        params = {"learning_rate": 10 ** rng.uniform(-3, 0), "optimizer": "momentum", "momentum": 0.9,
                  "batch_size": 32}
        model = MODELS[config.model.name](params, data, **config.model.options)
        steps = math.ceil(len(data.x_train) / 32)
        model.compile(optimizer=build_optimizer(params, steps, 1), loss=data.loss, metrics=data.metrics)
        model.fit(data.x_train, data.y_train, batch_size=32, epochs=1, verbose=0,
                  validation_data=(data.x_val, data.y_val), callbacks=[recorder])
        del model
        cleanup()


def run_one(trials: int, mode: str, seed: int) -> dict:
    """The sweep in this process; RSS (MB) as each trial begins, after the previous one's cleanup."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tempfile

    config = _digits_config(trials + 1, seed)  # one more: the RSS after trial N is read as trial N+1 begins
    rss: list[float] = []
    start = time.perf_counter()
    if mode == "tuner":
        from descentkit.tuner import run_sweep

        with tempfile.TemporaryDirectory(prefix="descentkit-memory-") as folder:
            run_sweep(config, storage=f"{folder}/memory.journal", callbacks=[_rss_recorder(rss)], progress=False,
                      tracking=False)
    else:
        _plain_keras(config, trials + 1, seed, rss, clear_session_only if mode == "clear_session" else (lambda: None))
    seconds = time.perf_counter() - start
    rss = rss[1:]  # the first reading is before any trial

    def at(i: int) -> float:
        return rss[min(i, len(rss) - 1)]

    from tensorflow.python.framework import ops as tf_ops

    return {
        "mode": mode,
        "trials": len(rss),
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
