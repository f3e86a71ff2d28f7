"""One worker process of a sweep with `workers=N`: opens the study, runs its share of the trials."""

from __future__ import annotations

import os
import sys
from typing import Any

from descentkit.tuner._budget import Budget
from descentkit.tuner._schedule import run_study
from descentkit.tuner._study import open_study


def limit_threads(threads: int) -> None:
    """Give TensorFlow `threads` threads, so N workers share the cores instead of fighting."""
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialised in this process: keep its pools
        pass


def worker_main(config: Any, spec: Any, target: int | None, timeout: float | None, threads: int,
                max_bracket: int | None, index: int) -> None:
    """The body of worker process `index` (1-based) on the study stored at `spec`.

    In a process group of its own: a Ctrl-C in the terminal reaches the parent only,
    which passes one SIGTERM on (a second Ctrl-C: SIGKILL), so each worker gets one
    interrupt, fails and re-queues its trials, and exits.
    """
    os.setpgrp()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        limit_threads(threads)
        study = open_study(config, spec, worker_index=index)
        run_study(study, config, Budget(study, target), timeout, spec.lock(), max_bracket=max_bracket)
    except KeyboardInterrupt:
        sys.exit(130)
