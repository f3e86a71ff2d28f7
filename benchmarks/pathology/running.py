"""Runs one recipe on one seed: once with the oracle alone (the label's confirmation), and
once with `TrainingMonitor()` at its defaults and the oracle after it (the measurement)."""

from __future__ import annotations

import math
import os
import pickle
import time
from typing import Any

import numpy as np

from pathology import oracle
from pathology.recipes import RECIPES, Recipe, describe

BAD = oracle.BAD_SEVERITIES
_THREADS_SET = False


def set_threads(threads: int) -> None:
    """TensorFlow's thread pools for this process (once, before any op runs)."""
    global _THREADS_SET
    if _THREADS_SET or threads <= 0:
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    _THREADS_SET = True


def _training_monitor() -> Any:
    """descentkit's `TrainingMonitor`; the detectors are edited while the suite runs, so a
    failed import is retried every 30 s (5 tries) instead of ending the run."""
    import importlib
    import sys

    for attempt in range(5):
        try:
            from descentkit.callbacks import TrainingMonitor

            return TrainingMonitor
        except Exception:  # noqa: BLE001 - a half-edited module can raise anything
            if attempt == 4:
                raise
            time.sleep(30)
            for name in [m for m in sys.modules if m.startswith("descentkit")]:
                del sys.modules[name]
            importlib.invalidate_caches()
    raise AssertionError("unreachable")


def _fit(recipe: Recipe, seed: int, monitored: bool) -> tuple[Any, Any, Any, float]:
    import keras

    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    setup = recipe.build(seed)
    data = setup.data
    monitor = None
    callbacks: list[Any] = []
    if monitored:
        monitor = _training_monitor()(verbose=0)
        callbacks.append(monitor)
    recorder = oracle.make_recorder(data.x, data.y, len(data.x), setup.batch_size, setup.model.loss, monitor)
    callbacks.append(recorder)
    start = time.perf_counter()
    setup.model.fit(data.x, data.y, epochs=setup.epochs, batch_size=setup.batch_size, shuffle=True,
                    validation_data=(data.x_val, data.y_val), callbacks=callbacks, verbose=0)
    return setup, monitor, recorder, time.perf_counter() - start


def _verdict(setup: Any, measurements: dict[str, Any]) -> dict[str, Any]:
    data = setup.data
    steps_per_epoch = math.ceil(len(data.x) / setup.batch_size)
    return oracle.verdicts(measurements, data.chance_loss, data.chance_accuracy, steps_per_epoch,
                           None if data.classes else float(np.var(data.y_val)))


def top_finding(findings: list[Any]) -> Any:
    """descentkit's `top_finding` when it has one; otherwise the root cause by the suite's
    own rule: among warning/critical findings without a `caused_by` in their evidence, the
    most severe, then the earliest (epoch, step), then the first listed."""
    try:
        from descentkit.diagnostics import top_finding as dk_top
    except ImportError:
        dk_top = None
    if dk_top is not None:
        return dk_top(findings)
    roots = [(i, f) for i, f in enumerate(findings) if f.severity in BAD and "caused_by" not in (f.evidence or {})]
    if not roots:
        return None
    rank = {"critical": 0, "warning": 1}
    return min(roots, key=lambda p: (rank[p[1].severity], p[1].epoch if p[1].epoch is not None else -1,
                                     p[1].step if p[1].step is not None else -1, p[0]))[1]


def findings_summary(findings: list[Any]) -> dict[str, Any]:
    """The parts of a run's findings the tables use: warning/critical symptoms, the top finding."""
    top = top_finding(findings)
    return {
        "findings": [{"symptom": f.symptom, "severity": f.severity, "epoch": f.epoch, "step": f.step,
                      "caused_by": (f.evidence or {}).get("caused_by")} for f in findings],
        "bad_symptoms": sorted({f.symptom for f in findings if f.severity in BAD}),
        "top": None if top is None else top.symptom,
    }


def confirm(recipe: Recipe, seed: int) -> dict[str, Any]:
    """The oracle-only run: does the oracle see the recipe's label on this seed?"""
    setup, _, recorder, seconds = _fit(recipe, seed, monitored=False)
    verdict = _verdict(setup, recorder.measurements)
    related, unrelated = oracle.secondary(recipe.symptom, verdict)
    return {"recipe": recipe.name, "seed": seed, "confirmed": oracle.confirms(recipe.symptom, verdict),
            "verdict": verdict, "related": related, "unrelated": unrelated, "seconds": seconds,
            "measurements": recorder.measurements, **describe(setup)}


def measure(recipe: Recipe, seed: int, confirmation: dict[str, Any] | None, records_dir: str | None) -> dict[str, Any]:
    """The monitored run; returns one row of the tables (and pickles the record when asked)."""
    setup, monitor, recorder, seconds = _fit(recipe, seed, monitored=True)
    verdict = _verdict(setup, recorder.measurements)
    run: dict[str, Any] = {
        "recipe": recipe.name, "symptom": recipe.symptom, "half": recipe.half, "seed": seed,
        **describe(setup),
        "seconds": seconds, "detections": recorder.measurements["detections"],
        "stopped_at": recorder.measurements["stopped_at"],
        "measured_verdict": {k: v for k, v in verdict.items() if k != "numbers"},
        "measured_onset_step": verdict["onset_step"],
    }
    if confirmation is not None:
        run["confirmed"] = confirmation["confirmed"]
        run["oracle"] = {k: v for k, v in confirmation["verdict"].items()}
        run["related"], run["unrelated"] = confirmation["related"], confirmation["unrelated"]
        run["onset_step"] = confirmation["verdict"]["onset_step"]
        run["oracle_seconds"] = confirmation["seconds"]
        run["oracle_measurements"] = confirmation["measurements"]
    run.update(findings_summary(monitor.findings))
    if records_dir:
        with open(os.path.join(records_dir, f"{recipe.name}-{seed}.pkl"), "wb") as fh:
            pickle.dump({"run": run, "record": monitor.record, "findings": list(monitor.findings),
                         "measured_measurements": recorder.measurements}, fh)
    return run


def job(args: tuple[str, int, bool, bool, str | None, int]) -> dict[str, Any]:
    """One (recipe, seed) in a worker: confirm and/or measure."""
    name, seed, do_confirm, do_measure, records_dir, threads = args
    set_threads(threads)
    recipe = RECIPES_BY_NAME[name]
    confirmation = confirm(recipe, seed) if do_confirm else None
    if not do_measure:
        assert confirmation is not None
        out = {k: v for k, v in confirmation.items() if k != "measurements"}
        out.update(symptom=recipe.symptom, half=recipe.half)
        return out
    return measure(recipe, seed, confirmation, records_dir)


RECIPES_BY_NAME = {r.name: r for r in RECIPES}
