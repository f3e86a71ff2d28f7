"""The suite's tables: per half, recall, exact-symptom rate, healthy false alarms and
detection delays over the runs whose oracle confirmed the label; per recipe, the
oracle's confirmations, secondary oracle hits and what descentkit said."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from pathology.oracle import SYMPTOMS
from pathology.recipes import HEALTHY, TUNING, VALIDATION

TOLERATED_ON_HEALTHY = {"overfitting"}  # small healthy runs may overfit, and saying so is right


def _delay(run: dict[str, Any]) -> int | None:
    """Optimizer steps from the oracle's onset (divergence) or from step 0 (others) to the
    first warning/critical finding of the labelled symptom."""
    detection = run["detections"].get(run["symptom"])
    if detection is None or detection.get("step") is None:
        return None
    onset = run.get("onset_step") if run["symptom"] == "divergence" else 0
    return None if onset is None else int(detection["step"]) - int(onset)


def _fmt(values: list[int]) -> tuple[str, str]:
    return (f"{np.median(values):.0f}", f"{max(values)}") if values else ("-", "-")


def half_table(runs: list[dict[str, Any]], half: str) -> str:
    mine = [r for r in runs if r["half"] == half]
    if not mine:
        return f"== {half} half: no runs"
    counted = [r for r in mine if r.get("confirmed", True)]
    lines = [f"== {half} half: {len(mine)} runs, {len(counted)} with the label confirmed by the oracle "
             f"(the rates below count those)"]
    header = (f"{'symptom':24} {'recall':>13} {'exact':>13} {'delay med':>10} {'delay max':>10} "
              f"{'unconfirmed':>12}")
    lines += [header, "-" * len(header)]
    path_runs = []
    for symptom in SYMPTOMS:
        runs_s = [r for r in mine if r["symptom"] == symptom]
        if not runs_s:
            continue
        ok = [r for r in runs_s if r.get("confirmed", True)]
        path_runs += ok
        found = sum(symptom in r["bad_symptoms"] for r in ok)
        exact = sum(r["top"] == symptom for r in ok)
        med, mx = _fmt([d for d in map(_delay, ok) if d is not None])
        n = max(len(ok), 1)
        lines.append(f"{symptom:24} {found:>3}/{len(ok):<3} {found / n:5.2f} {exact:>3}/{len(ok):<3} {exact / n:5.2f} "
                     f"{med:>10} {mx:>10} {len(runs_s) - len(ok):>12}")
    if path_runs:
        found = sum(r["symptom"] in r["bad_symptoms"] for r in path_runs)
        exact = sum(r["top"] == r["symptom"] for r in path_runs)
        lines.append("-" * len(header))
        lines.append(f"{'all pathological':24} {found:>3}/{len(path_runs):<3} {found / len(path_runs):5.2f} "
                     f"{exact:>3}/{len(path_runs):<3} {exact / len(path_runs):5.2f}")
    healthy = [r for r in mine if r["symptom"] == HEALTHY and r.get("confirmed", True)]
    if healthy:
        alarms = [r for r in healthy if set(r["bad_symptoms"]) - TOLERATED_ON_HEALTHY]
        lines.append(f"healthy false alarms (any warning/critical but overfitting): {len(alarms)}/{len(healthy)} "
                     f"= {len(alarms) / len(healthy):.1%}")
        for r in alarms:
            lines.append(f"  {r['recipe']} seed {r['seed']}: {sorted(set(r['bad_symptoms']) - TOLERATED_ON_HEALTHY)}")
    lines.append("delay: divergence, optimizer steps from the oracle's onset (first step whose loss is non-finite "
                 "or above its bound, for good) to the first warning/critical divergence finding; other symptoms, "
                 "the step of that finding.")
    return "\n".join(lines)


def recipe_table(runs: list[dict[str, Any]]) -> str:
    header = (f"{'recipe':40} {'label':22} {'half':10} {'oracle':>6} {'found':>5} {'top (count)':28} "
              f"{'det. steps':14} {'other oracles':30} {'s':>5}")
    lines = [header, "-" * len(header)]
    for name in dict.fromkeys(r["recipe"] for r in runs):
        mine = [r for r in runs if r["recipe"] == name]
        first = mine[0]
        label = first["symptom"]
        conf = sum(bool(r.get("confirmed")) for r in mine)
        found = "-" if label == HEALTHY else str(sum(label in r["bad_symptoms"] for r in mine))
        tops = Counter(r["top"] or "none" for r in mine).most_common(2)
        top = ", ".join(f"{t}({c})" for t, c in tops)
        if label == HEALTHY:
            alarms = sorted({s for r in mine for s in r["bad_symptoms"]} - TOLERATED_ON_HEALTHY)
            det = ",".join(alarms)[:14] or "-"
        else:
            steps = [r["detections"].get(label, {}).get("step") for r in mine]
            det = ",".join("-" if s is None else str(s) for s in steps)
        other = sorted({s for r in mine for s in r.get("related", [])} | {s + "!" for r in mine for s in r.get("unrelated", [])})
        seconds = np.mean([r["seconds"] for r in mine])
        lines.append(f"{name:40} {label:22} {first['half']:10} {conf:>3}/{len(mine):<2} {found:>5} {top:28} "
                     f"{det:14} {','.join(other)[:30]:30} {seconds:5.1f}")
    lines.append("oracle: seeds whose oracle confirmed the label; other oracles: secondary oracle hits in any seed "
                 "(! = unrelated to the label); det. steps: optimizer step of the first warning/critical finding "
                 "of the label, per seed.")
    return "\n".join(lines)


def confirmation_table(rows: list[dict[str, Any]]) -> str:
    header = f"{'recipe':40} {'label':22} {'half':10} {'oracle':>6}  key numbers (seed 0)  secondary"
    lines = [header, "-" * len(header)]
    for name in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == name]
        conf = sum(r["confirmed"] for r in mine)
        n = mine[0]["verdict"]["numbers"]
        keys = ("final_train_loss", "chance_loss", "final_val_accuracy", "val_r2", "grad_growth", "first_last_ratio",
                "progress", "max_dead_fraction", "max_saturated_fraction", "ups_fraction", "oscillation_progress",
                "val_rise", "max_step_loss", "divergence_bound")
        nums = " ".join(f"{k}={_short(n[k])}" for k in keys if k in n and n[k] is not None)
        onset = [r["verdict"]["onset_step"] for r in mine]
        sec = sorted({s for r in mine for s in r["related"]} | {s + "!" for r in mine for s in r["unrelated"]})
        flag = "" if conf * 3 >= 2 * len(mine) else "  UNCONFIRMED"
        lines.append(f"{name:40} {mine[0]['symptom']:22} {mine[0]['half']:10} {conf:>3}/{len(mine):<2} {nums} "
                     f"onset={onset} sec={','.join(sec)} {np.mean([r['seconds'] for r in mine]):.1f}s{flag}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def coverage(rows: list[dict[str, Any]]) -> str:
    """Data families, architectures and optimizers per half and label kind."""
    lines = []
    for half in (TUNING, VALIDATION):
        mine = [r for r in rows if r["half"] == half]
        for key in ("family", "arch", "optimizer"):
            path = Counter(r[key] for r in mine if r["symptom"] != HEALTHY)
            healthy = Counter(r[key] for r in mine if r["symptom"] == HEALTHY)
            lines.append(f"{half:10} {key:9} pathological: {dict(sorted(path.items()))}")
            lines.append(f"{'':10} {'':9} healthy:      {dict(sorted(healthy.items()))}")
        counts = Counter(r["symptom"] for r in mine)
        lines.append(f"{half:10} recipes:  {dict(counts)}")
    return "\n".join(lines)
