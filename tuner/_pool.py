"""A pool of worker processes on one study, followed from the storage by the parent process."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from descentkit.tuner._interrupts import interrupts
from descentkit.tuner._worker import worker_main


def run_workers(config: Any, spec: Any, budget: Any, timeout: float | None, workers: int, study: Any,
                relays: list[Callable[[Any, Any], None]]) -> None:
    """Start `workers` processes on the study and pass every trial they finish to `relays`
    (the progress bar, the MLflow tracker: written by this process only).

    Each worker's brackets hold at most its share of the trials still to run: with 8
    trials and 2 workers, two brackets of 4 run side by side, not one of 8 and an idle worker.
    """
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
    args = (config, spec, budget.target, timeout, threads, budget.share(workers))
    processes = [context.Process(target=worker_main, args=(*args, i + 1), daemon=False) for i in range(workers)]
    for process in processes:
        process.start()
    seen: set[int] = set()

    def kill_all() -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGKILL)

    with interrupts(on_second=kill_all):
        try:
            while True:
                alive = any([p.is_alive() for p in processes])  # a list: reap every dead worker
                for trial in study.get_trials(deepcopy=False):
                    if trial.number not in seen and trial.state.is_finished() and budget.counts(trial):
                        seen.add(trial.number)
                        for relay in relays:
                            relay(study, trial)
                if not alive:
                    break
                time.sleep(1.0)
        except BaseException:
            for process in processes:  # one SIGTERM each: every worker re-queues its trials and exits
                if process.is_alive():
                    process.terminate()
            raise
        finally:
            for process in processes:
                process.join()
