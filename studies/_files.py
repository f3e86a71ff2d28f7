"""The user's own data, named in a study file without code: `.npz` archives and CSV files.

Both loaders return a `Dataset` and raise ValueError with one line naming the
option at fault and the fix (the tuner reports it and exits 2). Example study
file fragments:

    dataset: {name: csv, options: {path: data/houses.csv, target: price}}
    dataset: {name: npz, options: {path: data/signals.npz, x: inputs, y: labels}}
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from descentkit.studies._dataset import TASKS, Dataset

DEFAULT_VALIDATION_SPLIT = 0.2
# Integer-valued targets with at most this many distinct values are read as
# class labels when `task` is not given; more distinct values read as a count or
# measurement (regression). Set `task:` explicitly to override.
MAX_INFERRED_CLASSES = 20


def _option_error(option: str, message: str) -> ValueError:
    return ValueError(f"options.{option}: {message}")


def _existing_file(path: Any, option: str, kind: str) -> Path:
    if path is None or str(path) == "":
        raise _option_error(option, f"missing; give the path of your {kind} file (dataset.options.{option})")
    resolved = Path(str(path)).expanduser()
    if not resolved.is_file():
        raise _option_error(option, f"no {kind} file at {str(path)!r} (looked in {Path.cwd()}); fix the path or use an absolute one")
    return resolved


def _check_fraction(value: Any) -> float:
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        fraction = float("nan")
    if not 0.0 < fraction < 1.0:
        raise _option_error("validation_split", f"must be a fraction between 0 and 1 (e.g. 0.2), got {value!r}")
    return fraction


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool):
    """`x_train, x_val, y_train, y_val`, shuffled with `seed`; stratified when every class has 2+ members."""
    from sklearn.model_selection import train_test_split

    if stratify:
        _, counts = np.unique(y, return_counts=True)
        n_val = int(np.ceil(fraction * len(y)))
        stratify = counts.min() >= 2 and len(counts) <= n_val <= len(y) - len(counts)
    if len(y) < 2 or int(np.ceil(fraction * len(y))) >= len(y):
        raise _option_error("validation_split", f"leaves no training rows out of {len(y)}; use more data or a smaller split")
    return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y if stratify else None)


def _check_task(task: Any) -> str | None:
    if task is not None and task not in TASKS:
        raise _option_error("task", f"unknown task {task!r}; choose one of {', '.join(TASKS)} or leave it out to infer it")
    return task


def standardize_features(train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero mean, unit variance with the training rows' statistics only (no validation leak),
    as float32; a constant column stays constant (zero) instead of becoming NaN."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    return ((train - mean) / std).astype("float32"), ((val - mean) / std).astype("float32")


def _is_integer_valued(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(np.mod(values, 1) == 0))


def infer_task(targets: np.ndarray) -> str:
    """`binary`, `multiclass` or `regression` from the target values.

    Strings, booleans and an integer array are class labels; floats are class
    labels when all are whole numbers and there are at most `MAX_INFERRED_CLASSES`
    distinct values (a text file's column is read as floats); else regression.
    """
    distinct = np.unique(targets)
    if targets.dtype.kind in "OUSbiu":
        return "binary" if len(distinct) == 2 else "multiclass"
    if _is_integer_valued(targets.astype("float64")) and len(distinct) <= MAX_INFERRED_CLASSES:
        return "binary" if len(distinct) == 2 else "multiclass"
    return "regression"


def encode_targets(option: str, task: str, y_train: np.ndarray, y_val: np.ndarray):
    """Targets as the model needs them: class indices 0..K-1 (with the original labels) or float32."""
    if task == "regression":
        try:
            return y_train.astype("float32"), y_val.astype("float32"), None
        except ValueError:
            raise _option_error("task", f"regression needs numeric {option} values but they hold text "
                                f"(e.g. {str(y_train[0])!r}); set task: multiclass or binary") from None
    labels = np.unique(y_train)
    if task == "binary" and len(labels) != 2:
        raise _option_error("task", f"binary needs exactly 2 classes in {option}, found {len(labels)}; set task: multiclass or leave it out")
    unseen = np.setdiff1d(np.unique(y_val), labels)
    if len(unseen):
        raise _option_error(option, f"validation labels {unseen[:5].tolist()} never occur in the training data; "
                            "use a larger training set or drop those rows")
    index = {label: i for i, label in enumerate(labels.tolist())}
    encode = np.vectorize(index.__getitem__, otypes=["int64"])
    return encode(y_train), encode(y_val), [_label_name(label) for label in labels.tolist()]


def _label_name(label: Any) -> str:
    """`3` rather than `3.0` for a numeric class label read as a float."""
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


# --- .npz -------------------------------------------------------------------------

def _one_hot_to_labels(name: str, y: np.ndarray) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if y.ndim == 2 and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
        return np.argmax(y, axis=1)
    if y.ndim != 1:
        raise _option_error(name, f"targets have shape {y.shape}; give one target per row (integer class labels or a number)")
    return y


def load_npz(
    path: str | None = None,
    x: str | None = None,
    y: str | None = None,
    x_train: str = "x_train",
    y_train: str = "y_train",
    x_val: str = "x_val",
    y_val: str = "y_val",
    validation_split: float = DEFAULT_VALIDATION_SPLIT,
    task: str | None = None,
    seed: int = 0,
) -> Dataset:
    """Arrays from a NumPy `.npz` archive (`numpy.savez`).

    Args:
        path: the `.npz` file.
        x, y: names of one input and one target array, split into train and
            validation with `validation_split`. Default: the archive's `x` and `y`
            when it has no `x_train`.
        x_train, y_train, x_val, y_val: names of ready-made splits (defaults as
            named); without `x_val`/`y_val` in the archive, `validation_split` of
            the training arrays is held out.
        validation_split: fraction held out for validation (default 0.2), seeded.
        task: multiclass, binary or regression; inferred from the targets when left out.
        seed: the split's random seed.

    Example (study file):
        dataset: {name: npz, options: {path: signals.npz, x: inputs, y: labels}}
    """
    file = _existing_file(path, "path", ".npz")
    try:
        with np.load(file, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as exc:
        raise _option_error("path", f"{str(path)!r} is not a readable .npz archive ({type(exc).__name__}); save it with numpy.savez") from None
    present = ", ".join(sorted(arrays)) or "none"
    task = _check_task(task)

    def take(option: str, name: str, hint: str) -> np.ndarray:
        if name not in arrays:
            raise _option_error(option, f"no array {name!r} in {file.name} (arrays: {present}); {hint}")
        return arrays[name]

    if x is None and y is None and x_train not in arrays and "x" in arrays and "y" in arrays:
        x, y = "x", "y"
    if x is not None or y is not None:
        for option, name in (("x", x), ("y", y)):
            if name is None:
                raise _option_error(option, f"missing; with {'y' if option == 'x' else 'x'}: set, name the {option} array too (arrays: {present})")
        hint = "set it to one of the arrays above"
        inputs, targets = take("x", x, hint), take("y", y, hint)
        _same_length(("x", inputs), ("y", targets))
        targets = _one_hot_to_labels("y", targets)
        _check_numeric_array("x", inputs)
        return _finish_split(inputs, targets, validation_split, task, seed, name=file.stem, target_option="y")

    hint = "name your arrays with x_train:/y_train:/x_val:/y_val:, or give x: and y: to split one set"
    xt, yt = take("x_train", x_train, hint), take("y_train", y_train, hint)
    _same_length(("x_train", xt), ("y_train", yt))
    yt = _one_hot_to_labels("y_train", yt)
    _check_numeric_array("x_train", xt)
    has_val = [name in arrays for name in (x_val, y_val)]
    if not any(has_val):
        return _finish_split(xt, yt, validation_split, task, seed, name=file.stem, target_option="y_train")
    xv, yv = take("x_val", x_val, hint), take("y_val", y_val, hint)
    _same_length(("x_val", xv), ("y_val", yv))
    yv = _one_hot_to_labels("y_val", yv)
    _check_numeric_array("x_val", xv)
    if xv.shape[1:] != xt.shape[1:]:
        raise _option_error("x_val", f"rows have shape {xv.shape[1:]} but x_train rows have {xt.shape[1:]}; both splits need the same input shape")
    return _finish(xt, yt, xv, yv, task, name=file.stem, target_option="y_train")


def _same_length(inputs: tuple[str, np.ndarray], targets: tuple[str, np.ndarray]) -> None:
    (x_name, x), (y_name, y) = inputs, targets
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise _option_error(y_name, f"has {y.shape[0] if y.ndim else 0} rows but {x_name} has {x.shape[0] if x.ndim else 0}; "
                            "inputs and targets need one row each per example")
    if len(x) == 0:
        raise _option_error(x_name, "is empty; it needs at least one example")


def _check_numeric_array(option: str, x: np.ndarray) -> None:
    if x.dtype.kind not in "biuf":
        raise _option_error(option, f"holds {x.dtype} values; inputs must be numbers (encode text or categories as numbers first)")
    if not np.all(np.isfinite(x)):
        raise _option_error(option, "holds NaN or infinite values; fill or drop them first")


def _finish_split(x, y, validation_split, task, seed, name, target_option):
    fraction = _check_fraction(validation_split)
    task = task or infer_task(y)
    xt, xv, yt, yv = split_validation(x, y, fraction, seed, stratify=task != "regression")
    return _finish(xt, yt, xv, yv, task, name, target_option)


def _finish(xt, yt, xv, yv, task, name, target_option, feature_names=None) -> Dataset:
    task = task or infer_task(np.concatenate([yt, yv]))
    yt, yv, class_names = encode_targets(target_option, task, yt, yv)
    return Dataset(
        xt.astype("float32"), yt, xv.astype("float32"), yv,
        task=task, num_classes=None if class_names is None else len(class_names), name=name,
        class_names=class_names, feature_names=feature_names,
    )


# --- CSV --------------------------------------------------------------------------

def _read_csv(file: Path, option: str, delimiter: str) -> tuple[list[str], list[list[str]]]:
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle, delimiter=delimiter) if row and any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise _option_error(option, f"{file.name} is not a readable UTF-8 CSV file ({exc}); save it as CSV (UTF-8)") from None
    if len(rows) < 2:
        raise _option_error(option, f"{file.name} needs a header row and at least one data row; found {len(rows)} row(s)")
    header = [name.strip() for name in rows[0]]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise _option_error(option, f"{file.name} line {line} has {len(row)} fields but the header has {len(header)}; "
                                "fix that line (or set delimiter: if it is not ',')")
    return header, [[cell.strip() for cell in row] for row in rows[1:]]


def _column(header: list[str], option: str, name: str, file: Path) -> int:
    if name not in header:
        import difflib

        close = difflib.get_close_matches(name, header, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"columns: {', '.join(header)}"
        raise _option_error(option, f"no column {name!r} in {file.name}; {hint}")
    return header.index(name)


def _numeric_features(rows: list[list[str]], columns: list[int], header: list[str], file: Path) -> np.ndarray:
    out = np.empty((len(rows), len(columns)), dtype="float32")
    for j, c in enumerate(columns):
        for i, row in enumerate(rows):
            cell = row[c]
            try:
                out[i, j] = float(cell)
            except ValueError:
                if cell == "":
                    what, fix = "is empty", "fill or drop the rows with missing values"
                else:
                    what, fix = f"holds {cell!r}, not a number", "encode it as numbers"
                raise _option_error(
                    "features",
                    f"column {header[c]!r} {what} ({file.name} line {i + 2}); {fix}, or leave the column out of options.features",
                ) from None
    if not np.all(np.isfinite(out)):
        bad = header[columns[int(np.where(~np.isfinite(out))[1][0])]]
        raise _option_error("features", f"column {bad!r} holds NaN or infinite values in {file.name}; fill or drop them")
    return out


def _targets(rows: list[list[str]], column: int, name: str, file: Path) -> np.ndarray:
    cells = [row[column] for row in rows]
    if "" in cells:
        raise _option_error("target", f"column {name!r} is empty on {file.name} line {cells.index('') + 2}; drop rows without a target")
    try:
        return np.asarray([float(cell) for cell in cells], dtype="float64")
    except ValueError:
        return np.asarray(cells, dtype=str)


def load_csv(
    path: str | None = None,
    target: str | None = None,
    features: list[str] | None = None,
    validation_split: float = DEFAULT_VALIDATION_SPLIT,
    validation_path: str | None = None,
    task: str | None = None,
    standardize: bool = False,
    delimiter: str = ",",
    seed: int = 0,
) -> Dataset:
    """A table from a CSV file with a header row: one column is the target, the others (or `features`) the inputs.

    Args:
        path: the training CSV file (a header row, then one example per row).
        target: the target column's name (default: the last column).
        features: the input columns, in order (default: every column but the target).
        validation_split: fraction of `path` held out for validation (default 0.2), seeded.
        validation_path: a CSV file with the same columns to validate on instead.
        task: multiclass, binary or regression; inferred when left out (text labels
            or at most 20 distinct integers are classes, anything else regression).
        standardize: scale each feature to zero mean and unit variance, with the
            mean and deviation of the training rows only (default False).
        delimiter: the field separator (default ",").
        seed: the split's random seed.

    Class labels (text or numbers) become class indices 0..K-1 in sorted order;
    the returned dataset's `class_names[i]` is the label encoded as `i`.

    Example (study file):
        dataset: {name: csv, options: {path: data/churn.csv, target: churned, standardize: true}}
    """
    file = _existing_file(path, "path", "CSV")
    task = _check_task(task)
    if len(str(delimiter)) != 1:
        raise _option_error("delimiter", f"must be one character (e.g. ',' or ';'), got {delimiter!r}")
    header, rows = _read_csv(file, "path", delimiter)
    target = header[-1] if target is None else str(target)
    target_index = _column(header, "target", target, file)
    if features is None:
        feature_names = [name for name in header if name != target]
    elif isinstance(features, str) or not isinstance(features, (list, tuple)):
        raise _option_error("features", f"must be a list of column names, got {features!r}; write features: [a, b]")
    else:
        feature_names = [str(name) for name in features]
        if target in feature_names:
            raise _option_error("features", f"lists the target column {target!r}; leave it out of features")
    if not feature_names:
        raise _option_error("features", f"no input columns besides the target {target!r}; the file needs at least one feature")
    columns = [_column(header, "features", name, file) for name in feature_names]
    x = _numeric_features(rows, columns, header, file)
    y = _targets(rows, target_index, target, file)

    if validation_path is None:
        fraction = _check_fraction(validation_split)
        task = task or infer_task(y)
        xt, xv, yt, yv = split_validation(x, y, fraction, seed, stratify=task != "regression")
    else:
        val_file = _existing_file(validation_path, "validation_path", "CSV")
        val_header, val_rows = _read_csv(val_file, "validation_path", delimiter)
        missing = [name for name in [*feature_names, target] if name not in val_header]
        if missing:
            raise _option_error("validation_path", f"{val_file.name} lacks column(s) {', '.join(map(repr, missing))}; "
                                "it needs the same columns as path")
        xv = _numeric_features(val_rows, [val_header.index(n) for n in feature_names], val_header, val_file)
        yv = _targets(val_rows, val_header.index(target), target, val_file)
        xt, yt = x, y
        if yt.dtype.kind != yv.dtype.kind:  # one file has text labels: compare labels as text
            yt, yv = yt.astype(str), yv.astype(str)
    if standardize:
        xt, xv = standardize_features(xt, xv)
    return _finish(xt, yt, xv, yv, task, name=file.stem, target_option="target", feature_names=feature_names)
