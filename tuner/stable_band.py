"""The learning-rate band a sweep has found stable, read from its finished trials.

Above some learning rate almost every trial diverged (or its gradients
exploded); below some rate almost every trial stalled (or its gradients
vanished). `stable_band` finds both edges (at least `MIN_EVIDENCE` trials beyond
the edge, `MIN_SHARE` of them failing that way), so a sweep can say
"learning_rate >= 0.41: 9 of 10 trials diverged".

The band is in the raw learning rate. With momentum searched too, the step a
rate takes differs by up to 1 / (1 - momentum): divergences of high-momentum
trials can set an edge below rates that plain SGD trains well at. An edge needs
at least 80 % of the trials beyond it to have failed, so such SGD trials keep it
from forming unless the failures outnumber them four to one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from descentkit.tuner._record import pathology

LEARNING_RATE = "learning_rate"
UNSTABLE = ("divergence", "exploding_gradients")
STALLED = ("stalled_training", "vanishing_gradients")
MIN_EVIDENCE = 2
MIN_SHARE = 0.8


@dataclass(frozen=True)
class Edge:
    """One edge of the band: at `rate` and beyond, `failed` of `trials` trials failed that way."""

    rate: float
    failed: int
    trials: int


@dataclass(frozen=True)
class Band:
    low: float
    high: float
    upper: Edge | None  # the divergence edge, if found
    lower: Edge | None  # the stall edge, if found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> list[str]:
        lines = []
        if self.upper is not None:
            lines.append(f"learning_rate >= {self.upper.rate:.3g}: {self.upper.failed} of {self.upper.trials} "
                         f"trials diverged or their gradients exploded")
        if self.lower is not None:
            lines.append(f"learning_rate <= {self.lower.rate:.3g}: {self.lower.failed} of {self.lower.trials} "
                         f"trials stalled or their gradients vanished")
        return lines


def _edge(points: list[tuple[float, bool]]) -> Edge | None:
    """`points`: (rate, failed) ordered from the far end inwards. The innermost failing
    rate such that, from the far end to it, at least MIN_SHARE of the trials failed."""
    best, failed = None, 0
    for seen, (rate, bad) in enumerate(points, start=1):
        failed += bad
        if bad and failed >= MIN_EVIDENCE and failed >= MIN_SHARE * seen:
            best = Edge(rate, failed, seen)
    return best


def stable_band(trials: list[Any], low: float, high: float, name: str = LEARNING_RATE) -> Band:
    """The band inside [low, high] that the finished trials found stable.

    A trial counts against the band only when it was pruned for the symptom
    (a confident finding), not when it merely showed a warning.
    """
    points = [(float(t.params[name]), pathology(t)) for t in trials
              if t.state.is_finished() and isinstance(t.params.get(name), (int, float))]
    upper = _edge([(r, reason in UNSTABLE) for r, reason in sorted(points, key=lambda p: -p[0])])
    lower = _edge([(r, reason in STALLED) for r, reason in sorted(points, key=lambda p: p[0])])
    band_low = max(low, lower.rate) if lower is not None else low
    band_high = min(high, upper.rate) if upper is not None else high
    if band_low >= band_high:  # the edges cross: the evidence contradicts itself; search it all
        return Band(low, high, upper, lower)
    return Band(band_low, band_high, upper, lower)
