"""`write_report`: one self-contained, well-formed HTML file with the study's pathology map and plots."""

from __future__ import annotations

from html.parser import HTMLParser

from descentkit.tuner.report import pathology_map, pathology_text, write_report

VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}


class _Checker(HTMLParser):
    """Collects <img> sources and checks that every opened tag is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_report_is_self_contained_well_formed_html(tmp_path, swept_study):
    study = swept_study
    path = write_report(study, tmp_path / "reports" / "fake.html")
    assert path == tmp_path / "reports" / "fake.html"

    checker = _Checker()
    checker.feed(path.read_text(encoding="utf-8"))
    checker.close()
    assert checker.errors == [] and checker.stack == [], "every tag closes, in order"
    assert len(checker.images) == 6
    assert all(src.startswith("data:image/png;base64,") for src in checker.images), "no file or server needed"

    text = " ".join(checker.text)
    assert "Pathology map" in text and "divergence" in text
    diverged = [t for t in study.trials if t.user_attrs.get("prune_reason") == "divergence"]
    lowest = min(t.params["learning_rate"] for t in diverged)
    numbers = ", ".join(f"#{t.number}" for t in diverged)
    assert f"<b>divergence</b> ({len(diverged)} trial(s): {numbers})" in path.read_text(encoding="utf-8")
    assert f"Keep learning_rate below {lowest:.4g}" in text, "advice from the diverged trials' own rates"
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert f"{best.value:.4g}" in text


def test_pathology_map_places_divergence_in_the_high_learning_rate_region(swept_study, small_sweep):
    study = swept_study
    view = pathology_map(study)
    diverged = [t for t in study.trials if t.user_attrs.get("prune_reason") == "divergence"]
    entry = view["symptoms"]["divergence"]
    assert entry["count"] == entry["pruned"] == len(diverged)
    assert entry["region"]["learning_rate"]["min"] > small_sweep.diverging_lr
    assert view["searched"]["learning_rate"]["min"] < entry["region"]["learning_rate"]["min"]
    assert "divergence:" in pathology_text(view)


def _trial(number, params, findings, state="COMPLETE", value=0.9):
    import optuna
    from optuna.distributions import FloatDistribution

    distributions = {name: FloatDistribution(0.0, 1.0) for name in params}
    trial = optuna.trial.create_trial(state=getattr(optuna.trial.TrialState, state), value=value if state == "COMPLETE" else None,
                                      params=params, distributions=distributions,
                                      user_attrs={"findings": findings, "symptoms": sorted({f["symptom"] for f in findings})})
    return trial


def test_advice_is_given_once_per_symptom_with_trial_numbers_and_the_trials_own_parameters():
    import optuna

    from descentkit.tuner.report import common_advice, report_html

    def overfit(best_epoch):  # the detector's advice differs by best epoch: one line each, before
        return {"symptom": "overfitting", "severity": "warning", "epoch": best_epoch + 2, "step": None,
                "message": "val_loss rose", "evidence": {},
                "advice": f"Stop earlier: best val_loss at epoch {best_epoch}; or regularize: add L2 1e-4 or dropout 0.2."}

    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial(0, {"dropout": 0.2, "l2": 1e-4, "learning_rate": 0.05}, [overfit(3)], value=0.8))
    study.add_trial(_trial(1, {"dropout": 0.1, "l2": 1e-5, "learning_rate": 0.02}, [overfit(4)], value=0.7))
    study.add_trial(_trial(2, {"dropout": 0.3, "l2": 1e-3, "learning_rate": 0.01}, []))
    study.add_trial(_trial(3, {"dropout": 0.2, "l2": 1e-4, "learning_rate": 0.03}, [overfit(5)], value=0.6))

    advice = common_advice(study)
    assert [(symptom, numbers) for symptom, _, numbers in advice] == [("overfitting", [0, 1, 3])]
    text = advice[0][1]
    assert "raise dropout above 0.2 (they had 0.1-0.2)" in text and "l2 above 0.0001 (they had 1e-05-0.0001)" in text
    assert "add L2" not in text and "dropout 0.2" not in text
    page = report_html(study)
    assert page.count("<b>overfitting</b>") == 1 and "3 trial(s): #0, #1, #3" in page


def test_an_all_failed_study_still_draws_every_plot():
    import optuna

    from descentkit.tuner.report import study_figures

    study = optuna.create_study()
    for rate in (0.01, 0.1):
        study.add_trial(_trial(0, {"learning_rate": rate}, [], state="FAIL"))
    assert len(study_figures(study)) == 6
