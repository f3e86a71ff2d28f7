"""Every built-in study file validates, documents its expected result, and its model runs on its own data."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from descentkit.studies import DATASETS, MODELS, builtin_study_names, builtin_study_path
from descentkit.tuner.config import CategoricalParam, FloatParam, load_study
from descentkit.tuner._materialize import build_model, check_model_output, logged_metrics, representative_params

STUDIES = builtin_study_names()
NEW_STUDIES = ["fashion-mlp", "fashion-cnn", "breast-cancer", "diabetes", "adding-rnn"]


def test_the_six_studies_are_built_in():
    assert set(NEW_STUDIES) <= set(STUDIES)


@pytest.mark.parametrize("name", STUDIES)
def test_study_file_validates_and_names_builtins(name):
    config = load_study(name)
    assert config.name == name
    assert config.dataset is not None and config.dataset.name in DATASETS
    assert config.model.name in MODELS


@pytest.mark.parametrize("name", STUDIES)
def test_study_file_documents_expected_result_and_run_time(name):
    text = builtin_study_path(name).read_text()
    config = load_study(name)
    assert text.startswith(f"# {name}:"), "a comment saying what the study is"
    assert "\n" not in config.description and "2 cores" in config.description
    assert "expected" in text.lower() and config.objective.metric in text


@pytest.mark.parametrize("name", STUDIES)
def test_search_space_covers_the_sgd_variants(name):
    space = load_study(name).search_space
    lr = space["learning_rate"]
    assert isinstance(lr, FloatParam) and lr.log and lr.low < 0.01 < lr.high
    assert isinstance(space["optimizer"], CategoricalParam) and set(space["optimizer"].choices) == {"sgd", "momentum", "nesterov"}
    assert isinstance(space["momentum"], FloatParam) and 0 < space["momentum"].low < space["momentum"].high < 1
    assert set(space["schedule"].choices) == {"constant", "cosine", "exponential", "step"}
    assert isinstance(space["batch_size"], CategoricalParam)


def _study_data(name, request):
    config = load_study(name)
    if config.dataset.name == "fashion-mnist":
        return config, request.getfixturevalue("fashion_small")
    options = dict(config.dataset.options)
    if config.dataset.name == "adding-problem":
        options.update(train_size=16, val_size=8)
    return config, DATASETS[config.dataset.name](seed=0, **options)


@pytest.mark.parametrize("name", STUDIES)
def test_study_model_runs_on_its_data_and_logs_its_objective(name, request):
    config, data = _study_data(name, request)
    assert config.objective.metric in logged_metrics(data)
    model = build_model(config, representative_params(config.search_space), data)
    check_model_output(model, data)
    out = np.asarray(model(data.x_val[:4], training=False))
    assert out.shape == (4, data.output_units) and np.all(np.isfinite(out))


def test_objectives_match_the_tasks():
    expected = {
        "fashion-mlp": ("val_accuracy", "maximize"),
        "fashion-cnn": ("val_accuracy", "maximize"),
        "breast-cancer": ("val_accuracy", "maximize"),
        "diabetes": ("val_loss", "minimize"),
        "adding-rnn": ("val_loss", "minimize"),
    }
    for name, (metric, direction) in expected.items():
        objective = load_study(name).objective
        assert (objective.metric, objective.direction) == (metric, direction), name


def test_adding_rnn_lets_the_sampler_choose_gradient_clipping():
    raw = yaml.safe_load(builtin_study_path("adding-rnn").read_text())
    assert raw["search_space"]["clipnorm"]["choices"] == [None, 1.0]
    assert raw["model"]["options"]["cell"] == "simple"
