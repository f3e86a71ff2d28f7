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
    advice = next(f["advice"] for t in study.trials for f in t.user_attrs.get("findings", [])
                  if f["symptom"] == "divergence")
    assert advice in text, "advice drawn from the findings"
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
