"""The champion/challenger decision as a pure function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PromotionDecision:
    decision: Literal["champion", "challenger"]
    reason: str

    @property
    def promote(self) -> bool:
        return self.decision == "champion"


def decide_promotion(
    *,
    test_mae: float,
    test_persistence_mae: float,
    walk_forward_mae: float,
    walk_forward_persistence_mae: float,
    champion_test_mae: float | None = None,
    margin: float = 0.0,
    metric_name: str = "mae",
) -> PromotionDecision:
    """Champion only if MAE < persistence MAE * (1 - margin) on the test split AND in
    walk-forward, and below the current champion's MAE on the same test split (if any)."""
    factor = 1.0 - margin
    checks = (
        ("test", test_mae, test_persistence_mae),
        ("walk-forward", walk_forward_mae, walk_forward_persistence_mae),
    )
    for where, mae, baseline in checks:
        if not mae < baseline * factor:
            return PromotionDecision(
                "challenger",
                f"{where} {metric_name} {mae:.6g} does not beat persistence {baseline:.6g} "
                f"by margin {margin:.2%}",
            )
    if champion_test_mae is not None and not test_mae < champion_test_mae:
        return PromotionDecision(
            "challenger",
            f"test {metric_name} {test_mae:.6g} does not beat the champion's "
            f"{champion_test_mae:.6g}",
        )
    return PromotionDecision(
        "champion",
        f"test {metric_name} {test_mae:.6g} < persistence {test_persistence_mae:.6g}, "
        f"walk-forward {walk_forward_mae:.6g} < {walk_forward_persistence_mae:.6g}"
        + ("" if champion_test_mae is None else f", champion {champion_test_mae:.6g}"),
    )
