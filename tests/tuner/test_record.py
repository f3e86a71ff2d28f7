"""The trial record: attribute names and their readers, on stand-in trials, with no TensorFlow."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

from descentkit.tuner import _record

TUNER = Path(__file__).resolve().parents[2] / "tuner"


def _trial(state: str = "COMPLETE", number: int = 0, **user_attrs):
    return SimpleNamespace(number=number, state=SimpleNamespace(name=state), user_attrs=user_attrs,
                           system_attrs={}, params={})


def test_the_attribute_names_are_the_public_contract():
    assert (_record.PRUNE_REASON, _record.WORKER, _record.FIRST_TRIAL, _record.RETRY_OF) == (
        "prune_reason", "worker", "first_trial", "retry_of")


def test_no_other_tuner_module_spells_a_record_attribute():
    names = {"prune_reason", "worker", "first_trial", "retry_of", "orphaned", "error_type", "error_message"}
    for path in TUNER.glob("*.py"):
        if path.name == "_record.py":
            continue
        literals = {node.value for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        assert not literals & names, f"{path.name} spells {sorted(literals & names)}"


def test_pathology_is_a_symptom_a_pruned_trial_was_stopped_for():
    assert _record.pathology(_trial("PRUNED", prune_reason="divergence")) == "divergence"
    assert _record.pathology(_trial("PRUNED", prune_reason="pruner")) is None
    assert _record.pathology(_trial("COMPLETE", prune_reason="divergence")) is None
    assert _record.pruned_for(_trial("PRUNED")) == "pruner"


def test_symptoms_join_the_recorded_ones_findings_and_prune_reason():
    trial = _trial("PRUNED", prune_reason="divergence", symptoms=["overfitting"],
                   findings=[{"symptom": "dead_units"}, "not a finding", {"no": "symptom"}])
    assert _record.trial_symptoms(trial) == ["dead_units", "divergence", "overfitting"]
    assert _record.findings(trial) == [{"symptom": "dead_units"}]


def test_a_retry_carries_the_first_trial_mark_and_points_back():
    trial = _trial("FAIL", number=4, first_trial="range_test")
    assert _record.carried_on_retry(trial) == {"retry_of": 4, "first_trial": "range_test"}
    assert _record.retry_origin(_trial("WAITING", retry_of=4)) == 4
    optuna_retry = _trial("WAITING")
    optuna_retry.system_attrs = {"failed_trial": 7}
    assert _record.retry_origin(optuna_retry) == 7 and _record.retry_origin(_trial()) is None


def test_error_text_is_type_and_message():
    assert _record.error_text(_trial("FAIL", error_type="ValueError", error_message="bad")) == "ValueError: bad"
    assert _record.error_text(_trial()) is None


def test_the_halving_reason_is_the_one_optuna_pruning_writes():
    from descentkit.callbacks.optuna_pruning import PRUNER

    assert _record.PRUNER == PRUNER
