import numpy as np
import pytest

from descentkit.diagnostics import (
    NONFINITE_INPUTS,
    OUTPUT_LOSS_MISMATCH,
    UNNORMALIZED_INPUTS,
    preflight_checks,
)


@pytest.fixture
def clean(rng):
    x = rng.standard_normal((500, 8))
    y = rng.integers(0, 10, 500)
    return x, y


def _only(findings, symptom):
    matching = [f for f in findings if f.symptom == symptom]
    assert len(matching) == 1, findings
    return matching[0]


def test_clean_normalized_data_passes(clean):
    x, y = clean
    assert preflight_checks(x, y, output_activation="softmax", loss="sparse_categorical_crossentropy", output_units=10) == []


def test_clean_images_with_constant_border_pixels_pass(rng):
    images = np.zeros((300, 28, 28, 1))
    images[:, 4:24, 4:24, :] = rng.random((300, 20, 20, 1))  # [0, 1] pixels, constant borders
    images[0, 0, 0, 0] = 1 / 255  # a border pixel lit once: a "tiny-scale" feature per pixel
    assert preflight_checks(images) == []


def test_nonfinite_inputs_are_critical(clean):
    x, y = clean
    x[3, 2] = np.nan
    x[7, 0] = np.inf
    f = _only(preflight_checks(x, y.astype(float)), NONFINITE_INPUTS)
    assert f.severity == "critical"
    assert f.evidence["x"] == {"nan": 1, "inf": 1, "samples": 2, "first_sample": 3}


def test_nonfinite_labels_are_reported(clean):
    x, y = clean
    y = y.astype(float)
    y[10] = np.nan
    f = _only(preflight_checks(x, y), NONFINITE_INPUTS)
    assert f.evidence["y"]["nan"] == 1


def test_features_on_wildly_different_scales_are_unnormalized(rng):
    x = np.column_stack([rng.normal(3.9, 1.9, 400), rng.normal(1400, 1100, 400).clip(3), rng.random(400)])
    f = _only(preflight_checks(x), UNNORMALIZED_INPUTS)
    assert f.severity == "warning"
    assert f.evidence["x"]["largest_rms_feature"] == 1
    assert f.evidence["x"]["scale_ratio"] > 100
    assert "Normalization" in f.advice and "StandardScaler" in f.advice


def test_raw_pixels_are_unnormalized(rng):
    images = rng.integers(0, 256, (200, 28, 28)).astype(np.float32)
    f = _only(preflight_checks(images), UNNORMALIZED_INPUTS)
    assert f.evidence["x"]["max"] > 200 and f.evidence["x"]["rms"] > 10


def test_feature_far_from_zero_is_unnormalized(rng):
    x = np.column_stack([rng.standard_normal(300), 2000 + rng.standard_normal(300)])  # e.g. years
    f = _only(preflight_checks(x), UNNORMALIZED_INPUTS)
    assert f.evidence["x"]["largest_rms_feature"] == 1


def test_rare_one_hot_columns_are_not_a_scale_problem(rng):
    rare = np.zeros((1000, 1))
    rare[5] = 1.0
    x = np.column_stack([rng.standard_normal((1000, 3)), rare])
    assert preflight_checks(x) == []


