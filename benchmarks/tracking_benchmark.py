"""What MLflow tracking adds to a trial's wall time: the same sweep with and without it.

Runs the built-in `digits` study (cut to --epochs epochs, random sampler, no
pruner, learning rates 0.01 to --lr-high) as real descentkit sweeps in one process,
alternating rounds with `tracking=False` and `tracking=True` so that both see
the same machine state. Each round adds --trials trials to a fresh study in a
temporary directory; tracking goes to MLflow's default there
(`sqlite:///mlflow.db`), or to --tracking-uri (say a local `mlflow server`). A
warm-up round of each mode comes first (imports, first traces, and the tracking
database's migrations, which a fresh `mlflow.db` pays once).

Prints, per mode, the median seconds per trial over the rounds (the sweep's
wall time divided by its trials, the end-of-sweep summary and plots included),
the ratio of those medians and the median of the rounds' own ratios, the time
spent inside MLflow calls (per trial, the child runs' per-epoch gradient health
and `diagnostics.png` figures included, and for the parent run's summary and
plots at the end), and how many child runs got a figure (trials pruned or
flagged for a pathology: a higher --lr-high makes more of them).

Usage:
    python benchmarks/tracking_benchmark.py [--rounds 3] [--trials 6] [--epochs 3] [--lr-high 0.1]
                                            [--tracking-uri http://127.0.0.1:5000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def study_config(epochs: int, lr_high: float):
    import yaml

    from descentkit.studies import builtin_study_path
    from descentkit.tuner import StudyConfig

    data = yaml.safe_load(builtin_study_path("digits").read_text())
    data.update(max_epochs=epochs, pruner="none", sampler="random")
    data["search_space"]["learning_rate"] = {"type": "float", "low": 0.01, "high": lr_high, "log": True}
    return StudyConfig.model_validate(data)


def one_round(config, trials: int, tracking: bool, tracking_uri: str | None, root: Path) -> dict[str, float]:
    from descentkit.tuner import run_sweep

    previous = Path.cwd()
    os.chdir(root)  # the default tracking store and the journal land here
    try:
        start = time.perf_counter()
        result = run_sweep(config, trials=trials, progress=False, tracking=tracking, tracking_uri=tracking_uri,
                           storage=str(root / f"{time.time_ns()}.journal"))
        wall = time.perf_counter() - start
    finally:
        os.chdir(previous)
    seconds = (result.tracking or {}).get("seconds") or {"trials": 0.0, "summary": 0.0}
    figures = sum(wants_figure(t) for t in result.study.get_trials(deepcopy=False)) if tracking else 0
    return {"per_trial": wall / trials, "mlflow_per_trial": seconds["trials"] / trials, "mlflow_summary": seconds["summary"],
            "figures": figures}


def wants_figure(trial) -> bool:
    """Whether the tracker draws a `diagnostics.png` for the trial: pruned for a pathology, or flagged with one."""
    from descentkit.diagnostics import SYMPTOMS

    if trial.state.name == "FAIL" or not trial.user_attrs.get("history"):
        return False
    return trial.user_attrs.get("prune_reason") in SYMPTOMS or bool(trial.user_attrs.get("symptoms"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per mode (default 3)")
    parser.add_argument("--trials", type=int, default=6, help="trials per round (default 6)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    parser.add_argument("--lr-high", type=float, default=0.1,
                        help="top of the learning-rate range (default 0.1: few pathological trials; 1.0: many)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db in a temp dir)")
    args = parser.parse_args()

    config = study_config(args.epochs, args.lr_high)
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for tracking in (False, True):  # warm-up: imports, kernels, first traces, the database's migrations
            one_round(config, 2, tracking, args.tracking_uri, root)
        for r in range(args.rounds):
            for tracking in ((False, True) if r % 2 == 0 else (True, False)):
                results[tracking].append(one_round(config, args.trials, tracking, args.tracking_uri, root))
                print(f"round {r + 1} tracking={'on ' if tracking else 'off'}: "
                      f"{results[tracking][-1]['per_trial']:.2f} s/trial", flush=True)

    def med(tracking: bool, key: str) -> float:
        return statistics.median(row[key] for row in results[tracking])

    off, on = med(False, "per_trial"), med(True, "per_trial")
    per_round = statistics.median(t["per_trial"] / u["per_trial"] for t, u in zip(results[True], results[False]))
    where = args.tracking_uri or "sqlite:///mlflow.db (MLflow's default)"
    print(f"\ndigits, {args.trials} trials x {args.epochs} epochs per round, learning rate 0.01..{args.lr_high:g}, "
          f"{args.rounds} rounds, tracking to {where}")
    print(f"  no tracking : {off:6.2f} s/trial")
    print(f"  tracking    : {on:6.2f} s/trial   ratio {on / off:.3f}x (median of the rounds' own ratios {per_round:.3f}x)")
    print(f"  inside MLflow: {med(True, 'mlflow_per_trial'):.3f} s per trial (child run, its figure included), "
          f"{med(True, 'mlflow_summary'):.2f} s once per sweep (parent summary and plots)")
    figures = sum(row["figures"] for row in results[True])
    print(f"  diagnostics.png drawn for {figures} of {args.rounds * args.trials} tracked trials")


if __name__ == "__main__":
    main()
