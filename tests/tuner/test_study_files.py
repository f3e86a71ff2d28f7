"""Every class of bad study file exits 2 with one line naming the field and the fix."""

from __future__ import annotations

import time

import pytest
import yaml

GOOD = {
    "name": "s",
    "dataset": "digits",
    "max_epochs": 1,
    "search_space": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
}


def _with(**changes):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        target = data
        *path, last = dotted.split("__")
        for key in path:
            target = target[key]
        target[last] = value
    return data


BAD = {
    "unknown_key": (_with(max_epoch=3), ["max_epoch", "did you mean 'max_epochs'"]),
    "wrong_type": (_with(max_epochs="ten"), ["max_epochs", "integer"]),
    "low_above_high": (
        _with(search_space={"learning_rate": {"type": "float", "low": 1.0, "high": 0.1}}),
        ["search_space.learning_rate", "low (1) is above high (0.1)"],
    ),
    "log_with_zero_low": (
        _with(search_space={"learning_rate": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}),
        ["search_space.learning_rate", "log: true needs low > 0"],
    ),
    "unknown_distribution": (
        _with(search_space={"learning_rate": {"type": "loguniform", "low": 0.01, "high": 0.1}}),
        ["search_space.learning_rate", "float, int, categorical"],
    ),
    "unimportable_module": (_with(dataset="no_such_pkg.data:load"), ["dataset.name", "cannot import module 'no_such_pkg.data'"]),
    "missing_function": (_with(model="json:no_such_fn"), ["model.name", "has no function 'no_such_fn'"]),
    "unknown_builtin_dataset": (_with(dataset="mnist99"), ["dataset.name", "built-ins: ", "digits"]),
    "unknown_optimizer_variant": (
        _with(search_space={"optimizer": {"type": "categorical", "choices": ["adam"]}}),
        ["optimizer", "choose from sgd, momentum, nesterov"],
    ),
    "unknown_sampler": (_with(sampler="bayes"), ["sampler.name", "'tpe'"]),
    "unknown_symptom": (_with(prune_on=["nan_loss"]), ["prune_on", "unknown symptom 'nan_loss'"]),
    "missing_name": ({k: v for k, v in GOOD.items() if k != "name"}, ["name", "required field is missing"]),
    "not_a_mapping": (["just", "a", "list"], ["expected a mapping"]),
    "float_step_larger_than_range": (
        _with(search_space={"dropout": {"type": "float", "low": 0.0, "high": 0.4, "step": 0.5}}),
        ["search_space.dropout", "step (0.5) is larger than the range 0..0.4", "at most 0.4"],
    ),
    "int_step_larger_than_range": (
        _with(search_space={"units": {"type": "int", "low": 16, "high": 64, "step": 100}}),
        ["search_space.units", "step (100) is larger than the range 16..64"],
    ),
    "zero_step": (
        _with(search_space={"dropout": {"type": "float", "low": 0.0, "high": 0.4, "step": 0}}),
        ["search_space.dropout", "step must be a positive number"],
    ),
    "misspelled_dataset_option": (
        _with(dataset={"name": "digits", "options": {"validaton_fraction": 0.2}}),
        ["dataset.options.validaton_fraction", "did you mean 'validation_fraction'"],
    ),
    "misspelled_model_option": (
        _with(model={"name": "mlp", "options": {"unit": [8]}}),
        ["model.options.unit", "did you mean 'units'"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_study_file_exits_2_with_one_line(case, cli, tmp_path):
    data, expected = BAD[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(data))
    start = time.perf_counter()
    result = cli("sweep", str(path), "--trials", "1")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in expected:
        assert fragment in lines[0]
    assert time.perf_counter() - start < 60


def test_a_file_that_is_not_utf8_exits_2_with_one_line(cli, tmp_path):
    path = tmp_path / "latin1.yaml"
    head = yaml.safe_dump(GOOD).encode()
    path.write_bytes(head + "description: caf\u00e9\n".encode("latin-1"))
    line = head.count(b"\n") + 1
    result = cli("sweep", str(path))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"descentkit: error: {path}: not UTF-8 text (byte 0xe9 at line {line}); save the file as UTF-8"]


# In-process, so the test sees the interpreter's modules when the CLI exits (stderr
# says nothing: TensorFlow's import is silent with its stderr sent to /dev/null).
_EXIT_PROBE = """
import sys
from descentkit.tuner.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    print("exit", exc.code, "tensorflow" in sys.modules, "keras" in sys.modules)
"""


@pytest.mark.parametrize("case", ["low_above_high", "float_step_larger_than_range", "not_utf8", "bad_storage"])
def test_a_mistake_exits_before_tensorflow_is_imported(case, tmp_path):
    import subprocess
    import sys

    path = tmp_path / "study.yaml"
    args = [str(path)]
    if case == "not_utf8":
        path.write_bytes(b"name: s\xff\n")
    elif case == "bad_storage":
        path.write_text(yaml.safe_dump(GOOD))
        args += ["--storage", "sqlit:///studies.db"]
    else:
        path.write_text(yaml.safe_dump(BAD[case][0]))
    out = subprocess.run([sys.executable, "-c", _EXIT_PROBE, "sweep", *args], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.stdout.split() == ["exit", "2", "False", "False"], out.stdout + out.stderr


def test_invalid_yaml_names_the_line(cli, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: s\ndataset: digits\nsearch_space: {learning_rate: [\n")
    result = cli("sweep", str(path))
    assert result.returncode == 2
    assert "not valid YAML at line" in result.stderr


def test_missing_study_lists_builtins(cli):
    result = cli("sweep", "no-such-study")
    assert result.returncode == 2
    assert "built-in studies: " in result.stderr and "digits" in result.stderr


def test_bad_option_exits_2(cli):
    result = cli("sweep", "digits", "--trials", "0")
    assert result.returncode == 2
    assert "--trials" in result.stderr


def test_help_does_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys; from descentkit.tuner.cli import main; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_builtin_digits_study_validates():
    from descentkit.tuner.config import load_study

    study = load_study("digits")
    assert study.objective.metric == "val_accuracy"
    assert {"learning_rate", "optimizer", "momentum", "batch_size", "schedule", "l2", "dropout"} <= set(study.search_space)
