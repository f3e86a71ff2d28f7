"""Checks of the training data and the model's output before any step is taken:
non-finite values, unnormalized inputs, and an output layer that does not fit the
loss or the labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from descentkit.diagnostics._finding import (
    NONFINITE_INPUTS,
    OUTPUT_LOSS_MISMATCH,
    UNNORMALIZED_INPUTS,
    Finding,
)

# Glorot (Glorot & Bengio 2010) and He (He et al. 2015) initialisations assume
# inputs of unit variance. Inputs of RMS r scale the first layer's pre-activations
# by r: at r = 10 most tanh/sigmoid units start saturated (|z| > 2.6) and the
# largest stable SGD rate shrinks about r^2 = 100 times. Raw 0-255 pixels have an
# RMS near 100; standardized or [0, 1] data at most 1.
UNNORMALIZED_MAX_RMS = 10.0
# Non-constant tabular features whose scales (RMS) differ more than 100x: one
# learning rate cannot suit both, the small feature is learned ~1e4 times slower
# (gradient and step both scale with it). A 0/1 category is a small scale only when
# it is rarer than 1 in 10,000 (RMS 0.01), and then constant in any probe sample.
UNNORMALIZED_SCALE_RATIO = 100.0
# A feature whose mean is more than 10 standard deviations from zero, and more
# than 1 in absolute value, is mostly a constant offset (e.g. years, 2000 +- 5, or
# pH 5 +- 0.1): its information is a small ripple on a large bias, which SGD
# learns slowly. The second condition spares near-constant 0/1 flags.
UNNORMALIZED_OFFSET_RATIO = 10.0
UNNORMALIZED_MIN_OFFSET = 1.0
# A feature whose RMS over the sample is more than 10x its RMS without its largest 1 %
# of values has no scale a sample can read: it sits at one value (a background pixel)
# and its RMS is made by a few rare samples, which a 1,000-sample probe of validation
# data, standardized with the training split's tiny std, may or may not hold. Such
# features are left out of the RMS and scale checks: on the tuning half of
# benchmarks/pathology_suite.py, standardized Fashion-MNIST pixels read RMS 5.9-22
# from one sample each (0.03-0.05 without it) and raised "scales differ 200-700x" on
# healthy runs. A dense feature loses 10-30 % of its RMS to its top 1 % (a Gaussian
# about 10 %), a heavy-tailed one 2-3x: 10x is far from both.
UNNORMALIZED_RARE_FRACTION = 0.01
UNNORMALIZED_RARE_RMS_RATIO = 10.0
# Statistics are computed on at most this many evenly spaced samples (enough for
# 1 % precision on a standard deviation); the non-finite check reads everything.
PREFLIGHT_MAX_SAMPLES = 20_000

_LOSS_KINDS = {
    "sparsecategoricalcrossentropy": "sparse_categorical",
    "categoricalcrossentropy": "categorical",
    "categoricalfocalcrossentropy": "categorical",
    "binarycrossentropy": "binary",
    "binaryfocalcrossentropy": "binary",
    "meansquarederror": "regression",
    "mse": "regression",
    "meanabsoluteerror": "regression",
    "mae": "regression",
    "huber": "regression",
    "logcosh": "regression",
    "meansquaredlogarithmicerror": "regression",
    "msle": "regression",
    "meanabsolutepercentageerror": "regression",
    "mape": "regression",
}
# The range of each output activation, for labels the model must be able to output.
_ACTIVATION_RANGES = {
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "softmax": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "relu": (0.0, np.inf),
    "softplus": (0.0, np.inf),
}


def normalize_loss(loss: Any) -> str | None:
    """The kind of a Keras loss name: "sparse_categorical", "categorical", "binary",
    "regression", or None when unknown ("SparseCategoricalCrossentropy",
    "sparse_categorical_crossentropy" and "keras.losses.mse" are all understood)."""
    if loss is None:
        return None
    name = loss if isinstance(loss, str) else getattr(loss, "__name__", None) or type(loss).__name__
    name = name.rsplit(".", 1)[-1].lower().replace("_", "").replace(" ", "")
    return _LOSS_KINDS.get(name)


def normalize_activation(activation: Any) -> str | None:
    """The output activation's name in lower case ("linear" for None or "linear")."""
    if activation is None:
        return None
    name = activation if isinstance(activation, str) else getattr(activation, "__name__", str(activation))
    return name.rsplit(".", 1)[-1].strip().lower()


