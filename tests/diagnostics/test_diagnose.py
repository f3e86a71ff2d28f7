import json
import subprocess
import sys

import numpy as np
import pytest

from descentkit.diagnostics import (
    DETECTORS,
    DIVERGENCE,
    OVERFITTING,
    TRAINING_SYMPTOMS,
    Finding,
    TrainingRecord,
    diagnose,
    diagnose_history,
    episode_key,
)


def _healthy(synth, rng, epochs=12, steps=50):
    n = epochs * steps
    loss = synth.decaying(n, rng, start=2.3, end=0.15, noise=0.3)  # noisy but improving minibatch loss
    grad, layers, updates = synth.healthy_layers(n, rng, ratio=1 / 250)
    val = [float(np.mean(loss[e * steps : (e + 1) * steps])) * 1.1 for e in range(epochs)]
    accuracy = list(np.linspace(0.5, 0.95, epochs))
    return synth.Trace(
        steps, loss, grad, layers, updates,
        history={"val_loss": val, "accuracy": accuracy, "val_accuracy": accuracy},
        dead_fraction={"dense": [0.1] * epochs},
        saturated_fraction={"dense_1": [0.05] * epochs},
    )


def test_every_training_symptom_has_a_default_detector():
    assert tuple(DETECTORS) == TRAINING_SYMPTOMS
    for symptom, cls in DETECTORS.items():
        assert cls.symptom == symptom
        assert cls()(TrainingRecord()) == []  # an empty record is no finding


def test_healthy_run_is_quiet_at_every_epoch(synth, rng):
    for record in _healthy(synth, rng).epoch_records():
        assert diagnose(record) == []


def test_diagnose_runs_only_the_named_symptoms(synth, rng):
    trace = _healthy(synth, rng)
    trace.step_loss[400:] = np.nan
    trace.nonfinite = np.where(np.arange(len(trace.step_loss)) >= 400, 7.0, 0.0)
    record = trace.record()
    assert [f.symptom for f in diagnose(record, symptoms=[DIVERGENCE])] == [DIVERGENCE]
    assert diagnose(record, symptoms=DIVERGENCE)[0].step == 401
    assert diagnose(record, symptoms=[OVERFITTING]) == []


def test_diagnose_rejects_unknown_and_preflight_symptoms():
    with pytest.raises(ValueError, match="'exploding'"):
        diagnose(TrainingRecord(), symptoms=["exploding"])
    with pytest.raises(ValueError, match="preflight_checks"):
        diagnose(TrainingRecord(), symptoms=["nonfinite_inputs"])


def test_diagnose_history_on_a_keras_history_dict():
    history = {
        "loss": [1.0, 0.7, 0.5, 0.4, 0.32, 0.26, 0.21, 0.17, 0.14, 0.12],
        "accuracy": [0.6, 0.7, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96],
        "val_loss": [1.05, 0.8, 0.62, 0.55, 0.57, 0.60, 0.64, 0.69, 0.75, 0.82],
        "val_accuracy": [0.6, 0.68, 0.75, 0.78, 0.78, 0.77, 0.77, 0.76, 0.76, 0.75],
        "learning_rate": [0.01] * 10,
    }
    (f,) = diagnose_history(history)
    assert (f.symptom, f.epoch, f.step) == (OVERFITTING, 5, None)
    assert f.evidence["best_epoch"] == 4


def test_diagnose_history_accepts_a_history_object_and_a_constant_rate():
    class History:  # what model.fit returns, minus Keras
        history = {"loss": [1.0, 0.9, float("nan")]}

    (f,) = diagnose_history(History(), learning_rate=0.3)
    assert f.symptom == DIVERGENCE and f.epoch == 3
    assert "from 0.3" in f.advice


def test_findings_with_nan_evidence_are_json_serializable(synth, rng):
    trace = _healthy(synth, rng)
    trace.grad_norm[100:] = np.nan
    trace.nonfinite = np.where(np.arange(len(trace.step_loss)) >= 100, 3.0, 0.0)
    (f,) = diagnose(trace.record(), symptoms=[DIVERGENCE])
    assert np.isnan(f.evidence["grad_norm"])
    data = json.loads(json.dumps(f.to_dict()))
    assert data["evidence"]["grad_norm"] == "nan"
    assert Finding.from_dict(data).step == f.step


def test_episode_key_prefers_the_step():
    f = Finding(DIVERGENCE, "critical", 2, 137, "m", "a")
    assert episode_key(f) == (DIVERGENCE, "step", 137)
    g = Finding(OVERFITTING, "warning", 4, None, "m", "a")
    assert episode_key(g) == (OVERFITTING, "epoch", 4)


def test_diagnostics_imports_no_deep_learning_stack():
    code = (
        "import sys, descentkit.diagnostics\n"
        "bad = [m for m in ('tensorflow', 'keras', 'optuna', 'mlflow', 'scipy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
