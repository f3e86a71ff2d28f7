"""A fixed sample of the data a `fit` call trains on, for monitors given none.

Keras hands callbacks no data, yet dead or saturated units can only be seen on
inputs, and the chance-level loss only from labels. When a monitor has no
`probe_data`, it reads the data the running `model.fit(...)` received (its
validation data, else the first training samples) from that call's frame, once,
at train begin, and keeps up to `PROBE_SAMPLES` samples. Arrays, tensors,
`tf.data.Dataset`s and `keras.utils.PyDataset`s are sampled; a Python generator
is never touched (taking from it would steal the batches `fit` is about to train on).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

PROBE_SAMPLES = 256
# A dataset is read for at most this many batches (a batch of 1 sample yields a
# smaller probe rather than a long read).
_MAX_BATCHES = 16


def fit_frame_locals(model: Any) -> dict[str, Any] | None:
    """The local variables of the `model.fit(...)` call running now (its arguments,
    `validation_data` after a `validation_split`), or None outside `fit`: Keras gives
    callbacks the epochs and steps, not the data or the batch size."""
    frame = sys._getframe(1)
    try:
        while frame is not None:
            if frame.f_code.co_name == "fit" and frame.f_locals.get("self") is model:
                return dict(frame.f_locals)
            frame = frame.f_back
        return None
    finally:
        del frame


def _cut(value: Any, n: int) -> Any:
    import keras

    return keras.tree.map_structure(lambda a: np.asarray(a)[:n], value)


def _count(x: Any) -> int:
    import keras

    leaves = keras.tree.flatten(x)
    return int(len(leaves[0])) if leaves and hasattr(leaves[0], "__len__") else 0


def _concat(parts: list[Any]) -> Any:
    import keras

    if len(parts) == 1:
        return parts[0]
    return keras.tree.map_structure(lambda *a: np.concatenate([np.asarray(v) for v in a]), *parts)


def _split_batch(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        return batch[0], batch[1]
    return batch, None


def _from_batches(batches: Any, samples: int) -> tuple[Any, Any] | None:
    xs, ys, n = [], [], 0
    for i, batch in enumerate(batches):
        if i >= _MAX_BATCHES or n >= samples:
            break
        x, y = _split_batch(batch)
        x = _to_numpy(x)
        xs.append(x)
        ys.append(None if y is None else _to_numpy(y))
        n += _count(x)
    if not xs:
        return None
    x = _cut(_concat(xs), samples)
    y = None if any(v is None for v in ys) else _cut(_concat(ys), samples)
    return x, y


def _to_numpy(value: Any) -> Any:
    import keras

    return keras.tree.map_structure(lambda a: a.numpy() if hasattr(a, "numpy") else np.asarray(a), value)


def _sample(x: Any, y: Any, samples: int) -> tuple[Any, Any] | None:
    """Up to `samples` (x, y) pairs of `fit`'s `x`/`y` argument, or None when it is a
    kind that cannot be read without consuming it."""
    import keras

    if x is None:
        return None
    try:
        import tensorflow as tf

        if isinstance(x, tf.data.Dataset):
            return _from_batches(x.take(_MAX_BATCHES), samples)
    except ImportError:  # pragma: no cover - the TensorFlow backend is required anyway
        pass
    if isinstance(x, keras.utils.PyDataset):
        n = min(len(x), _MAX_BATCHES) if x.num_batches is not None else _MAX_BATCHES
        return _from_batches((x[i] for i in range(n)), samples)
    leaves = keras.tree.flatten(x)
    if leaves and all(hasattr(a, "shape") and hasattr(a, "__getitem__") for a in leaves):
        return _cut(_to_numpy(x), samples), None if y is None else _cut(_to_numpy(y), samples)
    return None  # a generator, an iterator or something unknown: left alone


def fit_sample(model: Any, samples: int = PROBE_SAMPLES) -> tuple[Any, Any, str] | None:
    """`(x, y, source)`: up to `samples` samples of the running `fit`'s validation data
    (`source` "validation data"), else of its training data ("training data");
    `y` may be None. None outside `fit` or when the data cannot be sampled."""
    found = fit_frame_locals(model)
    if found is None:
        return None
    try:
        validation = found.get("validation_data")
        if validation is not None:
            if isinstance(validation, (tuple, list)):
                x, y = _split_batch(tuple(validation))
                got = _sample(x, y, samples)
            else:
                got = _sample(validation, None, samples)
            if got is not None and _count(got[0]):
                return got[0], got[1], "validation data"
        got = _sample(found.get("x"), found.get("y"), samples)
        if got is not None and _count(got[0]):
            return got[0], got[1], "training data"
    except Exception as exc:  # never let the probe's convenience break a user's fit
        logger.info("descentkit: no probe sample from fit's data: %s", exc)
    return None