def _arrays(data: Any, name: str) -> list[tuple[str, np.ndarray]]:
    """The numeric arrays of `data` (one array, a list of inputs or a dict of inputs)."""
    if data is None:
        return []
    if isinstance(data, Mapping):
        return [a for k, v in data.items() for a in _arrays(v, f"{name}[{k!r}]")]
    if isinstance(data, (list, tuple)) and data and all(hasattr(v, "shape") for v in data):
        return [a for i, v in enumerate(data) for a in _arrays(v, f"{name}[{i}]")]
    try:
        array = np.asarray(data)
    except (TypeError, ValueError):
        return []
    if array.dtype.kind not in "biuf" or array.size == 0:
        return []
    return [(name, array)]


def _sample(array: np.ndarray) -> np.ndarray:
    if len(array) <= PREFLIGHT_MAX_SAMPLES:
        return array
    return array[np.linspace(0, len(array) - 1, PREFLIGHT_MAX_SAMPLES).astype(np.int64)]


def _nonfinite(x: Any, y: Any) -> Finding | None:
    counts: dict[str, dict[str, int]] = {}
    for name, array in _arrays(x, "x") + _arrays(y, "y"):
        if array.dtype.kind != "f":
            continue
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        if nan or inf:
            bad_rows = ~np.isfinite(array.reshape(len(array), -1) if array.ndim else array.reshape(1, -1)).all(axis=1)
            counts[name] = {
                "nan": nan,
                "inf": inf,
                "samples": int(bad_rows.sum()),
                "first_sample": int(np.argmax(bad_rows)),
            }
    if not counts:
        return None
    shown = "; ".join(f"{k} has {v['nan']} NaN and {v['inf']} inf values in {v['samples']} samples" for k, v in counts.items())
    return Finding(
        symptom=NONFINITE_INPUTS,
        severity="critical",
        epoch=None,
        step=None,
        message=f"The data contains non-finite values: {shown}.",
        advice="Drop or impute the rows with NaN/inf (e.g. SimpleImputer) before training: one NaN makes the loss NaN.",
        evidence=counts,
    )


def _unnormalized(x: Any) -> Finding | None:
    problems: list[str] = []
    evidence: dict[str, Any] = {}
    for name, array in _arrays(x, "x"):
        if array.dtype.kind == "b" or array.ndim == 0:
            continue
        sample = _sample(array).astype(np.float64)
        flat = sample.reshape(len(sample), -1) if sample.ndim > 1 else sample.reshape(-1, 1)
        flat = flat[np.isfinite(flat).all(axis=1)]
        if not len(flat):
            continue
        if array.ndim > 2:
            # Images and sequences: per-position statistics mislead (constant or
            # nearly constant border pixels), so judge all values together.
            values = flat.reshape(-1)
            rms, mean, std = float(np.sqrt(np.mean(values**2))), float(values.mean()), float(values.std())
            stats = {"rms": rms, "mean": mean, "std": std, "min": float(values.min()), "max": float(values.max())}
            if rms > UNNORMALIZED_MAX_RMS:
                problems.append(
                    f"{name} values span {stats['min']:.4g} to {stats['max']:.4g} (RMS {rms:.3g}, above {UNNORMALIZED_MAX_RMS:g})"
                )
                evidence[name] = stats
            elif abs(mean) > UNNORMALIZED_MIN_OFFSET and abs(mean) > UNNORMALIZED_OFFSET_RATIO * std:
                problems.append(f"{name} values are offset from zero (mean {mean:.4g}, std {std:.3g})")
                evidence[name] = stats
            continue
        std = flat.std(axis=0)
        mean = flat.mean(axis=0)
        rms = np.sqrt(np.mean(flat**2, axis=0))
        scale = np.abs(flat).max(axis=0)
        varying = std > 1e-12 * np.maximum(1.0, scale)
        varying &= ~_rare_valued(flat, rms)
        if not varying.any():
            continue
        index = np.flatnonzero(varying)
        found = {}
        loudest = int(index[np.argmax(rms[index])])
        if rms[loudest] > UNNORMALIZED_MAX_RMS:
            problems.append(f"{name} feature {loudest} has RMS {rms[loudest]:.4g} (above {UNNORMALIZED_MAX_RMS:g})")
            found.update(largest_rms_feature=loudest, largest_rms=float(rms[loudest]))
        # Scales by RMS, not max |x|: a standardized feature that is rarely far from 0
        # (a border pixel, z-scored on the training set) reaches 90 on one sample and
        # has an RMS of 1, like the others.
        big, small = int(index[np.argmax(rms[index])]), int(index[np.argmin(rms[index])])
        ratio = float(rms[big] / rms[small]) if rms[small] > 0 else float("inf")
        if ratio > UNNORMALIZED_SCALE_RATIO:
            problems.append(
                f"{name} feature scales differ {ratio:.3g}x (RMS {rms[big]:.4g} in feature {big}, "
                f"{rms[small]:.4g} in feature {small})"
            )
            found.update(scale_ratio=ratio, largest_scale_feature=big, smallest_scale_feature=small)
        offset = varying & (np.abs(mean) > UNNORMALIZED_MIN_OFFSET) & (np.abs(mean) > UNNORMALIZED_OFFSET_RATIO * std)
        if offset.any():
            worst = int(np.argmax(np.where(offset, np.abs(mean) / np.maximum(std, 1e-300), -np.inf)))
            problems.append(f"{name} feature {worst} is offset from zero (mean {mean[worst]:.4g}, std {std[worst]:.3g})")
            found.update(offset_feature=worst, offset_mean=float(mean[worst]), offset_std=float(std[worst]))
        if found:
            found.update(n_features=int(flat.shape[1]), constant_features=int((~varying).sum()))
            evidence[name] = found
    if not problems:
        return None
    return Finding(
        symptom=UNNORMALIZED_INPUTS,
        severity="warning",
        epoch=None,
        step=None,
        message=f"Inputs are not normalized: {'; '.join(problems)}.",
        advice=(
            "Standardize the inputs to zero mean and unit variance: a keras.layers.Normalization layer "
            "adapted on the training data, or sklearn's StandardScaler (images: Rescaling(1/255))."
        ),
        evidence=evidence,
    )


