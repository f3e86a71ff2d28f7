"""The suite's labelled recipes.

A recipe is data + a small Keras model + an optimizer, built from a seed, labelled by
its one primary symptom (or "healthy") and assigned to a half when written:
"tuning" (detector thresholds may be fitted on it) or "validation" (never used for
fitting; the held-out measurement). Halves alternate within each symptom, and each
half spans the data families, architectures and optimizers. A recipe never moves
between halves after descentkit has been run on it; one the oracle does not
confirm is fixed or dropped by what the oracle says, never by what descentkit says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pathology.data import Data, adding, breast_cancer, classification, diabetes, digits, digits_images, fashion, iris, moons, parity, regression, sine, wine
from pathology.models import cnn, compile_model, const, mlp, normal, optimizer, rnn, scaled, schedule

HEALTHY = "healthy"
TUNING, VALIDATION = "tuning", "validation"


@dataclass
class Setup:
    model: Any
    data: Data
    epochs: int
    batch_size: int


@dataclass(frozen=True)
class Recipe:
    """One labelled recipe: `build(seed)` returns the compiled model, its data and fit settings."""

    name: str
    symptom: str
    half: str
    build: Callable[[int], Setup]
    note: str


def fit(data: Data, model: Any, opt: Any, epochs: int, batch: int) -> Setup:
    return Setup(compile_model(model, data, opt), data, epochs, batch)


def describe(setup: Setup) -> dict[str, str]:
    """Data family, architecture and optimizer of a built recipe (for the coverage table)."""
    import keras

    model = setup.model
    kinds = {type(layer).__name__ for layer in model.layers}
    hidden = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][:-1]
    acts = {getattr(layer.activation, "__name__", "") for layer in hidden}
    if kinds & {"Conv2D"}:
        arch = "cnn"
    elif kinds & {"SimpleRNN", "GRU", "LSTM"}:
        arch = "rnn_" + "_".join(sorted(k.lower() for k in kinds & {"SimpleRNN", "GRU", "LSTM"}))
    elif len(hidden) >= 6 and acts & {"tanh", "sigmoid"}:
        arch = "deep_" + "_".join(sorted(acts & {"tanh", "sigmoid"}))
    else:
        arch = "mlp"
    opt = model.optimizer
    name = type(opt).__name__.lower()
    if name == "sgd":
        momentum = float(opt.momentum)
        name = "sgd_nesterov" if opt.nesterov else ("sgd_momentum" if momentum > 0 else "sgd")
    lr = opt._learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        name += "+" + type(lr).__name__
    return {"family": setup.data.family, "arch": arch, "optimizer": name}


def _r(name: str, symptom: str, half: str, note: str, build: Callable[[int], Setup]) -> Recipe:
    return Recipe(name, symptom, half, build, note)


T, V = TUNING, VALIDATION
RECIPES: list[Recipe] = []


def _clip(name: str, lr: Any, **kw: Any) -> Any:
    return optimizer(name, lr, **kw)


# ------------------------------------------------------------------------ divergence
RECIPES += [
    _r("wine_unscaled_tanh_lr5_momentum", "divergence", V,
       "user-like: the same wine model with tanh units: the loss sits far above chance (~1.1)",
       lambda s: fit(d := wine(s, standardize=False), mlp(d, [64, 64], "tanh"), optimizer("momentum", 5.0), 20, 32)),
    _r("regression_inputs_x1e3_sgd", "divergence", T,
       "make_regression inputs scaled x1000 (unnormalized), MLP 32 relu, MSE, SGD lr=0.01",
       lambda s: fit(d := regression(s, scale=1e3), mlp(d, [32]), optimizer("sgd", 0.01), 5, 32)),
    _r("diabetes_raw_target_momentum", "divergence", V,
       "diabetes with the raw target (y 25-346, MSE ~3e4), MLP 64 relu, SGD lr=0.01 momentum=0.9",
       lambda s: fit(d := diabetes(s, standardize_y=False), mlp(d, [64]), optimizer("momentum", 0.01), 10, 32)),
    _r("fashion_cnn_adam_lr1", "dead_units", T,
       "Fashion-MNIST CNN 8-16 relu, Adam lr=1 (1000x the usual 1e-3): the first steps knock every unit off",
       lambda s: fit(d := fashion(s), cnn(d, (8, 16), 32), optimizer("adam", 1.0), 3, 64)),
    _r("sine_gru_momentum_lr5", "divergence", T,
       "sine forecasting, GRU 32, MSE, SGD lr=5 momentum=0.9",
       lambda s: fit(d := sine(s), rnn(d, "gru", 32), optimizer("momentum", 5.0), 5, 32)),
    _r("moons_tanh_nesterov_lr30", "divergence", V,
       "make_moons MLP 32-32 tanh, SGD Nesterov lr=30 momentum=0.9",
       lambda s: fit(d := moons(s), mlp(d, [32, 32], "tanh"), optimizer("nesterov", 30.0), 10, 32)),
    _r("iris_tanh_expdecay_lr50", "divergence", T,
       "iris MLP 16 tanh, SGD momentum 0.9 with ExponentialDecay from lr=50 (0.9 per 100 steps)",
       lambda s: fit(d := iris(s), mlp(d, [16], "tanh"), optimizer("momentum", schedule("exp", 50.0)), 40, 16)),
    _r("digits_cnn_tanh_piecewise_lr", "divergence", V,
       "digits 8x8 CNN 16-32 tanh, SGD momentum 0.9 PiecewiseConstantDecay lr 20 then 2 after 200 steps",
       lambda s: fit(d := digits_images(s), cnn(d, (16, 32), 64, "tanh"),
                     optimizer("momentum", schedule("piecewise", 20.0, boundaries=[200])), 6, 32)),
    _r("wine_unscaled_relu_lr50_momentum", "divergence", T,
       "user-like: wine with raw features, MLP 64-64 relu, SGD lr=50 momentum=0.9 (at lr=5 the loss came back to "
       "chance once every unit had died)",
       lambda s: fit(d := wine(s, standardize=False), mlp(d, [64, 64]), optimizer("momentum", 50.0), 20, 32)),
    _r("breast_cancer_tanh_rmsprop_lr30", "divergence", V, "breast_cancer MLP 32-32 tanh, RMSprop lr=30",
       lambda s: fit(d := breast_cancer(s), mlp(d, [32, 32], "tanh"), optimizer("rmsprop", 30.0), 10, 32)),
    _r("adding_simplernn_relu_momentum_lr1", "divergence", V,
       "adding problem (30 steps), SimpleRNN 32 relu, SGD lr=1 momentum=0.9",
       lambda s: fit(d := adding(s), rnn(d, "simple", 32, "relu"), optimizer("momentum", 1.0), 3, 32)),
    _r("classification_x100_relu_adagrad_lr10", "divergence", T,
       "make_classification inputs x100 (unnormalized), MLP 64 relu, Adagrad lr=10",
       lambda s: fit(d := classification(s, scale=100.0), mlp(d, [64]), optimizer("adagrad", 10.0), 6, 32)),
]

# ------------------------------------------------------------------------ exploding gradients
# A gradient that grows 100x while the loss does not diverge: a small-init net whose
# weights an adaptive or clipped optimizer grows, or full-batch adaptive steps too
# large for the curvature, whose gradient spikes and then comes back.
RECIPES += [
    _r("diabetes_mlp_fullbatch_rmsprop_lr03", "exploding_gradients", T,
       "diabetes regression MLP 32 relu, full-batch RMSprop lr=0.3",
       lambda s: fit(d := diabetes(s), mlp(d, [32]), optimizer("rmsprop", 0.3), 30, 1000)),
    _r("regression_mlp_fullbatch_rmsprop_lr03", "exploding_gradients", V,
       "make_regression MLP 32 relu, full-batch RMSprop lr=0.3",
       lambda s: fit(d := regression(s), mlp(d, [32]), optimizer("rmsprop", 0.3), 30, 2000)),
    _r("regression_mlp_fullbatch_adam_lr1", "exploding_gradients", T,
       "make_regression MLP 64 relu, full-batch Adam lr=1",
       lambda s: fit(d := regression(s), mlp(d, [64]), optimizer("adam", 1.0), 30, 2000)),
    _r("diabetes_mlp_fullbatch_adam_lr03", "exploding_gradients", V,
       "diabetes regression MLP 64-64 relu, full-batch Adam lr=0.3",
       lambda s: fit(d := diabetes(s), mlp(d, [64, 64]), optimizer("adam", 0.3), 30, 1000)),
    _r("regression_mlp_fullbatch_adagrad_lr1", "exploding_gradients", T,
       "make_regression MLP 32 relu, full-batch Adagrad lr=1 (replaces a deep tanh iris net the oracle confirmed "
       "on 1 seed of 3)",
       lambda s: fit(d := regression(s), mlp(d, [32]), optimizer("adagrad", 1.0), 30, 2000)),
    _r("sine_gru_fullbatch_rmsprop_lr1", "exploding_gradients", V,
       "sine forecasting, GRU 16, full-batch RMSprop lr=1",
       lambda s: fit(d := sine(s, n=600), rnn(d, "gru", 16), optimizer("rmsprop", 1.0), 30, 1000)),
    _r("diabetes_mlp_fullbatch_adagrad_lr1", "exploding_gradients", T,
       "diabetes regression MLP 32 relu, full-batch Adagrad lr=1 (replaces a deep tanh digits net the oracle "
       "confirmed on 1 seed of 3)",
       lambda s: fit(d := diabetes(s), mlp(d, [32]), optimizer("adagrad", 1.0), 30, 1000)),
    _r("sine_simplernn_fullbatch_adam_lr1", "exploding_gradients", V,
       "sine forecasting, SimpleRNN 16 tanh, full-batch Adam lr=1 (replaces a clipped deep tanh digits net the "
       "oracle confirmed on 1 seed of 3)",
       lambda s: fit(d := sine(s, n=600), rnn(d, "simple", 16), optimizer("adam", 1.0), 30, 1000)),
    _r("diabetes_mlp_fullbatch_rmsprop_momentum_lr02", "exploding_gradients", V,
       "diabetes regression MLP 64 relu, full-batch RMSprop lr=0.2 momentum=0.5 (replaces a deep ReLU "
       "breast_cancer net the oracle confirmed on 1 seed of 3)",
       lambda s: fit(d := diabetes(s), mlp(d, [64]), optimizer("rmsprop", 0.2, momentum=0.5), 30, 1000)),
    _r("moons_deep_tanh_small_init_rmsprop", "exploding_gradients", T,
       "make_moons 10x32 tanh N(0, 0.05) init, RMSprop lr=0.05",
       lambda s: fit(d := moons(s), mlp(d, [32] * 10, "tanh", kernel_initializer=normal(0.05, s)),
                     optimizer("rmsprop", 0.05), 10, 32)),
]

# ------------------------------------------------------------------------ vanishing gradients
RECIPES += [
    _r("digits_deep_sigmoid_small_init", "vanishing_gradients", T,
       "digits 12x64 sigmoid, N(0, 0.05) init, SGD lr=0.05",
       lambda s: fit(d := digits(s), mlp(d, [64] * 12, "sigmoid", kernel_initializer=normal(0.05, s)),
                     optimizer("sgd", 0.05), 6, 32)),
    _r("digits_deep_tanh_tiny_init", "vanishing_gradients", V,
       "digits 12x64 tanh, N(0, 0.01) init, SGD lr=0.05 momentum=0.9",
       lambda s: fit(d := digits(s), mlp(d, [64] * 12, "tanh", kernel_initializer=normal(0.01, s)),
                     optimizer("momentum", 0.05), 6, 32)),
    _r("classification_deep_sigmoid_glorot", "vanishing_gradients", T,
       "make_classification 15x64 sigmoid, Glorot init (sigmoid' <= 0.25 per layer), SGD lr=0.1",
       lambda s: fit(d := classification(s), mlp(d, [64] * 15, "sigmoid"), optimizer("sgd", 0.1), 6, 32)),
    _r("breast_cancer_deep_sigmoid_nesterov", "vanishing_gradients", V,
       "breast_cancer 16x32 sigmoid, Glorot, SGD Nesterov lr=0.05",
       lambda s: fit(d := breast_cancer(s), mlp(d, [32] * 16, "sigmoid"), optimizer("nesterov", 0.05), 12, 32)),
    _r("fashion_deep_sigmoid_expdecay", "vanishing_gradients", T,
       "Fashion-MNIST flat, 12x64 sigmoid Glorot, SGD momentum 0.9 ExponentialDecay from lr=0.05",
       lambda s: fit(d := fashion(s, flat=True), mlp(d, [64] * 12, "sigmoid"),
                     optimizer("momentum", schedule("exp", 0.05, decay_steps=100, decay_rate=0.9)), 4, 64)),
    _r("wine_deep_tanh_tiny_init_adagrad", "vanishing_gradients", V,
       "wine 12x32 tanh N(0, 0.01) init, Adagrad lr=0.01",
       lambda s: fit(d := wine(s), mlp(d, [32] * 12, "tanh", kernel_initializer=normal(0.01, s)),
                     optimizer("adagrad", 0.01), 30, 16)),
    _r("moons_deep_sigmoid_small_init_rmsprop", "vanishing_gradients", T,
       "make_moons 14x32 sigmoid N(0, 0.05) init, RMSprop lr=1e-4",
       lambda s: fit(d := moons(s), mlp(d, [32] * 14, "sigmoid", kernel_initializer=normal(0.05, s)),
                     optimizer("rmsprop", 1e-4), 8, 32)),
    _r("digits_cnn_deep_sigmoid", "vanishing_gradients", V,
       "digits 8x8 CNN of 6 sigmoid conv layers (no pooling), Glorot, SGD lr=0.1",
       lambda s: fit(d := digits_images(s), cnn(d, (16,) * 6, 32, "sigmoid", pool=False), optimizer("sgd", 0.1), 4, 32)),
    _r("diabetes_deep_sigmoid_piecewise", "vanishing_gradients", T,
       "diabetes regression, 14x32 sigmoid N(0, 0.05), SGD PiecewiseConstantDecay lr 0.01 then 0.001",
       lambda s: fit(d := diabetes(s), mlp(d, [32] * 14, "sigmoid", kernel_initializer=normal(0.05, s)),
                     optimizer("sgd", schedule("piecewise", 0.01, boundaries=[100])), 20, 32)),
    _r("iris_deep_tanh_tiny_init_adam", "vanishing_gradients", V,
       "iris 12x32 tanh N(0, 0.001) init, Adam lr=1e-4",
       lambda s: fit(d := iris(s), mlp(d, [32] * 12, "tanh", kernel_initializer=normal(0.001, s)),
                     optimizer("adam", 1e-4), 30, 16)),
]

# ------------------------------------------------------------------------ overfitting
RECIPES += [
    _r("digits_100_noisy_big_mlp", "overfitting", T,
       "100 digits, 30 % label noise, no dropout, MLP 512-512 relu, SGD lr=0.05 momentum=0.9",
       lambda s: fit(d := digits(s, n_train=100, label_noise=0.3), mlp(d, [512, 512]), optimizer("momentum", 0.05), 15, 10)),
    _r("classification_100_noisy_big_mlp", "overfitting", V,
       "make_classification 100 samples flip_y=0.3, MLP 512-512 relu, SGD lr=0.05 momentum=0.9",
       lambda s: fit(d := classification(s, n_train=100, flip_y=0.3), mlp(d, [512, 512]), optimizer("momentum", 0.05), 15, 10)),
    _r("breast_cancer_80_noisy_adam", "overfitting", T,
       "breast_cancer 80 samples, 20 % label noise, MLP 256-256 relu, Adam lr=1e-3",
       lambda s: fit(d := breast_cancer(s, n_train=80, label_noise=0.2), mlp(d, [256, 256]), optimizer("adam", 1e-3), 20, 8)),
    _r("fashion_300_cnn_adam", "overfitting", V,
       "300 Fashion-MNIST images, 20 % label noise, CNN 16-32 dense 128, Adam lr=2e-3",
       lambda s: fit(d := fashion(s, train_size=300, label_noise=0.2), cnn(d, (16, 32), 128), optimizer("adam", 2e-3), 15, 16)),
    _r("diabetes_100_big_mlp_rmsprop", "overfitting", T,
       "diabetes, 100 patients, MLP 256-256 relu, RMSprop lr=1e-3",
       lambda s: fit(d := diabetes(s, n_train=100), mlp(d, [256, 256]), optimizer("rmsprop", 1e-3), 30, 8)),
    _r("regression_80_big_mlp_nesterov", "overfitting", V,
       "make_regression 80 samples (noise 20), MLP 256-256 relu, SGD Nesterov lr=0.01",
       lambda s: fit(d := regression(s, noise=40.0, n_train=80), mlp(d, [256, 256]), optimizer("nesterov", 0.01), 40, 8)),
    _r("moons_60_big_mlp_adam", "overfitting", T,
       "make_moons 60 samples noise 0.35, MLP 256-256-256 relu, Adam lr=3e-3",
       lambda s: fit(d := moons(s, noise=0.35, n_train=60), mlp(d, [256, 256, 256]), optimizer("adam", 3e-3), 30, 8)),
    _r("wine_40_noisy_big_mlp_sgd", "overfitting", V,
       "wine 40 samples, 30 % label noise, MLP 512-512 relu, SGD lr=0.1",
       lambda s: fit(d := wine(s, n_train=40, label_noise=0.3), mlp(d, [512, 512]), optimizer("sgd", 0.1), 40, 4)),
    _r("digits_cnn_150_noisy_adagrad", "overfitting", T,
       "150 digits images, 30 % label noise, CNN 32-64 dense 128, Adagrad lr=0.05",
       lambda s: fit(d := digits_images(s, n_train=150, label_noise=0.3), cnn(d, (32, 64), 128), optimizer("adagrad", 0.05), 20, 8)),
]

# ------------------------------------------------------------------------ dead units
RECIPES += [
    _r("digits_relu_bias_minus5", "dead_units", T,
       "digits MLP 128-128 relu, bias init -5, SGD lr=0.05",
       lambda s: fit(d := digits(s), mlp(d, [128, 128], bias_initializer=const(-5.0)), optimizer("sgd", 0.05), 5, 32)),
    _r("breast_cancer_relu_adam_lr05", "dead_units", V,
       "breast_cancer MLP 64-64 relu, Adam lr=0.5 (the big early steps push units off)",
       lambda s: fit(d := breast_cancer(s), mlp(d, [64, 64]), optimizer("adam", 0.5), 15, 32)),
    _r("fashion_cnn_bias_minus3_momentum", "dead_units", T,
       "Fashion-MNIST CNN 8-16 relu, bias init -3, SGD lr=0.01 momentum=0.9",
       lambda s: fit(d := fashion(s), cnn(d, (8, 16), 32, bias_initializer=const(-3.0)), optimizer("momentum", 0.01), 3, 64)),
    _r("classification_relu_adam_lr02", "dead_units", V,
       "make_classification MLP 128-128 relu, Adam lr=0.2",
       lambda s: fit(d := classification(s), mlp(d, [128, 128]), optimizer("adam", 0.2), 8, 32)),
    _r("moons_relu_bias_minus2_rmsprop", "dead_units", T,
       "make_moons MLP 64-64 relu, bias init -2, RMSprop lr=1e-3",
       lambda s: fit(d := moons(s), mlp(d, [64, 64], bias_initializer=const(-2.0)), optimizer("rmsprop", 1e-3), 8, 32)),
    _r("diabetes_relu_bias_minus3_nesterov", "dead_units", V,
       "diabetes regression MLP 64-64 relu, bias init -3, SGD Nesterov lr=0.01",
       lambda s: fit(d := diabetes(s), mlp(d, [64, 64], bias_initializer=const(-3.0)), optimizer("nesterov", 0.01), 15, 32)),
    _r("digits_cnn_bias_minus4_adagrad", "dead_units", T,
       "digits 8x8 CNN 16-32 relu, bias init -4, Adagrad lr=0.05",
       lambda s: fit(d := digits_images(s), cnn(d, (16, 32), 64, bias_initializer=const(-4.0)), optimizer("adagrad", 0.05), 4, 32)),
    _r("wine_relu_sgd_lr3_clipnorm", "dead_units", V,
       "wine MLP 64-64 relu, SGD lr=3 clipnorm=1 (clipping keeps it finite; the big steps knock units off)",
       lambda s: fit(d := wine(s), mlp(d, [64, 64]), optimizer("sgd", 3.0, clipnorm=1.0), 30, 16)),
    _r("regression_relu_expdecay_lr_high", "dead_units", T,
       "make_regression MLP 64-64 relu, SGD momentum 0.9 ExponentialDecay from lr=0.5 with clipnorm=1",
       lambda s: fit(d := regression(s), mlp(d, [64, 64]), optimizer("momentum", schedule("exp", 0.5), clipnorm=1.0), 8, 32)),
    _r("iris_relu_negative_init_cosine", "dead_units", V,
       "iris MLP 32-32 relu, bias init -3, SGD CosineDecay from lr=0.05",
       lambda s: fit(d := iris(s), mlp(d, [32, 32], bias_initializer=const(-3.0)),
                     optimizer("sgd", schedule("cosine", 0.05, decay_steps=300)), 30, 16)),
]

# ------------------------------------------------------------------------ saturated activations
RECIPES += [
    _r("digits_tanh_inputs_x100", "saturated_activations", T,
       "digits standardized then x100, MLP 128-128 tanh, SGD lr=0.01",
       lambda s: fit(d := digits(s, scale=100.0), mlp(d, [128, 128], "tanh"), optimizer("sgd", 0.01), 5, 32)),
    _r("classification_sigmoid_large_init", "saturated_activations", V,
       "make_classification MLP 128-128 sigmoid, N(0, 3) init, SGD lr=0.01",
       lambda s: fit(d := classification(s), mlp(d, [128, 128], "sigmoid", kernel_initializer=normal(3.0, s)),
                     optimizer("sgd", 0.01), 5, 32)),
    _r("breast_cancer_unscaled_tanh_adam", "saturated_activations", T,
       "breast_cancer with raw features (area ~1000), MLP 64-64 tanh, Adam lr=1e-3",
       lambda s: fit(d := breast_cancer(s, standardize=False), mlp(d, [64, 64], "tanh"), optimizer("adam", 1e-3), 10, 32)),
    _r("fashion_raw_pixels_tanh_momentum", "saturated_activations", V,
       "Fashion-MNIST flat with raw pixels 0-255, MLP 128 tanh, SGD lr=1e-3 momentum=0.9",
       lambda s: fit(d := fashion(s, flat=True, standardize=False, scale=255.0), mlp(d, [128], "tanh"),
                     optimizer("momentum", 1e-3), 3, 64)),
    _r("wine_unscaled_sigmoid_rmsprop", "saturated_activations", T,
       "wine raw features, MLP 64 sigmoid, RMSprop lr=1e-3",
       lambda s: fit(d := wine(s, standardize=False), mlp(d, [64], "sigmoid"), optimizer("rmsprop", 1e-3), 30, 16)),
    _r("sine_simplernn_gain3", "saturated_activations", V,
       "sine forecasting, SimpleRNN 32 tanh with orthogonal recurrent init gain 3, SGD lr=0.01",
       lambda s: fit(d := sine(s), rnn(d, "simple", 32, recurrent_initializer=_orthogonal(3.0, s)), optimizer("sgd", 0.01), 5, 32)),
    _r("moons_sigmoid_bias_plus6_nesterov", "saturated_activations", T,
       "make_moons MLP 64-64 sigmoid, bias init +6, SGD Nesterov lr=0.01",
       lambda s: fit(d := moons(s), mlp(d, [64, 64], "sigmoid", bias_initializer=const(6.0)), optimizer("nesterov", 0.01), 8, 32)),
    _r("diabetes_tanh_large_init_adagrad", "saturated_activations", V,
       "diabetes regression, MLP 64-64 tanh N(0, 4) init, Adagrad lr=0.01",
       lambda s: fit(d := diabetes(s), mlp(d, [64, 64], "tanh", kernel_initializer=normal(4.0, s)), optimizer("adagrad", 0.01), 15, 32)),
    _r("digits_cnn_tanh_large_init_piecewise", "saturated_activations", T,
       "digits 8x8 CNN 16-32 tanh N(0, 2) init, SGD PiecewiseConstantDecay lr 0.01 then 0.001",
       lambda s: fit(d := digits_images(s, standardize=True), cnn(d, (16, 32), 64, "tanh", kernel_initializer=normal(2.0, s)),
                     optimizer("sgd", schedule("piecewise", 0.01, boundaries=[100])), 4, 32)),
    _r("iris_tanh_inputs_x50_cosine", "saturated_activations", V,
       "iris standardized then x50, MLP 32-32 tanh, SGD momentum CosineDecay from lr=0.01",
       lambda s: fit(d := iris(s, scale=50.0), mlp(d, [32, 32], "tanh"),
                     optimizer("momentum", schedule("cosine", 0.01, decay_steps=300)), 30, 16)),
]

# ------------------------------------------------------------------------ oscillating loss
# Full-batch momentum near 1 on near-quadratic (MSE) losses: every mode rings, and
# decays by only sqrt(momentum) a step. Cross-entropy runs settled instead (their
# curvature falls as the model grows confident): the oracle confirmed none of them.
RECIPES += [
    _r("regression_linear_fullbatch_momentum099", "oscillating_loss", T,
       "make_regression, linear model, full-batch SGD lr=0.5 momentum=0.99",
       lambda s: fit(d := regression(s), mlp(d, []), optimizer("momentum", 0.5, momentum=0.99), 30, 2000)),
    _r("sine_gru_fullbatch_momentum099", "oscillating_loss", T,
       "sine forecasting, GRU 16, full-batch SGD lr=0.3 momentum=0.99",
       lambda s: fit(d := sine(s, n=600), rnn(d, "gru", 16), optimizer("momentum", 0.3, momentum=0.99), 30, 1000)),
    _r("regression_tanh_fullbatch_momentum099", "oscillating_loss", T,
       "make_regression MLP 32 tanh, full-batch SGD lr=0.2 momentum=0.99",
       lambda s: fit(d := regression(s), mlp(d, [32], "tanh"), optimizer("momentum", 0.2, momentum=0.99), 30, 2000)),
    _r("diabetes_linear_fullbatch_momentum099_expdecay", "oscillating_loss", T,
       "diabetes, linear model, full-batch SGD momentum 0.99, ExponentialDecay from lr=0.3 (0.99 per 10 steps)",
       lambda s: fit(d := diabetes(s), mlp(d, []),
                     optimizer("momentum", schedule("exp", 0.3, decay_steps=10, decay_rate=0.99), momentum=0.99), 30, 1000)),
    _r("diabetes_relu_fullbatch_nesterov099", "oscillating_loss", V,
       "diabetes MLP 32 relu, full-batch SGD Nesterov lr=0.3 momentum=0.99",
       lambda s: fit(d := diabetes(s), mlp(d, [32]), optimizer("nesterov", 0.3, momentum=0.99), 30, 1000)),
    _r("regression_linear_fullbatch_momentum099_cosine", "oscillating_loss", V,
       "make_regression, linear model, full-batch SGD momentum 0.99, CosineDecay from lr=0.4 over 1000 steps",
       lambda s: fit(d := regression(s), mlp(d, []),
                     optimizer("momentum", schedule("cosine", 0.4, decay_steps=1000), momentum=0.99), 30, 2000)),
    _r("adding_gru_fullbatch_momentum099", "oscillating_loss", V,
       "adding problem (30 steps), GRU 16, full-batch SGD lr=0.3 momentum=0.99",
       lambda s: fit(d := adding(s, n=600), rnn(d, "gru", 16), optimizer("momentum", 0.3, momentum=0.99), 30, 1000)),

    _r("diabetes_linear_fullbatch_momentum", "oscillating_loss", V,
       "diabetes, linear model, full-batch SGD lr=0.3 momentum=0.98",
       lambda s: fit(d := diabetes(s), mlp(d, []), optimizer("momentum", 0.3, momentum=0.98), 40, 1000)),
    _r("regression_mlp_fullbatch_nesterov_cosine", "oscillating_loss", V,
       "make_regression MLP 32 relu, full-batch SGD Nesterov momentum 0.98 CosineDecay from lr=0.3 over 400 steps",
       lambda s: fit(d := regression(s), mlp(d, [32]),
                     optimizer("nesterov", schedule("cosine", 0.3, decay_steps=400), momentum=0.98), 40, 2000)),
]

# ------------------------------------------------------------------------ stalled training
RECIPES += [
    _r("digits_mlp_lr1e-6", "stalled_training", T,
       "digits MLP 64-64 relu, SGD lr=1e-6",
       lambda s: fit(d := digits(s), mlp(d, [64, 64]), optimizer("sgd", 1e-6), 5, 32)),
    _r("classification_shuffled_labels", "stalled_training", V,
       "make_classification with shuffled labels, MLP 16 relu, SGD lr=0.01 momentum=0.9",
       lambda s: fit(d := classification(s, shuffle_labels=True), mlp(d, [16]), optimizer("momentum", 0.01), 5, 32)),
    _r("fashion_cnn_adam_lr1e-7", "stalled_training", T,
       "Fashion-MNIST CNN 8-16, Adam lr=1e-7",
       lambda s: fit(d := fashion(s), cnn(d, (8, 16), 32), optimizer("adam", 1e-7), 3, 64)),
    _r("wine_adagrad_lr1e-5", "stalled_training", V,
       "wine MLP 32 relu, Adagrad lr=1e-5",
       lambda s: fit(d := wine(s), mlp(d, [32]), optimizer("adagrad", 1e-5), 20, 16)),
    _r("diabetes_sgd_lr1e-5", "stalled_training", T,
       "diabetes regression MLP 64 relu, SGD lr=1e-5",
       lambda s: fit(d := diabetes(s), mlp(d, [64]), optimizer("sgd", 1e-5), 15, 32)),
    _r("parity16_gru_rmsprop", "stalled_training", V,
       "16-bit parity, GRU 16, RMSprop lr=1e-3 (too hard to learn in 5 epochs)",
       lambda s: fit(d := parity(s, length=16), rnn(d, "gru", 16), optimizer("rmsprop", 1e-3), 5, 32)),
    _r("breast_cancer_expdecay_collapses", "stalled_training", V,
       "breast_cancer MLP 32 relu, SGD ExponentialDecay from lr=1e-3 with rate 0.01 per 5 steps",
       lambda s: fit(d := breast_cancer(s), mlp(d, [32]), optimizer("sgd", schedule("exp", 1e-3, decay_steps=5, decay_rate=0.01)), 10, 32)),
    _r("sine_simplernn_nesterov_lr1e-6", "stalled_training", T,
       "sine forecasting, SimpleRNN 32, SGD Nesterov lr=1e-6",
       lambda s: fit(d := sine(s), rnn(d, "simple", 32), optimizer("nesterov", 1e-6), 4, 32)),
    _r("iris_shuffled_labels_adam", "stalled_training", V,
       "iris with shuffled labels, MLP 8 relu, Adam lr=1e-3",
       lambda s: fit(d := iris(s, shuffle_labels=True), mlp(d, [8]), optimizer("adam", 1e-3), 20, 16)),
]


def _orthogonal(gain: float, seed: int) -> Any:
    import keras

    return keras.initializers.Orthogonal(gain=gain, seed=seed)

# ------------------------------------------------------------------------ healthy
RECIPES += [
    _r("h_digits_mlp_momentum", HEALTHY, T, "digits MLP 128-64 relu, SGD lr=0.05 momentum=0.9",
       lambda s: fit(d := digits(s), mlp(d, [128, 64]), optimizer("momentum", 0.05), 6, 32)),
    _r("h_digits_mlp_adam", HEALTHY, V, "digits MLP 128-64 relu, Adam lr=1e-3",
       lambda s: fit(d := digits(s), mlp(d, [128, 64]), optimizer("adam", 1e-3), 6, 32)),
    _r("h_digits_cnn_sgd", HEALTHY, T, "digits 8x8 CNN 16-32 relu, SGD lr=0.05 momentum=0.9",
       lambda s: fit(d := digits_images(s), cnn(d, (16, 32), 64), optimizer("momentum", 0.05), 5, 32)),
    _r("h_digits_cnn_rmsprop", HEALTHY, V, "digits 8x8 CNN 16-32 relu, RMSprop lr=1e-3",
       lambda s: fit(d := digits_images(s), cnn(d, (16, 32), 64), optimizer("rmsprop", 1e-3), 5, 32)),
    _r("h_digits_deep_tanh_10", HEALTHY, T,
       "digits 10x64 tanh, fan-in init scale 0.6 + N(0, 0.5) biases (first-layer gradient far below the last's), "
       "SGD lr=0.02 momentum=0.9",
       lambda s: fit(d := digits(s), mlp(d, [64] * 10, "tanh", kernel_initializer=scaled(0.6, s),
                                          bias_initializer=normal(0.5, s + 1)), optimizer("momentum", 0.02), 12, 32)),
    _r("h_digits_deep_tanh_12_nesterov", HEALTHY, V,
       "digits 12x64 tanh, fan-in init scale 0.7 + N(0, 0.5) biases, SGD Nesterov lr=0.01",
       lambda s: fit(d := digits(s), mlp(d, [64] * 12, "tanh", kernel_initializer=scaled(0.7, s),
                                          bias_initializer=normal(0.5, s + 1)), optimizer("nesterov", 0.01), 15, 32)),
    _r("h_breast_cancer_mlp_adam", HEALTHY, T, "breast_cancer MLP 32-16 relu, Adam lr=1e-3",
       lambda s: fit(d := breast_cancer(s), mlp(d, [32, 16]), optimizer("adam", 1e-3), 15, 32)),
    _r("h_breast_cancer_logistic_sgd", HEALTHY, V, "breast_cancer softmax regression, SGD lr=0.05",
       lambda s: fit(d := breast_cancer(s), mlp(d, []), optimizer("sgd", 0.05), 15, 32)),
    _r("h_wine_mlp_sgd", HEALTHY, T, "wine MLP 32 relu, SGD lr=0.05",
       lambda s: fit(d := wine(s), mlp(d, [32]), optimizer("sgd", 0.05), 30, 16)),
    _r("h_wine_mlp_adagrad", HEALTHY, V, "wine MLP 32 relu, Adagrad lr=0.05",
       lambda s: fit(d := wine(s), mlp(d, [32]), optimizer("adagrad", 0.05), 30, 16)),
    _r("h_iris_mlp_adam", HEALTHY, T, "iris MLP 16 relu, Adam lr=0.01",
       lambda s: fit(d := iris(s), mlp(d, [16]), optimizer("adam", 0.01), 20, 8)),
    _r("h_iris_mlp_rmsprop", HEALTHY, V, "iris MLP 16 tanh, RMSprop lr=0.01",
       lambda s: fit(d := iris(s), mlp(d, [16], "tanh"), optimizer("rmsprop", 0.01), 20, 8)),
    _r("h_diabetes_mlp_sgd", HEALTHY, T, "diabetes regression MLP 32 relu, SGD lr=0.01 momentum=0.9",
       lambda s: fit(d := diabetes(s), mlp(d, [32]), optimizer("momentum", 0.01), 20, 32)),
    _r("h_diabetes_mlp_adam", HEALTHY, V, "diabetes regression MLP 32 tanh, Adam lr=3e-3",
       lambda s: fit(d := diabetes(s), mlp(d, [32], "tanh"), optimizer("adam", 3e-3), 20, 32)),
    _r("h_classification_mlp_rmsprop", HEALTHY, T, "make_classification MLP 64-64 relu, RMSprop lr=1e-3",
       lambda s: fit(d := classification(s), mlp(d, [64, 64]), optimizer("rmsprop", 1e-3), 8, 32)),
    _r("h_classification_deep_tanh_momentum", HEALTHY, V,
       "make_classification 8x64 tanh Glorot, SGD lr=0.01 momentum=0.9",
       lambda s: fit(d := classification(s), mlp(d, [64] * 8, "tanh"), optimizer("momentum", 0.01), 10, 32)),
    _r("h_moons_mlp_expdecay", HEALTHY, T, "make_moons MLP 32-32 relu, SGD momentum 0.9 ExponentialDecay from lr=0.1",
       lambda s: fit(d := moons(s), mlp(d, [32, 32]), optimizer("momentum", schedule("exp", 0.1, decay_steps=200)), 10, 32)),
    _r("h_moons_mlp_adam", HEALTHY, V, "make_moons MLP 32-32 tanh, Adam lr=3e-3",
       lambda s: fit(d := moons(s), mlp(d, [32, 32], "tanh"), optimizer("adam", 3e-3), 10, 32)),
    _r("h_regression_mlp_piecewise", HEALTHY, T,
       "make_regression MLP 64 relu, SGD momentum 0.9 PiecewiseConstantDecay lr 0.01 then 0.001",
       lambda s: fit(d := regression(s), mlp(d, [64]), optimizer("momentum", schedule("piecewise", 0.01, boundaries=[200])), 8, 32)),
    _r("h_regression_mlp_adam", HEALTHY, V, "make_regression MLP 64-64 relu, Adam lr=1e-3",
       lambda s: fit(d := regression(s), mlp(d, [64, 64]), optimizer("adam", 1e-3), 8, 32)),
    _r("h_fashion_mlp_adam", HEALTHY, T, "Fashion-MNIST flat, MLP 128 relu, Adam lr=1e-3",
       lambda s: fit(d := fashion(s, flat=True), mlp(d, [128]), optimizer("adam", 1e-3), 4, 64)),
    _r("h_fashion_cnn_momentum", HEALTHY, V, "Fashion-MNIST CNN 8-16 relu, SGD lr=0.05 momentum=0.9",
       lambda s: fit(d := fashion(s), cnn(d, (8, 16), 32), optimizer("momentum", 0.05), 4, 64)),
    _r("h_fashion_cnn_adam", HEALTHY, T, "Fashion-MNIST CNN 8-16 relu, Adam lr=1e-3",
       lambda s: fit(d := fashion(s), cnn(d, (8, 16), 32), optimizer("adam", 1e-3), 4, 64)),
    _r("h_fashion_mlp_cosine", HEALTHY, V, "Fashion-MNIST flat, MLP 128-64 relu, SGD momentum 0.9 CosineDecay from lr=0.05",
       lambda s: fit(d := fashion(s, flat=True), mlp(d, [128, 64]),
                     optimizer("momentum", schedule("cosine", 0.05, decay_steps=200)), 4, 64)),
    _r("h_sine_gru_rmsprop", HEALTHY, T, "sine forecasting, GRU 16, RMSprop lr=3e-3",
       lambda s: fit(d := sine(s), rnn(d, "gru", 16), optimizer("rmsprop", 3e-3), 5, 32)),
    _r("h_sine_simplernn_momentum", HEALTHY, V, "sine forecasting, SimpleRNN 32 tanh, SGD lr=0.01 momentum=0.9",
       lambda s: fit(d := sine(s), rnn(d, "simple", 32), optimizer("momentum", 0.01), 5, 32)),
    _r("h_sine_lstm_adam", HEALTHY, T, "sine forecasting, LSTM 16, Adam lr=3e-3",
       lambda s: fit(d := sine(s), rnn(d, "lstm", 16), optimizer("adam", 3e-3), 5, 32)),
    _r("h_adding_gru_adam", HEALTHY, T, "adding problem (10 steps), GRU 32, Adam lr=3e-3",
       lambda s: fit(d := adding(s, length=10), rnn(d, "gru", 32), optimizer("adam", 3e-3), 8, 32)),
    _r("h_parity_gru_adam", HEALTHY, V, "4-bit parity, GRU 16, Adam lr=1e-2",
       lambda s: fit(d := parity(s, length=4), rnn(d, "gru", 16), optimizer("adam", 1e-2), 8, 32)),
    _r("h_adding_lstm_rmsprop", HEALTHY, V, "adding problem (10 steps), LSTM 32, RMSprop lr=3e-3",
       lambda s: fit(d := adding(s, length=10), rnn(d, "lstm", 32), optimizer("rmsprop", 3e-3), 8, 32)),
    _r("h_digits_dropout_mlp_sgd", HEALTHY, V, "digits MLP 256-128 relu with dropout 0.3, SGD lr=0.1",
       lambda s: fit(d := digits(s), mlp(d, [256, 128], dropout=0.3), optimizer("sgd", 0.1), 8, 32)),
    _r("h_wine_deep_tanh_adam", HEALTHY, T, "wine 8x32 tanh Glorot, Adam lr=1e-3",
       lambda s: fit(d := wine(s), mlp(d, [32] * 8, "tanh"), optimizer("adam", 1e-3), 30, 16)),
    _r("h_breast_cancer_deep_sigmoid_adam", HEALTHY, V, "breast_cancer 6x32 sigmoid Glorot, Adam lr=1e-3",
       lambda s: fit(d := breast_cancer(s), mlp(d, [32] * 6, "sigmoid"), optimizer("adam", 1e-3), 25, 32)),
    _r("h_moons_deep_tanh_nesterov", HEALTHY, T, "make_moons 8x32 tanh Glorot, SGD Nesterov lr=0.02",
       lambda s: fit(d := moons(s), mlp(d, [32] * 8, "tanh"), optimizer("nesterov", 0.02), 10, 32)),
    _r("h_classification_mlp_adagrad_l2", HEALTHY, V, "make_classification MLP 64 relu L2 1e-4, Adagrad lr=0.05",
       lambda s: fit(d := classification(s), mlp(d, [64], l2=1e-4), optimizer("adagrad", 0.05), 8, 32)),
    _r("h_diabetes_mlp_cosine", HEALTHY, T, "diabetes regression MLP 64 relu, SGD CosineDecay from lr=0.02",
       lambda s: fit(d := diabetes(s), mlp(d, [64]), optimizer("sgd", schedule("cosine", 0.02, decay_steps=300))
                     , 25, 32)),
    # binary classifiers with one sigmoid output unit and binary cross-entropy (most
    # users' binary models); added with the probe's output-layer rule, halves alternating
    _r("h_moons_tanh_sigmoid_head_adam", HEALTHY, V, "make_moons MLP 32-32 tanh, sigmoid output, Adam lr=1e-2",
       lambda s: fit(d := moons(s), mlp(d, [32, 32], "tanh", sigmoid_head=True), optimizer("adam", 1e-2), 15, 32)),
    _r("h_breast_cancer_relu_sigmoid_head_momentum", HEALTHY, T,
       "breast_cancer MLP 32 relu, sigmoid output, SGD lr=0.05 momentum=0.9",
       lambda s: fit(d := breast_cancer(s), mlp(d, [32], sigmoid_head=True), optimizer("momentum", 0.05), 30, 32)),
]
