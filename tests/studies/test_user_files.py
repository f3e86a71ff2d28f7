"""The user's own data from a study file, no code: CSV and .npz loaders, and one clear line for every mistake."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from descentkit.studies import DATASETS
from descentkit.studies import Dataset
from descentkit.studies._files import infer_task

load_csv, load_npz = DATASETS["csv"], DATASETS["npz"]


def _one_line_error(call, *fragments: str) -> str:
    with pytest.raises(ValueError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --- CSV --------------------------------------------------------------------------

def _write_csv(path: Path, rows: list[list[object]], header=("a", "b", "label")) -> Path:
    path.write_text("\n".join(",".join(map(str, row)) for row in [list(header), *rows]) + "\n")
    return path


@pytest.fixture
def iris_like(tmp_path: Path) -> Path:
    """40 rows, two numeric features, a text label with three classes."""
    rng = np.random.default_rng(0)
    labels = ["setosa", "versicolor", "virginica"]
    rows = [[round(float(rng.normal(i)), 3), round(float(rng.normal(-i)), 3), labels[i]] for i in np.arange(40) % 3]
    return _write_csv(tmp_path / "flowers.csv", rows)


def test_csv_text_labels_become_class_indices_with_their_names(iris_like):
    data = load_csv(path=str(iris_like), target="label")
    assert isinstance(data, Dataset)
    assert data.task == "multiclass" and data.num_classes == 3
    assert data.class_names == ["setosa", "versicolor", "virginica"]
    assert data.feature_names == ["a", "b"]
    assert data.x_train.shape == (32, 2) and data.x_val.shape == (8, 2)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert set(np.unique(data.y_val)) == {0, 1, 2}, "the split is stratified"


def test_csv_target_defaults_to_the_last_column_and_split_is_seeded(iris_like):
    a, b, c = (load_csv(path=str(iris_like), seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)


def test_csv_numeric_target_is_regression_and_features_can_be_chosen(tmp_path):
    rows = [[i, i * 0.5, i / 7.0] for i in range(30)]
    path = _write_csv(tmp_path / "r.csv", rows, header=("x1", "x2", "y"))
    data = load_csv(path=str(path), target="y", features=["x2"], validation_split=0.1)
    assert data.task == "regression" and data.class_names is None
    assert data.x_train.shape == (27, 1) and data.y_train.dtype == np.float32
    np.testing.assert_allclose(np.sort(np.concatenate([data.x_train[:, 0], data.x_val[:, 0]])), np.arange(30) * 0.5)


def test_csv_integer_labels_are_inferred_as_classes_and_encoded(tmp_path):
    rows = [[i, -i, [-1, 1][i % 2]] for i in range(20)]
    data = load_csv(path=str(_write_csv(tmp_path / "b.csv", rows)))
    assert data.task == "binary" and data.class_names == ["-1", "1"]
    assert set(np.unique(data.y_train)) == {0, 1}


def test_csv_task_can_be_forced(tmp_path):
    rows = [[i, -i, i % 3] for i in range(30)]
    data = load_csv(path=str(_write_csv(tmp_path / "t.csv", rows)), task="regression")
    assert data.task == "regression" and data.y_train.dtype == np.float32


def test_csv_validation_file_replaces_the_split(tmp_path, iris_like):
    val = _write_csv(tmp_path / "val.csv", [[0.1, 0.2, "setosa"], [1.0, -1.0, "virginica"]], header=("b", "a", "label"))
    data = load_csv(path=str(iris_like), validation_path=str(val))
    assert len(data.x_train) == 40 and len(data.x_val) == 2
    np.testing.assert_allclose(data.x_val[0], [0.2, 0.1])  # columns matched by name, not position
    assert data.y_val.tolist() == [0, 2]


def test_csv_standardize_uses_training_rows_only(tmp_path):
    rows = [[i, 10 * i + 5, i % 2] for i in range(50)]
    data = load_csv(path=str(_write_csv(tmp_path / "s.csv", rows)), standardize=True)
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1.0, atol=1e-5)


def test_csv_semicolons_and_quoted_fields(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text('w;h;"kind"\n1;2;"a, b"\n3;4;"c"\n5;6;"a, b"\n7;8;"c"\n')
    data = load_csv(path=str(path), delimiter=";", validation_split=0.5)
    assert data.class_names == ["a, b", "c"]


CSV_ROWS = [[1, 2, "x"], [3, 4, "y"], [5, 6, "x"], [7, 8, "y"], [9, 10, "x"], [11, 12, "y"]]


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("missing_file", ["options.path:", "no CSV file at 'nowhere.csv'", "fix the path"]),
        ("no_path", ["options.path: missing", "dataset.options.path"]),
        ("missing_target", ["options.target: no column 'lable'", "did you mean 'label'?"]),
        ("missing_feature", ["options.features: no column 'zzz'", "columns: a, b, label"]),
        ("target_in_features", ["options.features: lists the target column 'label'"]),
        ("features_not_a_list", ["options.features: must be a list of column names", "features: [a, b]"]),
        ("non_numeric_feature", ["options.features: column 'b' holds 'tall', not a number", "line 3", "encode it as numbers", "out of options.features"]),
        ("empty_feature", ["options.features: column 'a' is empty (e.csv line 2)", "fill or drop"]),
        ("ragged_row", ["options.path:", "line 3 has 2 fields but the header has 3", "delimiter:"]),
        ("bad_split", ["options.validation_split: must be a fraction between 0 and 1", "got 1.5"]),
        ("bad_task", ["options.task: unknown task 'classification'", "multiclass, binary, regression"]),
        ("text_regression", ["options.task: regression needs numeric target values but they hold text", "set task: multiclass"]),
        ("missing_validation_file", ["options.validation_path: no CSV file at 'val.csv'"]),
        ("validation_lacks_column", ["options.validation_path: v.csv lacks column(s) 'b'", "same columns"]),
        ("unseen_validation_label", ["options.target: validation labels ['z'] never occur in the training data"]),
        ("header_only", ["options.path: h.csv needs a header row and at least one data row"]),
    ],
)
def test_csv_mistakes_raise_one_line_naming_the_option(case, fragments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = str(_write_csv(tmp_path / "d.csv", CSV_ROWS))
    calls = {
        "missing_file": lambda: load_csv(path="nowhere.csv"),
        "no_path": lambda: load_csv(),
        "missing_target": lambda: load_csv(path=good, target="lable"),
        "missing_feature": lambda: load_csv(path=good, features=["a", "zzz"]),
        "target_in_features": lambda: load_csv(path=good, features=["a", "label"]),
        "features_not_a_list": lambda: load_csv(path=good, features="a"),
        "non_numeric_feature": lambda: load_csv(path=str(_write_csv(tmp_path / "n.csv", [[1, 2, "x"], [3, "tall", "y"]]))),
        "empty_feature": lambda: load_csv(path=str(_write_csv(tmp_path / "e.csv", [["", 2, "x"], [3, 4, "y"]]))),
        "ragged_row": lambda: (tmp_path / "r.csv").write_text("a,b,label\n1,2,x\n3,4\n") and load_csv(path="r.csv"),
        "bad_split": lambda: load_csv(path=good, validation_split=1.5),
        "bad_task": lambda: load_csv(path=good, task="classification"),
        "text_regression": lambda: load_csv(path=good, task="regression"),
        "missing_validation_file": lambda: load_csv(path=good, validation_path="val.csv"),
        "validation_lacks_column": lambda: load_csv(
            path=good, validation_path=str(_write_csv(tmp_path / "v.csv", [[1, "x"]], header=("a", "label")))),
        "unseen_validation_label": lambda: load_csv(
            path=good, validation_path=str(_write_csv(tmp_path / "u.csv", [[1, 2, "z"]]))),
        "header_only": lambda: (tmp_path / "h.csv").write_text("a,b,label\n") and load_csv(path="h.csv"),
    }
    _one_line_error(calls[case], *fragments)


def test_task_inference_rules():
    assert infer_task(np.array(["cat", "dog"])) == "binary"
    assert infer_task(np.array([0.0, 1.0, 2.0, 1.0])) == "multiclass"
    assert infer_task(np.array([0.5, 1.0, 2.0])) == "regression"
    assert infer_task(np.arange(100, dtype=float)) == "regression", "many distinct integers read as a count"


# --- .npz -------------------------------------------------------------------------

def test_npz_ready_made_splits(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "splits.npz"
    np.savez(path, x_train=rng.normal(size=(40, 5, 3)), y_train=np.arange(40) % 4,
             x_val=rng.normal(size=(12, 5, 3)), y_val=np.arange(12) % 4)
    data = load_npz(path=str(path))
    assert data.x_train.shape == (40, 5, 3) and data.x_val.shape == (12, 5, 3)
    assert data.x_train.dtype == np.float32 and data.task == "multiclass" and data.num_classes == 4
    assert data.class_names == ["0", "1", "2", "3"]


def test_npz_named_arrays_split_seeded(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, inputs=np.arange(100, dtype=float).reshape(50, 2), targets=np.linspace(0, 1, 50))
    data = load_npz(path=str(path), x="inputs", y="targets", validation_split=0.2, seed=3)
    assert data.task == "regression" and len(data.x_train) == 40 and len(data.x_val) == 10
    again = load_npz(path=str(path), x="inputs", y="targets", validation_split=0.2, seed=3)
    np.testing.assert_array_equal(data.x_val, again.x_val)


def test_npz_plain_x_and_y_are_found_and_one_hot_targets_become_labels(tmp_path):
    path = tmp_path / "xy.npz"
    labels = np.arange(30) % 3
    np.savez(path, x=np.ones((30, 4)), y=np.eye(3)[labels])
    data = load_npz(path=str(path))
    assert data.task == "multiclass" and data.y_train.ndim == 1
    np.testing.assert_array_equal(np.sort(np.concatenate([data.y_train, data.y_val])), np.sort(labels))


def test_npz_train_arrays_only_get_a_validation_split(tmp_path):
    path = tmp_path / "train.npz"
    np.savez(path, x_train=np.zeros((20, 2)), y_train=np.arange(20) % 2)
    data = load_npz(path=str(path), validation_split=0.25)
    assert data.task == "binary" and len(data.x_val) == 5


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("missing_file", ["options.path: no .npz file at 'nope.npz'"]),
        ("not_npz", ["options.path: 'junk.npz' is not a readable .npz archive", "numpy.savez"]),
        ("missing_array", ["options.x_train: no array 'x_train' in a.npz (arrays: features, labels)",
                           "x_train:/y_train:/x_val:/y_val:", "x: and y:"]),
        ("missing_named_x", ["options.x: no array 'inputs' in a.npz (arrays: features, labels)"]),
        ("y_without_x", ["options.x: missing", "name the x array too"]),
        ("mismatched_lengths", ["options.y: has 9 rows but x has 10", "one row each"]),
        ("mismatched_val_lengths", ["options.y_val: has 3 rows but x_val has 4"]),
        ("val_shape", ["options.x_val: rows have shape (3,) but x_train rows have (2,)"]),
        ("half_val", ["options.y_val: no array 'y_val'"]),
        ("text_inputs", ["options.x: holds <U1 values; inputs must be numbers"]),
        ("nan_inputs", ["options.x: holds NaN or infinite values"]),
        ("matrix_targets", ["options.y: targets have shape (10, 2)", "one target per row"]),
    ],
)
def test_npz_mistakes_raise_one_line_naming_the_option(case, fragments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "a.npz", features=np.zeros((10, 2)), labels=np.arange(10) % 2)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")

    def archive(**arrays):
        np.savez(tmp_path / "b.npz", **arrays)
        return "b.npz"

    calls = {
        "missing_file": lambda: load_npz(path="nope.npz"),
        "not_npz": lambda: load_npz(path="junk.npz"),
        "missing_array": lambda: load_npz(path="a.npz"),
        "missing_named_x": lambda: load_npz(path="a.npz", x="inputs", y="labels"),
        "y_without_x": lambda: load_npz(path="a.npz", y="labels"),
        "mismatched_lengths": lambda: load_npz(path=archive(x=np.zeros((10, 2)), y=np.zeros(9))),
        "mismatched_val_lengths": lambda: load_npz(path=archive(
            x_train=np.zeros((10, 2)), y_train=np.zeros(10), x_val=np.zeros((4, 2)), y_val=np.zeros(3))),
        "val_shape": lambda: load_npz(path=archive(
            x_train=np.zeros((10, 2)), y_train=np.zeros(10), x_val=np.zeros((4, 3)), y_val=np.zeros(4))),
        "half_val": lambda: load_npz(path=archive(x_train=np.zeros((10, 2)), y_train=np.zeros(10), x_val=np.zeros((4, 2)))),
        "text_inputs": lambda: load_npz(path=archive(x=np.array(list("abcdefghij")), y=np.arange(10) % 2)),
        "nan_inputs": lambda: load_npz(path=archive(x=np.full((10, 2), np.nan), y=np.arange(10) % 2)),
        "matrix_targets": lambda: load_npz(path=archive(x=np.zeros((10, 2)), y=np.full((10, 2), 0.5))),
    }
    message = _one_line_error(calls[case], *fragments)
    assert re.match(r"^options\.\w+: ", message)
