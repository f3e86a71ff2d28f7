"""SIGINT and SIGTERM during a sweep: one interrupt fails and re-queues the trials in hand, a second exits.

The handler raises KeyboardInterrupt once; a library that swallows it (Keras has
bare `except:` clauses) cannot keep the worker going: `check_interrupted` raises it
again at the next epoch end (`interrupt_check`, a Keras callback) or trial boundary.

Inside `model.fit` (`deferred()`) the first signal is only recorded: the callback
raises it at the next batch (training or validation), in plain Python between
steps. An exception raised asynchronously wherever the main thread happens to be
can land inside TensorFlow's runtime (a Python callback of its C++ code, a
half-made eager op), and that is no place to unwind from.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

# The signals received inside `interrupts()` (cleared when its outermost block ends).
signals_seen: list[int] = []
_depth = 0  # nested `interrupts()` blocks (the CLI's around run_sweep's) share signals_seen
_deferring = 0  # inside `deferred()`: the first signal is raised by `interrupt_check`


def check_interrupted() -> None:
    """KeyboardInterrupt if a signal arrived and the sweep is still running."""
    if signals_seen:
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts(on_second: Callable[[], None] | None = None) -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt once (the trial in progress is failed
    and re-queued); a second one, anywhere inside the outermost such block, exits at
    once with status 130, after `on_second` (the parent of worker processes kills
    them). Main thread only; the previous handlers come back after."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth == 0:
        signals_seen.clear()

    def handler(signum: int, frame: Any) -> None:
        signals_seen.append(signum)
        if len(signals_seen) > 1:
            if on_second is not None:
                on_second()
            os.write(2, b"\ndescentkit: interrupted again: exiting now; a trial left running is re-queued "
                        b"on the next start\n")
            os._exit(130)
        if not _deferring:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for sig, old in previous.items():
            signal.signal(sig, old)
        if _depth == 0:
            signals_seen.clear()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Around `model.fit` with `interrupt_check()` among its callbacks: a first signal
    is raised at the next batch or epoch boundary (or when the block ends), not
    wherever it arrives; a second one still exits at once."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    check_interrupted()


_callback_class: type | None = None


def interrupt_check() -> Any:
    """A Keras callback raising a recorded interrupt at each batch's start (training and
    validation) and each epoch's end: a deferred one, or one a library swallowed."""
    global _callback_class
    if _callback_class is None:
        import keras

        class InterruptCheck(keras.callbacks.Callback):
            # batch *begin* hooks: a batch-end hook would turn off Keras's asynchronous
            # dispatch of batch ends
            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                check_interrupted()

            def on_test_batch_begin(self, batch: int, logs: Any = None) -> None:
                check_interrupted()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                check_interrupted()

        _callback_class = InterruptCheck
    return _callback_class()
