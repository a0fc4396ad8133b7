"""Live calibration of the served champion, and when to demote it to the best baseline.

The publisher feeds every outcome it scores to a `CalibrationMonitor`. For the champion's
version, per horizon, the monitor keeps the last `window_outcomes` outcomes and decides a
demotion when either
- the rolling 80 % interval coverage stays outside [coverage_low, coverage_high] for at least
  `after_s` (event time: the outcomes' target times), or
- the live skill against the baseline (1 - its pinball loss / the baseline's, over the outcomes
  that have both) is negative and the Diebold-Mariano test of equal pinball loss (HAC variance,
  lag h - 1 for an h-step forecast) gives p below `p_value`, also for at least `after_s`: the
  test is repeated on every outcome, so one significant dip alone is not enough.
Both need `min_outcomes` outcomes first. A version tagged `model_kind=baseline` is never
demoted, and each version is demoted at most once (unless `forget` is called after a failed
demotion). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from cryptopred_core.records import PredictionOutcome
from cryptopred_serving.champion_watch import Champion
from cryptopred_serving.settings import ServeSettings
from cryptopred_training.scores import diebold_mariano

BASELINE_KIND = "baseline"


@dataclass(frozen=True)
class DemotionPolicy:
    """When a champion is demoted (see the module docstring)."""

    coverage_low: float = 0.70
    coverage_high: float = 0.90
    after_s: float = 1800.0
    p_value: float = 0.05
    min_outcomes: int = 60
    window_outcomes: int = 240

    def __post_init__(self) -> None:
        if not 0.0 <= self.coverage_low < self.coverage_high <= 1.0:
            raise ValueError(
                f"coverage band {self.coverage_low}-{self.coverage_high} needs 0 <= low < high <= 1"
            )
        if not 2 <= self.min_outcomes <= self.window_outcomes:
            raise ValueError(
                f"min_outcomes {self.min_outcomes} needs 2 <= it <= "
                f"window_outcomes {self.window_outcomes}"
            )


def policy_of(settings: ServeSettings) -> DemotionPolicy:
    """The demotion policy the `demotion_*` settings describe."""
    return DemotionPolicy(
        coverage_low=settings.demotion_coverage_low,
        coverage_high=settings.demotion_coverage_high,
        after_s=settings.demotion_after_s,
        p_value=settings.demotion_p_value,
        min_outcomes=settings.demotion_min_outcomes,
        window_outcomes=settings.demotion_window_outcomes,
    )


@dataclass(frozen=True)
class Demotion:
    """A decision to demote `model_version` of `model_name`, with its reason."""

    model_name: str
    model_version: str
    horizon_seconds: int
    reason: str
    decided_at_ms: int  # the target time of the outcome that decided it


@dataclass
class _Track:
    """The recent outcomes of one version at one horizon."""

    hits: deque[bool]
    losses: deque[tuple[float, float]]  # (pinball, baseline pinball) where both are known
    outside_since_ms: int | None = None
    worse_since_ms: int | None = None


@dataclass
class CalibrationMonitor:
    """Rolling coverage and skill of the champion per horizon; decides demotions."""

    policy: DemotionPolicy = field(default_factory=DemotionPolicy)
    _tracks: dict[tuple[str, str, int], _Track] = field(default_factory=dict)
    _decided: set[tuple[str, str]] = field(default_factory=set)

    def observe(self, outcome: PredictionOutcome, champion: Champion | None) -> Demotion | None:
        """Take one scored outcome; a Demotion when the champion that made it must go."""
        version = (outcome.model_name, outcome.model_version)
        if (
            champion is None
            or (champion.name, champion.version) != version
            or champion.tags.get("model_kind") == BASELINE_KIND
            or version in self._decided
        ):
            return None
        track = self._track(outcome)
        track.hits.append(outcome.interval_hit)
        if outcome.pinball_loss is not None and outcome.baseline_pinball_loss is not None:
            track.losses.append((outcome.pinball_loss, outcome.baseline_pinball_loss))
        reason = self._coverage_reason(track, outcome) or self._skill_reason(track, outcome)
        if reason is None:
            return None
        self._decided.add(version)
        return Demotion(
            outcome.model_name,
            outcome.model_version,
            outcome.horizon_seconds,
            reason,
            outcome.target_ts_ms,
        )

    def forget(self, model_name: str, model_version: str) -> None:
        """Allow a new decision about a version (its demotion could not be carried out)."""
        self._decided.discard((model_name, model_version))
        for key in [k for k in self._tracks if k[:2] == (model_name, model_version)]:
            self._tracks[key].outside_since_ms = None
            self._tracks[key].worse_since_ms = None

    def coverage(self, model_name: str, model_version: str, horizon_seconds: int) -> float | None:
        """The rolling coverage of a version at a horizon; None before any outcome."""
        track = self._tracks.get((model_name, model_version, horizon_seconds))
        if track is None or not track.hits:
            return None
        return sum(track.hits) / len(track.hits)

    def _track(self, outcome: PredictionOutcome) -> _Track:
        key = (outcome.model_name, outcome.model_version, outcome.horizon_seconds)
        track = self._tracks.get(key)
        if track is None:
            size = self.policy.window_outcomes
            track = self._tracks[key] = _Track(deque(maxlen=size), deque(maxlen=size))
        return track

    def _coverage_reason(self, track: _Track, outcome: PredictionOutcome) -> str | None:
        policy = self.policy
        if len(track.hits) < policy.min_outcomes:
            return None
        coverage = sum(track.hits) / len(track.hits)
        if policy.coverage_low <= coverage <= policy.coverage_high:
            track.outside_since_ms = None
            return None
        if track.outside_since_ms is None:
            track.outside_since_ms = outcome.target_ts_ms
        outside_s = (outcome.target_ts_ms - track.outside_since_ms) / 1000
        if outside_s < policy.after_s:
            return None
        return (
            f"rolling 80 % coverage {coverage:.3f} over the last {len(track.hits)} outcomes at "
            f"the {outcome.horizon_seconds} s horizon outside {policy.coverage_low:.2f}-"
            f"{policy.coverage_high:.2f} for {outside_s:.0f} s"
        )

    def _skill_reason(self, track: _Track, outcome: PredictionOutcome) -> str | None:
        if len(track.losses) < self.policy.min_outcomes:
            return None
        losses = np.asarray(track.losses, dtype=np.float64)
        mine, baseline = losses[:, 0], losses[:, 1]
        reference = float(baseline.mean())
        skill = 1.0 - float(mine.mean()) / reference if reference > 0 else 0.0
        steps = max(1, outcome.horizon_seconds // outcome.candle_seconds)
        p_value = diebold_mariano(mine, baseline, lag=steps - 1).p_value if skill < 0 else 1.0
        if p_value >= self.policy.p_value:
            track.worse_since_ms = None
            return None
        if track.worse_since_ms is None:
            track.worse_since_ms = outcome.target_ts_ms
        worse_s = (outcome.target_ts_ms - track.worse_since_ms) / 1000
        if worse_s < self.policy.after_s:
            return None
        return (
            f"live skill {skill:.3f} against the baseline over the last {len(losses)} outcomes "
            f"at the {outcome.horizon_seconds} s horizon, Diebold-Mariano p {p_value:.2g}, "
            f"significantly worse for {worse_s:.0f} s"
        )