@pytest.mark.parametrize(
    "activation, loss, units, labels, severity, words",
    [
        ("softmax", "binary_crossentropy", 1, [0, 1], "critical", "single output unit"),
        ("softmax", "BinaryCrossentropy", 4, None, "warning", "binary_crossentropy"),
        ("sigmoid", "categorical_crossentropy", 10, None, "warning", "do not sum to 1"),
        ("softmax", "categorical_crossentropy", 10, list(range(10)), "critical", "one-hot"),
        ("softmax", "SparseCategoricalCrossentropy", 3, np.eye(3)[[0, 1, 2, 1]], "critical", "one-hot"),
        ("softmax", "sparse_categorical_crossentropy", 10, [0, 3, 10], "critical", "does not fit 10 output units"),
        ("sigmoid", "binary_crossentropy", 1, [-1, 1, 1, -1], "critical", "[0, 1]"),
        ("sigmoid", "mse", 1, list(range(10)), "critical", "sigmoid output only reaches"),
        ("tanh", "mean_squared_error", 1, [0.5, 3.0], "critical", "tanh"),
    ],
)
def test_output_loss_mismatch(activation, loss, units, labels, severity, words):
    x = np.random.default_rng(0).standard_normal((len(labels) if labels is not None else 4, 3))
    y = None if labels is None else np.asarray(labels)
    f = _only(preflight_checks(x, y, output_activation=activation, loss=loss, output_units=units), OUTPUT_LOSS_MISMATCH)
    assert f.severity == severity
    assert words in f.message
    assert f.epoch is None and f.step is None


@pytest.mark.parametrize(
    "activation, loss, units, labels",
    [
        ("softmax", "sparse_categorical_crossentropy", 10, np.arange(10)),
        ("softmax", "categorical_crossentropy", 3, np.eye(3)[[0, 1, 2, 1]]),
        ("sigmoid", "binary_crossentropy", 1, np.array([0.0, 1.0, 1.0])),
        ("linear", "mse", 1, np.array([-3.5, 120.0])),
        (None, "keras.losses.MeanSquaredError", 1, np.array([1.0, 2.0])),
    ],
)
def test_matching_output_loss_and_labels_pass(activation, loss, units, labels):
    x = np.random.default_rng(0).standard_normal((len(labels), 3))
    assert preflight_checks(x, labels, output_activation=activation, loss=loss, output_units=units) == []


def test_preflight_findings_are_json_ready(clean):
    import json

    x, y = clean
    x[0, 0] = np.nan
    for f in preflight_checks(x * 1000, y, output_activation="sigmoid", loss="categorical_crossentropy", output_units=10):
        json.dumps(f.to_dict())


def test_preflight_rejects_nonsense_units(clean):
    with pytest.raises(ValueError, match="output_units.*0"):
        preflight_checks(clean[0], output_units=0)


def test_standardized_features_that_are_rarely_nonzero_are_not_a_scale_mismatch():
    # z-scored pixels: a border pixel inked in 3 of 500 images has max |x| near 13
    # and an RMS of 1, like every other standardized feature
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 20))
    x[:, 0] = 0.0
    x[:3, 0] = 1.0
    x[:, 0] = (x[:, 0] - x[:, 0].mean()) / x[:, 0].std()
    assert [f for f in preflight_checks(x) if f.symptom == "unnormalized_inputs"] == []


def test_a_standardized_pixel_with_one_far_outlier_is_not_a_scale_mismatch():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 10))
    x[:, 3] = -0.03
    x[7, 3] = 88.6  # z-scored on the training set, where it was almost never inked
    assert [f for f in preflight_checks(x) if f.symptom == "unnormalized_inputs"] == []


def test_a_feature_whose_rms_is_one_rare_sample_has_no_scale_to_judge():
    # validation pixels z-scored with the training split's tiny std: one inked image
    # gives a border pixel an RMS of 21.5 over 1,000 samples (0.03 without it)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1000, 12))
    x[:, 0] = -0.03 + 1e-3 * rng.random(1000)
    x[5, 0] = 680.0
    x[:, 1] = -0.03 + 1e-3 * rng.random(1000)  # never inked in this sample
    assert [f for f in preflight_checks(x) if f.symptom == UNNORMALIZED_INPUTS] == []


def test_a_heavy_tailed_feature_on_a_large_scale_is_still_unnormalized():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1000, 4))
    x[:, 2] = rng.lognormal(6.0, 1.0, 1000)  # incomes: dense, heavy-tailed, RMS ~ 700
    f = _only(preflight_checks(x), UNNORMALIZED_INPUTS)
    assert f.evidence["x"]["largest_rms_feature"] == 2
