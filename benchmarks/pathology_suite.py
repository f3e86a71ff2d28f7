"""An honest labelled pathology suite: how often `TrainingMonitor()` at its defaults names
each training pathology, on recipes split into a tuning half and a validation half.

Recipes (`benchmarks/pathology/recipes.py`): at least 8 per symptom (divergence,
exploding_gradients, vanishing_gradients, overfitting, dead_units,
saturated_activations, oscillating_loss, stalled_training) and at least 30
healthy, over scikit-learn's tables and generators, Fashion-MNIST, generated
sequences and regression; MLPs, CNNs, recurrent nets and deep tanh/sigmoid nets;
SGD (plain, momentum, Nesterov, with ExponentialDecay, PiecewiseConstantDecay and
CosineDecay schedules), Adam, RMSprop and Adagrad. Each run is small: a few
seconds on one CPU core.

Halves: every recipe was given its half ("tuning" or "validation") when written,
before descentkit ran on it, alternating within each symptom. Detector thresholds
may be fitted on the tuning half only; the validation half is the held-out figure.

Labels: each recipe is labelled by its one primary symptom, and the label is
confirmed on every seed by an oracle (`benchmarks/pathology/oracle.py`) that reads
only Keras' own outputs (the logged loss, an explicit held-batch loss, gradients
from `tf.GradientTape` on a held batch, activations from a separate `keras.Model`
over the layers), with thresholds of its own fixed before descentkit was run:

- divergence: the loss is non-finite or above 10x the smaller of its first steps'
  value and the task's chance-level loss, and is still there when training ends;
  onset = the first optimizer step from which it stays there;
- exploding_gradients: the held-batch gradient norm becomes non-finite or grows
  above 100x its value at train begin;
- vanishing_gradients: first-layer / last-layer held-batch gradient norm, median
  over epochs, below 1e-3, and the loss made less than 25 % progress;
- overfitting: val_loss ends more than 15 % above its minimum while the training
  loss ends below its value at that minimum;
- dead_units: at least 50 % of some hidden ReLU layer's units output 0 on every held sample;
- saturated_activations: at least 50 % of some hidden tanh/sigmoid layer's outputs are
  saturated (|tanh| > 0.99, sigmoid < 0.01 or > 0.99);
- oscillating_loss: the loss (per step when full-batch, else per epoch) rises by
  more than 5 % in at least a third of the changes, and its last third's median is
  above half its first third's;
- stalled_training: the final training loss is at least 0.95x the chance-level
  loss (cross-entropy of the class frequencies; regression: the variance of y), or
  the validation accuracy ends within 5 points of chance;
- healthy: validation accuracy closes half the gap from chance to 1 (regression:
  R^2 >= 0.5) and no oracle but overfitting fires.

A recipe counts as confirmed when its oracle agrees on at least 2 of 3 seeds; the
rates count only the runs whose oracle confirmed the label, and the tables show
the recipes that do not confirm and every secondary oracle hit.

Each (recipe, seed) trains twice from the same seed: once with the oracle alone
(the confirmation, run to the end), once with `TrainingMonitor(verbose=0)` at its
defaults followed by the oracle's recorder, which dates the first warning/critical
finding of each symptom by the optimizer step (`model.optimizer.iterations`) at
which it appeared (the monitor may stop training: that default is measured too).
The top finding is `descentkit.diagnostics.top_finding` when it exists, else the
most severe warning/critical finding without a `caused_by` in its evidence
(earliest first).

Usage:
    python benchmarks/pathology_suite.py --seeds 3 [--half tuning|validation|both]
        [--symptom S|healthy] [--recipe R[,R...]] [--json out.json] [--save-records DIR]
        [--rediagnose DIR] [--resume] [--from-json F[,F]] [--confirm-only] [--coverage] [--jobs N] [-v]

`--rediagnose DIR` runs the current detectors (`diagnose`, `top_finding`) over the
records `--save-records DIR` pickled, without training (detection steps are then
the findings' own steps); `--from-json` prints the tables of saved live runs.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pickle
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pathology import report  # noqa: E402
from pathology.recipes import RECIPES, TUNING, VALIDATION, describe  # noqa: E402


def _select(args: argparse.Namespace) -> list[Any]:
    recipes = RECIPES
    if args.half != "both":
        recipes = [r for r in recipes if r.half == args.half]
    if args.symptom:
        recipes = [r for r in recipes if r.symptom == args.symptom]
    if args.recipe:
        names = set(args.recipe.split(","))
        recipes = [r for r in recipes if r.name in names]
    return recipes


def _run_jobs(jobs: list[tuple], n_jobs: int, verbose: bool) -> list[dict[str, Any]]:
    from pathology import running

    cores = os.cpu_count() or 1
    threads = max(1, cores // max(n_jobs, 1))
    results = []

    def show(out: dict[str, Any]) -> None:
        if verbose:
            conf = out.get("confirmed")
            extra = f" found={out['bad_symptoms']} top={out['top']} det={out['detections']}" if "bad_symptoms" in out else ""
            print(f"{out['recipe']:40} seed {out['seed']} confirmed={conf} "
                  f"{out.get('seconds', 0):.1f}s{extra}", flush=True)
            if "verdict" in out:
                v = out["verdict"]
                print(f"    oracle: {[s for s in running.oracle.SYMPTOMS if v[s]]} trains_well={v['trains_well']} "
                      f"onset={v['onset_step']} {v['numbers']}", flush=True)

    if n_jobs <= 1:
        for j in jobs:
            out = running.job(j[:5] + (threads,))
            show(out)
            results.append(out)
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(running.job, j[:5] + (threads,)) for j in jobs]
        for future in as_completed(futures):
            out = future.result()
            show(out)
            results.append(out)
    return results


def _order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    index = {r.name: i for i, r in enumerate(RECIPES)}
    return sorted(rows, key=lambda r: (index.get(r["recipe"], len(index)), r["seed"]))


def rediagnose(folder: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The runs pickled by `--save-records`, diagnosed again by the current detectors
    (preflight findings as recorded), without retraining."""
    from descentkit.diagnostics import PREFLIGHT_SYMPTOMS, diagnose

    from pathology.running import findings_summary

    wanted = {r.name for r in _select(args)}
    runs = []
    for path in sorted(glob.glob(os.path.join(folder, "*.pkl"))):
        with open(path, "rb") as fh:
            saved = pickle.load(fh)
        run = saved["run"]
        if run["recipe"] not in wanted:  # another selection, or a recipe since replaced
            continue
        if run["seed"] >= args.seeds:
            continue
        preflight = [f for f in saved.get("findings", []) if f.symptom in PREFLIGHT_SYMPTOMS]
        findings = preflight + diagnose(saved["record"])
        run.update(findings_summary(findings))
        detections: dict[str, Any] = {}
        for f in findings:
            if f.severity in ("warning", "critical") and f.symptom not in detections:
                detections[f.symptom] = {"step": f.step, "finding_step": f.step, "finding_epoch": f.epoch,
                                         "severity": f.severity}
        run["detections"] = detections
        runs.append(run)
    return _order(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per recipe, 0..N-1 (default 3)")
    parser.add_argument("--half", choices=(TUNING, VALIDATION, "both"), default="both")
    parser.add_argument("--symptom", help="only the recipes of this symptom (or 'healthy')")
    parser.add_argument("--recipe", help="only these recipes (comma-separated names)")
    parser.add_argument("--json", help="write every run (oracle measurements included) to this file")
    parser.add_argument("--save-records", help="pickle each run's TrainingRecord and oracle results into this folder")
    parser.add_argument("--rediagnose", help="re-diagnose the records saved in this folder instead of training")
    parser.add_argument("--confirm-only", action="store_true",
                        help="run the oracle alone (no descentkit) and print the label confirmations")
    parser.add_argument("--from-json", help="print the tables of runs saved by --json (comma-separated files; a later "
                        "file's run of the same recipe and seed replaces an earlier one's)")
    parser.add_argument("--resume", action="store_true",
                        help="with --save-records: read back the runs already saved there instead of training them")
    parser.add_argument("--coverage", action="store_true", help="build every recipe (no training), print coverage")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each run as it ends")
    args = parser.parse_args(argv)

    recipes = _select(args)
    if not recipes:
        print(f"no recipe matches --half={args.half} --symptom={args.symptom!r} --recipe={args.recipe!r}",
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    if args.coverage:
        import keras

        rows = []
        for recipe in recipes:
            keras.utils.clear_session()
            rows.append({"recipe": recipe.name, "symptom": recipe.symptom, "half": recipe.half,
                         **describe(recipe.build(0))})
        print(report.coverage(rows))
        return 0
    if args.from_json:
        merged: dict[tuple[str, int], dict[str, Any]] = {}
        for path in args.from_json.split(","):
            with open(path) as fh:
                for row in json.load(fh):
                    merged[(row["recipe"], row["seed"])] = row
        wanted = {r.name for r in recipes}
        runs = _order([r for r in merged.values() if r["recipe"] in wanted and r["seed"] < args.seeds])
        print(report.recipe_table(runs))
        for half in (TUNING, VALIDATION):
            print()
            print(report.half_table(runs, half))
        return 0
    if args.rediagnose:
        runs = rediagnose(args.rediagnose, args)
        print(report.recipe_table(runs))
        for half in (TUNING, VALIDATION):
            print()
            print(report.half_table(runs, half))
        print(f"\n{len(runs)} saved runs re-diagnosed in {time.perf_counter() - started:.0f} s")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(runs, fh, indent=1, default=str)
        return 0
    if args.save_records:
        os.makedirs(args.save_records, exist_ok=True)
    jobs = [(r.name, seed, True, not args.confirm_only, args.save_records) for r in recipes for seed in range(args.seeds)]
    done: list[dict[str, Any]] = []
    if args.resume and args.save_records and not args.confirm_only:
        # runs already pickled in the folder are read back, not trained again
        todo = []
        for j in jobs:
            path = os.path.join(args.save_records, f"{j[0]}-{j[1]}.pkl")
            if os.path.exists(path):
                with open(path, "rb") as fh:
                    done.append(pickle.load(fh)["run"])
            else:
                todo.append(j)
        print(f"resuming: {len(done)} runs read from {args.save_records}, {len(todo)} to train", flush=True)
        jobs = todo
    rows = _order(done + _run_jobs(jobs, args.jobs, args.verbose))
    elapsed = time.perf_counter() - started
    if args.confirm_only:
        print(report.confirmation_table(rows))
    else:
        print(report.recipe_table(rows))
        for half in (TUNING, VALIDATION):
            print()
            print(report.half_table(rows, half))
    unconfirmed = sorted({r["recipe"] for r in rows
                          if 3 * sum(x.get("confirmed", False) for x in rows if x["recipe"] == r["recipe"])
                          < 2 * sum(x["recipe"] == r["recipe"] for x in rows)})
    print(f"\nrecipes whose oracle confirms the label in fewer than 2/3 of seeds: {unconfirmed or 'none'}")
    print(f"{len(rows)} runs in {elapsed:.0f} s with --jobs {args.jobs}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
