"""descentkit.tuner: Optuna sweeps of SGD-trained Keras models, storage, results and the CLI.

Example:
    from descentkit.tuner import StudyConfig, run_sweep

    config = StudyConfig(
        name="my-study",
        objective={"metric": "val_accuracy", "direction": "maximize"},
        max_epochs=10,
        search_space={"learning_rate": {"type": "float", "low": 1e-3, "high": 0.5, "log": True}},
    )
    result = run_sweep(config, data=(x, y, x_val, y_val), build_model=build_model, trials=20)
    print(result.summary.to_text())
"""

from descentkit.tuner.config import ConfigError, StudyConfig, load_study, parse_study
from descentkit.tuner.results import StudySummary, summarize_study
from descentkit.tuner.sweep import SweepResult, run_sweep

__all__ = [
    "ConfigError",
    "StudyConfig",
    "StudySummary",
    "SweepResult",
    "load_study",
    "parse_study",
    "run_sweep",
    "summarize_study",
]
