"""The promotion gate as pure functions: a learned model is promoted only when it beats the best
volatility baseline significantly, on the test split and in walk-forward, with calibrated
80 % intervals; otherwise the best baseline serves, so every market gets honest forecasts.

Losses are per forecast origin, averaged over the horizons (log-return units, lower is
better): `pinball` (mean over the quantile levels), `interval_score` (of the central interval)
or `mae` (of the median). The significance test is Diebold-Mariano with a HAC variance up to
the longest horizon's overlap (steps - 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cryptopred_training.scores import (
    FloatArray,
    diebold_mariano,
    interval_score,
    mean_pinball,
)

LOSSES = ("pinball", "interval_score", "mae")
Loss = Literal["pinball", "interval_score", "mae"]
Served = Literal["transformer", "baseline", "keep"]


def per_origin_loss(
    actual: FloatArray, predicted: FloatArray, levels: Sequence[float], loss: str
) -> FloatArray:
    """(n,) loss of each forecast origin, averaged over horizons; `actual` (n, H),
    `predicted` (n, H, len(levels))."""
    per_horizon = []
    for j in range(actual.shape[1]):
        y, p = actual[:, j], predicted[:, j, :]
        if loss == "pinball":
            per_horizon.append(mean_pinball(y, p, levels))
        elif loss == "interval_score":
            alpha = 1.0 - (levels[-1] - levels[0])
            per_horizon.append(interval_score(y, p[:, 0], p[:, -1], alpha))
        elif loss == "mae":
            per_horizon.append(np.abs(y - p[:, len(levels) // 2]))
        else:
            raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
    out: FloatArray = np.mean(per_horizon, axis=0)
    return out


def coverages(actual: FloatArray, predicted: FloatArray) -> tuple[float, ...]:
    """Share of outcomes inside [lowest, highest] quantile, per horizon."""
    inside = (actual >= predicted[..., 0]) & (actual <= predicted[..., -1])
    return tuple(float(v) for v in inside.mean(axis=0))


@dataclass(frozen=True)
class GateEvidence:
    """The candidate against the best baseline on one evaluation (test split or walk-forward)."""

    where: str
    loss_name: str
    loss: float
    baseline: str
    baseline_loss: float
    dm_statistic: float
    p_value: float
    coverage: tuple[float, ...]


def gate_evidence(
    where: str,
    actual: FloatArray,
    predicted: Mapping[str, FloatArray],
    *,
    candidate: str,
    baselines: Sequence[str],
    levels: Sequence[float],
    max_steps: int,
    loss: str,
) -> GateEvidence:
    """The candidate's mean loss, the lowest-loss baseline's, the DM test between the two and
    the candidate's coverage per horizon."""
    losses = {
        name: per_origin_loss(actual, predicted[name], levels, loss)
        for name in (candidate, *baselines)
    }
    best = min(baselines, key=lambda name: float(losses[name].mean()))
    test = diebold_mariano(losses[candidate], losses[best], lag=max_steps - 1)
    return GateEvidence(
        where=where,
        loss_name=loss,
        loss=float(losses[candidate].mean()),
        baseline=best,
        baseline_loss=float(losses[best].mean()),
        dm_statistic=test.statistic,
        p_value=test.p_value,
        coverage=coverages(actual, predicted[candidate]),
    )


@dataclass(frozen=True)
class GateRule:
    """When a learned model counts as better than the baselines."""

    p_value: float = 0.05
    coverage_low: float = 0.75
    coverage_high: float = 0.85
    margin: float = 0.0  # share of the baseline's loss to beat it by


@dataclass(frozen=True)
class PromotionDecision:
    """`decision` is the transformer version's alias; `served` says what the `champion` alias
    points at after the run: the transformer, the run's best baseline, or the kept champion."""

    decision: Literal["champion", "challenger"]
    reason: str
    served: Served = "keep"
    baseline: str = ""

    @property
    def promote(self) -> bool:
        return self.decision == "champion"


def gate_failure(evidence: GateEvidence, rule: GateRule, *, check_coverage: bool) -> str | None:
    """Why the candidate fails the gate on this evaluation, or None when it passes. Coverage
    is checked where `check_coverage` (the test split: its model is the one served)."""
    if not evidence.loss < evidence.baseline_loss * (1.0 - rule.margin):
        margin = f" by {rule.margin:.1%}" if rule.margin else ""
        return (
            f"{evidence.where} {evidence.loss_name} {evidence.loss:.6g} does not beat "
            f"{evidence.baseline} {evidence.baseline_loss:.6g}{margin}"
        )
    if not evidence.p_value < rule.p_value:
        return (
            f"{evidence.where} {evidence.loss_name} {evidence.loss:.6g} < {evidence.baseline} "
            f"{evidence.baseline_loss:.6g} is not significant (DM p {evidence.p_value:.3g} "
            f">= {rule.p_value:g})"
        )
    outside = [c for c in evidence.coverage if not rule.coverage_low <= c <= rule.coverage_high]
    if check_coverage and outside:
        shown = ", ".join(f"{c:.1%}" for c in evidence.coverage)
        return (
            f"{evidence.where} 80 % coverage {shown} is outside "
            f"{rule.coverage_low:.0%}-{rule.coverage_high:.0%}"
        )
    return None


def decide_promotion(
    evidence: Sequence[GateEvidence],
    rule: GateRule,
    *,
    champion_loss: float | None = None,
) -> PromotionDecision:
    """Promote the transformer when it beats the best baseline significantly on every
    evaluation, its test-split coverage (`evidence[0]`, the model that would serve) is in the
    band, and it beats the current champion's loss on the same test split; otherwise serve
    the best baseline of the test split, unless the current champion's loss is lower still.
    Walk-forward folds are refits with fewer epochs, so their coverage is reported only."""
    test = evidence[0]
    checked = (gate_failure(e, rule, check_coverage=e is test) for e in evidence)
    failures = [f for f in checked if f is not None]
    if not failures:
        passed = "; ".join(
            f"{e.where} {e.loss_name} {e.loss:.6g} < {e.baseline} {e.baseline_loss:.6g} "
            f"(DM p {e.p_value:.3g})"
            for e in evidence
        )
        if champion_loss is not None and not test.loss < champion_loss:
            return PromotionDecision(
                "challenger",
                f"passes the gate ({passed}) but does not beat the champion's {champion_loss:.6g}",
                "keep",
                test.baseline,
            )
        return PromotionDecision("champion", passed, "transformer", test.baseline)
    why = failures[0]
    if champion_loss is not None and champion_loss <= test.baseline_loss:
        return PromotionDecision(
            "challenger",
            f"{why}; the champion ({champion_loss:.6g}) stays, it is not worse than "
            f"{test.baseline}",
            "keep",
            test.baseline,
        )
    return PromotionDecision(
        "challenger", f"{why}; {test.baseline} serves", "baseline", test.baseline
    )