def _label_summary(y: Any) -> dict[str, Any] | None:
    arrays = _arrays(y, "y")
    if len(arrays) != 1:
        return None
    labels = arrays[0][1]
    finite = labels[np.isfinite(labels)] if labels.dtype.kind == "f" else labels
    if not finite.size:
        return None
    matrix = labels.ndim == 2 and labels.shape[1] > 1
    integer = bool(np.all(np.mod(finite, 1) == 0))
    one_hot = bool(
        matrix and integer and np.isin(finite, (0, 1)).all() and np.allclose(np.nansum(labels, axis=1), 1)
    )
    return {
        "shape": list(labels.shape),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "integer": integer,
        "one_hot": one_hot,
        "vector": not matrix and labels.ndim <= 2,
        "width": int(labels.shape[1]) if matrix else 1,
    }


def _mismatches(y: Any, activation: str | None, kind: str | None, units: int | None) -> list[tuple[str, str]]:
    """(severity, problem) pairs for an output layer, loss and labels that do not fit."""
    found: list[tuple[str, str]] = []

    def critical(problem: str) -> None:
        found.append(("critical", problem))

    def warning(problem: str) -> None:
        found.append(("warning", problem))

    categorical = kind in ("categorical", "sparse_categorical")
    if activation == "softmax" and units == 1:
        critical("a softmax over a single output unit always outputs 1, so nothing is learned")
    elif activation == "softmax" and kind == "binary":
        warning("softmax output with binary_crossentropy: use sigmoid outputs (multi-label) or categorical_crossentropy")
    if activation in ("sigmoid", "hard_sigmoid") and categorical and units not in (None, 1):
        warning(f"sigmoid output on {units} units with a categorical loss: the outputs do not sum to 1; use softmax")
    if categorical and units == 1:
        critical("a categorical cross-entropy over a single output unit: use binary_crossentropy with a sigmoid")
    labels = _label_summary(y)
    if labels is None:
        return found
    span = f"{labels['min']:g}..{labels['max']:g}"
    if kind == "categorical" and labels["vector"] and labels["integer"] and units != 1:
        critical(f"categorical_crossentropy needs one-hot labels but got class ids {span}: "
                 "use sparse_categorical_crossentropy")
    if kind == "categorical" and labels["width"] > 1 and units not in (None, labels["width"]):
        critical(f"labels have {labels['width']} columns but the model has {units} output units")
    if kind == "sparse_categorical":
        if labels["one_hot"]:
            critical("sparse_categorical_crossentropy needs class ids but got one-hot labels: use categorical_crossentropy")
        elif not labels["integer"]:
            critical(f"sparse_categorical_crossentropy needs integer class ids but got non-integer labels ({span})")
        elif labels["min"] < 0:
            critical(f"sparse_categorical_crossentropy needs class ids from 0 but got {span}")
        elif units is not None and units > 1 and labels["max"] >= units:
            critical(f"class id {labels['max']:g} does not fit {units} output units (ids must be below {units})")
        return found  # class ids are not compared with the activation's range
    if kind == "binary" and (labels["min"] < 0 or labels["max"] > 1):
        critical(f"binary_crossentropy needs labels in [0, 1] but got {span} (map -1 to 0, or one output per class)")
        return found
    low, high = _ACTIVATION_RANGES.get(activation or "", (-np.inf, np.inf))
    if labels["min"] < low or labels["max"] > high:
        problem = f"labels span {span} but a {activation} output only reaches [{low:g}, {high:g}]"
        # a ReLU that cannot go negative is worth a warning; a bounded output that
        # cannot reach the labels at all never fits them
        (warning if high == np.inf else critical)(problem)
    return found


