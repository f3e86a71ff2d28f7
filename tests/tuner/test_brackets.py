"""`pruner: brackets`: Hyperband's schedule on ask-and-tell, promoted trials resumed from checkpoints."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import yaml

from descentkit.studies import builtin_study_path
from descentkit.tuner import ConfigError, StudyConfig, run_sweep
from descentkit.tuner.brackets import hyperband_brackets


def test_schedule_is_hyperbands():
    brackets = hyperband_brackets(27, min_epochs=1, reduction_factor=3)
    assert [b.rungs for b in brackets] == [
        ((27, 1), (9, 3), (3, 9), (1, 27)),
        ((12, 3), (4, 9), (1, 27)),
        ((6, 9), (2, 27)),
        ((4, 27),),
    ]
    # each rung continues from the last: 27*1 + 9*2 + 3*6 + 1*18, not 27*1 + 9*3 + 3*9 + 1*27
    assert brackets[0].epochs() == 27 + 18 + 18 + 18
    assert [b.rungs for b in hyperband_brackets(4, reduction_factor=2)] == [
        ((4, 1), (2, 2), (1, 4)), ((3, 2), (1, 4)), ((3, 4),)]


def _study(tmp_path, **changes) -> StudyConfig:
    data = yaml.safe_load(builtin_study_path("digits").read_text())
    data.update(name="brackets", max_epochs=4, trials=4, seed=3, sampler="random", first_trial="sampler",
                pruner={"name": "brackets", "options": {"reduction_factor": 2}})
    data["search_space"] = {"learning_rate": {"type": "float", "low": 0.02, "high": 0.2, "log": True},
                            "momentum": 0.9, "batch_size": 64}
    data.update(changes)
    return StudyConfig.model_validate(data)


def test_promoted_trials_resume_from_their_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_sweep(_study(tmp_path), progress=False, tracking=False)
    trials = result.study.trials
    assert len(trials) == 4, "the trial budget counts configurations"
    for t in trials:
        # one report per epoch, numbered on across rungs: a resumed trial did not start again at 0
        assert sorted(t.intermediate_values) == list(range(t.user_attrs["epochs_trained"]))
        assert len(t.user_attrs["history"]["loss"]) == t.user_attrs["epochs_trained"]
    # the first bracket: 4 at 1 epoch, the best 2 go on; the leader of the two straight to 4
    first = sorted(trials, key=lambda t: t.intermediate_values[0], reverse=True)
    leader, second = first[0], first[1]
    assert leader.state == optuna.trial.TrialState.COMPLETE and leader.user_attrs["epochs_trained"] == 4
    assert leader.value == max(leader.intermediate_values.values())
    for t in first[2:]:  # dropped after 1 epoch
        assert t.state == optuna.trial.TrialState.PRUNED and t.user_attrs["prune_reason"] == "pruner"
        assert t.user_attrs["epochs_trained"] == 1
    # the second trains to 2 epochs and goes on to 4 only if it beats the leader's best at epoch 2
    at_2 = max(leader.intermediate_values[0], leader.intermediate_values[1])
    if max(second.intermediate_values[0], second.intermediate_values[1]) > at_2:
        assert second.state == optuna.trial.TrialState.COMPLETE and second.user_attrs["epochs_trained"] == 4
    else:
        assert second.state == optuna.trial.TrialState.PRUNED and second.user_attrs["epochs_trained"] == 2
    loss = leader.user_attrs["history"]["loss"]
    assert loss[1] < loss[0] and loss[3] < loss[0], "training went on from the checkpoint"


def test_checkpoint_restores_weights_and_optimizer_state(tmp_path):
    import keras

    from descentkit.studies import DATASETS
    from descentkit.tuner._materialize import build_model, compile_model
    from descentkit.tuner.objective import Checkpoint

    config = _study(tmp_path)
    data = DATASETS["digits"]()
    params = {"learning_rate": 0.05, "momentum": 0.9, "batch_size": 64, "schedule": "cosine"}
    keras.utils.set_random_seed(0)
    model = build_model(config, params, data)
    compile_model(model, params, data, epochs=4)
    model.fit(data.x_train, data.y_train, batch_size=64, epochs=1, verbose=0)
    saved = Checkpoint.save(model, str(tmp_path / "c.npz"), 1, {}, [])

    keras.utils.set_random_seed(1)  # another initialisation: the checkpoint must overwrite all of it
    again = build_model(config, params, data)
    compile_model(again, params, data, epochs=4)
    saved.restore(again)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(again.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) > 0
    for a, b in zip(model.optimizer.variables, again.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # momentum buffers, schedule step
    # the schedule is where it was, not back at its start
    assert float(again.optimizer.learning_rate.numpy()) == pytest.approx(float(model.optimizer.learning_rate.numpy()))


def test_a_diverging_configuration_is_cut_in_its_first_rung(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _study(tmp_path, trials=2, search_space={"learning_rate": 40.0, "momentum": 0.9, "batch_size": 64})
    result = run_sweep(config, progress=False, tracking=False)
    for t in result.study.trials:
        assert t.state == optuna.trial.TrialState.PRUNED, "never FAIL for a numerical blow-up"
        assert t.user_attrs["prune_reason"] in ("divergence", "exploding_gradients"), "cut for the pathology"
        assert t.user_attrs["epochs_trained"] == 1, "not promoted, not halved: cut inside its first rung"


@pytest.mark.parametrize("pruner, message", [
    ({"name": "brackets", "options": {"min_epochs": 0}}, "min_epochs must be an integer of at least 1"),
    ({"name": "brackets", "options": {"eta": 3}}, "unknown option 'eta' for brackets"),
    ({"name": "brackets", "options": {"min_epochs": 9}}, "min_epochs (9) is above max_epochs (4)"),
])
def test_bad_bracket_options_are_one_line(tmp_path, pruner, message):
    data = _study(tmp_path).model_dump(mode="json")
    data["pruner"] = pruner
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    from descentkit.tuner.config import load_study

    with pytest.raises(ConfigError) as error:
        load_study(path)
    assert message in str(error.value) and "\n" not in str(error.value)


class _ScriptedObjective:
    """Scores a configuration by `score(trial number, epoch)` (higher is better; by
    default its trial number) and records the order of training calls: the
    schedule alone, without training a model."""

    def __init__(self, score=lambda number, epoch: float(number)) -> None:
        self.config = StudyConfig.model_validate({
            "name": "scripted", "dataset": "digits", "model": "mlp", "max_epochs": 9,
            "search_space": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.1}}})
        self.score = score
        self.calls: list[tuple[int, int]] = []

    def train(self, trial, until, resume=None, keep=None):
        trial.suggest_float("learning_rate", 0.01, 0.1)
        self.calls.append((trial.number, until))
        series = [self.score(trial.number, epoch) for epoch in range(1, until + 1)]
        trial.set_user_attr("history", {"val_accuracy": series})
        return max(series), object()


def _run_one_bracket(objective, first_trial=False):
    from descentkit.tuner._budget import Budget
    from descentkit.tuner._lock import BudgetLock
    from descentkit.tuner._record import FIRST_TRIAL as FIRST_TRIAL_ATTR
    from descentkit.tuner.brackets import BracketRunner

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    if first_trial:  # as lr_find.propose_first_trial enqueues it
        study.enqueue_trial({"learning_rate": 0.05}, user_attrs={FIRST_TRIAL_ATTR: "range_test"})
    bracket = hyperband_brackets(9)[0]
    assert bracket.rungs == ((9, 1), (3, 3), (1, 9))
    BracketRunner(study, objective, [bracket], Budget(study, 9), deadline=None, callbacks=[],
                  lock=BudgetLock("scripted")).run()
    return study


def test_the_first_rungs_leader_trains_to_the_end_first():
    objective = _ScriptedObjective()
    study = _run_one_bracket(objective)
    # all 9 for 1 epoch; the leader (8) straight on to 9 epochs, from its checkpoint;
    # then the next two to 3 epochs, where the leader's value at epoch 3 still ranks first
    assert objective.calls == [(n, 1) for n in range(9)] + [(8, 9), (7, 3), (6, 3)]
    assert [t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE] == [8]
    assert study.best_trial.number == 8 and study.best_value == 8.0
    halved = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(halved) == 8 and all(t.user_attrs["prune_reason"] == "pruner" for t in halved)


def test_a_configuration_that_overtakes_the_leader_goes_on_too():
    # 8 leads after 1 epoch and then stalls; 6 starts slower and is best by epoch 3
    def score(number, epoch):
        if number == 8:
            return 0.80
        if number == 6:
            return min(0.95, 0.74 + 0.05 * (epoch - 1))
        return 0.5 + 0.04 * number

    objective = _ScriptedObjective(score)
    study = _run_one_bracket(objective)
    assert objective.calls[9:] == [(8, 9), (7, 3), (6, 3), (6, 9)]
    complete = {t.number: t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert complete == {8: 0.80, 6: 0.95}
    assert study.trials[7].state == optuna.trial.TrialState.PRUNED, "below both at epoch 3"


def test_a_leader_pruned_on_its_way_leaves_the_halving_to_the_rest():
    class LeaderDiverges(_ScriptedObjective):
        def train(self, trial, until, resume=None, keep=None):
            value = super().train(trial, until, resume, keep)
            if trial.number == 8 and until > 1:
                raise optuna.TrialPruned("divergence")
            return value

    objective = LeaderDiverges()
    study = _run_one_bracket(objective)
    assert objective.calls[9:] == [(8, 9), (7, 3), (6, 3), (7, 9)]
    assert study.trials[8].state == optuna.trial.TrialState.PRUNED
    assert [t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE] == [7]


@pytest.mark.parametrize("first_score", [10.0, 0.0], ids=["best", "worst"])
def test_the_first_trial_from_the_range_test_trains_to_the_end_first_outside_the_halving(first_score):
    # the informed first trial (0) trains to max_epochs before the others' first rung; then,
    # better or worse than they are, the halving runs among the other 8 as it would without it
    objective = _ScriptedObjective(lambda number, epoch: first_score if number == 0 else float(number))
    study = _run_one_bracket(objective, first_trial=True)
    assert objective.calls == [(0, 9)] + [(n, 1) for n in range(1, 9)] + [(8, 9), (7, 3), (6, 3)]
    assert [t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE] == [0, 8]
    assert study.trials[0].params == {"learning_rate": 0.05} and study.trials[0].value == first_score


def test_a_bracket_takes_at_most_its_workers_share():
    from descentkit.tuner._budget import Budget
    from descentkit.tuner._lock import BudgetLock
    from descentkit.tuner.brackets import BracketRunner

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    objective = _ScriptedObjective()
    BracketRunner(study, objective, hyperband_brackets(9), Budget(study, 8), deadline=None, callbacks=[],
                  lock=BudgetLock("scripted"), max_bracket=4).run()
    # two brackets of 4 (the first cut from 9 keeps its ratios: 4 at 1 epoch, the best 1 on), not one of 8
    assert objective.calls[:5] == [(0, 1), (1, 1), (2, 1), (3, 1), (3, 9)]
    assert len(study.trials) == 8 and {n for n, _ in objective.calls[5:]} >= {4, 5, 6, 7}


def test_two_workers_share_a_small_bracket_budget(tmp_path, monkeypatch):
    from descentkit.tuner._record import WORKER as WORKER_ATTR

    monkeypatch.chdir(tmp_path)
    config = _study(tmp_path, trials=4)  # its first bracket: 4 configurations
    result = run_sweep(config, workers=2, progress=False, tracking=False)
    trials = result.study.trials
    assert len(trials) == 4 and all(t.state.is_finished() for t in trials)
    assert len({t.user_attrs[WORKER_ATTR] for t in trials}) == 2, "each worker ran a bracket of its share"
