"""`Dataset`: the train and validation arrays of a study, with what the model needs to know."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TASKS = ("multiclass", "binary", "regression")


@dataclass
class Dataset:
    """Train and validation arrays plus the task they pose.

    Args:
        x_train, y_train, x_val, y_val: numpy arrays. Classification labels are
            integers (class indices), regression targets floats.
        task: "multiclass", "binary" or "regression".
        num_classes: the number of classes (multiclass); 2 for binary; None for regression.
        name: a label for messages and records.
        class_names: the original label of each class index (`class_names[i]` was
            encoded as `i`), or None.
        feature_names: the input columns, in order, or None.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    task: str = "multiclass"
    num_classes: int | None = None
    name: str = "dataset"
    class_names: list[str] | None = None
    feature_names: list[str] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        for split, (x, y) in {"train": (self.x_train, self.y_train), "validation": (self.x_val, self.y_val)}.items():
            if len(x) != len(y):
                raise ValueError(f"{split} inputs have {len(x)} rows but {split} targets have {len(y)}")
            if len(x) == 0:
                raise ValueError(f"the {split} split is empty")
        if self.task == "multiclass" and self.num_classes is None:
            self.num_classes = int(max(np.max(self.y_train), np.max(self.y_val))) + 1
        if self.task == "binary":
            self.num_classes = 2

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def output_units(self) -> int:
        """Units of the output layer: one per class (multiclass), else one."""
        return int(self.num_classes) if self.task == "multiclass" else 1

    @property
    def output_activation(self) -> str:
        return {"multiclass": "softmax", "binary": "sigmoid", "regression": "linear"}[self.task]

    @property
    def loss(self) -> str:
        return {
            "multiclass": "sparse_categorical_crossentropy",
            "binary": "binary_crossentropy",
            "regression": "mean_squared_error",
        }[self.task]

    @property
    def metrics(self) -> list[str]:
        # Regression logs mse beside the loss: with L2 in the search space the loss
        # includes the penalty, so `val_mse` is the unbiased objective.
        return ["mae", "mse"] if self.task == "regression" else ["accuracy"]