def _rare_valued(flat: np.ndarray, rms: np.ndarray) -> np.ndarray:
    """Per feature: whether its RMS is made by its rarest values (more than
    `UNNORMALIZED_RARE_RMS_RATIO` times its RMS without its largest
    `UNNORMALIZED_RARE_FRACTION` of |values|). Needs 100 samples to leave one out."""
    n = len(flat)
    drop = int(n * UNNORMALIZED_RARE_FRACTION)
    if drop < 1:
        return np.zeros(flat.shape[1], dtype=bool)
    typical = np.sqrt(np.mean(np.sort(np.abs(flat), axis=0)[: n - drop] ** 2, axis=0))
    return rms > UNNORMALIZED_RARE_RMS_RATIO * typical


def preflight_checks(
    x: Any,
    y: Any = None,
    *,
    output_activation: str | None = None,
    loss: str | None = None,
    output_units: int | None = None,
) -> list[Finding]:
    """Checks the data and the output layer before training.

    Returns at most one finding per preflight symptom: `nonfinite_inputs` (NaN or
    inf in x or y, critical), `unnormalized_inputs` (inputs far from unit scale,
    features on scales 100x apart, or mostly a constant offset; warning) and
    `output_loss_mismatch` (an output activation, loss and labels that do not fit
    together; critical or warning). Several problems of one symptom share its
    finding: the message names the most severe, `evidence["problems"]` lists all.

    Args:
        x: the inputs: an array (images and sequences are judged over all values),
            or a list or dict of arrays for several inputs.
        y: the labels, if known.
        output_activation: the last layer's activation ("softmax", "sigmoid", ...).
        loss: the loss, as a Keras name ("sparse_categorical_crossentropy", "mse")
            or class name ("SparseCategoricalCrossentropy").
        output_units: the number of output units.

    Example:
        >>> findings = preflight_checks(x_train, y_train, output_activation="softmax",
        ...                             loss="sparse_categorical_crossentropy", output_units=10)
    """
    if output_units is not None and (isinstance(output_units, bool) or int(output_units) < 1):
        raise ValueError(f"output_units must be a positive integer or None but got {output_units!r}.")
    findings = [f for f in (_nonfinite(x, y), _unnormalized(x)) if f is not None]
    activation = normalize_activation(output_activation)
    kind = normalize_loss(loss)
    units = None if output_units is None else int(output_units)
    problems = _mismatches(y, activation, kind, units)
    if problems:
        problems.sort(key=lambda p: p[0] != "critical")
        severity, first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        findings.append(
            Finding(
                symptom=OUTPUT_LOSS_MISMATCH,
                severity=severity,
                epoch=None,
                step=None,
                message=f"The output layer does not fit the loss or labels: {first}{more}.",
                advice=_MISMATCH_ADVICE,
                evidence={
                    "problems": [p for _, p in problems],
                    "output_activation": activation,
                    "loss": loss if isinstance(loss, str) or loss is None else str(loss),
                    "loss_kind": kind,
                    "output_units": units,
                    "labels": _label_summary(y),
                },
            )
        )
    return findings


_MISMATCH_ADVICE = (
    "Match output, loss and labels: softmax + sparse_categorical_crossentropy for class ids "
    "(categorical_crossentropy for one-hot), sigmoid on 1 unit + binary_crossentropy for 0/1 labels, "
    "linear + mse for regression."
)
