from cryptopred_training.promotion import decide_promotion

GOOD = {
    "test_mae": 9.0,
    "test_persistence_mae": 10.0,
    "walk_forward_mae": 9.5,
    "walk_forward_persistence_mae": 10.0,
}


def test_champion_when_it_beats_persistence_everywhere():
    decision = decide_promotion(**GOOD)
    assert decision.decision == "champion" and decision.promote
    assert "persistence 10" in decision.reason


def test_challenger_when_test_split_does_not_beat_persistence():
    decision = decide_promotion(**{**GOOD, "test_mae": 10.0})
    assert decision.decision == "challenger" and not decision.promote
    assert decision.reason.startswith("test mae")


def test_challenger_when_walk_forward_does_not_beat_persistence():
    decision = decide_promotion(**{**GOOD, "walk_forward_mae": 10.5})
    assert decision.decision == "challenger"
    assert decision.reason.startswith("walk-forward")


def test_margin_is_relative():
    assert decide_promotion(**GOOD, margin=0.04).decision == "champion"  # 9.5 < 9.6
    decision = decide_promotion(**GOOD, margin=0.06)  # 9.5 is not < 9.4
    assert decision.decision == "challenger" and "margin 6.00%" in decision.reason


def test_must_beat_the_current_champion():
    assert decide_promotion(**GOOD, champion_test_mae=9.5).decision == "champion"
    decision = decide_promotion(**GOOD, champion_test_mae=8.0)
    assert decision.decision == "challenger" and "champion" in decision.reason
