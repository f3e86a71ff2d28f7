"""One root cause, one advice: findings that follow from another are linked to it.

Training pathologies come in chains. A learning rate that blows the loss up also
blows the gradients up; ReLUs that died pass back no gradient, so the first
layers' gradients vanish and the loss stalls. Reported side by side, each with its
own advice, they contradict each other ("raise the learning rate" for the
vanishing gradients, "lower it" for the dead units). Here the root keeps its advice
and each consequence points to it: `evidence["caused_by"]` names the root, and its
advice says to fix that first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from descentkit.diagnostics._finding import (
    DEAD_UNITS,
    DIVERGENCE,
    EXPLODING_GRADIENTS,
    OSCILLATING_LOSS,
    OVERFITTING,
    SATURATED_ACTIVATIONS,
    SEVERITIES,
    STALLED_TRAINING,
    TRAINING_SYMPTOMS,
    VANISHING_GRADIENTS,
    Finding,
)

# What each symptom can cause, root first. A loss that diverges drives the gradients
# up with it, knocks ReLUs off and saturates squashing units, and a run that never
# recovers looks stalled; dead or saturated units pass back (almost) no gradient, so
# the first layers' gradients vanish and the loss stops improving; vanishing
# gradients stall the loss; exploding gradients make the loss swing or stall; and a
# loss that swings makes the validation loss rise while the training loss falls in
# its downswings, which is not overfitting. Divergence and exploding gradients
# cause each other: which one is the root is decided by which was seen first
# (`_explains`).
CAUSES: dict[str, tuple[str, ...]] = {
    DIVERGENCE: (
        EXPLODING_GRADIENTS,
        DEAD_UNITS,
        SATURATED_ACTIVATIONS,
        VANISHING_GRADIENTS,
        OSCILLATING_LOSS,
        STALLED_TRAINING,
        OVERFITTING,
    ),
    EXPLODING_GRADIENTS: (DIVERGENCE, OSCILLATING_LOSS, STALLED_TRAINING, OVERFITTING),
    DEAD_UNITS: (VANISHING_GRADIENTS, STALLED_TRAINING),
    SATURATED_ACTIVATIONS: (VANISHING_GRADIENTS, STALLED_TRAINING),
    VANISHING_GRADIENTS: (STALLED_TRAINING,),
    OSCILLATING_LOSS: (STALLED_TRAINING, OVERFITTING),
}
# Roots first: the order in which a symptom is preferred as the explanation.
ROOT_ORDER = (
    DIVERGENCE,
    EXPLODING_GRADIENTS,
    DEAD_UNITS,
    SATURATED_ACTIVATIONS,
    VANISHING_GRADIENTS,
    OSCILLATING_LOSS,
    STALLED_TRAINING,
)
# A root explains a consequence whose episode starts no more than this many epochs
# before it: episodes are dated by their start, and a stall is dated back to the
# first epoch of its 5-epoch window, before the dead units that caused it were seen.
LINK_EPOCHS = 5
_SERIOUS = ("warning", "critical")


def _explains(root: Finding, consequence: Finding) -> bool:
    if root is consequence or root.severity not in _SERIOUS or "caused_by" in root.evidence:
        return False
    if consequence.symptom not in CAUSES.get(root.symptom, ()):
        return False
    if root.symptom in CAUSES.get(consequence.symptom, ()):
        return _moved_first(root, consequence)
    if root.epoch is None or consequence.epoch is None:
        return True
    return root.epoch <= consequence.epoch + LINK_EPOCHS


def _moved_first(root: Finding, consequence: Finding) -> bool:
    """For two symptoms that can cause each other (divergence and exploding
    gradients): whether `root` moved first. A gradient norm that grew 100x while the
    loss was merely not improving, steps before the loss blew up, is exploding
    gradients, the blow-up its consequence. A gradient that jumped at the very step
    the loss did (`loss_jumped_with_it`) did not move first: the gradient of a
    blown-up loss is large, and that is divergence. Same step: ties go by ROOT_ORDER."""
    if root.evidence.get("loss_jumped_with_it"):
        return False
    if consequence.evidence.get("loss_jumped_with_it"):
        return True
    first, then = _when(root, consequence), _when(consequence, root)
    if first is None or then is None or first == then:
        return ROOT_ORDER.index(root.symptom) < ROOT_ORDER.index(consequence.symptom)
    return first < then


def _when(finding: Finding, other: Finding) -> int | None:
    """When `finding` was seen, on the clock both findings share: the optimizer step
    when both have one, else the epoch."""
    if finding.step is not None and other.step is not None:
        return finding.step
    return finding.epoch


def _root_of(finding: Finding, findings: list[Finding]) -> Finding | None:
    candidates = [r for r in findings if _explains(r, finding)]
    if not candidates:
        return None
    # The deepest root: the one earliest in ROOT_ORDER, then the earliest found.
    return min(candidates, key=lambda r: ROOT_ORDER.index(r.symptom))


def link_causes(findings: Iterable[Finding]) -> list[Finding]:
    """The findings in the same order, each consequence of another linked to its root.

    A linked finding keeps its symptom, severity, epoch and step (so
    `episode_key` is unchanged); its evidence gains `caused_by` (the root's
    symptom), `caused_by_epoch` and `caused_by_step`, and its advice points to the
    root's. A root's evidence gains `consequences`, the symptoms it explains.
    Chains resolve to the deepest root: dead units -> vanishing gradients -> stalled
    training links both to the dead units.
    """
    findings = list(findings)
    # Roots are judged on the findings as detected, never on already-linked copies.
    plain = [
        dataclasses.replace(f, evidence={k: v for k, v in f.evidence.items() if k not in _LINK_KEYS})
        if any(k in f.evidence for k in _LINK_KEYS) else f
        for f in findings
    ]
    roots: list[Finding | None] = [None] * len(plain)
    for i, finding in enumerate(plain):
        root = _root_of(finding, plain)
        # Follow the chain down: a root that is itself explained passes its root on.
        seen = {i}
        while root is not None:
            j = plain.index(root)
            deeper = _root_of(root, plain)
            if deeper is None or j in seen:
                break
            seen.add(j)
            root = deeper
        roots[i] = root
    explained: dict[int, list[str]] = {}
    for i, root in enumerate(roots):
        if root is not None:
            explained.setdefault(plain.index(root), []).append(plain[i].symptom)
    linked = []
    for i, finding in enumerate(plain):
        root = roots[i]
        if root is not None:
            at = f" (epoch {root.epoch})" if root.epoch is not None else ""
            finding = dataclasses.replace(
                finding,
                advice=f"A consequence of {root.symptom}{at}: fix that first. {root.advice}",
                evidence={
                    **finding.evidence,
                    "caused_by": root.symptom,
                    "caused_by_epoch": root.epoch,
                    "caused_by_step": root.step,
                },
            )
        elif i in explained:
            finding = dataclasses.replace(
                finding, evidence={**finding.evidence, "consequences": sorted(set(explained[i]))}
            )
        linked.append(finding)
    return linked


_LINK_KEYS = ("caused_by", "caused_by_epoch", "caused_by_step", "consequences")


def top_finding(findings: Iterable[Finding]) -> Finding | None:
    """The finding that best explains a run: among the warning and critical findings
    of training symptoms that no other explains (after `link_causes`), the most
    severe, then the deepest root (`ROOT_ORDER`), then the earliest; a data check
    (`unnormalized_inputs`, ...) only when training showed nothing. None when there
    is none.

    Example:
        >>> top = top_finding(monitor.findings)
        >>> print(top.symptom if top else "healthy")
    """
    linked = link_causes(findings)
    candidates = [(i, f) for i, f in enumerate(linked) if f.severity in _SERIOUS and "caused_by" not in f.evidence]
    # A training symptom explains what happened in training; a data check (preflight)
    # is the answer only when training showed nothing.
    trained = [(i, f) for i, f in candidates if f.symptom in TRAINING_SYMPTOMS]
    candidates = trained or candidates
    if not candidates:
        return None
    rank = {s: i for i, s in enumerate(SEVERITIES)}

    def key(item: tuple[int, Finding]) -> tuple:
        i, f = item
        root = ROOT_ORDER.index(f.symptom) if f.symptom in ROOT_ORDER else len(ROOT_ORDER)
        return (-rank[f.severity], root, f.epoch if f.epoch is not None else -1, f.step if f.step is not None else -1, i)

    return min(candidates, key=key)[1]
